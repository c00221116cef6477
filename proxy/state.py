"""What every connection of the proxy shares: counters, limits, and the sets of open connections.

The protocols (``client``, ``target``, ``splice``) receive one ``ConnectionState``
instead of the whole ``Proxy``, as uvicorn's protocols receive its
``server_state``: they count themselves in and out through its methods and
read the limits, and never reach into the server's settings.
"""

from __future__ import annotations

import ipaddress

from .addresses import network_of
from .routes import RouteTable


class Stats:
    """Plain counters, cheap to bump on the hot path; read by /metrics."""

    __slots__ = (
        "bad_requests",
        "connections_total",
        "errors",
        "filtered_headers",
        "rejected_connections",
        "requests_total",
        "timeouts",
        "websockets_active",
        "websockets_total",
    )

    def __init__(self) -> None:
        self.connections_total = 0
        self.rejected_connections = 0
        self.requests_total = 0
        self.bad_requests = 0
        self.websockets_total = 0
        self.websockets_active = 0
        self.errors: dict[int, int] = {}  # status -> count, for responses the proxy made itself
        self.timeouts = 0
        self.filtered_headers = 0  # response headers of untrusted routes kept from the browser (proxy.untrusted)

    def count_error(self, status: int) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1


# Settings copied into Limits, re-copied whenever one changes.
LIMIT_TRAITS = ("max_head_size", "max_headers", "head_timeout", "keepalive_timeout", "connect_timeout",
                "response_timeout", "body_timeout", "send_timeout", "backend_idle_timeout", "backend_max_idle",
                "max_connections", "max_connections_per_address", "trust_forwarded", "ipv6_prefix",
                "tls_handshake_timeout", "websocket_idle_timeout")
VISITORS_KEPT = 4096  # X-Forwarded-For chains whose visitor network is remembered (Limits.visitor_network)


class Limits:
    """A plain copy of the settings the relay reads per request (traits are slow to read)."""

    __slots__ = (
        "backend_idle_timeout",
        "backend_max_idle",
        "body_timeout",
        "compress",
        "connect_timeout",
        "head_timeout",
        "ipv6_prefix",
        "keepalive_timeout",
        "max_connections",
        "max_connections_per_address",
        "max_head_size",
        "max_headers",
        "port_line",
        "private_cookies",
        "proto_line",
        "response_timeout",
        "scheme",
        "send_timeout",
        "subdomain_host",
        "tls_handshake_timeout",
        "trust_forwarded",
        "trusted_networks",
        "visitors",
        "websocket_idle_timeout",
    )

    def is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted_networks)

    def address_exempt(self, ip: str) -> bool:
        """Trusted balancers carry many visitors' connections: no per-address cap for them."""
        return self.trust_forwarded and self.is_trusted(ip)

    def forwarded_lines(self, client_ip: str) -> bytes:
        """The X-Forwarded-* lines that are the same for every request of one connection."""
        ip = client_ip.encode()
        return b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\n%s%s" % (ip, ip, self.proto_line, self.port_line)

    def real_client(self, chain: bytes, peer: str) -> bytes:
        """The visitor's address behind trusted proxies: the rightmost untrusted hop of the chain."""
        hops = [h.strip() for h in chain.decode("latin-1").split(",") if h.strip()] + [peer]
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                return hop.encode("latin-1")
        return hops[0].encode("latin-1")

    def visitor_network(self, chain: bytes) -> str:
        """The network a trusted balancer's request counts under: its visitor's, the rightmost untrusted hop
        of its X-Forwarded-For ``chain`` (as ``real_client``). '' when every hop is trusted (the balancer's
        own health checks, an internal caller): no visitor to count.

        Parsing the hops takes about 9 µs; a visitor's chain is the same on each of their requests, so it
        is remembered (``visitors``, emptied when full, and by the proxy when its settings change).
        """
        network = self.visitors.get(chain)
        if network is None:
            network = ""
            for hop in reversed(chain.decode("latin-1").split(",")):
                hop = hop.strip()
                if hop and not self.is_trusted(hop):
                    network = network_of(hop, self.ipv6_prefix)
                    break
            if len(self.visitors) >= VISITORS_KEPT:
                self.visitors.clear()
            self.visitors[chain] = network
        return network


class ConnectionState:
    """The open connections, per-network counts, counters and limits of one proxy."""

    def __init__(self, routes: RouteTable, limits: Limits, stats: Stats):
        self.routes = routes
        self.limits = limits
        self.stats = stats
        self.handshakes: set = set()  # tls.Handshake, from TCP accept to the end of the TLS handshake
        self.clients: set = set()  # client.ClientConnection, while it speaks HTTP
        self.tunnels: set = set()  # the visitor side (splice.Splice) of each upgraded connection
        # What each visitor network (addresses.network_of) holds: its connections, and behind a trusted
        # balancer its requests in flight and WebSockets.
        self.per_network: dict[str, int] = {}
        self.cache = None  # static_cache.StaticCache, when the shared static cache is on
        self.kernel_observer = None  # kernel_watch.KernelObserver told what kernel WebSockets say (the class view)

    def close_tunnels(self, prefix: str | bytes, tag: object) -> int:
        """Close at once every WebSocket to the route at ``prefix`` opened with the credential ``tag``
        (RequestHead.tag): that credential ended. Returns how many."""
        if tag is None:
            return 0
        key = prefix.encode() if isinstance(prefix, str) else prefix
        ended = [side for side in self.tunnels if side.tag == tag and side.route.prefix == key]
        for side in ended:
            side.transport.abort()
            side.peer.transport.abort()
        return len(ended)

    def open_connections(self) -> int:
        """Visitor connections open now: handshaking, speaking HTTP, or upgraded (WebSockets)."""
        return len(self.handshakes) + len(self.clients) + len(self.tunnels)

    def admit(self, ip: str) -> tuple[str, str | None]:
        """Count a new visitor connection from ``ip`` (not yet in ``handshakes`` or ``clients``).

        Returns (the network it is counted under, '' for an exempt balancer; None) or, when it is over
        max_connections or its network's cap, ('', why it is refused) with nothing counted.
        """
        limits = self.limits
        if self.open_connections() >= limits.max_connections:
            return "", "Too many connections; please retry shortly."
        if limits.address_exempt(ip):
            return "", None
        network = network_of(ip, limits.ipv6_prefix)
        if not self.count_network(network):
            return "", "Too many connections from your address; please retry shortly."
        return network, None

    def count_network(self, network: str) -> bool:
        """Count one more connection (or balancer request) of ``network``; False (nothing counted) at its cap."""
        n = self.per_network.get(network, 0)
        if n >= self.limits.max_connections_per_address:
            return False
        self.per_network[network] = n + 1
        return True

    def uncount_network(self, network: str) -> None:
        n = self.per_network.get(network, 0) - 1
        if n > 0:
            self.per_network[network] = n
        else:
            self.per_network.pop(network, None)
