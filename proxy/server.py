"""The proxy server: its settings, the listening socket, and the sweep that enforces every timeout.

It wires the rooms of the relay together: ``client`` (the visitor's side),
``tls`` (HTTPS connections until their handshake is done), ``target``
(connections to routes' targets, kept alive), ``splice`` (upgraded
connections) and ``state`` (what they share), over the ``routes`` table.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import resource
import ssl
import time

from traitlets import Bool, Enum, Float, Instance, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .client import ClientConnection
from .encoding import Policy
from .exchange import BUSY, HEAD, IDLE, LINGER, LINGER_QUIET, LINGER_TIME
from .routes import RouteTable
from .state import LIMIT_TRAITS, ConnectionState, Limits, Stats
from .static_cache import StaticCache
from .targets import TargetPool
from .tls import TlsListener

# Paths under a container's prefix that are per attendee (their files, kernels,
# settings): never static, whatever static_paths says.
PER_USER_PATHS = ("api/", "files/", "notebooks/", "tree/", "edit/", "view/", "terminals/", "lab/api/",
                  "lab/workspaces/", "lab/tree/", "nbconvert/", "lsp/", "doc/", "consoles/")
COMPRESS_TRAITS = ("compress", "compress_min_size", "compress_dynamic", "static_paths")

HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

# Open files the process needs beside two per proxied connection (visitor + target):
# the Docker client, the web app's socket, logs, the thread pool's work.
FD_RESERVE = 1024


class Proxy(LoggingConfigurable):
    """nbpool's reverse proxy: routes each request by path prefix to its target.

    Use in-process: ``proxy = Proxy(parent=app, routes=table)``, ``await
    proxy.start()``, change ``proxy.routes`` at any time, ``await proxy.stop()``.
    """

    ip = Unicode("127.0.0.1", config=True,
                 help="Address to listen on. 127.0.0.1 keeps it local; 0.0.0.0 (or '') serves every interface.")
    port = Integer(8000, config=True, help="TCP port to listen on (0 picks a free one; see .bound_port).")
    certfile = Unicode("", config=True,
                       help="PEM certificate (chain) for HTTPS. With keyfile set, the proxy terminates TLS "
                            "and kernel WebSockets run over wss. Empty: plain HTTP.")
    keyfile = Unicode("", config=True, help="PEM private key for certfile.")
    tls_handshake_timeout = Float(10.0, config=True,
                                  help="Seconds an HTTPS connection has, from the moment it is accepted, to "
                                       "complete its TLS handshake; slower ones are closed. It counts against "
                                       "max_connections and max_connections_per_address from that moment, so "
                                       "this bounds how long one that never speaks holds its place. A handshake "
                                       "is two round trips: 10 s leaves room for a slow mobile link that loses "
                                       "packets (asyncio's default, 60 s, let idle ones pile up). head_timeout "
                                       "starts once it is done.")
    max_head_size = Integer(64 * 1024, config=True,
                            help="Largest request head (request line plus headers) in bytes; larger gets 431.")
    max_headers = Integer(200, config=True,
                          help="Most header fields in one request; more gets 431. Browsers send fewer than 40.")
    head_timeout = Float(20.0, config=True,
                         help="Seconds a client has to send a complete request head once it starts one "
                              "(or after connecting); slower gets 408 and is closed. Defeats slowloris.")
    keepalive_timeout = Float(75.0, config=True,
                              help="Seconds an idle keep-alive client connection stays open between requests.")
    connect_timeout = Float(10.0, config=True,
                            help="Seconds to open a connection to a route's target before answering 504.")
    response_timeout = Float(300.0, config=True,
                             help="Seconds to wait for a target's response head after the request was sent, "
                                  "before answering 504. Bodies and WebSockets have no such limit.")
    body_timeout = Float(60.0, config=True,
                         help="Seconds a request body may stop arriving (no byte from the visitor while the proxy "
                              "is ready for more) before the request gets 408 and its connection is closed.")
    send_timeout = Float(120.0, config=True,
                         help="Seconds a visitor may stop reading what the proxy sends (a response or a "
                              "WebSocket's messages, with the proxy's buffer full) before the connection is "
                              "dropped. Slow readers that make any progress are never cut off.")
    backend_idle_timeout = Float(30.0, config=True,
                                 help="Seconds an idle pooled connection to a target is kept for reuse.")
    backend_max_idle = Integer(64, config=True, help="Idle keep-alive connections kept per target.")
    max_connections = Integer(8192, config=True,
                              help="Most visitor connections open at once, WebSockets included; beyond it new ones "
                                   "get 503 and are closed. Each takes two open files (visitor and container): "
                                   "at start the proxy raises its open-file limit to fit, or lowers this and "
                                   "says so in the log.")
    max_connections_per_address = Integer(1000, config=True,
                                          help="Most connections (WebSockets included) from one client network "
                                               "(an IPv4 address, an IPv6 /64: see ipv6_prefix); beyond it new "
                                               "ones get 503 (HTTPS ones are closed before their handshake). A "
                                               "browser with JupyterLab open uses about 10, so 1000 lets a room of "
                                               "100 attendees behind one NAT address work. Balancers in "
                                               "trusted_proxies (with trust_forwarded) are exempt; behind them each "
                                               "visitor (by X-Forwarded-For) may hold this many requests in flight "
                                               "and WebSockets, and further requests get 503.")
    ipv6_prefix = Integer(64, config=True,
                          help="Leading bits of an IPv6 address that name one visitor's network for "
                               "max_connections_per_address. One subscriber gets a whole /64 (often a /56): "
                               "millions of addresses, so counting them one by one limits nobody. 128 counts "
                               "single addresses; 56 or 48 is stricter but groups neighbours together. IPv4 "
                               "addresses count one by one (an IPv4-mapped IPv6 address as its IPv4 one).")
    websocket_idle_timeout = Float(300.0, config=True,
                                   help="Seconds a WebSocket may pass with no byte in either direction before the "
                                        "proxy closes it; 0: never. Jupyter Server pings its kernel and terminal "
                                        "WebSockets every 30 s, so a live one is never this quiet, and JupyterLab "
                                        "reopens a closed one by itself (its event stream, which nobody pings, "
                                        "once per period). What it ends: WebSockets left open with nothing on "
                                        "them, each holding two open files and a place in the connection caps.")
    trust_forwarded = Bool(False, config=True,
                           help="Trust X-Forwarded-* headers from clients in trusted_proxies (set this when "
                                "nbpool sits behind a load balancer). Otherwise they are replaced.")
    trusted_proxies = List(Unicode(), ["127.0.0.1/32", "::1/128"], config=True,
                           help="Networks (CIDR) whose X-Forwarded-* headers are kept when trust_forwarded is on.")
    compress = Bool(True, config=True,
                    help="Compress responses (brotli, else gzip, as the browser accepts) of compressible types "
                         "(JavaScript, CSS, JSON, HTML, SVG, text) as they stream through. Static files always; "
                         "other responses per compress_dynamic. Never ranges, encoded bodies or WebSockets.")
    compress_min_size = Integer(1024, config=True,
                                help="Bytes below which a response with a known length is sent as it is "
                                     "(compressing it gains less than a packet).")
    compress_dynamic = Enum(["same-origin", "always", "never"], "same-origin", config=True,
                            help="Which responses other than static files are compressed. 'same-origin': only "
                                 "those to requests the browser marks as coming from the page itself or a typed "
                                 "address (Sec-Fetch-Site), which a page on another site cannot cause: what a "
                                 "BREACH-style attack needs (docs/explanation/first-minute.md, 'Compression and "
                                 "BREACH'). 'never': static files only. 'always': every compressible response.")
    static_paths = List(Unicode(), ["static/", "lab/extensions/", "custom/"], config=True,
                        help="Paths under a container's prefix that serve the image's own files, the same for "
                             "every attendee and without login: always compressed, and kept in the shared static "
                             "cache. Never a per-attendee path (api/, files/, notebooks/, ...).")
    cache_size = Integer(64 * 1024 * 1024, config=True,
                         help="Bytes of memory for the shared static cache (the notebook UI's files, once per "
                              "image, with their gzip and brotli versions); least recently used files go first. "
                              "0 turns the cache off.")
    cache_max_entry = Integer(8 * 1024 * 1024, config=True,
                              help="Largest file (all its versions together) the shared static cache keeps, "
                                   "in bytes. The largest notebook bundle is about 2.5 MB.")
    subdomain_host = Unicode("", config=True,
                             help="A wildcard host name, e.g. 'nb.example.org': every attendee's notebook server "
                                  "then answers at an origin of its own, https://<id>.nb.example.org/, and nbpool's "
                                  "pages and admin at nb.example.org itself, so a page served by one container "
                                  "cannot script another's or nbpool's (JupyterHub's subdomain_host). Needs DNS for "
                                  "nb.example.org and *.nb.example.org, and with TLS a certificate for both. Empty: "
                                  "every server at a path of one origin (/user/<id>/); see 'Exposing nbpool to the "
                                  "internet' in docs/explanation/security.md for what that does and does not protect.")
    private_cookies = List(Unicode(), ["nbpool-"], config=True,
                           help="Prefixes of the names of the service's own cookies (session, kept work, "
                                "admin, ...). They never reach an attendee's container: the proxy takes them "
                                "out of every request it relays there, and drops any cookie a container sets "
                                "under such a name. The default covers every cookie nbpool sets.")
    routes = Instance(RouteTable, help="The route table (shared with the application).")

    @default("routes")
    def _default_routes(self) -> RouteTable:
        return RouteTable()

    @validate("port")
    def _validate_port(self, proposal):
        if not 0 <= proposal.value <= 65535:
            raise TraitError(f"Proxy.port must be between 0 and 65535, not {proposal.value}")
        return proposal.value

    @validate("max_head_size", "max_headers", "backend_max_idle", "max_connections", "max_connections_per_address")
    def _validate_positive_int(self, proposal):
        if proposal.value < 1:
            raise TraitError(f"Proxy.{proposal.trait.name} must be at least 1, not {proposal.value}")
        return proposal.value

    @validate("head_timeout", "keepalive_timeout", "connect_timeout", "response_timeout", "backend_idle_timeout",
              "body_timeout", "send_timeout", "tls_handshake_timeout")
    def _validate_positive_float(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"Proxy.{proposal.trait.name} must be a positive number of seconds, "
                             f"not {proposal.value}")
        return proposal.value

    @validate("subdomain_host")
    def _validate_subdomain_host(self, proposal):
        value = proposal.value.strip().lower().rstrip(".")
        labels = value.split(".")
        if value and not (len(labels) >= 2 and len(value) <= 200
                          and all(HOST_LABEL.fullmatch(label) for label in labels)):
            raise TraitError(f"Proxy.subdomain_host must be a host name such as 'nb.example.org' (no scheme, port "
                             f"or '*'), not {proposal.value!r}")
        return value

    @validate("websocket_idle_timeout")
    def _validate_idle(self, proposal):
        if not proposal.value >= 0:
            raise TraitError(f"Proxy.websocket_idle_timeout must be 0 (never) or a number of seconds, "
                             f"not {proposal.value}")
        return proposal.value

    @validate("ipv6_prefix")
    def _validate_ipv6_prefix(self, proposal):
        if not 32 <= proposal.value <= 128:
            raise TraitError(f"Proxy.ipv6_prefix must be between 32 and 128 bits, not {proposal.value}")
        return proposal.value

    @validate("static_paths")
    def _validate_static_paths(self, proposal):
        for path in proposal.value:
            if not path or path.startswith("/") or not path.endswith("/") or ".." in path:
                raise TraitError(f"Proxy.static_paths: {path!r} must be a relative folder like 'static/'")
            if path.startswith(PER_USER_PATHS) or any(p.startswith(path) for p in PER_USER_PATHS):
                raise TraitError(f"Proxy.static_paths: {path!r} would take in a per-attendee path "
                                 f"({', '.join(PER_USER_PATHS)})")
        return proposal.value

    @validate("compress_min_size", "cache_size", "cache_max_entry")
    def _validate_bytes(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"Proxy.{proposal.trait.name} must be 0 or a number of bytes, not {proposal.value}")
        return proposal.value

    @validate("private_cookies")
    def _validate_private_cookies(self, proposal):
        for prefix in proposal.value:
            if not prefix or not prefix.isascii() or any(c in prefix for c in ' \t;=,"'):
                raise TraitError(f"Proxy.private_cookies: {prefix!r} must be the start of a cookie name, "
                                 f"like 'nbpool-'")
        return proposal.value

    @validate("trusted_proxies")
    def _validate_networks(self, proposal):
        for net in proposal.value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise TraitError(f"Proxy.trusted_proxies: {net!r} is not a network like 10.0.0.0/8") from None
        return proposal.value

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stats = Stats()
        self.limits = Limits()
        self.state = ConnectionState(self.routes, self.limits, self.stats)
        self.targets = TargetPool(self.limits, self.stats)
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.Task | None = None
        self._tls: TlsListener | None = None  # with certfile and keyfile: the HTTPS listener
        self.bound_port: int | None = None
        self.cache = StaticCache(self.routes, Policy(), self.cache_size, self.cache_max_entry)
        self.observe(lambda change: self._apply_limits(),
                     names=[*LIMIT_TRAITS, *COMPRESS_TRAITS, "trusted_proxies", "private_cookies", "cache_size",
                            "cache_max_entry", "subdomain_host"])
        self._apply_limits()

    def _apply_limits(self) -> None:
        lim = self.limits
        for name in LIMIT_TRAITS:
            setattr(lim, name, getattr(self, name))
        lim.trusted_networks = [ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies]
        lim.subdomain_host = self.subdomain_host.encode()
        # Each also with the prefixes browsers give a cookie's name special rules for: over HTTPS nbpool's
        # own are __Host- cookies (spawner.web.access.HOST_PREFIX), and they stay nbpool's.
        lim.private_cookies = tuple(name + p.encode() for p in self.private_cookies
                                    for name in (b"", b"__Host-", b"__Secure-"))
        lim.visitors = {}  # worked out with the old trusted_proxies and ipv6_prefix
        lim.scheme = b"https" if self.tls else b"http"
        lim.proto_line = b"X-Forwarded-Proto: %s\r\n" % lim.scheme
        lim.port_line = b"X-Forwarded-Port: %d\r\n" % (self.bound_port or self.port)
        lim.compress = Policy(self.compress, self.compress_min_size, self.compress_dynamic,
                              tuple(p.encode() for p in self.static_paths))
        cache = self.cache
        cache.policy = lim.compress
        cache.max_bytes, cache.max_entry = self.cache_size, self.cache_max_entry
        cache.shrink()
        self.state.cache = cache  # off (cache_size 0), it still counts static requests relayed

    @property
    def tls(self) -> bool:
        return bool(self.certfile and self.keyfile)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            if self.certfile or self.keyfile:
                raise ValueError("HTTPS needs both Proxy.certfile and Proxy.keyfile")
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load certfile {self.certfile!r} / keyfile {self.keyfile!r}: {exc}") from exc
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def fit_open_files(self) -> None:
        """Raise the open-file limit to what max_connections needs, or lower max_connections to fit."""
        need = 2 * self.max_connections + FD_RESERVE
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            target = need if hard == resource.RLIM_INFINITY or hard >= need else hard
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as exc:
                self.log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        if soft != resource.RLIM_INFINITY and soft < need:
            fits = max(1, (soft - FD_RESERVE) // 2)
            self.log.warning("open-file limit %d (hard %s) fits %d connections, not Proxy.max_connections=%d: "
                             "using %d (raise the limit with 'ulimit -n' to serve more)", soft,
                             "unlimited" if hard == resource.RLIM_INFINITY else hard, fits,
                             self.max_connections, fits)
            self.max_connections = fits

    def say_origins(self) -> None:
        """What the proxy's mode means for attendees' browsers (docs/explanation/security.md)."""
        scheme = "https" if self.tls else "http"
        if self.subdomain_host:
            self.log.info("subdomain mode: every notebook server has an origin of its own, %s://<id>.%s/, and "
                          "nbpool's pages are at %s://%s/ (DNS for both names must reach this machine)", scheme,
                          self.subdomain_host, scheme, self.subdomain_host)
            return
        public = self.ip not in ("127.0.0.1", "::1", "localhost")
        (self.log.warning if public else self.log.info)(
            "path mode: every notebook server is a path (/user/<id>/) of nbpool's one origin, so a page a "
            "container serves could act on whatever else that origin holds in the same browser. Each browser "
            "therefore holds one notebook at a time (opening another ends the first, after asking) and never "
            "the status page's sign-in beside it. Set c.Proxy.subdomain_host to a wildcard host name to give "
            "every server an origin of its own.")

    async def start(self) -> None:
        """Listen on ip:port; sets ``bound_port``. Raises OSError if the port is taken."""
        loop = asyncio.get_running_loop()
        self.fit_open_files()
        state, targets = self.state, self.targets
        context = self._ssl_context()
        if context is None:
            server = await loop.create_server(lambda: ClientConnection(state, targets), self.ip or None,
                                              self.port, backlog=2048, reuse_address=True)
            self._servers.append(server)
            sockets = server.sockets
        else:  # not create_server(ssl=): it would count a connection only after its handshake (see tls.py)
            self._tls = TlsListener(state, targets, context)
            self._tls.listen(self.ip or None, self.port, backlog=2048)
            self._tls.start()
            sockets = self._tls.sockets
        self.bound_port = sockets[0].getsockname()[1]
        self._apply_limits()
        self._sweeper = loop.create_task(self._sweep_forever())
        scheme = "https" if self.tls else "http"
        self.log.info("proxy listening on %s://%s:%d (%d routes)", scheme, self.ip or "*", self.bound_port,
                      len(self.routes))

    async def stop(self) -> None:
        """Stop listening and close every connection, client and target."""
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._tls is not None:
            await self._tls.stop()
            self._tls = None
        for client in list(self.state.clients):
            if client.transport is not None:
                client.transport.close()
        for tunnel in list(self.state.tunnels):
            tunnel.transport.close()
        self.targets.close()
        self.cache.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run

    async def _sweep_forever(self) -> None:
        # One timer for every connection, instead of a timer per request.
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep(time.monotonic())
            except Exception:
                self.log.exception("proxy timeout sweep failed")

    def sweep(self, t: float) -> None:
        """Close connections past their timeouts: every phase of a connection has one."""
        lim = self.limits
        stats = self.stats
        for client in list(self.state.clients):
            phase = client.phase
            if phase == LINGER:  # (closed to HTTP, still reading what a refused request sends)
                if t - client.since > LINGER_TIME or t - client.body_seen > LINGER_QUIET:
                    client.transport.close()
                continue
            if client.closed:
                continue
            if phase == HEAD and t - client.since > lim.head_timeout:
                stats.timeouts += 1
                client.fail(408)
            elif phase == IDLE and t - client.since > lim.keepalive_timeout:
                client.transport.close()
            elif phase == BUSY:
                ex = client.ex
                if ex is not None and ex.head_done and not client.pauses and t - client.body_seen > lim.body_timeout:
                    stats.timeouts += 1
                    client.fail(408, "The request's body stopped arriving.")
                elif client.write_paused and t - client.write_paused_at > lim.send_timeout:
                    # abort, not close: close would wait for a buffer this visitor never reads.
                    stats.timeouts += 1
                    client.transport.abort()
        idle = lim.websocket_idle_timeout
        for tunnel in list(self.state.tunnels):
            if tunnel.closed:
                continue
            if tunnel.paused_at and t - tunnel.paused_at > lim.send_timeout:
                stats.timeouts += 1
                tunnel.transport.abort()
            elif idle and t - max(tunnel.seen, tunnel.peer.seen) > idle:
                # abort: nothing is on its way, and a TLS close would wait up to 30 s for the visitor's reply.
                stats.timeouts += 1
                tunnel.transport.abort()
        self.targets.sweep(t)


def install_uvloop() -> bool:
    """Use uvloop's event loop when it is installed (measured faster: docs/measured/proxy.md). Returns whether it is."""
    if os.environ.get("NBPOOL_NO_UVLOOP"):
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.getLogger("nbpool.proxy").debug("using uvloop")
    return True
