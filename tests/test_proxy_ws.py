"""WebSockets through the proxy: the upgrade, the byte splice, half-close and many at once."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from proxy.server import Proxy
from tests.httpwire import Wire


@pytest.fixture
async def proxy(ws_backend):
    p = Proxy(port=0)
    p.routes.add("/", ws_backend.url)
    await p.start()
    yield p
    await p.stop()


async def connect(port: int, path: str = "/ws", **kwargs):
    conn = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}{path}", **kwargs.pop("request", {})),
                                   max_message_size=64 * 1024 * 1024, **kwargs)
    hello = json.loads(await conn.read_message())
    return conn, hello


async def test_echo_text_and_binary_with_no_size_cap(proxy):
    conn, hello = await connect(proxy.bound_port)
    assert hello["path"] == "/ws"
    await conn.write_message("hello through the proxy")
    assert await conn.read_message() == "hello through the proxy"
    big = os.urandom(16 * 1024 * 1024)
    await conn.write_message(big, binary=True)
    assert await conn.read_message() == big
    conn.close()


async def test_subprotocol_extensions_and_headers_reach_the_backend(proxy):
    conn, hello = await connect(
        proxy.bound_port, "/user/x/api/kernels/k1/channels?session_id=s",
        subprotocols=["v1.kernel.websocket.jupyter.org", "other"],
        compression_options={},
        request={"headers": {"Origin": "http://workshop.example", "Cookie": "nbpool=abc"}},
    )
    assert conn.selected_subprotocol == "v1.kernel.websocket.jupyter.org"
    assert hello["subprotocol"] == "v1.kernel.websocket.jupyter.org"
    seen = {name.lower(): value for name, value in hello["headers"]}
    offered = [p.strip() for p in seen["sec-websocket-protocol"].split(",")]
    assert offered == ["v1.kernel.websocket.jupyter.org", "other"]
    assert "permessage-deflate" in seen["sec-websocket-extensions"]
    assert seen["origin"] == "http://workshop.example"
    assert seen["cookie"] == "nbpool=abc"
    assert seen["upgrade"].lower() == "websocket"
    assert seen["connection"].lower() == "upgrade"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    # compression was negotiated end to end (the proxy does not touch frames)
    await conn.write_message("compressible " * 1000)
    assert await conn.read_message() == "compressible " * 1000
    conn.close()


async def test_route_counts_open_websockets_and_bytes(proxy):
    route = proxy.routes.default
    conn, _ = await connect(proxy.bound_port)
    assert route.websockets == 1 and proxy.stats.websockets_active == 1
    before_in, before_out = route.bytes_in, route.bytes_out
    await conn.write_message("x" * 5000)
    await conn.read_message()
    assert route.bytes_in - before_in >= 5000
    assert route.bytes_out - before_out >= 5000
    conn.close()
    for _ in range(100):
        if route.websockets == 0:
            break
        await asyncio.sleep(0.02)
    assert route.websockets == 0 and proxy.stats.websockets_active == 0
    assert proxy.stats.websockets_total == 1


async def test_hundred_concurrent_websockets(proxy):
    async def session(i: int) -> int:
        conn, _ = await connect(proxy.bound_port, f"/ws/{i}")
        for j in range(20):
            msg = f"{i}:{j}"
            await conn.write_message(msg)
            assert await conn.read_message() == msg
        conn.close()
        return i

    done = await asyncio.wait_for(asyncio.gather(*(session(i) for i in range(100))), 60)
    assert sorted(done) == list(range(100))


async def test_websocket_survives_route_changes(proxy, ws_backend):
    proxy.routes.add("/user/a", ws_backend.url)
    conn, _ = await connect(proxy.bound_port, "/user/a/channels")
    for i in range(50):
        proxy.routes.add(f"/user/b{i}", ws_backend.url)
        proxy.routes.remove(f"/user/b{i}")
    proxy.routes.remove("/user/a")  # removing its own route does not cut an open socket
    await conn.write_message("still here")
    assert await conn.read_message() == "still here"
    conn.close()


async def test_backend_refusing_the_upgrade(proxy, raw_backend):
    async def refuse(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
        await writer.drain()

    proxy.routes.add("/no", await raw_backend(refuse))
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /no/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 403 and resp.body == b"nope"
    assert await wire.closed(5)


async def test_half_close_is_passed_on(proxy, raw_backend):
    """After the 101, a client's FIN reaches the backend, and the backend can still answer."""
    got_eof = asyncio.Event()

    async def upgrade_then_echo_until_eof(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n")
        received = await reader.read()  # until the client's FIN
        got_eof.set()
        writer.write(b"got:" + received + b":bye")
        await writer.drain()
        writer.close()

    proxy.routes.add("/raw", await raw_backend(upgrade_then_echo_until_eof))
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /raw HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\nearly-bytes;")
    resp = await wire.response()
    assert resp.status == 101
    await wire.send(b"later-bytes")
    wire.writer.write_eof()
    await asyncio.wait_for(got_eof.wait(), 5)
    rest = wire.upgraded + await wire.read_all(5)
    assert rest.endswith(b"got:early-bytes;later-bytes:bye")


async def test_upgrade_to_a_refused_backend_is_an_error_page(proxy):
    proxy.routes.add("/dead", "http://127.0.0.1:9")
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /dead/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 503
    assert await wire.closed(5)
