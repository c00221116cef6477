"""The visitor's side of the relay: one ``ClientConnection`` per connection to the public port.

It parses request heads with httptools, runs each through ``head``'s checks
(the request line, the headers, the route's own rules: body limit, origin,
authorize), and hands it to the target side (``targets.TargetPool``);
bodies are relayed chunk by chunk as they arrive, never gathered. Pipelined
requests wait their turn. After ``101 Switching Protocols`` the connection
becomes a ``splice.Splice``.

Everything runs in callbacks on the event loop: no coroutine per request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time

import httptools

from .encoding import request_coding
from .exchange import BUSY, HEAD, IDLE, LINGER, PAUSE_PIPELINE, PAUSE_TARGET, Exchange
from .head import check_access, check_headers, check_target, forward_head
from .hosts import check_host
from .http import Response, error_response, wants_json
from .kernel_watch import ExecuteTee, KernelWatch
from .splice import Splice
from .state import ConnectionState
from .target import TargetConnection
from .targets import TargetPool
from .ws_readonly import ReadOnlyDoc

log = logging.getLogger("nbpool.proxy")
now = time.monotonic

PENDING_BODY_LIMIT = 256 * 1024  # body bytes held while a connection to the target opens


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



class ClientConnection(asyncio.Protocol):
    """A visitor's connection: parses requests, dispatches them, writes responses.

    ``network``: for a connection admitted before it speaks HTTP (a TLS one, counted at TCP accept by
    ``tls.TlsListener``), the network it is already counted under ('' when exempt); None to admit it here.
    """

    def __init__(self, state: ConnectionState, targets: TargetPool, network: str | None = None):
        self.state = state
        self.targets = targets
        self.limits = state.limits
        self.stats = state.stats
        self.routes = state.routes
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
        self.admitted = network is not None
        self.network = network or ""  # the network this connection is counted under ('' none), released at close
        # Behind a trusted balancer (which is exempt), the visitor network the request in flight is counted
        # under, released when it ends (or, for an upgrade, when its tunnel closes).
        self.visitor = ""
        self.head_seen = 0
        self.leftover = b""  # bytes after an upgrade request's head
        self.eof = False
        self.closed = False

    # --- connection events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        state = self.state
        if not self.admitted:
            self.stats.connections_total += 1
            self.network, refusal = state.admit(self.client_ip)
            if refusal is not None:
                return self.turn_away(refusal)
        else:  # counted at TCP accept (tls.TlsListener): head_timeout starts now, after the handshake
            self.since = now()
        state.clients.add(self)
        self.forwarded = self.limits.forwarded_lines(self.client_ip)
        keep_probing(transport)

    def turn_away(self, message: str) -> None:
        self.stats.rejected_connections += 1
        self.transport.write(error_response(503, message=message, headers=[("Retry-After", "5")])
                             .encode(keep_alive=False))
        self.close_now()

    def close_now(self, answered: bool = False) -> None:
        """Close the visitor's connection once what is written is out; serve nothing more on it. ``answered``:
        an answer to the request being read was just written; if its body still arrives, linger (never reset)."""
        ex = self.ex
        unread = ex is not None and ex.head_done and not ex.request_done and not self.eof
        if answered and unread and self.transport.can_write_eof():
            self.linger()
            return
        self.transport.close()
        self.closed = True
        self.state.clients.discard(self)

    def linger(self) -> None:
        """Send the answer and a FIN, then drop what arrives (the sweep ends it: LINGER_TIME, LINGER_QUIET)."""
        self.closed = True  # (nothing more is written nor served; it stays in state.clients for the sweep)
        self.phase = LINGER
        self.since = self.body_seen = now()
        self.queue.clear()
        self.transport.write_eof()
        if self.pauses:
            self.pauses = 0
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        state.clients.discard(self)
        if self.network:
            state.uncount_network(self.network)
            self.network = ""
        if self.visitor:
            state.uncount_network(self.visitor)
            self.visitor = ""
        cur = self.cur
        if cur is not None and cur.target_conn is not None and not cur.response_done:
            cur.target_conn.abort()
        self.cur = None
        self.queue.clear()

    def eof_received(self) -> bool:
        # A client may half-close after its request: still deliver the response.
        self.eof = True
        return self.cur is not None and self.phase != LINGER  # (lingering: the visitor sent all; close)

    def pause_writing(self) -> None:
        # The client reads slower than the target sends: stop reading the target.
        self.write_paused = True
        self.write_paused_at = now()
        conn = self.cur.target_conn if self.cur is not None else None
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        conn = self.cur.target_conn if self.cur is not None else None
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.resume_reading()

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
        if self.phase == LINGER:
            self.body_seen = now()  # dropped: the rest of a refused request
            return
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
        if ex.response_done and ex.target_conn is None:
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
        if ex.tee is not None:
            ex.tee.feed(body)

    def on_message_complete(self) -> None:
        ex = self.ex
        self.ex = None
        ex.request_done = True
        if ex.tee is not None:
            ex.tee.done()
            ex.tee = None
        if ex.chunked and not (ex.response_done and ex.target_conn is None):
            self.send_body(ex, [b"0\r\n\r\n"])
        if ex.response_done:
            self.finish(ex)

    # --- serving ---------------------------------------------------------------------

    def send_body(self, ex: Exchange, pieces: list[bytes]) -> None:
        if ex.sent:
            conn = ex.target_conn
            if conn is not None:
                conn.transport.writelines(pieces)
            return
        ex.pending.extend(pieces)
        ex.pending_size += sum(map(len, pieces))
        if ex.pending_size > PENDING_BODY_LIMIT:
            self.pause(PAUSE_TARGET)

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
        if cur is not None and cur.target_conn is not None:
            partial = cur.target_conn.wrote
            cur.target_conn.abort()
        if not partial:
            self.stats.count_error(500)
            self.transport.write(error_response(500).encode(keep_alive=False))
        self.close_now()

    def _dispatch(self, ex: Exchange) -> None:
        self.cur = ex
        self.phase = BUSY
        self.body_seen = now()
        limits, ip = self.limits, self.client_ip
        refusal = (check_target(ex, limits, self.routes) or check_host(ex, limits, self.routes, ip)
                   or check_headers(ex, limits, ip))
        if refusal is None and ex.trusted_fwd:
            refusal = self.count_visitor(ex)
        refusal = refusal or check_access(ex, limits, ip)
        if refusal is not None:
            response, close = refusal
            self.reply(ex, response, close=close)
            return
        route = ex.route
        if route.fill_ok and (ex.upgrade or (ex.method != b"GET" and ex.method != b"HEAD")):
            # The first request that can make the container run code (kernels, terminals
            # and file writes all take a POST, PUT, PATCH, DELETE or a WebSocket) ends its
            # time as a source for the shared static cache, before it is sent on.
            route.fill_ok = False
        if ex.method == b"POST" and route.data is not None and self.state.kernel_observer is not None:
            ex.tee = ExecuteTee.attach(ex.path, route.data, self.state.kernel_observer)
        cache = self.state.cache
        if cache is not None and route.share is not None and ex.cors is None:
            entry = cache.lookup(route, ex.path, ex.query, ex.method, ex.headers)
            if entry is not None:
                self.send_cached(ex, entry, cache)
                return
        ex.out_head = forward_head(ex, limits, ip, self.forwarded)
        ex.head_only = ex.method == b"HEAD"
        self.targets.send(ex)

    def count_visitor(self, ex: Exchange) -> tuple[Response, bool] | None:
        """Behind a trusted balancer: count the request against its visitor's network, or refuse it (503).

        The balancer's own connections are exempt from the per-network cap (they carry many visitors), so
        what one visitor holds on them (requests in flight, WebSockets) is counted here instead.
        """
        network = self.limits.visitor_network(ex.prior_fwd or b"")
        if not network:
            return None
        if not self.state.count_network(network):
            return error_response(503, wants_json(ex.headers, ex.path), headers=[("Retry-After", "5")],
                                  message="Too many requests from your address; please retry shortly."), ex.has_body
        self.visitor = network
        return None

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
            self.close_now(answered=True)
        elif ex.request_done:
            self.finish(ex)

    def send_cached(self, ex: Exchange, entry, cache) -> None:
        """Answer ``ex`` with a file from the shared static cache (``static_cache.Entry``)."""
        ex.response_done = True
        ex.close = ex.close or not ex.keep_alive or ex.upgrade
        coding = request_coding(ex.headers) if ex.version == "1.1" and self.limits.compress.enabled else None
        head, body = entry.response(coding, ex.headers, ex.method == b"HEAD", not ex.close)
        route = ex.route
        route.last_activity = now()
        route.bytes_out += len(body)
        cache.bytes_served += len(body)
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
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
        # After a target failure the request body may be half sent: never reuse.
        self.reply(ex, response, close=ex.has_body and not ex.request_done)

    def finish(self, ex: Exchange) -> None:
        """Both halves of ``ex`` are done: serve the next request, or wait for one."""
        if ex is not self.cur or self.closed:
            return
        self.cur = None
        if self.visitor:
            self.state.uncount_network(self.visitor)
            self.visitor = ""
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
            # target will never see its end, so drop that exchange.
            conn = cur.target_conn
            if conn is not None:
                written = conn.wrote
                conn.abort()
                cur.target_conn = None
                if written:
                    self.close_now()
                    return
            cur.response_done = True
            cur = None
        if cur is None or cur.response_done:
            self.transport.write(error_response(status, message=message).encode(keep_alive=False))
            self.close_now(answered=True)
        else:
            # A response is under way: let it finish, then close; read nothing more.
            cur.close = True
            self.queue.clear()
            self.pause(PAUSE_PIPELINE)

    def start_tunnel(self, conn: TargetConnection, leftover_from_target: bytes) -> None:
        """The target switched protocols: from now on the two connections are spliced."""
        self.state.clients.discard(self)
        # The visitor's connection lives on as the tunnel: so does its place in its network's count (a
        # balancer's connection is not counted itself: its visitor's request, now the tunnel, is).
        counted = self.network or self.visitor
        self.network = self.visitor = ""
        route = self.cur.route
        inbound, outbound = Splice.join(self.transport, conn.transport, route, self.state, counted)
        head = self.cur.head
        if head is not None:  # what the route's authorize said of the credential (RequestHead)
            inbound.tag = head.tag
            if head.read_only:
                inbound.filter = ReadOnlyDoc()
        observer = self.state.kernel_observer
        if observer is not None and route.data is not None:
            watch = KernelWatch.attach(self.cur.path, conn.headers, route.data, observer)
            if watch is not None:
                inbound.reader, outbound.reader = watch.from_visitor, watch.from_kernel
                inbound.when_gone = watch.gone
        if leftover_from_target:
            outbound.data_received(leftover_from_target)
        if self.leftover:
            inbound.data_received(self.leftover)
            self.leftover = b""
        if self.pauses:
            self.pauses = 0
            self.transport.resume_reading()
        if self.write_paused:  # the client was not keeping up: keep the target paused until it drains
            conn.transport.pause_reading()
