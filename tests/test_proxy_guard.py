"""The proxy as the security boundary: origin checks, body and head limits, stalls, per-address caps,
failing callbacks. Small real servers behind a real proxy; tests/test_security.py covers the whole service."""

from __future__ import annotations

import asyncio
import resource
import socket

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from proxy.exchange import LINGER_QUIET
from proxy.http import Response
from proxy.origin import OriginPolicy, normalize_origin
from proxy.server import Proxy
from tests.httpwire import Wire, request
from tests.service import vm_kib

EMBEDDER = "https://embed.example"


@pytest.fixture
async def guarded(backend, ws_backend):
    """'/' unguarded; '/user/a' (echo) and '/user/ws' (WebSocket echo) guarded like container routes."""
    p = Proxy(port=0)
    policy = OriginPolicy([EMBEDDER])
    p.routes.add("/", backend.url)
    p.routes.add("/user/a", backend.url, origin_policy=policy)
    p.routes.add("/user/ws", ws_backend.url, origin_policy=policy)
    await p.start()
    yield p
    await p.stop()


def echoed_headers(resp) -> dict[str, str]:
    return {name.lower(): value for name, value in resp.json()["headers"]}


# --- origin ------------------------------------------------------------------------------------------

def test_origins_compare_scheme_host_and_port_without_default_ports():
    assert normalize_origin("HTTP://Proxy.Test:80") == b"http://proxy.test"
    assert normalize_origin("https://proxy.test:443/") == b"https://proxy.test"
    assert normalize_origin("http://proxy.test:8000") == b"http://proxy.test:8000"
    assert normalize_origin("https://proxy.test:80") == b"https://proxy.test:80"


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "http://proxy.test.evil.example"}, 403),
    ({"Origin": "https://proxy.test"}, 403),  # another scheme is another origin
    ({"Origin": "http://proxy.test:8080"}, 403),  # so is another port on the same host
    ({"Origin": "null"}, 403),  # sandboxed frames and file: pages
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Origin": "http://proxy.test"}, 200),
    ({"Origin": "HTTP://PROXY.TEST:80"}, 200),
    ({"Origin": EMBEDDER}, 200),  # allowed by the operator (WebApp.cors_origin)
    ({"Sec-Fetch-Site": "same-origin"}, 200),
    ({}, 200),  # not a browser: it cannot be made to send the visitor's cookie
])
async def test_state_changing_requests_need_the_services_own_origin(guarded, headers, status):
    route = guarded.routes.get("/user/a")
    before = route.last_activity
    resp = await request(guarded.bound_port, "POST", "/user/a/api/contents", headers=headers, body=b"{}")
    assert resp.status == status
    if status == 403:
        assert b"another site" in resp.body
        assert route.requests == 0 and route.last_activity == before  # never reached, not activity
    else:
        assert resp.json()["method"] == "POST" and route.requests == 1


async def test_safe_methods_and_unguarded_routes_pass_any_origin(guarded):
    foreign = {"Origin": "http://evil.example"}
    assert (await request(guarded.bound_port, "GET", "/user/a/tree", headers=foreign)).status == 200
    assert (await request(guarded.bound_port, "POST", "/spawn", headers=foreign, body=b"x")).status == 200
    for method in ("PUT", "PATCH", "DELETE"):
        assert (await request(guarded.bound_port, method, "/user/a/api/x", headers=foreign)).status == 403


async def test_websocket_upgrades_need_the_services_own_origin(guarded):
    url = f"ws://127.0.0.1:{guarded.bound_port}/user/ws/api/kernels/k/channels"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(url, headers={"Origin": "http://evil.example"}))
    assert refused.value.code == 403
    own = f"http://127.0.0.1:{guarded.bound_port}"
    conn = await websocket_connect(HTTPRequest(url, headers={"Origin": own}))
    await conn.read_message()  # the echo's hello
    await conn.write_message("hi")
    assert await conn.read_message() == "hi"
    conn.close()


