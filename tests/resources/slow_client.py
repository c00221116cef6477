"""A deliberately slow HTTP client, to check that a proxy's memory stays
bounded when it relays a big download to a reader slower than its backend.

``await slow_read(url, rate)`` opens a TCP connection with a small receive
buffer (set before connecting, so the advertised window is small from the
start), sends one ``GET`` and reads the response at no more than ``rate``
bytes per second straight from the socket, with no buffering of its own
beyond one read. It understands Content-Length, chunked and close-delimited
bodies and returns the status, headers, body size, body sha256 and elapsed
time. ``stop_after`` closes the connection after that many body bytes (to
test a client that leaves mid-download).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: .*)?")


@dataclass
class SlowRead:
    """What ``slow_read`` received."""

    status: int
    headers: list[tuple[str, str]]
    body_bytes: int  # decoded body bytes read (chunk framing not counted)
    sha256: str  # of those bytes
    seconds: float  # from connect to the last byte read
    complete: bool  # False when reading stopped at stop_after


class _RateLimitedSocket:
    """Reads from a socket no faster than ``rate`` bytes/s, ``read_size`` at a time."""

    def __init__(self, sock: socket.socket, rate: float, read_size: int):
        self.sock = sock
        self.rate = rate
        self.read_size = read_size
        self.loop = asyncio.get_running_loop()
        self.started = time.monotonic()
        self.received = 0
        self.pending = bytearray()  # read but not yet consumed (head and chunk lines)

    async def recv(self) -> bytes:
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            return data
        # Sleep until the bytes received so far are within the allowed rate.
        delay = self.started + self.received / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = await self.loop.sock_recv(self.sock, self.read_size)
        self.received += len(data)
        return data

    async def line(self) -> bytes:
        while (end := self.pending.find(b"\r\n")) < 0:
            if len(self.pending) > MAX_HEAD:
                raise ValueError("line too long in response")
            data = await self.recv()
            if not data:
                raise ConnectionError("connection closed inside the response head")
            self.pending += data
        line = bytes(self.pending[:end])
        del self.pending[: end + 2]
        return line

    def unread(self, data: bytes) -> None:
        self.pending[:0] = data


async def slow_read(
    url: str,
    rate: float,
    *,
    rcvbuf: int = 16 * 1024,
    read_size: int = 4096,
    stop_after: int | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 600.0,
) -> SlowRead:
    """GET ``url`` reading at most ``rate`` bytes per second; see the module docstring.

    Raises ``TimeoutError`` if the whole exchange takes longer than ``timeout``
    seconds, ``ConnectionError`` if the server closes before the body is complete.
    """
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname, parts.port or 80
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request)
            return await _read_response(_RateLimitedSocket(sock, rate, read_size), stop_after)
    finally:
        sock.close()


async def _read_response(conn: _RateLimitedSocket, stop_after: int | None) -> SlowRead:
    match = _STATUS_LINE.fullmatch(await conn.line())
    if not match:
        raise ValueError("not an HTTP/1.x status line")
    status = int(match[1])
    header_list = []
    while line := await conn.line():
        name, _, value = line.decode("latin-1").partition(":")
        header_list.append((name, value.strip()))
    fields = {name.lower(): value for name, value in header_list}

    digest = hashlib.sha256()
    limit = stop_after if stop_after is not None else float("inf")
    count = 0

    async def consume(n: float) -> int:
        """Consume up to n body bytes (n=inf: to EOF); return how many were read."""
        nonlocal count
        got = 0
        while got < n and count < limit:
            data = await conn.recv()
            if not data:
                if n == float("inf"):
                    return got
                raise ConnectionError(f"connection closed {n - got} bytes short of the body")
            take = int(min(len(data), n - got, limit - count))
            conn.unread(data[take:])
            digest.update(data[:take])
            got += take
            count += take
        return got

    if "chunked" in fields.get("transfer-encoding", "").lower():
        while count < limit:
            size = int((await conn.line()).split(b";")[0], 16)
            if size == 0:
                break
            if await consume(size) < size:
                break  # stop_after reached inside this chunk
            await conn.line()  # the CRLF after the chunk data
    elif "content-length" in fields:
        await consume(int(fields["content-length"]))
    elif status not in (204, 304) and not 100 <= status < 200:
        await consume(float("inf"))

    complete = stop_after is None or count < stop_after
    return SlowRead(status, header_list, count, digest.hexdigest(), time.monotonic() - conn.started, complete)
