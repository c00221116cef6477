"""An HTTP/1.1 echo server at the asyncio streams level, for the proxy's tests.

Every request is answered with JSON describing what arrived: method, raw
target, path, query, version, headers and trailers as ``[name, value]`` pairs
in received order, body length and sha256, the peer address, the request's
number on its connection (so a test can see keep-alive reuse) and whether a
``100 Continue`` was sent. Special paths are matched at the *end* of the path,
so they also work behind a proxy route that keeps its prefix
(``/user/abc/bytes/10`` is ``/bytes/10``):

- ``/status/<code>``  that status (204 and 304 with no body)
- ``/bytes/<n>``      n bytes with Content-Length, streamed 64 KiB at a time
- ``/chunked/<n>``    n bytes with Transfer-Encoding: chunked
- ``/eof/<n>``        n bytes delimited by closing the connection (no length, not chunked)
- ``/slow/<ms>``      the JSON reply, after a delay
- ``/close``          the JSON reply with Connection: close, then close
- ``/reject/<code>``  that status *without* reading the request body (what a
                      server refusing an ``Expect: 100-continue`` upload does),
                      then close

A request carrying ``Expect: 100-continue`` gets ``HTTP/1.1 100 Continue``
before its body is read. The parser is small but strict: a malformed request
gets a 400 (or 501 for transfer codings other than chunked) and the
connection is closed, the way a real server would.

    python tests/resources/echo.py --port 8080      # or --unix /tmp/echo.sock
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import json
import re
from urllib.parse import urlsplit

if __package__:
    from ._runner import Running, run_main
else:  # run as a script
    from _runner import Running, run_main

CHUNK = 64 * 1024
# The body of /bytes and /chunked. Immutable on purpose: a transport may keep
# a reference to written data until it is sent, so a reused buffer must not change.
PATTERN = bytes(range(256)) * (CHUNK // 256)
MAX_LINE = 64 * 1024  # longest request line or header line
MAX_FIELDS = 100  # most header (or trailer) fields in one request
LINGER = 2.0  # seconds to wait for the client's EOF after we half-close

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/(\d)\.(\d)")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_SPECIAL = re.compile(r"/(status|bytes|chunked|eof|slow|reject)/(\d{1,12})$|/(close)$")


class BadRequest(Exception):
    """The request cannot be served; answer with ``status`` and close."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def pattern_sha256(n: int) -> str:
    """The sha256 hex digest of the body ``/bytes/<n>`` (and ``/chunked/<n>``, ``/eof/<n>``) sends."""
    digest = hashlib.sha256()
    view = memoryview(PATTERN)
    while n:
        piece = view[: min(n, CHUNK)]
        digest.update(piece)
        n -= len(piece)
    return digest.hexdigest()


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "line too long") from None
    # RFC 9112 allows a recipient to accept a bare LF as the line terminator.
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\r" in line or b"\0" in line:
        raise BadRequest(400, "bare CR or NUL")
    return line


async def _read_fields(reader: asyncio.StreamReader) -> list[tuple[str, str]]:
    fields = []
    while line := await _read_line(reader):
        if line[:1] in (b" ", b"\t"):
            raise BadRequest(400, "obsolete line folding")
        match = _FIELD.fullmatch(line)
        if not match:
            raise BadRequest(400, f"bad header line {line[:80]!r}")
        if len(fields) == MAX_FIELDS:
            raise BadRequest(431, "too many header fields")
        fields.append((match[1].decode("ascii"), match[2].decode("latin-1")))
    return fields


