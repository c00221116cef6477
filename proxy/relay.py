"""The HTTP/1.1 and WebSocket relay, at the asyncio protocol level.

One ``ClientConnection`` per visitor connection parses request heads with
httptools; each request becomes an ``Exchange`` that a ``BackendConnection``
(pooled per target, kept alive) carries to the route's target. Bodies are
relayed chunk by chunk as they arrive, never gathered: when one side's write
buffer is full, reading from the other side pauses until it drains. After a
``101 Switching Protocols`` the two transports are spliced byte for byte.

Everything here runs in callbacks on the event loop: no coroutine per request,
a task only to open a new backend connection. The hot path avoids per-chunk
allocations beyond what the transports need.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from typing import TYPE_CHECKING

import httptools

from .http import FORWARDED, HOP_BY_HOP, Response, connection_tokens, error_response, wants_json
from .origin import SAFE_METHODS, own_origin
from .routes import InvalidPath, RequestHead, Route, normalize_path

if TYPE_CHECKING:
    from .server import Proxy

log = logging.getLogger("nbpool.proxy")
now = time.monotonic

# Why reading from a client is paused (a bit mask, so one reason's end does not
# resume reading another still needs paused).
PAUSE_PIPELINE = 1  # a pipelined request waits behind the one in flight, or an upgrade awaits its answer
PAUSE_BACKEND = 2  # the backend is not connected yet, or its write buffer is full

# Client connection phases, for the timeout sweep.
IDLE, HEAD, BUSY, TUNNEL = range(4)

PENDING_BODY_LIMIT = 256 * 1024  # body bytes held while a backend connection opens
CROSS_ORIGIN = ("This request came from another site, so it was not passed on to your notebook server. "
                "Open the notebook from this site's own address.")


def keep_probing(transport: asyncio.Transport) -> None:
    """TCP keep-alive probes on a visitor's connection: a WebSocket may rightly stay idle for hours,
    but one whose visitor vanished (a laptop closed, Wi-Fi gone) is found and closed within minutes."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
    except (OSError, AttributeError):
        pass  # not every platform has every option: probing is a nicety, not a limit


def logged_path(ex: Exchange) -> str:
    """The request's path for a log line: never its query, which may carry a key or token."""
    return b"".join(ex.url).split(b"?", 1)[0][:200].decode("latin-1")


class Exchange:
    """One request and its response, from head to last byte."""

    __slots__ = (
        "backend",
        "body_size",
        "chunked",
        "client",
        "close",
        "has_body",
        "head",
        "head_done",
        "head_only",
        "head_size",
        "headers",
        "keep_alive",
        "method",
        "out_head",
        "pending",
        "pending_size",
        "request_done",
        "response_done",
        "retried",
        "route",
        "sent",
        "upgrade",
        "url",
        "version",
    )

    def __init__(self, client: ClientConnection):
        self.client = client
        self.url: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.head_done = False
        self.route: Route | None = None
        self.backend: BackendConnection | None = None
        self.pending: list[bytes] = []  # body pieces that arrived before the backend was attached
        self.pending_size = 0
        self.chunked = False  # request body is chunked (re-encoded to the backend as it comes)
        self.has_body = False
        self.body_size = 0  # request body bytes seen, for the route's max_body
        self.request_done = False
        self.response_done = False
        self.close = False  # close the client connection after this exchange
        self.sent = False  # head written to a backend; body pieces now go straight through
        self.out_head = b""
        self.head_only = False
        self.retried = False
        self.head: RequestHead | None = None
        self.head_size = 0

    def request_head(self, path: bytes, query: bytes) -> RequestHead:
        if self.head is None:
            self.head = RequestHead(self.method, path, query, self.version, self.headers,
                                    self.client.client_ip, self.route)
        return self.head


