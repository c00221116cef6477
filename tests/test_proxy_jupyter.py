"""The proxy in front of a real notebook container: token injection and the kernel WebSocket."""

from __future__ import annotations

import pytest

from loadtest.jupyter import KernelClient
from proxy.server import Proxy
from tests.httpwire import request

pytestmark = pytest.mark.docker


@pytest.fixture
async def proxied(notebook_server):
    p = Proxy(port=0)
    prefix = notebook_server.base_url.rstrip("/")
    p.routes.add(prefix, f"http://127.0.0.1:{notebook_server.port}",
                 headers={"Authorization": f"token {notebook_server.token}"})
    await p.start()
    yield p, f"http://127.0.0.1:{p.bound_port}{notebook_server.base_url}"
    await p.stop()


async def test_token_is_injected_so_the_visitor_needs_none(proxied, notebook_server):
    p, _ = proxied
    resp = await request(p.bound_port, path=notebook_server.base_url + "api/status")
    assert resp.status == 200
    assert "started" in resp.json()


async def test_kernel_websocket_v1_subprotocol_end_to_end(proxied):
    p, url = proxied
    client = KernelClient(url, headers={}, timeout=60)  # no token: the proxy adds it
    try:
        await client.start("python3")
        await client.execute("x = 21")
        result = await client.execute("print(x * 2)")
    finally:
        await client.shutdown()
    assert client.subprotocol == "v1.kernel.websocket.jupyter.org"
    assert result.status == "ok" and result.output.strip() == "42"
    route = p.routes.routes()[0]
    assert route.websockets == 0 or route.websockets == 1  # closing may still be in flight
    assert route.bytes_out > 0 and route.requests >= 2
