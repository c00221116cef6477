"""One file of the shared static cache (``Entry``), the background fetch that brings it (``Fetch``), and the
rule for what may be stored (``entry_of``). See ``static_cache`` for why and when.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

from .encoding import compressible, weak_etag
from .http import HOP_BY_HOP

FILL_BUDGET = 4  # what all fills in flight may hold together, in times cache_max_entry (static_cache's notes)
# Headers a cached response keeps; the rest (Date, Server, cookies, framing) are the fetch's own.
KEPT_HEADERS = frozenset({b"content-type", b"cache-control", b"last-modified", b"expires", b"etag",
                          b"content-language", b"x-content-type-options", b"content-security-policy"})


class Entry:
    """One cached file: its headers once, and its body per coding."""

    __slots__ = ("bodies", "compressible", "etag", "head", "last_modified", "size")

    def __init__(self, head: bytes, bodies: dict[bytes, bytes], etag: bytes, last_modified: bytes):
        self.head = head  # the kept header lines, without ETag (it differs per coding)
        self.bodies = bodies  # b"" (identity), then b"gzip" and b"br" once encoded
        self.compressible = False
        self.etag = etag
        self.last_modified = last_modified
        self.size = len(head) + sum(map(len, bodies.values()))

    def response(self, coding: bytes | None, request_headers: list[tuple[bytes, bytes]], head_only: bool,
                 keep_alive: bool) -> tuple[bytes, bytes]:
        """(head, body) for one request: a 304 when its validators match."""
        if coding not in self.bodies:
            coding = b""
        body = self.bodies[coding]
        etag = weak_etag(self.etag) if self.etag and coding else self.etag
        inm = ims = None
        for name, value in request_headers:
            low = name.lower()
            if low == b"if-none-match":
                inm = value
            elif low == b"if-modified-since":
                ims = value
        if inm is not None:  # weak comparison (RFC 9110 13.1.2); If-Modified-Since is then ignored
            have = self.etag.removeprefix(b"W/")
            fresh = bool(have) and any(tag.strip().removeprefix(b"W/") in (have, b"*") for tag in inm.split(b","))
        else:
            fresh = ims is not None and bool(self.last_modified) and ims.strip() == self.last_modified
        lines = [b"HTTP/1.1 304 Not Modified\r\n" if fresh else b"HTTP/1.1 200 OK\r\n", self.head,
                 b"Vary: Accept-Encoding\r\n"]
        if etag:
            lines += (b"ETag: ", etag, b"\r\n")
        if not fresh:
            if coding:
                lines += (b"Content-Encoding: ", coding, b"\r\n")
            lines.append(b"Content-Length: %d\r\n" % len(body))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), (b"" if fresh or head_only else body)


class OverBudget(Exception):
    """A fill that would take the bytes all fills in flight hold past their budget: aborted, to be tried again."""


class FillBudget(Protocol):
    """What a fetch counts its bytes against (the StaticCache): the entry cap, and what all fills hold."""

    max_entry: int
    fill_bytes: int


class Fetch(asyncio.Protocol):
    """One background GET to a spare, read whole by httptools: up to the entry cap, within the fills' budget."""

    def __init__(self, cache: FillBudget):
        self.cache = cache
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0  # bytes held, counted in cache.fill_bytes until release()
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(ValueError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(ConnectionError("closed before the response ended"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._hold(len(name) + len(value)):
            self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self._hold(len(body)):
            self.body.append(body)

    def _hold(self, n: int) -> bool:
        """Count ``n`` more bytes held; False (and the fetch ended) past the entry cap or the fills' budget."""
        if self.done.done():
            return False
        cache = self.cache
        if self.size + n > cache.max_entry:
            self._end(ValueError("larger than the entry cap"))
            return False
        if cache.fill_bytes + n > FILL_BUDGET * cache.max_entry:
            self._end(OverBudget("the fills in flight hold their budget"))
            return False
        self.size += n
        cache.fill_bytes += n
        return True

    def release(self) -> None:
        """The fetch is over (done, failed or cancelled): close it and give its bytes back to the budget."""
        if self.transport is not None:
            self.transport.close()  # stops reading at once: nothing more is held
        self.cache.fill_bytes -= self.size
        self.size = 0
        self.headers, self.body = [], []

    def on_message_complete(self) -> None:
        self._end(None)

    def _end(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(self.parser.get_status_code())
            else:
                self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()



def entry_of(status: int, headers: list[tuple[bytes, bytes]], body: bytes, min_size: int) -> Entry | None:
    """The entry for a fetched response, or None when it is not the same for everyone (or not a 200)."""
    if status != 200:
        return None
    kept = []
    etag = last_modified = b""
    ctype = b""
    for name, value in headers:
        low = name.lower()
        if low == b"set-cookie":
            return None
        if low == b"vary" and any(v.strip().lower() not in (b"accept-encoding", b"")
                                  for v in value.split(b",")):
            return None
        if low == b"cache-control" and (b"no-store" in value.lower() or b"private" in value.lower()):
            return None
        if low == b"content-encoding" and value.strip().lower() != b"identity":
            return None
        if low in HOP_BY_HOP or low not in KEPT_HEADERS:
            continue
        if low == b"etag":
            etag = value.strip()
            continue
        if low == b"last-modified":
            last_modified = value.strip()
        elif low == b"content-type":
            ctype = value
        kept.append(b"%s: %s\r\n" % (name, value))
    entry = Entry(b"".join(kept), {b"": body}, etag, last_modified)
    entry.compressible = bool(ctype) and compressible(ctype) and len(body) >= min_size
    return entry