class ClientConnection(asyncio.Protocol):
    """A visitor's connection: parses requests, dispatches them, writes responses."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.limits = proxy.limits
        self.stats = proxy.stats
        self.routes = proxy.routes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.forwarded = b""  # X-Forwarded-* lines fixed for this connection
        self.ex: Exchange | None = None  # the request being parsed
        self.cur: Exchange | None = None  # the request being served
        self.queue: collections.deque[Exchange] = collections.deque()
        self.pauses = 0
        self.write_paused = False
        self.write_paused_at = 0.0  # when the visitor stopped reading, for send_timeout
        self.phase = HEAD
        self.since = now()
        self.body_seen = self.since  # the last request body bytes, for body_timeout
        self.ip_counted = False  # counted in the proxy's per-address connections
        self.head_seen = 0
        self.leftover = b""  # bytes after an upgrade request's head
        self.eof = False
        self.closed = False

    # --- connection events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        proxy = self.proxy
        proxy.clients.add(self)
        self.stats.connections_total += 1
        # WebSockets hold connections as much as requests do: both count.
        if len(proxy.clients) + len(proxy.tunnels) > self.limits.max_connections:
            return self.turn_away("Too many connections; please retry shortly.")
        if not self.limits.address_exempt(self.client_ip):
            if not proxy.count_address(self.client_ip):
                return self.turn_away("Too many connections from your address; please retry shortly.")
            self.ip_counted = True
        self.forwarded = self.limits.forwarded_lines(self.client_ip)
        keep_probing(transport)

    def turn_away(self, message: str) -> None:
        self.stats.rejected_connections += 1
        self.transport.write(error_response(503, message=message, headers=[("Retry-After", "5")])
                             .encode(keep_alive=False))
        self.close_now()

    def close_now(self) -> None:
        """Close the visitor's connection once what is written is out; serve nothing more on it."""
        self.transport.close()
        self.closed = True
        self.proxy.clients.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        if self.ip_counted:
            self.proxy.uncount_address(self.client_ip)
        cur = self.cur
        if cur is not None and cur.backend is not None and not cur.response_done:
            cur.backend.abort()
        self.cur = None
        self.queue.clear()

    def eof_received(self) -> bool:
        # A client may half-close after its request: still deliver the response.
        self.eof = True
        return self.cur is not None

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend.
        self.write_paused = True
        self.write_paused_at = now()
        backend = self.cur.backend if self.cur is not None else None
        if backend is not None and backend.transport is not None:
            backend.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        backend = self.cur.backend if self.cur is not None else None
        if backend is not None and backend.transport is not None and not backend.transport.is_closing():
            backend.transport.resume_reading()

    def pause(self, reason: int) -> None:
        if not self.pauses and not self.closed:
            self.transport.pause_reading()
        self.pauses |= reason

    def resume(self, reason: int) -> None:
        if self.pauses & reason:
            self.pauses &= ~reason
            if not self.pauses and not self.closed:
                self.body_seen = now()  # time spent paused by us is not the visitor's stall
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.phase == IDLE:
            self.phase = HEAD
            self.since = now()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The head of an upgrade (or CONNECT) request ended inside ``data``:
            # what follows belongs to the new protocol, sent on after the 101.
            self.leftover = data[exc.args[0]:]
            self.pause(PAUSE_PIPELINE)
            return
        except httptools.HttpParserCallbackError as exc:
            if not self.closed:  # a callback of ours failed: a bug, not bad input
                log.error("proxy callback failed: %r", exc.__context__ or exc)
                self.fail(500)
            return
        except httptools.HttpParserError as exc:
            self.stats.bad_requests += 1
            log.debug("bad request from %s: %s", self.client_ip, exc)
            self.fail(400, f"Malformed request: {exc}.")
            return
        ex = self.ex
        if ex is not None and not ex.head_done:
            self.head_seen += len(data)
            if self.head_seen > self.limits.max_head_size:
                self.fail(431)

    # --- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.ex = Exchange(self)
        self.head_seen = 0

    def on_url(self, url: bytes) -> None:
        ex = self.ex
        ex.url.append(url)
        ex.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.ex
        if not ex.head_done:  # after the head these are chunked trailers: dropped
            ex.headers.append((name, value))
            ex.head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        ex = self.ex
        parser = self.parser
        ex.head_done = True
        ex.method = parser.get_method()
        ex.version = parser.get_http_version()
        ex.keep_alive = parser.should_keep_alive()
        ex.upgrade = parser.should_upgrade()
        self.stats.requests_total += 1
        if self.cur is None:
            self.dispatch(ex)
        else:
            # A pipelined request: it waits, and reading stops until it is served.
            # Its body may arrive before dispatch, so its framing is needed now.
            ex.chunked = any(n.lower() == b"transfer-encoding" for n, _ in ex.headers)
            self.queue.append(ex)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex.response_done and ex.backend is None:
            return  # the request was answered by the proxy itself: its body is dropped
        route = ex.route
        if route is not None:
            route.bytes_in += len(body)
            route.last_activity = self.body_seen = now()
            if route.max_body:
                ex.body_size += len(body)
                if ex.body_size > route.max_body:
                    self.fail(413)
                    return
        if ex.chunked:
            self.send_body(ex, [b"%x\r\n" % len(body), body, b"\r\n"])
        else:
            self.send_body(ex, [body])

    def on_message_complete(self) -> None:
        ex = self.ex
        self.ex = None
        ex.request_done = True
        if ex.chunked and not (ex.response_done and ex.backend is None):
            self.send_body(ex, [b"0\r\n\r\n"])
        if ex.response_done:
            self.finish(ex)

    # --- serving ---------------------------------------------------------------------

    def send_body(self, ex: Exchange, pieces: list[bytes]) -> None:
        if ex.sent:
            backend = ex.backend
            if backend is not None:
                backend.transport.writelines(pieces)
            return
        ex.pending.extend(pieces)
        ex.pending_size += sum(map(len, pieces))
        if ex.pending_size > PENDING_BODY_LIMIT:
            self.pause(PAUSE_BACKEND)

    def dispatch(self, ex: Exchange) -> None:
        """Validate, route and authorize a request whose head is complete, then send it on.

        Any exception here (a bug, or a callback of the route's failing) still
        answers the request and closes the connection: nothing is left hanging.
        """
        try:
            self._dispatch(ex)
        except Exception:
            self.crash()

    def crash(self, logged: bool = False) -> None:
        """An exception of ours while serving: answer 500 unless part of a response went out, then close."""
        if not logged:
            log.exception("proxy error on a connection from %s", self.client_ip)
        if self.closed:
            return
        cur = self.cur
        partial = False
        if cur is not None and cur.backend is not None:
            partial = cur.backend.wrote
            cur.backend.abort()
        if not partial:
            self.stats.count_error(500)
            self.transport.write(error_response(500).encode(keep_alive=False))
        self.close_now()

    def _dispatch(self, ex: Exchange) -> None:
        self.cur = ex
        self.phase = BUSY
        self.body_seen = now()
        url = ex.url[0] if len(ex.url) == 1 else b"".join(ex.url)
        method = ex.method
        if ex.head_size > self.limits.max_head_size or len(ex.headers) > self.limits.max_headers:
            return self.reply(ex, error_response(431), close=True)
        if ex.version != "1.1" and ex.version != "1.0":
            return self.reply(ex, error_response(400, message="Only HTTP/1.0 and HTTP/1.1 are served."),
                              close=True)
        if method == b"CONNECT":
            return self.reply(ex, error_response(405, message="CONNECT is not served here."), close=True)
        if url[:1] != b"/":
            return self.reply(ex, error_response(400, message="Only origin-form request targets (/path) are served."),
                              close=True)
        q = url.find(b"?")
        path, query = (url, b"") if q < 0 else (url[:q], url[q:])
        if b"#" in url:
            return self.reply(ex, error_response(400, message="A request target must not carry a fragment."),
                              close=True)
        try:
            path = normalize_path(path)
        except InvalidPath as exc:
            return self.reply(ex, error_response(400, message=f"Bad path: {exc}."), close=True)
        route = self.routes.longest_match(path)
        ex.route = route
        if route is None:
            return self.reply(ex, error_response(404, wants_json(ex.headers, path)))

        # One pass over the headers: framing checks, hop-by-hop removal, forwarding.
        upgrade = ex.upgrade
        length = b""
        hosts = 0
        host = b""
        conn_opts = None
        kept = []
        injected = route.header_names
        trusted_fwd = self.limits.trust_forwarded and self.limits.is_trusted(self.client_ip)
        prior_fwd = None
        for name, value in ex.headers:
            low = name.lower()
            if low == b"host":
                hosts += 1
                host = value
                kept.append((name, value))
                continue
            elif low in HOP_BY_HOP:
                if low == b"transfer-encoding":
                    if value.strip().lower() != b"chunked":
                        return self.reply(ex, error_response(
                            400, message="Only 'Transfer-Encoding: chunked' is accepted."), close=True)
                    ex.chunked = True
                    ex.has_body = True
                elif low == b"connection":
                    conn_opts = connection_tokens(value) if conn_opts is None else conn_opts | connection_tokens(value)
                elif low == b"upgrade" and upgrade:
                    kept.append((name, value))
                continue
            elif low == b"content-length":
                ex.has_body = value != b"0"
                length = value
            elif low in FORWARDED:
                if trusted_fwd:
                    if low == b"x-forwarded-for":
                        prior_fwd = value if prior_fwd is None else prior_fwd + b", " + value
                        continue
                    if low != b"x-real-ip":  # recomputed below from the chain
                        kept.append((name, value))
                continue  # an untrusted client's X-Forwarded-* are dropped and set afresh
            if low in injected:
                continue
            kept.append((name, value))
        if ex.chunked and ex.version == "1.0":
            return self.reply(ex, error_response(400, message="HTTP/1.0 has no chunked bodies."), close=True)
        if hosts != 1 and (hosts > 1 or ex.version == "1.1"):
            return self.reply(ex, error_response(400, message="A request needs exactly one Host header."),
                              close=True)
        if conn_opts:
            extra = conn_opts - HOP_BY_HOP
            if extra:
                kept = [(n, v) for n, v in kept if n.lower() not in extra]

        if route.max_body and (ex.pending_size > route.max_body or (length and int(length) > route.max_body)):
            return self.reply(ex, error_response(413, wants_json(ex.headers, path)), close=True)
        policy = route.origin_policy
        if policy is not None and (upgrade or method not in SAFE_METHODS):
            why = policy.refusal(method, upgrade, ex.headers, self.own_origin(kept, host, trusted_fwd))
            if why is not None:
                log.info("refused %s %s from %s: %s", method.decode(), path[:200].decode("latin-1"),
                         self.client_ip, why)
                return self.reply(ex, error_response(403, wants_json(ex.headers, path), message=CROSS_ORIGIN),
                                  close=ex.has_body)
        # A refused request is not the visitor's activity: it never touches last_activity.
        if route.authorize is not None:
            denial = route.authorize(ex.request_head(path, query))
            if denial is not None:
                return self.reply(ex, denial, close=ex.has_body)
        route.requests += 1

        out = [method, b" ", path, query, b" HTTP/1.1\r\n"]
        for name, value in kept:
            out += (name, b": ", value, b"\r\n")
        for name, value in route.headers:
            out += (name, b": ", value, b"\r\n")
        if trusted_fwd:
            out += (b"X-Forwarded-For: ", (prior_fwd + b", " if prior_fwd else b""),
                    self.client_ip.encode(), b"\r\n",
                    # The web app rate-limits by this, so it must be the visitor, not the balancer.
                    b"X-Real-IP: ", self.limits.real_client(prior_fwd or b"", self.client_ip), b"\r\n")
            if not any(n.lower() == b"x-forwarded-proto" for n, _ in kept):
                out.append(self.limits.proto_line)
            if not any(n.lower() == b"x-forwarded-host" for n, _ in kept):
                out += (b"X-Forwarded-Host: ", host, b"\r\n")
            if not any(n.lower() == b"x-forwarded-port" for n, _ in kept):
                out.append(self.limits.port_line)
        else:
            out += (self.forwarded, b"X-Forwarded-Host: ", host, b"\r\n")
        if not hosts:  # an HTTP/1.0 request without Host: name the target, as HTTP/1.1 requires
            out += (b"Host: ", route.target.host_header, b"\r\n")
        if ex.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        if upgrade:
            out.append(b"Connection: Upgrade\r\n")
        out.append(b"\r\n")
        ex.out_head = b"".join(out)
        ex.head_only = method == b"HEAD"
        self.proxy.backends.send(ex)

    def own_origin(self, kept: list[tuple[bytes, bytes]], host: bytes, trusted_fwd: bool) -> bytes:
        """The service's origin as the browser sees it: behind a trusted balancer, as it forwarded it."""
        scheme = self.limits.scheme
        if trusted_fwd:
            for name, value in kept:
                low = name.lower()
                if low == b"x-forwarded-proto":
                    scheme = value.split(b",")[0].strip()
                elif low == b"x-forwarded-host":
                    host = value.split(b",")[0].strip()
        return own_origin(scheme, host)

    def reply(self, ex: Exchange, response: Response, close: bool = False) -> None:
        """Answer ``ex`` from the proxy itself (an error page or a denial)."""
        if self.closed:
            return
        if response.status >= 400:
            self.stats.count_error(response.status)
        ex.response_done = True
        ex.close = ex.close or close or not ex.keep_alive or ex.upgrade
        self.transport.write(response.encode(keep_alive=not ex.close, head_only=ex.method == b"HEAD"))
        if ex.close:
            self.close_now()
        elif ex.request_done:
            self.finish(ex)

    def error_reply(self, ex: Exchange, status: int) -> None:
        """Answer ``ex`` with an error page: the route's own if it has one."""
        route = ex.route
        url = b"".join(ex.url)
        path = url.split(b"?", 1)[0]
        response = None
        if route is not None and route.error_page is not None:
            try:
                response = route.error_page(status, ex.request_head(path, b""))
            except Exception:
                log.exception("error page callback failed for %r", route)
        if response is None:
            response = error_response(status, wants_json(ex.headers, path))
        # After a backend failure the request body may be half sent: never reuse.
        self.reply(ex, response, close=ex.has_body and not ex.request_done)

    def finish(self, ex: Exchange) -> None:
        """Both halves of ``ex`` are done: serve the next request, or wait for one."""
        if ex is not self.cur or self.closed:
            return
        self.cur = None
        if ex.close or not ex.keep_alive or self.eof:
            self.close_now()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume(PAUSE_PIPELINE)
            self.dispatch(nxt)
        else:
            self.phase = IDLE
            self.since = now()

    def fail(self, status: int, message: str | None = None) -> None:
        """Bad input: answer with ``status`` if nothing is in flight, then close."""
        if self.closed:
            return
        if status >= 400:
            self.stats.count_error(status)
        cur = self.cur
        if cur is not None and cur is self.ex and not cur.request_done:
            # The request in flight is itself broken (say, a bad chunk): the
            # backend will never see its end, so drop that exchange.
            backend = cur.backend
            if backend is not None:
                written = backend.wrote
                backend.abort()
                cur.backend = None
                if written:
                    self.close_now()
                    return
            cur.response_done = True
            cur = None
        if cur is None or cur.response_done:
            self.transport.write(error_response(status, message=message).encode(keep_alive=False))
            self.close_now()
        else:
            # A response is under way: let it finish, then close; read nothing more.
            cur.close = True
            self.queue.clear()
            self.pause(PAUSE_PIPELINE)

    def start_tunnel(self, backend: BackendConnection, leftover_from_backend: bytes) -> None:
        """The backend switched protocols: from now on the two connections are spliced."""
        ex = self.cur
        route = ex.route
        proxy = self.proxy
        proxy.clients.discard(self)
        proxy.backends.busy.discard(backend)
        self.stats.websockets_total += 1
        self.stats.websockets_active += 1
        route.websockets += 1
        inbound = InboundSplice(self.transport, route, proxy)
        outbound = OutboundSplice(backend.transport, route, proxy)
        # The visitor's connection lives on as the tunnel: so does its place in the address count.
        inbound.client_ip, self.ip_counted = (self.client_ip if self.ip_counted else ""), False
        inbound.peer, outbound.peer = outbound, inbound
        self.transport.set_protocol(inbound)
        backend.transport.set_protocol(outbound)
        proxy.tunnels.add(inbound)
        if leftover_from_backend:
            outbound.data_received(leftover_from_backend)
        if self.leftover:
            inbound.data_received(self.leftover)
            self.leftover = b""
        if self.pauses:
            self.pauses = 0
            self.transport.resume_reading()
        if self.write_paused:  # the client was not keeping up: keep the backend paused until it drains
            backend.transport.pause_reading()