async def test_behind_a_trusted_balancer_the_origin_is_the_forwarded_one(guarded):
    guarded.trust_forwarded = True  # 127.0.0.1 is a trusted proxy by default
    forwarded = {"X-Forwarded-Host": "workshop.example.org", "X-Forwarded-Proto": "https"}
    ok = await request(guarded.bound_port, "POST", "/user/a/api/x", host="10.0.0.5:8000",
                       headers={**forwarded, "Origin": "https://workshop.example.org"})
    assert ok.status == 200
    internal = await request(guarded.bound_port, "POST", "/user/a/api/x", host="10.0.0.5:8000",
                             headers={**forwarded, "Origin": "http://10.0.0.5:8000"})
    assert internal.status == 403


async def test_a_refused_request_never_counts_as_activity(backend):
    p = Proxy(port=0)
    route = p.routes.add("/user/b", backend.url, authorize=lambda head: Response(403, "no"))
    await p.start()
    try:
        before = route.last_activity
        await asyncio.sleep(0.01)
        for _ in range(3):
            assert (await request(p.bound_port, "POST", "/user/b/api/x", body=b"x" * 100)).status == 403
        assert route.last_activity == before and route.requests == 0 and route.bytes_in == 0
    finally:
        await p.stop()


# --- bodies, heads and stalls -----------------------------------------------------------------------------

@pytest.fixture
async def small_bodies(backend):
    p = Proxy(port=0)
    route = p.routes.add("/", backend.url, max_body=1000)
    await p.start()
    yield p, route
    await p.stop()


async def test_a_body_over_the_routes_limit_is_refused_before_it_is_relayed(small_bodies):
    p, route = small_bodies
    assert (await request(p.bound_port, "POST", "/api/x", body=b"x" * 1000)).json()["body_length"] == 1000
    wire = await Wire.open(p.bound_port)
    await wire.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 4096)
    resp = await wire.response()
    assert resp.status == 413
    # The rest of the body is read and dropped until the visitor goes quiet (LINGER_QUIET), then it is closed.
    assert await wire.closed(LINGER_QUIET + 3)
    assert route.requests == 1  # only the first one reached the backend


async def test_a_refused_upload_gets_its_answer_never_a_reset(small_bodies):
    # Closing with the body still arriving makes the kernel reset the connection: the sender's next write fails
    # and a browser shows "connection reset" instead of the page. The proxy answers, half-closes and drops the
    # rest, so the whole 32 MiB goes, as a browser sends it, and the 413 is read after it, then a clean end.
    p, route = small_bodies
    size = 32 << 20
    wire = await Wire.open(p.bound_port)
    await wire.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // 65536):
        await wire.send(b"x" * 65536)  # (a reset fails this)
    resp = await wire.response()
    assert resp.status == 413 and resp.header("connection") == "close", resp.headers
    assert await asyncio.wait_for(wire.reader.read(), 10) == b""  # a FIN (a reset raises ConnectionResetError)
    assert route.requests == 0


async def test_a_refused_upload_that_never_ends_is_closed_after_linger_time(small_bodies, monkeypatch):
    import proxy.server

    monkeypatch.setattr(proxy.server, "LINGER_TIME", 1.5)  # (10 s in service: a trickle can hold no more)
    p, _ = small_bodies
    wire = await Wire.open(p.bound_port)
    await wire.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 60000000\r\n\r\n")
    assert (await wire.response()).status == 413
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionError):  # a byte every 0.3 s, never quiet long enough: cut off at LINGER_TIME
        while asyncio.get_running_loop().time() - t0 < 10:
            await wire.send(b"x")
            await asyncio.sleep(0.3)
    assert asyncio.get_running_loop().time() - t0 < 5


async def test_a_chunked_body_over_the_limit_is_cut_off(small_bodies):
    p, _ = small_bodies
    wire = await Wire.open(p.bound_port)
    await wire.send(b"POST /api/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(4):
        await wire.send(b"258\r\n" + b"y" * 600 + b"\r\n")
    assert await wire.closed(5)
    assert b" 413 " in wire.raw or wire.raw == b""  # answered 413, or cut off mid-relay


async def test_a_body_that_stops_arriving_gets_408(proxy):
    proxy.body_timeout = 0.5
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"z" * 10)
    resp = await wire.response(timeout=5)
    assert resp.status == 408 and await wire.closed(3)
    assert proxy.stats.timeouts >= 1


