"""What every connection of the proxy shares: counters, limits, and the sets of open connections.

The protocols (``client``, ``target``, ``splice``) receive one ``ConnectionState``
instead of the whole ``Proxy``, as uvicorn's protocols receive its
``server_state``: they count themselves in and out through its methods and
read the limits, and never reach into the server's settings.
"""

from __future__ import annotations

import ipaddress

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
                "max_connections", "max_connections_per_address", "trust_forwarded")


class Limits:
    """A plain copy of the settings the relay reads per request (traits are slow to read)."""

    __slots__ = (
        "backend_idle_timeout",
        "backend_max_idle",
        "body_timeout",
        "compress",
        "connect_timeout",
        "head_timeout",
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
        "trust_forwarded",
        "trusted_networks",
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


class ConnectionState:
    """The open connections, per-address counts, counters and limits of one proxy."""

    def __init__(self, routes: RouteTable, limits: Limits, stats: Stats):
        self.routes = routes
        self.limits = limits
        self.stats = stats
        self.clients: set = set()  # client.ClientConnection, while it speaks HTTP
        self.tunnels: set = set()  # the visitor side (splice.Splice) of each upgraded connection
        self.per_address: dict[str, int] = {}  # open connections per visitor address
        self.cache = None  # static_cache.StaticCache, when the shared static cache is on

    def open_connections(self) -> int:
        """Visitor connections open now, WebSockets included (they hold connections as much as requests)."""
        return len(self.clients) + len(self.tunnels)

    def count_address(self, ip: str) -> bool:
        """Count one more connection from ``ip``; False (nothing counted) when it is at its cap."""
        n = self.per_address.get(ip, 0)
        if n >= self.limits.max_connections_per_address:
            return False
        self.per_address[ip] = n + 1
        return True

    def uncount_address(self, ip: str) -> None:
        n = self.per_address.get(ip, 0) - 1
        if n > 0:
            self.per_address[ip] = n
        else:
            self.per_address.pop(ip, None)