class Splice(asyncio.Protocol):
    """One side of a WebSocket (or other upgraded) connection: bytes read here are written to the peer.

    No frame parsing and no size cap. Writing is held back with the transports'
    own flow control, FIN is passed on (half-close), and closing either side
    closes the other once its buffered bytes are out.
    """

    __slots__ = ("client_ip", "closed", "eof", "paused_at", "peer", "proxy", "route", "transport")

    def __init__(self, transport: asyncio.Transport, route: Route, proxy: Proxy):
        self.transport = transport
        self.route = route
        self.proxy = proxy
        self.peer: Splice | None = None
        self.eof = False
        self.closed = False
        self.paused_at = 0.0  # when this side stopped taking bytes (0: it takes them), for send_timeout
        self.client_ip = ""  # the visitor side's counted address, released when it closes

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer.eof or peer.closed or not peer.transport.can_write_eof():
            return False  # both directions done (or TLS, which cannot half-close): close
        peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.client_ip:
            self.proxy.uncount_address(self.client_ip)
        peer = self.peer
        if not peer.closed:
            peer.transport.close()
        else:  # the second side to go: the tunnel is gone
            self.proxy.stats.websockets_active -= 1
            self.route.websockets -= 1
            self.proxy.tunnels.discard(self if isinstance(self, InboundSplice) else peer)

    def pause_writing(self) -> None:
        self.paused_at = now()
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_at = 0.0
        if not self.peer.closed:
            self.peer.transport.resume_reading()