async def test_a_visitor_who_stops_reading_is_dropped(proxy):
    proxy.send_timeout = 0.5
    _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.bound_port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(b"GET /bytes/200000000 HTTP/1.1\r\nHost: h\r\n\r\n")
    # Never read: the proxy's buffer fills, and after send_timeout it lets go of both ends.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while proxy.state.clients and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert not proxy.state.clients and proxy.stats.timeouts >= 1
    writer.close()


async def test_an_endless_response_head_is_cut_off_with_502(raw_backend):
    async def endless_head(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(100_000):  # 100 MB of header lines, if nobody stopped it
                writer.write(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000))
                await writer.drain()
        except ConnectionError:
            pass

    async def one_endless_value(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        try:
            for _ in range(100_000):
                writer.write(b"b" * 1000)
                await writer.drain()
        except ConnectionError:
            pass

    p = Proxy(port=0, max_head_size=64 * 1024)
    p.routes.add("/lines", await raw_backend(endless_head))
    p.routes.add("/value", await raw_backend(one_endless_value))
    await p.start()
    try:
        before = vm_kib("self", "VmRSS")
        for path in ("/lines", "/value"):
            resp = await request(p.bound_port, "GET", path)
            assert resp.status == 502
        # The proxy kept at most one head's worth (before: +300 MiB in 20 s).
        assert vm_kib("self", "VmRSS") - before < 20 * 1024
    finally:
        await p.stop()


# --- connection counts --------------------------------------------------------------------------------------

async def test_one_address_cannot_take_every_connection(proxy):
    proxy.max_connections_per_address = 3
    held = [await Wire.open(proxy.bound_port) for _ in range(3)]
    extra = await Wire.open(proxy.bound_port)
    assert b"503" in await extra.read_all(5) and b"from your address" in extra.raw
    await held[0].close()
    await asyncio.sleep(0.1)
    fresh = await Wire.open(proxy.bound_port)
    await fresh.send(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await fresh.response()).status == 200
    for wire in [*held[1:], fresh]:
        await wire.close()
    await asyncio.sleep(0.1)
    assert proxy.state.per_network == {}  # every connection counted out again


async def test_websockets_count_against_the_connection_caps(ws_backend):
    p = Proxy(port=0, max_connections_per_address=2)
    p.routes.add("/", ws_backend.url)
    await p.start()
    try:
        url = f"ws://127.0.0.1:{p.bound_port}/ws"
        first = await websocket_connect(url)
        second = await websocket_connect(url)
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(url)
        assert refused.value.code == 503
        first.close()
        second.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while p.state.per_network and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert p.state.per_network == {} and not p.state.tunnels
        third = await websocket_connect(url)
        third.close()
    finally:
        await p.stop()


async def test_max_connections_fits_the_open_file_limit():
    p = Proxy(port=0, max_connections=10_000_000)
    await p.start()
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert p.max_connections < 10_000_000
        assert soft == resource.RLIM_INFINITY or 2 * p.max_connections + 1024 <= soft
    finally:
        await p.stop()


# --- failures of our own ---------------------------------------------------------------------------------------

async def test_a_failing_callback_answers_500_and_closes_even_when_pipelined(backend):
    def authorize(head):
        if head.path.endswith(b"/boom"):
            raise RuntimeError("a bug in a callback")
        return None

    p = Proxy(port=0)
    p.routes.add("/user/c", backend.url, authorize=authorize)
    await p.start()
    try:
        wire = await Wire.open(p.bound_port)
        await wire.send(b"GET /user/c/ok HTTP/1.1\r\nHost: h\r\n\r\nGET /user/c/boom HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await wire.response()).status == 200
        assert (await wire.response()).status == 500
        assert await wire.closed(3)
        assert (await request(p.bound_port, "GET", "/user/c/ok")).status == 200  # the proxy lives on
    finally:
        await p.stop()


async def test_forwarding_headers_that_tornado_believes_are_replaced(proxy):
    resp = await request(proxy.bound_port, "GET", "/", headers={"X-Scheme": "https", "X-Forwarded-Ssl": "on",
                                                                 "X-Forwarded-Proto": "https"})
    seen = echoed_headers(resp)
    assert "x-scheme" not in seen and "x-forwarded-ssl" not in seen
    assert seen["x-forwarded-proto"] == "http"


async def test_visitor_connections_are_probed_so_vanished_peers_are_found(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await wire.response()).status == 200
    (client,) = proxy.state.clients
    sock = client.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    await wire.close()
