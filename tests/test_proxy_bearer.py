"""The proxy's second way into a container: a page's credential from a trusted origin (proxy.bearer, issue 16).
Small real servers behind a real proxy; tests/test_binder_build.py and tests/test_browser_thebe.py run it with
the whole service, Jupyter and Thebe."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from proxy.bearer import Bearer, credential, without_token
from proxy.http import Response
from proxy.origin import OriginPolicy
from proxy.server import Proxy
from tests.httpwire import request

PAGE = "https://course.example"
TOKEN = "c0ffee" * 8
DENIED = Response(403, "not yours")  # what the cookie's way answers a request without the cookie


@pytest.fixture
async def embedded(backend, ws_backend):
    """'/user/a' (echo) and '/user/ws' (WebSocket echo), guarded like containers (and, like them, untrusted:
    proxy.untrusted), handed to a page on PAGE."""
    p = Proxy(port=0)
    policy = OriginPolicy([PAGE])
    for prefix, target in (("/user/a", backend.url), ("/user/ws", ws_backend.url), ("/user/b", backend.url)):
        route = p.routes.add(prefix, target, origin_policy=policy, authorize=lambda head: DENIED,
                             headers={"Authorization": "token server-side-secret"}, untrusted=True)
        if prefix != "/user/b":
            route.bearer = Bearer(TOKEN, policy, opener=f"/embedded{prefix.removeprefix('/user')}")
    await p.start()
    yield p
    await p.stop()


def echoed(resp) -> dict[str, str]:
    return {name.lower(): value for name, value in resp.json()["headers"]}


@pytest.mark.parametrize(("given", "found"), [
    ({"Authorization": f"token {TOKEN}"}, TOKEN),
    ({"Authorization": f"Bearer {TOKEN}"}, TOKEN),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
    ({}, None),
])
def test_the_credential_is_read_from_the_header(given, found):
    headers = [(k.encode(), v.encode()) for k, v in given.items()]
    assert credential(headers, b"") == (found.encode() if found else None)


def test_the_credential_is_read_from_the_query_and_taken_out_of_it():
    assert credential([], b"?session_id=s&token=abc") == b"abc"
    assert credential([], b"?mytoken=abc") is None
    assert without_token(b"?session_id=s&token=abc") == b"?session_id=s"
    assert without_token(b"?token=abc") == b""
    assert without_token(b"?token=a&x=1&token=b") == b"?x=1"
    assert without_token(b"?1796037119934") == b"?1796037119934"


async def test_a_trusted_pages_request_with_the_credential_reaches_the_container_as_the_server_itself(embedded):
    route = embedded.routes.get("/user/a")
    resp = await request(embedded.bound_port, "POST", "/user/a/api/sessions?1796037119934",
                         headers={"Origin": PAGE, "Authorization": f"token {TOKEN}"}, body=b"{}")
    assert resp.status == 200 and resp.header("Access-Control-Allow-Origin") == PAGE
    assert "Origin" in resp.header("Vary")
    seen = echoed(resp)
    assert seen["authorization"] == "token server-side-secret"  # the page's credential never reaches it
    assert resp.json()["query"] == "1796037119934" and route.requests == 1

    # ?token= on a WebSocket, as Thebe opens the kernel's: taken out of the query before the server sees it.
    url = f"ws://127.0.0.1:{embedded.bound_port}/user/ws/api/kernels/k/channels?session_id=s&token={TOKEN}"
    conn = await websocket_connect(HTTPRequest(url, headers={"Origin": PAGE}))
    await conn.read_message()
    await conn.write_message("hi")
    assert await conn.read_message() == "hi"
    conn.close()


async def test_the_proxy_answers_a_trusted_pages_preflight_and_no_one_elses(embedded):
    asking = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    ok = await request(embedded.bound_port, "OPTIONS", "/user/a/api/sessions?1", headers={"Origin": PAGE, **asking})
    assert ok.status == 204 and ok.header("Access-Control-Allow-Origin") == PAGE
    assert "authorization" in ok.header("Access-Control-Allow-Headers")
    assert "POST" in ok.header("Access-Control-Allow-Methods")
    assert embedded.routes.get("/user/a").requests == 0  # answered here, never relayed
    other = await request(embedded.bound_port, "OPTIONS", "/user/a/api/sessions?1",
                          headers={"Origin": "https://elsewhere.example", **asking})
    assert other.header("Access-Control-Allow-Origin") is None and other.status == 403


@pytest.mark.parametrize(("headers", "why"), [
    ({"Origin": "https://elsewhere.example", "Authorization": f"token {TOKEN}"}, "an origin not trusted"),
    ({"Authorization": f"token {TOKEN}"}, "no origin: no browser page of a trusted site"),
    ({"Sec-Fetch-Site": "cross-site", "Authorization": f"token {TOKEN}"}, "a cross-site request"),
    ({"Origin": PAGE, "Authorization": "token " + "0" * 48}, "another credential"),
    ({"Origin": PAGE}, "no credential"),
])
async def test_everything_else_is_refused(embedded, headers, why):
    resp = await request(embedded.bound_port, "GET", "/user/a/api/kernels", headers=headers)
    assert resp.status == 403, why
    assert resp.header("Access-Control-Allow-Origin") is None
    assert embedded.routes.get("/user/a").requests == 0


async def test_the_credential_opens_only_its_own_route(embedded):
    # /user/b has no bearer (a visitor's container): the page's credential is nothing there.
    resp = await request(embedded.bound_port, "GET", "/user/b/api/kernels",
                         headers={"Origin": PAGE, "Authorization": f"token {TOKEN}"})
    assert resp.status == 403 and resp.body == b"not yours"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(
            f"ws://127.0.0.1:{embedded.bound_port}/user/ws/api/kernels/k/channels?token={'0' * 48}",
            headers={"Origin": PAGE}))
    assert refused.value.code == 403


async def test_a_tab_opened_with_the_credential_goes_to_the_service_to_become_a_cookie(embedded):
    navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site"}
    resp = await request(embedded.bound_port, "GET", f"/user/a/lab/tree/x.ipynb?token={TOKEN}", headers=navigate)
    assert resp.status == 302
    assert resp.header("Location") == f"/embedded/a?token={TOKEN}&path=lab%2Ftree%2Fx.ipynb"
    wrong = await request(embedded.bound_port, "GET", f"/user/a/lab?token={'0' * 48}", headers=navigate)
    assert wrong.status == 403 and wrong.body == b"not yours"


async def test_the_containers_own_cors_headers_never_double_the_proxys(embedded, raw_backend):
    async def jupyter_with_allow_origin(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true"
                     b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]")
        await writer.drain()
        writer.close()

    route = embedded.routes.add("/user/c", await raw_backend(jupyter_with_allow_origin), authorize=lambda h: DENIED)
    route.bearer = Bearer(TOKEN, OriginPolicy([PAGE]))
    resp = await request(embedded.bound_port, "GET", "/user/c/api/kernels",
                         headers={"Origin": PAGE, "Authorization": f"token {TOKEN}"})
    assert resp.status == 200 and resp.body == b"[]"
    assert [v for k, v in resp.headers if k.lower() == "access-control-allow-origin"] == [PAGE]
    assert resp.header("Access-Control-Allow-Credentials") is None


async def test_the_kernel_socket_leaves_a_cookie_for_a_same_host_page_that_reconnects_without_the_token(embedded):
    # @jupyterlab/services appends ?token= to a reconnecting WebSocket only across host names: a page on
    # localhost:3000 beside nbpool on localhost:8000 reconnects with cookies alone.
    base = f"ws://127.0.0.1:{embedded.bound_port}/user/ws/api/kernels/k/channels"
    first = await websocket_connect(HTTPRequest(f"{base}?session_id=s&token={TOKEN}", headers={"Origin": PAGE}))
    cookie = first.headers.get("Set-Cookie")
    first.close()
    assert cookie == f"nbpool-embedded={TOKEN}; Path=/user/ws/; HttpOnly; SameSite=Lax"
    again = await websocket_connect(HTTPRequest(f"{base}?session_id=s2", headers={
        "Origin": PAGE, "Cookie": f"nbpool-embedded={TOKEN}; theme=dark"}))
    seen = json.loads(await again.read_message())["headers"]
    again.close()
    assert [v for k, v in seen if k.lower() == "cookie"] == ["theme=dark"]  # the credential stays with the proxy
    with pytest.raises(HTTPClientError) as refused:  # the page's origin is checked all the same
        await websocket_connect(HTTPRequest(base, headers={
            "Origin": "https://elsewhere.example", "Cookie": f"nbpool-embedded={TOKEN}"}))
    assert refused.value.code == 403