class InboundSplice(Splice):
    """The visitor's side: counts bytes in."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        route = self.route
        route.bytes_in += len(data)
        route.last_activity = now()
        self.peer.transport.write(data)


class OutboundSplice(Splice):
    """The backend's side: counts bytes out."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        route = self.route
        route.bytes_out += len(data)
        route.last_activity = now()
        self.peer.transport.write(data)


class BackendConnection(asyncio.Protocol):
    """A connection to one target, carrying one exchange at a time, then pooled."""

    def __init__(self, pool: BackendPool, key: str):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.ex: Exchange | None = None
        self.client: ClientConnection | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = b""
        self.interim = False
        self.head_sent = False  # the response head went to the client
        self.chunked = False  # re-chunk the body to the client
        self.until_eof = False  # body ends when the backend closes
        self.remaining = -1  # Content-Length bytes still to relay; -1 when the parser frames the body
        self.complete = False
        self.upgrading = False
        self.keep_alive = False
        self.out: list[bytes] = []  # bytes for the client, written once per read
        self.wrote = False  # some of the response reached the client
        self.sent_at = 0.0
        self.idle_since = 0.0
        self.used = 0  # exchanges carried, to tell a reused connection from a fresh one
        self.head_bytes = 0  # response head bytes so far (interim responses included), bounded
        self.got_bytes = False
        self.closed = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def start(self, ex: Exchange) -> None:
        """Send ``ex``'s head (and any body already received) and wait for the response."""
        client = ex.client
        self.ex = ex
        self.client = client
        ex.backend = self
        self.parser = httptools.HttpResponseParser(self)
        self.headers = []
        self.status = b""
        self.head_sent = self.chunked = self.until_eof = self.complete = self.upgrading = False
        self.remaining = -1
        self.head_bytes = 0
        self.got_bytes = self.wrote = False
        self.out = []
        self.used += 1
        self.sent_at = now()
        self.pool.busy.add(self)
        ex.sent = True
        if ex.pending:
            self.transport.writelines([ex.out_head, *ex.pending])
            ex.pending = []
            ex.pending_size = 0
        else:
            self.transport.write(ex.out_head)
        client.resume(PAUSE_BACKEND)
        if client.write_paused:
            self.transport.pause_reading()

    # --- transport events ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception:
            self.crash()

    def crash(self) -> None:
        """An exception of ours on this exchange: end both connections rather than leave either hanging."""
        log.exception("proxy error relaying from %s", self.key)
        client = self.client
        self.abort()
        if client is not None and not client.closed:
            client.crash(logged=True)

    def _received(self, data: bytes) -> None:
        if self.ex is None:
            # Bytes from an idle backend: it broke the protocol; never reuse it.
            self.transport.close()
            return
        remaining = self.remaining
        if remaining > 0:
            # Inside a Content-Length body: relay the bytes as they are, no parser copy.
            n = len(data)
            route = self.ex.route
            route.last_activity = now()
            if n < remaining:
                self.remaining = remaining - n
                route.bytes_out += n
                client = self.client
                if not client.closed:
                    client.transport.write(data)
                return
            if n > remaining:
                self.keep_alive = False  # more than it announced: never reuse this connection
                data = data[:remaining]
            route.bytes_out += remaining
            self.remaining = 0
            self.out.append(data)
            self.complete = True
            self.done()
            return
        self.got_bytes = True
        head_pending = not self.head_sent
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.flush()
            if self.upgrading:
                self.pool.busy.discard(self)
                self.ex.client.start_tunnel(self, data[exc.args[0]:])
                return
            self.broken("backend upgraded unasked")
            return
        except httptools.HttpParserCallbackError:
            raise  # a bug of ours, not the backend's: see crash()
        except httptools.HttpParserError as exc:
            if not self.complete:
                self.broken(f"bad response: {exc}")
                return
            self.transport.close()  # garbage after a complete response
        if self.complete:
            self.done()
            return
        if head_pending and not self.head_sent:
            # Still inside a head: a server (an attendee can run anything in theirs)
            # must not make the proxy hold an endless one.
            self.head_bytes += len(data)
            if self.head_bytes > self.pool.limits.max_head_size:
                self.broken(f"response head over {self.pool.limits.max_head_size} bytes")
                return
        if self.out:
            self.flush()

    def flush(self) -> None:
        """Write what this read produced for the client in one go (one syscall for small responses)."""
        out = self.out
        if not out:
            return
        self.out = []
        client = self.client
        if client is None or client.closed:
            return
        self.wrote = True
        if len(out) == 1:
            client.transport.write(out[0])
        elif len(out) <= 4 and sum(map(len, out)) <= 16384:
            client.transport.write(b"".join(out))
        else:
            client.transport.writelines(out)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._lost(exc)
        except Exception:
            self.crash()

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        ex = self.ex
        if ex is None or self.complete:
            return
        if self.until_eof and self.head_sent:
            # The body was delimited by the close: the response is complete.
            self.complete = True
            ex.close = True
            self.done()
            return
        if not self.got_bytes and self.used > 1 and not ex.has_body and not ex.retried and not ex.upgrade:
            # A kept-alive connection closed as we reused it: try once more on a fresh one.
            ex.retried = True
            ex.backend = None
            ex.sent = False
            self.ex = None
            self.pool.send(ex)
            return
        self.broken("connection closed" if exc is None else str(exc))

    def pause_writing(self) -> None:
        # The backend reads the request body slower than the client sends it.
        client = self.client
        if client is not None:
            client.pause(PAUSE_BACKEND)

    def resume_writing(self) -> None:
        client = self.client
        if client is not None:
            client.resume(PAUSE_BACKEND)

    # --- response parser callbacks ---------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_sent:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        code = self.parser.get_status_code()
        if code < 200 and code != 101:
            # Interim (100 Continue, 103 Early Hints): HTTP/1.1 clients get it, others not.
            self.interim = True
            if ex.version == "1.1":
                self.out.append(b"HTTP/1.1 %d %s\r\n%s\r\n" % (
                    code, self.status, b"".join(b"%s: %s\r\n" % h for h in self.headers)))
            self.headers = []
            self.status = b""
            return
        conn_opts = set()
        length = None
        chunked = False
        kept = []
        for name, value in self.headers:
            low = name.lower()
            if low in HOP_BY_HOP:
                if low == b"connection":
                    conn_opts |= connection_tokens(value)
                elif low == b"transfer-encoding":
                    chunked = True
                continue
            if low == b"content-length":
                length = value
            kept.append((name, value))
        extra = conn_opts - HOP_BY_HOP
        if extra:
            kept = [(n, v) for n, v in kept if n.lower() not in extra]
        out = [b"HTTP/1.1 %d %s\r\n" % (code, self.status)]
        for name, value in kept:
            out += (name, b": ", value, b"\r\n")
        if code == 101:
            if not ex.upgrade:
                self.broken("backend switched protocols unasked")
                return
            self.upgrading = True
            for name, value in self.headers:
                if name.lower() == b"upgrade":
                    out += (b"Upgrade: ", value, b"\r\n")
            out.append(b"Connection: Upgrade\r\n\r\n")
        else:
            bodiless = ex.head_only or code == 204 or code == 304
            if ex.upgrade:
                ex.close = True  # the client's parser is past the upgrade: start afresh
            if not bodiless and length is None:
                if chunked:
                    self.chunked = True
                    out.append(b"Transfer-Encoding: chunked\r\n")
                else:
                    self.until_eof = True
                    ex.close = True
            if ex.close or not ex.keep_alive:
                out.append(b"Connection: close\r\n")
            out.append(b"\r\n")
            if bodiless:
                self.complete = True  # no body follows, whatever Content-Length says
            elif length is not None and not chunked:
                # The parser has validated it; bytes in this read still come through on_body.
                self.remaining = int(length)
        self.head_sent = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends
        self.out.append(b"".join(out))

    def on_body(self, body: bytes) -> None:
        if self.remaining > 0:
            self.remaining -= len(body)
        route = self.ex.route
        route.bytes_out += len(body)
        route.last_activity = now()
        if self.chunked:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True

    # --- endings ---------------------------------------------------------------------

    def done(self) -> None:
        """The response is complete: hand the connection back and tell the client side."""
        ex = self.ex
        client = self.client
        if self.chunked:
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.ex = None
        self.client = None
        ex.backend = None
        ex.response_done = True
        reusable = not self.until_eof and ex.request_done and not self.closed and self.keep_alive
        self.pool.busy.discard(self)
        if reusable:
            if client.write_paused:
                self.transport.resume_reading()
            self.pool.put(self)
        else:
            self.transport.close()
        if not ex.request_done:
            ex.close = True  # the backend answered before the body was in: the rest can't be relayed
        client.finish(ex)

    def broken(self, why: str) -> None:
        """The exchange failed on the backend side: an error page if nothing was sent yet."""
        ex = self.ex
        self.ex = None
        self.client = None
        self.pool.busy.discard(self)
        self.transport.close()
        if ex is None:
            return
        ex.backend = None
        client = ex.client
        log.info("backend %s failed for %s %s: %s", self.key, ex.method.decode(), logged_path(ex), why)
        self.out = []
        if self.wrote:
            ex.close = True  # part of the response went out: all the client can learn is the close
            client.transport.close()
            return
        client.error_reply(ex, 502)

    def abort(self) -> None:
        """The client went away mid-exchange: this connection can't be reused."""
        self.ex = None
        self.client = None
        self.pool.busy.discard(self)
        if self.transport is not None:
            self.transport.close()