class Request:
    """A parsed request head."""

    def __init__(self, method: str, target: str, version: tuple[int, int], headers: list[tuple[str, str]]):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    def values(self, name: str) -> list[str]:
        """The comma-separated list elements of every ``name`` header, in order."""
        name = name.lower()
        return [
            item.strip()
            for key, value in self.headers
            if key.lower() == name
            for item in value.split(",")
            if item.strip()
        ]

    def count(self, name: str) -> int:
        return sum(1 for key, _ in self.headers if key.lower() == name.lower())


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head, or None on a clean EOF between requests."""
    try:
        line = await _read_line(reader)
        if not line:  # RFC 9112 2.2: ignore an empty line before a request-line
            line = await _read_line(reader)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest(400, "truncated request line") from None
        return None
    match = _REQUEST_LINE.fullmatch(line)
    if not match:
        raise BadRequest(400, f"bad request line {line[:80]!r}")
    version = (int(match[3]), int(match[4]))
    if version[0] != 1:
        raise BadRequest(505, "only HTTP/1.x")
    request = Request(match[1].decode("ascii"), match[2].decode("ascii"), version, await _read_fields(reader))
    if version >= (1, 1) and request.count("host") != 1:
        raise BadRequest(400, "HTTP/1.1 needs exactly one Host header")
    return request


def _content_length(request: Request) -> int:
    values = request.values("content-length")
    if not values:
        return 0
    if len(set(values)) != 1 or not values[0].isdigit() or not values[0].isascii():
        raise BadRequest(400, f"bad Content-Length {values!r}")
    return int(values[0])


async def _read_exactly_hashed(reader: asyncio.StreamReader, n: int, digest) -> None:
    while n:
        data = await reader.read(min(n, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        digest.update(data)
        n -= len(data)


async def _read_chunked(reader: asyncio.StreamReader, digest) -> tuple[int, list[tuple[str, str]]]:
    total = 0
    while True:
        match = _CHUNK_SIZE.fullmatch(await _read_line(reader))
        if not match:
            raise BadRequest(400, "bad chunk size line")
        size = int(match[1], 16)
        if size == 0:
            return total, await _read_fields(reader)
        await _read_exactly_hashed(reader, size, digest)
        total += size
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest(400, "chunk data not followed by CRLF")


def _response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write_pattern(writer: asyncio.StreamWriter, n: int, chunked: bool) -> None:
    view = memoryview(PATTERN)
    while n:
        piece = view[: min(n, CHUNK)]
        if chunked:
            writer.write(b"%x\r\n" % len(piece))
            writer.write(piece)
            writer.write(b"\r\n")
        else:
            writer.write(piece)
        n -= len(piece)
        await writer.drain()  # backpressure: never more than ~one chunk queued
    if chunked:
        writer.write(b"0\r\n\r\n")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.requests = 0
        peer = writer.get_extra_info("peername")
        self.peer = list(peer[:2]) if isinstance(peer, tuple) else None

    async def serve(self) -> None:
        try:
            try:
                while await self._serve_one():
                    pass
            except BadRequest as exc:
                body = f"{exc}\n".encode()
                headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("Connection", "close")]
                self.writer.write(_response_head(exc.status, headers) + body)
                await self.writer.drain()
            await self._linger()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away mid-request; nothing to answer
        finally:
            self.writer.close()

    async def _linger(self) -> None:
        # Half-close, then discard what the client still sends: closing a
        # socket with unread input makes the kernel answer with a RST, which
        # can destroy the response before the client has read it.
        self.writer.write_eof()
        try:
            async with asyncio.timeout(LINGER):
                while await self.reader.read(CHUNK):
                    pass
        except TimeoutError:
            pass

    async def _serve_one(self) -> bool:
        """Serve one request; return whether the connection stays open."""
        request = await _read_request(self.reader)
        if request is None:
            return False
        self.requests += 1
        parts = urlsplit(request.target)
        special = _SPECIAL.search(parts.path)
        kind, number = (special[1] or special[3], int(special[2] or 0)) if special else ("", 0)

        tokens = {token.lower() for token in request.values("connection")}
        keep_alive = "close" not in tokens if request.version >= (1, 1) else "keep-alive" in tokens
        headers: list[tuple[str, str]] = []

        if kind == "reject":
            headers += [("Content-Length", "0"), ("Connection", "close")]
            self.writer.write(_response_head(self._status(number), headers))
            await self.writer.drain()
            return False  # the body (if any) was never read

        # Body framing (RFC 9112 6.3): Transfer-Encoding wins over Content-Length.
        codings = [coding.lower() for coding in request.values("transfer-encoding")]
        if codings and codings != ["chunked"]:
            raise BadRequest(501, f"unsupported transfer coding {codings!r}")
        if codings and request.count("content-length"):
            keep_alive = False  # both framings: a smuggling attempt, so never reuse
        expectations = [value.lower() for value in request.values("expect")]
        if expectations and expectations != ["100-continue"]:
            raise BadRequest(417, f"unsupported expectation {expectations!r}")

        continue_sent = False
        if expectations and request.version >= (1, 1):
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.writer.drain()
            continue_sent = True

        digest = hashlib.sha256()
        trailers: list[tuple[str, str]] = []
        if codings:
            length, trailers = await _read_chunked(self.reader, digest)
        else:
            length = _content_length(request)
            await _read_exactly_hashed(self.reader, length, digest)

        status = self._status(number) if kind == "status" else 200
        if kind == "slow":
            await asyncio.sleep(number / 1000)
        if kind == "close":
            keep_alive = False
        chunked = kind == "chunked" and request.version >= (1, 1)
        if kind == "eof" or (kind == "chunked" and not chunked):
            keep_alive = False  # a close-delimited body (what an HTTP/1.0 client gets for /chunked)

        if not keep_alive:
            headers.append(("Connection", "close"))
        elif request.version < (1, 1):
            headers.append(("Connection", "keep-alive"))

        body = b""
        streamed = kind in ("bytes", "chunked", "eof")
        if streamed:
            headers.append(("Content-Type", "application/octet-stream"))
            if chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            elif kind == "bytes":
                headers.append(("Content-Length", str(number)))
        elif status not in (204, 304):
            info = {
                "method": request.method,
                "target": request.target,
                "path": parts.path,
                "query": parts.query,
                "version": "HTTP/%d.%d" % request.version,
                "headers": [list(pair) for pair in request.headers],
                "trailers": [list(pair) for pair in trailers],
                "body_length": length,
                "body_sha256": digest.hexdigest(),
                "peer": self.peer,
                "request_number": self.requests,
                "continue_sent": continue_sent,
            }
            body = json.dumps(info).encode()
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

        self.writer.write(_response_head(status, headers))
        if request.method != "HEAD":
            if streamed:
                await _write_pattern(self.writer, number, chunked)
            else:
                self.writer.write(body)
        await self.writer.drain()
        return keep_alive

    @staticmethod
    def _status(code: int) -> int:
        if not 200 <= code <= 599:
            raise BadRequest(400, f"status {code} is not a final status (200-599)")
        return code


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None) -> Running:
    """Start the echo server on ``host:port`` (0: a free port) or a unix socket.

    Returns a ``Running`` whose ``port`` is the bound port; ``stop()`` closes
    the listener and every open connection.
    """
    tasks: set[asyncio.Task] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        tasks.add(task)
        try:
            await _Connection(reader, writer).serve()
        except asyncio.CancelledError:
            # Only stop() cancels these; letting it propagate makes asyncio's
            # stream callback log the cancelled handler as an error (3.11).
            pass
        finally:
            tasks.discard(task)

    if unix:
        server = await asyncio.start_unix_server(on_connect, unix, limit=MAX_LINE)
        bound_port = 0
    else:
        # A deep backlog, so a burst of connections is not dropped at the door.
        server = await asyncio.start_server(on_connect, host, port, limit=MAX_LINE, backlog=1024)
        bound_port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    return Running(host, bound_port, unix, stop)


if __name__ == "__main__":
    run_main("echo", start)
