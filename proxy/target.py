"""The target side of the relay: one connection per exchange in flight (kept alive by ``targets.TargetPool``).

``TargetConnection`` writes the request head (and the body as the visitor's
side passes it on), parses the response with httptools and relays it to the
visitor: Content-Length bodies without a parser copy, chunked ones re-chunked,
heads bounded. It answers the visitor's side only through ``exchange.Client``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Protocol

import httptools

from .answer import interim_head, plan
from .encoding import Encoder
from .exchange import PAUSE_TARGET, Client, Exchange, logged_path
from .state import Limits, Stats
from .untrusted import screen_response

log = logging.getLogger("nbpool.proxy")
now = time.monotonic


class KeepAlive(Protocol):
    """What a target connection tells the keep-alive pool it belongs to (targets.TargetPool), which keeps its
    own books of which connections are busy and which idle."""

    limits: Limits
    stats: Stats

    def carrying(self, conn: TargetConnection) -> None: ...  # an exchange went out on it

    def let_go(self, conn: TargetConnection) -> None: ...  # it carries nothing any more

    def put(self, conn: TargetConnection) -> None: ...  # idle, for the next exchange to its target

    def lost(self, conn: TargetConnection) -> None: ...  # closed

    def send(self, ex: Exchange) -> None: ...  # carry ``ex`` (on another connection)


class TargetConnection(asyncio.Protocol):
    """A connection to one target, carrying one exchange at a time, then pooled."""

    def __init__(self, pool: KeepAlive, key: str):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.ex: Exchange | None = None
        self.client: Client | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = b""
        self.interim = False
        self.head_sent = False  # the response head went to the client
        self.chunked = False  # re-chunk the body to the client
        self.coder: Encoder | None = None  # compressing the body on its way (see encoding.plan)
        self.until_eof = False  # body ends when the target closes
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
        ex.target_conn = self
        self.parser = httptools.HttpResponseParser(self)
        self.headers = []
        self.status = b""
        self.head_sent = self.chunked = self.until_eof = self.complete = self.upgrading = False
        self.coder = None
        self.remaining = -1
        self.head_bytes = 0
        self.got_bytes = self.wrote = False
        self.out = []
        self.used += 1
        self.sent_at = now()
        self.pool.carrying(self)
        ex.sent = True
        if ex.pending:
            self.transport.writelines([ex.out_head, *ex.pending])
            ex.pending = []
            ex.pending_size = 0
        else:
            self.transport.write(ex.out_head)
        client.resume(PAUSE_TARGET)
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
            # Bytes from an idle target: it broke the protocol; never reuse it.
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
                self.pool.let_go(self)
                self.ex.client.start_tunnel(self, data[exc.args[0]:])
                return
            self.broken("target upgraded unasked")
            return
        except httptools.HttpParserCallbackError:
            raise  # a bug of ours, not the target's: see crash()
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
            limit = self.pool.limits.max_head_size
            if self.head_bytes > limit:
                self.broken(f"response head over {limit} bytes")
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
        self.pool.lost(self)
        ex = self.ex
        if ex is None or self.complete:
            return
        if exc is not None and self.transport is not None:
            # A server that refuses an upload early (401, 413) answers and closes without reading the rest;
            # the body still arriving meets a reset, our next write fails, and asyncio drops the connection
            # with that answer unread in the socket. Read it before calling the exchange broken.
            early = unread(self.transport)
            if early:
                self._received(early)
                if self.ex is None:  # answered (or broken) by what was there
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
            ex.target_conn = None
            ex.sent = False
            self.ex = None
            self.pool.send(ex)
            return
        self.broken("connection closed" if exc is None else str(exc))

    def pause_writing(self) -> None:
        # The target reads the request body slower than the client sends it.
        client = self.client
        if client is not None:
            client.pause(PAUSE_TARGET)

    def resume_writing(self) -> None:
        client = self.client
        if client is not None:
            client.resume(PAUSE_TARGET)

    # --- response parser callbacks ---------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_sent:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        code = self.parser.get_status_code()
        screen = self.screened if ex.route.untrusted else None
        if code < 200 and code != 101:
            # Interim (100 Continue, 103 Early Hints): HTTP/1.1 clients get it, others not.
            self.interim = True
            if ex.version == "1.1":
                self.out.append(interim_head(code, self.status, screen(self.headers) if screen else self.headers))
            self.headers = []
            self.status = b""
            return
        answer = plan(ex, code, self.status, self.headers, self.pool.limits.compress, screen)
        if answer is None:
            self.broken("target switched protocols unasked")
            return
        if answer.coding is not None and not answer.complete:
            self.coder = Encoder(answer.coding)
        self.chunked, self.until_eof, self.upgrading = answer.rechunk, answer.until_eof, answer.upgrading
        self.complete, self.remaining = answer.complete, answer.length
        if answer.close:
            ex.close = True
        self.head_sent = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends
        self.out.append(answer.head)

    def screened(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """An untrusted route's response headers minus those that would reach past it (proxy.untrusted)."""
        ex = self.ex
        kept, refused = screen_response(headers, ex.route.prefix, self.pool.limits.private_cookies)
        if refused:
            self.pool.stats.filtered_headers += len(refused)
            log.debug("dropped from the answer of %s to %s: %s", ex.route.prefix.decode("latin-1"),
                      logged_path(ex), ", ".join(refused))
        return kept

    def on_body(self, body: bytes) -> None:
        if self.remaining > 0:
            self.remaining -= len(body)
        route = self.ex.route
        route.bytes_out += len(body)
        route.last_activity = now()
        if self.coder is not None:
            body = self.coder.process(body)
            if not body:
                return  # the coder holds it for now: an empty chunk would end the body
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
            if self.coder is not None:
                tail = self.coder.finish()
                if tail:
                    self.out += (b"%x\r\n" % len(tail), tail, b"\r\n")
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.ex = None
        self.client = None
        ex.target_conn = None
        ex.response_done = True
        reusable = not self.until_eof and ex.request_done and not self.closed and self.keep_alive
        self.pool.let_go(self)
        if reusable:
            if client.write_paused:
                self.transport.resume_reading()
            self.pool.put(self)
        else:
            self.transport.close()
        if not ex.request_done:
            ex.close = True  # the target answered before the body was in: the rest can't be relayed
        client.finish(ex)

    def detach(self) -> Exchange | None:
        """Let go of the exchange and close: this connection is done for. Returns the exchange it had."""
        ex = self.ex
        self.ex = None
        self.client = None
        self.pool.let_go(self)
        if self.transport is not None:
            self.transport.close()
        if ex is not None:
            ex.target_conn = None
        return ex

    def broken(self, why: str) -> None:
        """The exchange failed on the target side: an error page if nothing was sent yet."""
        ex = self.detach()
        if ex is None:
            return
        client = ex.client
        log.info("target %s failed for %s %s: %s", self.key, ex.method.decode(), logged_path(ex), why)
        self.out = []
        if self.wrote:
            ex.close = True  # part of the response went out: all the client can learn is the close
            client.transport.close()
            return
        client.error_reply(ex, 502)

    def abort(self) -> None:
        """The client went away mid-exchange: this connection can't be reused."""
        self.detach()


def unread(transport: asyncio.BaseTransport, limit: int = 1 << 20) -> bytes:
    """What the peer sent that a closing transport never read (at most ``limit`` bytes).

    asyncio calls connection_lost before it closes the socket, so the bytes are still there; a
    duplicate of the descriptor reads them without touching the transport's own socket object.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return b""
    try:
        fd = os.dup(sock.fileno())
    except OSError:
        return b""
    chunks: list[bytes] = []
    with socket.socket(fileno=fd) as dup:
        dup.setblocking(False)
        while sum(map(len, chunks)) < limit:
            try:
                data = dup.recv(65536)
            except OSError:  # nothing more (BlockingIOError), or the reset itself
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)