class BackendPool:
    """Keep-alive connections per target, and the opening of new ones."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.limits = proxy.limits
        self.idle: dict[str, list[BackendConnection]] = {}
        self.busy: set[BackendConnection] = set()
        self.connecting: set[asyncio.Task] = set()

    def send(self, ex: Exchange) -> None:
        """Carry ``ex`` on an idle connection to its target, or open one."""
        target = ex.route.target
        idle = self.idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                conn.start(ex)
                return
        task = asyncio.get_running_loop().create_task(self._connect(ex))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, ex: Exchange) -> None:
        target = ex.route.target
        loop = asyncio.get_running_loop()
        factory = lambda: BackendConnection(self, target.key)  # noqa: E731
        try:
            if target.unix_path:
                coro = loop.create_unix_connection(factory, target.unix_path)
            else:
                coro = loop.create_connection(factory, target.host, target.port)
            _, conn = await asyncio.wait_for(coro, self.limits.connect_timeout)
        except TimeoutError:
            self._failed(ex, 504, "connect timed out")
            return
        except ConnectionRefusedError:
            self._failed(ex, 503, "connection refused")
            return
        except OSError as exc:
            self._failed(ex, 502, str(exc))
            return
        client = ex.client
        if client.closed or client.cur is not ex:
            self.put(conn)  # the visitor left while we connected: keep it for the next one
            return
        conn.start(ex)

    def _failed(self, ex: Exchange, status: int, why: str) -> None:
        client = ex.client
        log.info("backend %s unreachable for %s: %s", ex.route.target.url, logged_path(ex), why)
        if client.closed or client.cur is not ex:
            return
        client.resume(PAUSE_BACKEND)
        client.error_reply(ex, status)

    def put(self, conn: BackendConnection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= self.limits.backend_max_idle:
            conn.transport.close()
            return
        conn.idle_since = now()
        idle.append(conn)

    def forget(self, conn: BackendConnection) -> None:
        self.busy.discard(conn)
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def sweep(self, t: float) -> None:
        """Close idle connections past their time, and time out slow response heads."""
        cutoff = t - self.limits.backend_idle_timeout
        for idle in self.idle.values():
            while idle and idle[0].idle_since < cutoff:
                idle.pop(0).transport.close()
        head_cutoff = t - self.limits.response_timeout
        for conn in [c for c in self.busy if not c.head_sent and c.sent_at < head_cutoff and c.ex is not None]:
            ex = conn.ex
            conn.ex = None
            conn.client = None
            self.busy.discard(conn)
            conn.transport.close()
            ex.backend = None
            ex.client.error_reply(ex, 504)

    def close(self) -> None:
        for task in list(self.connecting):
            task.cancel()
        for idle in self.idle.values():
            for conn in idle:
                conn.transport.close()
        self.idle.clear()
        for conn in list(self.busy):
            conn.transport.close()
