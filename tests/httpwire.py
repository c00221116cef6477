"""A raw HTTP/1.1 client for tests where the exact bytes on the wire matter.

``Wire`` keeps one connection open, sends whatever bytes a test gives it and
reads responses with httptools, so keep-alive, pipelining and framing can be
checked exactly. Every read has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import httptools


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.parts: list[bytes] = []
        self.complete = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class _Collector:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.current: Response | None = None
        self.parser = None

    def on_message_begin(self) -> None:
        self.current = Response()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.current.parts.append(body)

    def on_message_complete(self) -> None:
        self.current.body = b"".join(self.current.parts)
        self.current.parts = []
        self.current.complete = True
        self.responses.append(self.current)
        self.current = None


class Wire:
    """One raw client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._collector = _Collector()
        self._new_parser()
        self.raw = b""  # everything received, for tests that look at bytes
        self.upgraded = b""  # bytes after a 101 head

    def _new_parser(self, head_only: bool = False) -> None:
        self._collector.parser = httptools.HttpResponseParser(self._collector)

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Wire:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls,
                                                       server_hostname="localhost" if tls else None)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 10.0, head_only: bool = False) -> Response:
        """Read the next complete response (``head_only`` for a HEAD request's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._collector.responses:
            if head_only and self._collector.current is not None and self._collector.current.status:
                resp = self._collector.current
                self._collector.current = None
                self._new_parser()
                return resp
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no complete response in time")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise ConnectionError(f"closed before a complete response (got {self.raw[-300:]!r})")
            if len(self.raw) < 1 << 20:  # keep the start for tests that look at bytes
                self.raw += data
            try:
                self._collector.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                self.upgraded = data[exc.args[0]:]
                if self._collector.current is not None:  # llhttp usually completes the 101 itself
                    self._collector.responses.append(self._collector.current)
        return self._collector.responses.pop(0)

    async def closed(self, timeout: float = 10.0) -> bool:
        """Wait until the peer closes; True if it did within ``timeout`` (other bytes are kept)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
                self.raw += data
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    async def read_all(self, timeout: float = 10.0) -> bytes:
        """Everything until the peer closes."""
        await self.closed(timeout)
        return self.raw

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def request(port: int, method: str = "GET", path: str = "/", headers: dict[str, str] | None = None,
                  body: bytes = b"", host: str = "proxy.test") -> Response:
    """One request on a fresh connection."""
    wire = await Wire.open(port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        await wire.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await wire.response(head_only=method == "HEAD")
    finally:
        await wire.close()
