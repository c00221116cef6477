"""The proxy's HTTP/1.1 relay, against small real servers (tests/resources)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os

import pytest

from proxy.http import Response
from proxy.server import Proxy
from tests.httpwire import Wire, request
from tests.resources import echo, sse


def headers_of(echoed: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echoed["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


# --- routing ---------------------------------------------------------------------------

async def test_routes_by_longest_whole_segment_prefix(proxy, backend2):
    specific = proxy.routes.add("/user/abc", backend2.url)
    default = proxy.routes.default
    resp = await request(proxy.bound_port, path="/user/abc/tree?x=1")
    assert resp.status == 200 and resp.json()["target"] == "/user/abc/tree?x=1"
    assert (specific.requests, default.requests) == (1, 0)
    # /user/abcd is not under /user/abc: it goes to the default route
    assert (await request(proxy.bound_port, path="/user/abcd/tree")).status == 200
    assert (specific.requests, default.requests) == (1, 1)
    assert (await request(proxy.bound_port, path="/user/abc")).status == 200
    assert (specific.requests, default.requests) == (2, 1)


async def test_no_route_is_a_404_page(backend):
    p = Proxy(port=0)
    p.routes.add("/only", backend.url)
    await p.start()
    try:
        resp = await request(p.bound_port, path="/elsewhere")
        assert resp.status == 404
        assert b"Nothing is served" in resp.body
        resp = await request(p.bound_port, path="/elsewhere", headers={"Accept": "application/json"})
        assert resp.status == 404 and resp.json()["status"] == 404
    finally:
        await p.stop()


async def test_unix_socket_target(tmp_path):
    sock = str(tmp_path / "echo.sock")
    running = await echo.start(unix=sock)
    p = Proxy(port=0)
    p.routes.add("/app", f"unix:{sock}")
    await p.start()
    try:
        resp = await request(p.bound_port, path="/app/hello")
        assert resp.status == 200 and resp.json()["path"] == "/app/hello"
    finally:
        await p.stop()
        await running.stop()


# --- keep-alive --------------------------------------------------------------------------

async def test_client_keepalive_across_routes_and_backend_reuse(proxy, backend2):
    proxy.routes.add("/two", backend2.url)
    wire = await Wire.open(proxy.bound_port)
    seen = []
    for i in range(6):
        path = "/two/x" if i % 2 else "/one/x"
        await wire.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        resp = await wire.response()
        assert resp.status == 200
        seen.append((path, resp.json()["request_number"]))
    await wire.close()
    # Each backend saw its requests on one kept-alive connection: numbers 1, 2, 3.
    assert [n for p, n in seen if p == "/one/x"] == [1, 2, 3]
    assert [n for p, n in seen if p == "/two/x"] == [1, 2, 3]


async def test_pipelined_requests_are_answered_in_order(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"".join(
        b"GET /p%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5)
    ) + b"POST /p5 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    paths = [(await wire.response()).json()["path"] for _ in range(6)]
    assert paths == [f"/p{i}" for i in range(6)]
    await wire.close()


async def test_connection_close_from_client(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 200 and resp.header("Connection") == "close"
    assert await wire.closed(5)


async def test_connection_close_from_backend(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 200
    # the client connection stays usable: the next request goes on a fresh backend connection
    await wire.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    resp = await wire.response()
    assert resp.json()["path"] == "/after" and resp.json()["request_number"] == 1
    await wire.close()


async def test_http10_client_gets_close(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /old HTTP/1.0\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 200 and resp.json()["path"] == "/old"
    assert await wire.closed(5)


async def test_client_half_close_still_gets_its_response(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /slow/200 HTTP/1.1\r\nHost: h\r\n\r\n")
    wire.writer.write_eof()
    resp = await wire.response()
    assert resp.status == 200
    assert await wire.closed(5)


# --- bodies ------------------------------------------------------------------------------

async def test_content_length_upload(proxy):
    body = os.urandom(3 * 1024 * 1024 + 17)
    resp = await request(proxy.bound_port, "POST", "/upload", body=body)
    assert resp.json()["body_length"] == len(body)
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_chunked_upload_with_trailers(proxy):
    wire = await Wire.open(proxy.bound_port)
    parts = [os.urandom(n) for n in (1, 100, 70000, 5)]
    await wire.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in parts:
        await wire.send(b"%x\r\n%s\r\n" % (len(part), part))
        await asyncio.sleep(0.01)
    await wire.send(b"0\r\nX-Trailer: dropped\r\n\r\n")
    resp = await wire.response()
    echoed = resp.json()
    assert echoed["body_length"] == sum(map(len, parts))
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert "transfer-encoding" in headers_of(echoed)
    await wire.close()


@pytest.mark.parametrize("kind", ["bytes", "chunked"])
async def test_download(proxy, kind):
    n = 20 * 1024 * 1024 + 3
    resp = await request(proxy.bound_port, path=f"/{kind}/{n}")
    assert resp.status == 200
    assert len(resp.body) == n
    assert hashlib.sha256(resp.body).hexdigest() == echo.pattern_sha256(n)
    if kind == "chunked":
        assert resp.header("Transfer-Encoding") == "chunked" and resp.header("Content-Length") is None
    else:
        assert resp.header("Content-Length") == str(n)


async def test_server_sent_events_are_not_buffered():
    running = await sse.start()
    p = Proxy(port=0)
    p.routes.add("/", running.url)
    await p.start()
    try:
        wire = await Wire.open(p.bound_port)
        await wire.send(b"GET /events?count=4&interval=300 HTTP/1.1\r\nHost: h\r\n\r\n")
        loop = asyncio.get_running_loop()
        arrivals = []
        got = b""
        while got.count(b"\n\n") < 4:
            data = await asyncio.wait_for(wire.reader.read(65536), 5)
            assert data
            got += data
            arrivals.extend([loop.time()] * data.count(b"\n\n"))
        # Four events 300 ms apart arrive spread over about 900 ms, not in one lump.
        assert arrivals[-1] - arrivals[0] > 0.6
        await wire.close()
    finally:
        await p.stop()
        await running.stop()


# --- framing -----------------------------------------------------------------------------

async def test_head_has_no_body_and_keeps_the_connection(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"HEAD /bytes/5000 HTTP/1.1\r\nHost: h\r\n\r\n")
    resp = await wire.response(head_only=True)
    assert resp.status == 200 and resp.header("Content-Length") == "5000"
    await wire.send(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    nxt = await wire.response()
    assert nxt.json()["path"] == "/next"
    assert b"\x00\x01\x02" not in wire.raw  # no body bytes of the HEAD leaked
    await wire.close()


@pytest.mark.parametrize("code", [204, 304])
async def test_bodiless_statuses(proxy, code):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /status/%d HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n" % code)
    first = await wire.response()
    assert first.status == code and first.body == b""
    assert (await wire.response()).json()["path"] == "/after"
    await wire.close()


async def test_expect_100_continue(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = await wire.response()
    assert interim.status == 100
    await wire.send(b"hello")
    final = await wire.response()
    assert final.status == 200 and final.json()["body_length"] == 5
    assert final.json()["continue_sent"] is True
    await wire.close()


async def test_backend_refusing_an_upload_early(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"POST /reject/413 HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
    resp = await wire.response()
    assert resp.status == 413
    assert await wire.closed(5)



async def test_backend_refusing_an_upload_sent_whole_is_answered_not_502(raw_backend):
    # Without Expect, the body keeps coming after the backend answered and closed: it meets a reset, the
    # proxy's next write to the backend fails, and the answer waiting unread in the socket is still relayed.
    async def refuses_at_the_head(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
        await writer.drain()
        writer.close()  # the body left unread: the kernel answers what follows with a reset

    p = Proxy(port=0)
    p.routes.add("/", await raw_backend(refuses_at_the_head))
    await p.start()
    body = b"\0" * (2 * 2**20)
    try:
        for _ in range(10):
            wire = await Wire.open(p.bound_port)
            await wire.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
            with contextlib.suppress(ConnectionError):
                await wire.send(body)
            resp = await wire.response()
            assert (resp.status, resp.body) == (401, b"no")
            await wire.close()
    finally:
        await p.stop()

# --- headers -----------------------------------------------------------------------------

async def test_hop_by_hop_headers_are_removed_and_host_kept(proxy):
    resp = await request(proxy.bound_port, path="/h", host="workshop.example:8000", headers={
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Proxy-Connection": "keep-alive",
        "Upgrade": "h2c",
        "X-End-To-End": "kept",
    })
    h = headers_of(resp.json())
    for gone in ("connection", "x-hop-secret", "keep-alive", "te", "proxy-authorization", "proxy-connection",
                 "upgrade"):
        assert gone not in h, gone
    assert h["x-end-to-end"] == ["kept"]
    assert h["host"] == ["workshop.example:8000"]


async def test_x_forwarded_headers_set_and_untrusted_ones_replaced(proxy):
    resp = await request(proxy.bound_port, path="/f", host="nb.example", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil", "Forwarded": "x"})
    h = headers_of(resp.json())
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["nb.example"]
    assert h["x-forwarded-port"] == [str(proxy.bound_port)]
    assert "forwarded" not in h


async def test_x_forwarded_trusted_from_configured_proxies(proxy):
    proxy.trust_forwarded = True  # 127.0.0.1 is in trusted_proxies by default
    resp = await request(proxy.bound_port, path="/f", host="nb.example", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    h = headers_of(resp.json())
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert h["x-real-ip"] == ["203.0.113.9"]  # the visitor, not the trusted balancer
    assert h["x-forwarded-proto"] == ["https"]
    proxy.trusted_proxies = ["10.0.0.0/8"]
    resp = await request(proxy.bound_port, path="/f", headers={"X-Forwarded-For": "203.0.113.9"})
    assert headers_of(resp.json())["x-forwarded-for"] == ["127.0.0.1"]


async def test_injected_headers_replace_the_clients(proxy, backend2):
    proxy.routes.add("/user/x", backend2.url, headers={"Authorization": "token route-secret"})
    resp = await request(proxy.bound_port, path="/user/x/api", headers={"Authorization": "token visitor-guess"})
    assert headers_of(resp.json())["authorization"] == ["token route-secret"]


# --- authorization -----------------------------------------------------------------------

async def test_authorize_allows_and_denies(proxy, backend2):
    seen = []

    def only_alice(head):
        seen.append(head.path)
        if head.cookie("who") == "alice":
            return None
        return Response(403, "<h1>not yours</h1>")

    proxy.routes.add("/user/alice", backend2.url, authorize=only_alice)
    denied = await request(proxy.bound_port, path="/user/alice/tree")
    assert denied.status == 403 and denied.body == b"<h1>not yours</h1>"
    allowed = await request(proxy.bound_port, path="/user/alice/tree", headers={"Cookie": "a=1; who=alice"})
    assert allowed.status == 200
    # a path through another prefix is normalised first and meets alice's check
    sneaky = await request(proxy.bound_port, path="/user/bob/../alice/tree")
    assert sneaky.status == 403
    sneaky = await request(proxy.bound_port, path="/user/bob/%2e%2e/alice/tree")
    assert sneaky.status == 403
    assert seen == [b"/user/alice/tree"] * 4
    # what reaches the backend is the normalised path
    ok = await request(proxy.bound_port, path="/x/../user/alice/t", headers={"Cookie": "who=alice"})
    assert ok.json()["path"] == "/user/alice/t"


# --- errors ------------------------------------------------------------------------------

async def test_refused_backend_is_503_html_or_json(proxy):
    proxy.routes.add("/gone", "http://127.0.0.1:9")  # discard port: nothing listens
    resp = await request(proxy.bound_port, path="/gone/x")
    assert resp.status == 503 and b"<!doctype html>" in resp.body
    resp = await request(proxy.bound_port, path="/gone/x", headers={"Accept": "application/json"})
    assert resp.status == 503 and resp.json()["error"] == "Service Unavailable"


async def test_backend_timeout_is_504(proxy):
    proxy.response_timeout = 0.5
    resp = await request(proxy.bound_port, path="/slow/3000")
    assert resp.status == 504


async def test_backend_reset_is_502(proxy, raw_backend):
    async def hang_up(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    proxy.routes.add("/reset", await raw_backend(hang_up))
    assert (await request(proxy.bound_port, path="/reset/x")).status == 502


async def test_garbage_from_backend_is_502(proxy, raw_backend):
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    proxy.routes.add("/junk", await raw_backend(garbage))
    assert (await request(proxy.bound_port, path="/junk")).status == 502


async def test_route_replaces_the_error_page(proxy):
    def ended(status, head):
        return Response(status, f"<p>Your session has ended ({status}).</p>")

    proxy.routes.add("/user/old", "http://127.0.0.1:9", error_page=ended)
    resp = await request(proxy.bound_port, path="/user/old/tree")
    assert resp.status == 503 and b"Your session has ended (503)" in resp.body


async def test_error_on_kept_alive_connection_keeps_it(proxy):
    proxy.routes.add("/gone", "http://127.0.0.1:9")
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /gone HTTP/1.1\r\nHost: h\r\n\r\nGET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await wire.response()).status == 503
    assert (await wire.response()).json()["path"] == "/fine"
    await wire.close()


# --- routes change under traffic ----------------------------------------------------------

async def test_routes_change_under_traffic(proxy, backend2):
    proxy.routes.add("/steady", backend2.url)
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /steady/chunked/%d HTTP/1.1\r\nHost: h\r\n\r\n" % (8 * 1024 * 1024))

    async def churn():
        for i in range(300):
            proxy.routes.add(f"/user/c{i}", backend2.url)
            if i % 3 == 0:
                proxy.routes.remove(f"/user/c{i - 3}")
            await asyncio.sleep(0)

    _, resp = await asyncio.gather(churn(), wire.response(timeout=30))
    assert resp.status == 200 and len(resp.body) == 8 * 1024 * 1024
    await wire.send(b"GET /steady/after HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await wire.response()).json()["path"] == "/steady/after"
    await wire.close()
    assert proxy.routes.get("/user/c299") is not None


async def test_activity_is_recorded_per_route(proxy, backend2):
    route = proxy.routes.add("/user/act", backend2.url)
    before = route.last_activity
    await asyncio.sleep(0.01)
    body = b"x" * 1000
    await request(proxy.bound_port, "POST", "/user/act/api", body=body)
    assert route.last_activity > before
    assert route.bytes_in == 1000
    assert route.bytes_out > 100
    assert route.requests == 1


# --- TLS -----------------------------------------------------------------------------------

async def test_tls_termination(backend, tmp_path):
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    p = Proxy(port=0, certfile=str(cert), keyfile=str(key))
    p.routes.add("/", backend.url)
    await p.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        wire = await Wire.open(p.bound_port, tls=ctx)
        await wire.send(b"GET /secure HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = await wire.response()
        assert resp.status == 200
        assert headers_of(resp.json())["x-forwarded-proto"] == ["https"]
        await wire.close()
    finally:
        await p.stop()


def test_tls_needs_both_files(tmp_path):
    p = Proxy(port=0, certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="certfile"):
        asyncio.run(p.start())


# --- the command line ---------------------------------------------------------------------

async def test_python_m_proxy_with_two_routes(backend, backend2, tmp_path):
    from tornado.websocket import websocket_connect

    from tests.resources import ws_echo

    ws = await ws_echo.start()
    proc = await asyncio.create_subprocess_exec(
        os.sys.executable, "-m", "proxy", "--port", "0", "--ip", "127.0.0.1", "--log-level", "INFO",
        "--route", f"/api={backend.url}", "--route", f"/ws={ws.url}", "--default-target", backend2.url,
        stderr=asyncio.subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "proxy exited early"
            if "proxy listening on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
        resp = await request(port, path="/api/thing")
        assert resp.json()["path"] == "/api/thing"
        conn = await websocket_connect(f"ws://127.0.0.1:{port}/ws/echo", subprotocols=["chat"])
        hello = json.loads(await conn.read_message())
        assert hello["path"] == "/ws/echo" and hello["subprotocol"] == "chat"
        await conn.write_message("ping")
        assert await conn.read_message() == "ping"
        conn.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        await ws.stop()
    assert proc.returncode == 0


async def test_python_m_proxy_rejects_a_bad_route():
    proc = await asyncio.create_subprocess_exec(
        os.sys.executable, "-m", "proxy", "--port", "0", "--route", "nothing-here",
        stderr=asyncio.subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(__file__)))
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode != 0
    assert b"nothing-here" in err
