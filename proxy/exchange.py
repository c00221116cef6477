"""One request and its response (``Exchange``), and what the two sides of the relay say to each other.

The client side (``client.ClientConnection``) parses a request into an
Exchange; the target side (``target.TargetConnection``) carries it to the
route's target and answers through the small ``Client`` interface below, so
neither module imports the other's class.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .routes import RequestHead, Route

# Why reading from a client is paused (a bit mask, so one reason's end does not
# resume reading another still needs paused).
PAUSE_PIPELINE = 1  # a pipelined request waits behind the one in flight, or an upgrade awaits its answer
PAUSE_TARGET = 2  # the target is not connected yet, or its write buffer is full

# Client connection phases, for the timeout sweep.
IDLE, HEAD, BUSY, LINGER = range(4)  # LINGER: answered and half-closed, dropping what the visitor still sends

# A request refused before its body was read (413, 403, 503): closing at once, with the body still arriving,
# makes the kernel reset the connection, and a visitor's browser then shows "connection reset" instead of the
# answer (Windows and macOS drop the answer they received on a reset; data not yet sent is dropped too). So
# the answer goes out with a FIN and what the visitor still sends is read and dropped ("lingering close", as
# nginx does) until it stops sending or half-closes, for at most LINGER_TIME, or LINGER_QUIET of silence
# (nginx: 30 s and 5 s). The connection keeps its place in its network's count meanwhile.
LINGER_TIME = 10.0
LINGER_QUIET = 2.0


class Client(Protocol):
    """What the target side needs of the visitor's connection."""

    transport: asyncio.Transport
    closed: bool
    write_paused: bool
    cur: Exchange | None
    client_ip: str

    def pause(self, reason: int) -> None: ...
    def resume(self, reason: int) -> None: ...
    def error_reply(self, ex: Exchange, status: int) -> None: ...
    def finish(self, ex: Exchange) -> None: ...
    def start_tunnel(self, target, leftover_from_target: bytes) -> None: ...
    def crash(self, logged: bool = False) -> None: ...


def logged_path(ex: Exchange) -> str:
    """The request's path for a log line: never its query, which may carry a key or token."""
    return b"".join(ex.url).split(b"?", 1)[0][:200].decode("latin-1")


class Exchange:
    """One request and its response, from head to last byte."""

    __slots__ = (
        "body_size",
        "chunked",
        "client",
        "close",
        "cors",
        "has_body",
        "head",
        "head_done",
        "head_only",
        "head_size",
        "headers",
        "host",
        "host_count",
        "keep_alive",
        "kept",
        "length",
        "method",
        "out_head",
        "path",
        "pending",
        "pending_size",
        "prior_fwd",
        "query",
        "request_done",
        "response_done",
        "retried",
        "route",
        "sent",
        "set_cookie",
        "target_conn",
        "tee",
        "trusted_fwd",
        "upgrade",
        "url",
        "version",
    )

    def __init__(self, client: Client):
        self.client = client
        self.url: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.head_done = False
        self.route: Route | None = None
        self.target_conn = None  # the target.TargetConnection carrying it, once attached
        self.pending: list[bytes] = []  # body pieces that arrived before the target was attached
        self.pending_size = 0
        self.chunked = False  # request body is chunked (re-encoded to the target as it comes)
        self.has_body = False
        self.body_size = 0  # request body bytes seen, for the route's max_body
        self.request_done = False
        self.response_done = False
        self.close = False  # close the client connection after this exchange
        self.sent = False  # head written to a target; body pieces now go straight through
        self.out_head = b""
        self.head_only = False
        self.retried = False
        self.head: RequestHead | None = None
        self.head_size = 0
        # The checked head, as the client side's checks leave it for forwarding:
        self.path = b""  # normalised
        self.query = b""  # with its '?', as it came
        self.host = b""
        self.host_count = 0
        self.length = b""  # Content-Length, as it came
        self.kept: list[tuple[bytes, bytes]] = []  # the headers that go on to the target
        self.trusted_fwd = False  # X-Forwarded-* from a trusted balancer are kept
        self.prior_fwd: bytes | None = None  # its X-Forwarded-For chain
        self.cors: bytes | None = None  # the trusted page's origin, echoed in CORS headers (proxy.bearer)
        self.set_cookie: bytes | None = None  # a Set-Cookie value for the upgrade's answer (proxy.bearer)
        self.tee = None  # kernel_watch.ExecuteTee: a server-side run's request, read as it passes

    def request_head(self, path: bytes, query: bytes) -> RequestHead:
        if self.head is None:
            self.head = RequestHead(self.method, path, query, self.version, self.headers,
                                    self.client.client_ip, self.route, self.upgrade)
        return self.head
