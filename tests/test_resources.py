"""The proxy-test backends in tests/resources, checked directly (no proxy).

Raw-socket exchanges are used where the exact bytes on the wire matter
(chunked bodies, 100 Continue, keep-alive, connection close).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.resources import echo, sse
from tests.resources.slow_client import slow_read

RESOURCES = Path(__file__).parent / "resources"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response from the wire: status, headers (lower-cased names), decoded body."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        status = int(status_line.split()[1])
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await reader.readline()).split(b";")[0], 16):
                body += await reader.readexactly(size)
                assert await reader.readexactly(2) == b"\r\n"
            assert await reader.readline() == b"\r\n"  # no trailers
        else:
            body = await reader.read()
        return status, headers, body


async def at_eof(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(5):
        return await reader.read(1) == b""


async def connect(running):
    return await asyncio.open_connection("127.0.0.1", running.port)


async def test_echo_describes_headers_in_order_and_case(backend):
    reader, writer = await connect(backend)
    writer.write(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx-lower:  padded \r\nX-Dup: 2\r\n\r\n")
    status, headers, body = await read_response(reader)
    info = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert info["method"] == "GET" and info["target"] == "/a/b?x=1&y=2"
    assert info["path"] == "/a/b" and info["query"] == "x=1&y=2"
    assert info["headers"] == [["Host", "h"], ["X-Dup", "1"], ["x-lower", "padded"], ["X-Dup", "2"]]
    assert info["peer"] == list(writer.get_extra_info("sockname")[:2])
    assert info["body_length"] == 0 and info["body_sha256"] == hashlib.sha256(b"").hexdigest()
    writer.close()


async def test_echo_hashes_a_chunked_body_and_reports_trailers(backend):
    pieces = [os.urandom(1000), os.urandom(70000), os.urandom(1)]
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    reader, writer = await connect(backend)
    writer.write(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
    status, _, body = await read_response(reader)
    info = json.loads(body)
    assert status == 200
    assert info["body_length"] == sum(map(len, pieces))
    assert info["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert info["trailers"] == [["X-Trailer", "yes"]]
    writer.close()


async def test_echo_keeps_the_connection_alive_across_requests(backend):
    reader, writer = await connect(backend)
    writer.write(b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    first = json.loads((await read_response(reader))[2])
    writer.write(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n")
    second = json.loads((await read_response(reader))[2])
    assert first["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert (first["request_number"], second["request_number"]) == (1, 2)
    assert first["peer"] == second["peer"]
    writer.close()


async def test_echo_sends_100_continue_before_reading_the_body(backend):
    reader, writer = await connect(backend)
    writer.write(b"PUT /expect HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    async with asyncio.timeout(5):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"abc")
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["continue_sent"] is True
    writer.close()


async def test_echo_rejects_an_upload_without_reading_it(backend):
    reader, writer = await connect(backend)
    writer.write(b"PUT /x/reject/413 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 413 and headers["connection"] == "close"
    assert await at_eof(reader)
    writer.close()


async def test_echo_head_and_bodyless_statuses(backend):
    reader, writer = await connect(backend)
    writer.write(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: h\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head
    for target, expected in [("/status/204", 204), ("/status/304", 304)]:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {expected} ".encode()) and b"Content-Length" not in head
    # Had HEAD, 204 or 304 sent a body, this response would not parse.
    writer.write(b"GET /status/404 HTTP/1.1\r\nHost: h\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 404 and json.loads(body)["path"] == "/status/404"
    writer.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n folded\r\n\r\n", 400),
        (b"GET /status/99 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ],
)
async def test_echo_answers_malformed_requests_with_an_error_and_closes(backend, request_bytes, status):
    reader, writer = await connect(backend)
    writer.write(request_bytes)
    assert (await read_response(reader))[0] == status
    assert await at_eof(reader)
    writer.close()


async def test_echo_bytes_and_chunked_bodies_are_exact(backend):
    size = 1048576
    response = await AsyncHTTPClient().fetch(f"{backend.url}/bytes/{size}")
    assert len(response.body) == size and response.headers["Content-Length"] == str(size)
    assert hashlib.sha256(response.body).hexdigest() == echo.pattern_sha256(size)

    reader, writer = await connect(backend)
    writer.write(b"GET /chunked/1000003 HTTP/1.1\r\nHost: h\r\n\r\n")
    _, headers, body = await read_response(reader)
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert hashlib.sha256(body).hexdigest() == echo.pattern_sha256(1000003)
    writer.write(b"GET /eof/70000 HTTP/1.1\r\nHost: h\r\n\r\n")
    _, headers, body = await read_response(reader)  # reads to EOF: no length, not chunked
    assert headers["connection"] == "close" and "transfer-encoding" not in headers
    assert hashlib.sha256(body).hexdigest() == echo.pattern_sha256(70000)
    writer.close()


async def test_echo_slow_and_close(backend):
    reader, writer = await connect(backend)
    started = time.monotonic()
    writer.write(b"GET /slow/200 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    assert time.monotonic() - started >= 0.2
    writer.write(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await at_eof(reader)
    writer.close()


async def test_echo_on_a_unix_socket(tmp_path):
    path = str(tmp_path / "echo.sock")
    running = await echo.start(unix=path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET /u HTTP/1.1\r\nHost: h\r\n\r\n")
        info = json.loads((await read_response(reader))[2])
        assert info["path"] == "/u" and info["peer"] is None
        writer.close()
    finally:
        await running.stop()
    assert not os.path.exists(path)


async def test_sse_events_arrive_spread_in_time():
    running = await sse.start()
    arrivals: list[tuple[float, bytes]] = []
    try:
        await AsyncHTTPClient().fetch(
            f"{running.url}/events?count=5&interval=100",
            streaming_callback=lambda chunk: arrivals.append((time.monotonic(), chunk)),
            request_timeout=10,
        )
    finally:
        await running.stop()
    events = [e for _, chunk in arrivals for e in chunk.decode().split("\n\n") if e]
    assert [e.splitlines()[0] for e in events] == [f"id: {i}" for i in range(5)]
    # Each event was flushed on its own: the first arrived long before the last.
    assert len(arrivals) == 5
    assert arrivals[-1][0] - arrivals[0][0] >= 0.3


async def test_ws_negotiates_subprotocol_and_echoes_a_1mib_binary_message(ws_backend):
    url = f"ws://127.0.0.1:{ws_backend.port}/user/x/api/kernels/k/channels"
    conn = await websocket_connect(url, subprotocols=["unknown", "chat", "v1.kernel.websocket.jupyter.org"])
    hello = json.loads(await conn.read_message())
    assert hello["subprotocol"] == conn.selected_subprotocol == "chat"
    assert hello["path"] == "/user/x/api/kernels/k/channels"
    payload = os.urandom(1 << 20)
    await conn.write_message(payload, binary=True)
    assert await conn.read_message() == payload
    await conn.write_message("héllo")
    assert await conn.read_message() == "héllo"
    conn.close()


async def test_ws_has_no_message_size_cap(ws_backend):
    # Tornado's default cap is 10 MiB; the backend lifts it, so only the proxy can impose one.
    conn = await websocket_connect(f"ws://127.0.0.1:{ws_backend.port}/", max_message_size=1 << 25)
    await conn.read_message()
    payload = os.urandom(12 << 20)
    await conn.write_message(payload, binary=True)
    assert await conn.read_message() == payload
    conn.close()


async def test_ws_selects_no_subprotocol_unless_allowed_and_reports_headers(ws_backend):
    request = HTTPRequest(f"ws://127.0.0.1:{ws_backend.port}/ws", headers={"X-Probe": "42"})
    conn = await websocket_connect(request, subprotocols=["other"])
    hello = json.loads(await conn.read_message())
    assert hello["subprotocol"] is None and conn.selected_subprotocol is None
    assert ["X-Probe", "42"] in hello["headers"]
    conn.close()

    response = await AsyncHTTPClient().fetch(f"{ws_backend.url}/headers", headers={"X-Probe": "43"})
    plain = json.loads(response.body)
    assert plain["path"] == "/headers" and ["X-Probe", "43"] in plain["headers"]


async def test_slow_reader_reads_at_the_given_rate(backend):
    size, rate = 256 * 1024, 1024 * 1024
    result = await slow_read(f"{backend.url}/bytes/{size}", rate, timeout=30)
    assert (result.status, result.body_bytes, result.complete) == (200, size, True)
    assert result.sha256 == echo.pattern_sha256(size)
    assert result.seconds >= 0.9 * size / rate

    chunked = await slow_read(f"{backend.url}/chunked/{size}", 50 * rate, timeout=30)
    assert chunked.body_bytes == size and chunked.sha256 == echo.pattern_sha256(size)

    cut = await slow_read(f"{backend.url}/bytes/{size}", rate, stop_after=1000, timeout=30)
    assert (cut.body_bytes, cut.complete) == (1000, False)


@pytest.mark.parametrize("name", ["echo", "sse", "ws_echo"])
async def test_servers_run_from_the_command_line(name):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(RESOURCES / f"{name}.py"), "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith(f"{name}: listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/?count=1", request_timeout=10)
        assert response.code == 200
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
