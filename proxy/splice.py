"""After ``101 Switching Protocols``: the visitor's and the target's connections spliced byte for byte.

No frame parsing on the way and no size cap (a WebSocket's messages pass as
they are, compression included); a kernel's WebSocket may be watched
(``kernel_watch``), which reads each side's bytes after they were passed
on. The one exception: a watcher's shared-document WebSocket, whose visitor
side is filtered before it is passed on (``ws_readonly``). Writing is held
back with the transports' own flow control, FIN is passed on (half-close),
and closing either side closes the other once its buffered bytes are out.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .routes import Route
from .state import ConnectionState
from .ws_readonly import ReadOnlyDoc
from .wsframes import MessageReader

now = time.monotonic
log = logging.getLogger("nbpool.proxy")


class Splice(asyncio.Protocol):
    """One side of an upgraded connection: bytes read here are written to the peer.

    ``inbound`` is the visitor's side (its bytes count as ``bytes_in``); the
    target's side counts ``bytes_out``. The visitor's side also holds the
    connection's place in its network's count (``counted``). Each side notes
    when it last read a byte (``seen``): the sweep closes a tunnel silent both
    ways for longer than websocket_idle_timeout.
    """

    __slots__ = ("closed", "counted", "eof", "filter", "inbound", "paused_at", "peer", "reader", "route", "seen",
                 "state", "tag", "transport", "when_gone")

    def __init__(self, transport: asyncio.Transport, route: Route, state: ConnectionState, inbound: bool):
        self.transport = transport
        self.route = route
        self.state = state
        self.inbound = inbound
        self.peer: Splice | None = None
        self.eof = False
        self.closed = False
        self.paused_at = 0.0  # when this side stopped taking bytes (0: it takes them), for send_timeout
        self.seen = now()  # when this side last read a byte, for websocket_idle_timeout
        self.counted = ""  # the visitor side's counted network, released when it closes
        self.reader: MessageReader | None = None  # reads this side's messages for a kernel watch
        self.when_gone = None  # called once the whole tunnel is closed (a kernel watch's end), on the visitor side
        self.tag: object = None  # the visitor side: the credential that opened it (RequestHead.tag), if marked
        self.filter: ReadOnlyDoc | None = None  # the visitor side of a read-only document: what may pass

    @classmethod
    def join(cls, client: asyncio.Transport, target: asyncio.Transport, route: Route, state: ConnectionState,
             counted: str) -> tuple[Splice, Splice]:
        """Splice two transports; returns (visitor side, target side), registered as a tunnel.

        ``counted``: the network whose count the tunnel holds until it closes ('' none).
        """
        inbound = cls(client, route, state, inbound=True)
        outbound = cls(target, route, state, inbound=False)
        inbound.peer, outbound.peer = outbound, inbound
        inbound.counted = counted
        client.set_protocol(inbound)
        target.set_protocol(outbound)
        state.tunnels.add(inbound)
        state.stats.websockets_total += 1
        state.stats.websockets_active += 1
        route.websockets += 1
        return inbound, outbound

    def data_received(self, data: bytes) -> None:
        route = self.route
        if self.inbound:
            route.bytes_in += len(data)
        else:
            route.bytes_out += len(data)
        route.last_activity = self.seen = now()
        if self.filter is not None:
            data = self.filter.feed(data)
            if self.filter.broken:
                log.info("closed a read-only document WebSocket on %s: %s", route.prefix.decode(), self.filter.broken)
                self.transport.abort()
                return
            if not data:
                return
        self.peer.transport.write(data)
        reader = self.reader
        if reader is not None:
            try:
                reader.feed(data)
            except Exception:  # the watcher's trouble never the tunnel's: this side goes unwatched
                log.exception("kernel watch on %s failed; no longer watched", self.route.prefix.decode())
                self.reader = None

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer.eof or peer.closed or not peer.transport.can_write_eof():
            return False  # both directions done (or TLS, which cannot half-close): close
        peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        if self.counted:
            state.uncount_network(self.counted)
            self.counted = ""
        peer = self.peer
        if not peer.closed:
            peer.transport.close()
        else:  # the second side to go: the tunnel is gone
            state.stats.websockets_active -= 1
            self.route.websockets -= 1
            visitor_side = self if self.inbound else peer
            state.tunnels.discard(visitor_side)
            if visitor_side.when_gone is not None:
                try:
                    visitor_side.when_gone()
                except Exception:  # (the watcher's trouble, never the proxy's)
                    log.exception("kernel watch on %s failed at its end", self.route.prefix.decode())

    def pause_writing(self) -> None:
        self.paused_at = now()
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_at = 0.0
        if not self.peer.closed:
            self.peer.transport.resume_reading()
