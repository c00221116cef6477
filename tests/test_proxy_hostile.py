"""Hostile and malformed input, limits and timeouts: answered 4xx or closed, never a crash or a leak."""

from __future__ import annotations

import asyncio

import pytest

from proxy.server import Proxy
from tests.httpwire import Wire, request

H = b"Host: h\r\n"
TE = b"Transfer-Encoding: chunked\r\n"

# Each entry is sent on its own connection; none may reach the backend as a valid request.
CORPUS: list[tuple[str, bytes]] = [
    ("garbage", b"GARBAGE\r\n\r\n"),
    ("method only", b"GET\r\n\r\n"),
    ("http/0.9", b"GET /\r\n\r\n"),
    ("unknown version", b"GET / HTTP/9.9\r\n" + H + b"\r\n"),
    ("no version", b"GET / \r\n" + H + b"\r\n"),
    ("extra token after version", b"GET / HTTP/1.1 x\r\n" + H + b"\r\n"),
    ("missing host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("cl and te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n" + TE + b"\r\n0\r\n\r\n"),
    ("te and cl", b"POST / HTTP/1.1\r\n" + H + TE + b"Content-Length: 4\r\n\r\n0\r\n\r\n"),
    ("duplicate cl differing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("duplicate cl same", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    ("cl list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc"),
    ("negative cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -3\r\n\r\nabc"),
    ("plus cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc"),
    ("hex cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc"),
    ("spaced cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nabc"),
    ("huge cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nabc"),
    ("te gzip chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("te chunked identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("te identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nabc"),
    ("te xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("two te", b"POST / HTTP/1.1\r\n" + H + TE + TE + b"\r\n0\r\n\r\n"),
    ("te with space before colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("cl with space before colon", b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 3\r\n\r\nabc"),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n"),
    ("obs-fold tab", b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n\tb\r\n\r\n"),
    ("bad header name", b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n"),
    ("empty header name", b"GET / HTTP/1.1\r\n" + H + b": value\r\n\r\n"),
    ("nul in header", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("bare cr in header", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    ("bare lf lines", b"GET / HTTP/1.1\nHost: h\n\n"),
    ("cr only line end", b"GET / HTTP/1.1\r\r\n" + H + b"\r\n"),
    ("bad chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ("overflowing chunk size", b"POST / HTTP/1.1\r\n" + H + TE + b"\r\nfffffffffffffffffffff\r\n"),
    ("negative chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n"),
    ("chunk data without crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n"),
    ("nul in chunk extension", b"POST / HTTP/1.1\r\n" + H + TE + b"\r\n3;a=\x00\r\nabc\r\n0\r\n\r\n"),
    ("absolute-form", b"GET http://evil.example/ HTTP/1.1\r\n" + H + b"\r\n"),
    ("absolute-form https", b"GET https://evil.example/x HTTP/1.1\r\n" + H + b"\r\n"),
    ("connect", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"),
    ("fragment", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n"),
    ("climbs above root", b"GET /../etc/passwd HTTP/1.1\r\n" + H + b"\r\n"),
    ("encoded climb", b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" + H + b"\r\n"),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n"),
    ("control char in target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n"),
    ("unknown method", b"FROB / HTTP/1.1\r\n" + H + b"\r\n"),
    ("lowercase method", b"get / HTTP/1.1\r\n" + H + b"\r\n"),
    ("binary method", b"G\xffT / HTTP/1.1\r\n" + H + b"\r\n"),
    ("huge target", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n" + H + b"\r\n"),
    ("huge header", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 100_000 + b"\r\n\r\n"),
    ("many headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n"),
    ("tls hello to plain port", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40),
    ("upgrade via connect", b"CONNECT / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
    ("http/1.0 chunked", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
]


async def wait_until(predicate, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def send_hostile(port: int, data: bytes) -> tuple[int | None, bool]:
    """Send ``data``; return (status of the answer or None, whether the connection then closed)."""
    wire = await Wire.open(port)
    try:
        try:
            await wire.send(data)
        except ConnectionError:
            return None, True
        try:
            resp = await wire.response(timeout=5)
        except ConnectionError:
            return None, True
        return resp.status, await wire.closed(3)
    finally:
        await wire.close()


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 50
    assert len({name for name, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
async def test_hostile_request_is_refused(proxy, name, data):
    status, closed = await send_hostile(proxy.bound_port, data)
    assert status is None or 400 <= status < 500, f"{name}: answered {status}"
    assert closed, f"{name}: connection left open after a refused request"
    # and the proxy still serves normal traffic
    ok = await request(proxy.bound_port, path="/still-fine")
    assert ok.status == 200
    assert await wait_until(lambda: not proxy.state.clients), "a client connection leaked"
    assert not proxy.targets.busy, "a backend connection leaked"


async def test_whole_corpus_at_once_then_normal_traffic(proxy):
    results = await asyncio.gather(*(send_hostile(proxy.bound_port, data) for _, data in CORPUS * 4))
    assert all(status is None or 400 <= status < 500 for status, _ in results)
    assert all(closed for _, closed in results)
    oks = await asyncio.gather(*(request(proxy.bound_port, path=f"/ok/{i}") for i in range(50)))
    assert {r.status for r in oks} == {200}
    assert await wait_until(lambda: not proxy.state.clients)
    assert proxy.stats.bad_requests >= len(CORPUS)


async def test_head_too_large_is_431(proxy):
    proxy.max_head_size = 4096
    resp = await request(proxy.bound_port, path="/x", headers={"X-Big": "b" * 5000})
    assert resp.status == 431
    assert (await request(proxy.bound_port, path="/x", headers={"X-Small": "s" * 3000})).status == 200


async def test_slowloris_gets_408_and_is_closed(proxy):
    proxy.head_timeout = 0.5
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET / HTTP/1.1\r\n")
    for _ in range(3):  # dribble a header every so often, never finishing the head
        await asyncio.sleep(0.3)
        try:
            await wire.send(b"X-Slow: 1\r\n")
        except ConnectionError:
            break
    resp = await wire.response(timeout=5)
    assert resp.status == 408
    assert await wire.closed(3)


async def test_silent_connection_is_closed(proxy):
    proxy.head_timeout = 0.5
    wire = await Wire.open(proxy.bound_port)
    assert await wire.closed(5)
    assert b"408" in wire.raw


async def test_idle_keepalive_connection_is_closed(proxy):
    proxy.keepalive_timeout = 0.5
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await wire.response()).status == 200
    assert await wire.closed(5)
    assert await wait_until(lambda: not proxy.state.clients)


async def test_connection_limit(proxy):
    proxy.max_connections = 5
    held = [await Wire.open(proxy.bound_port) for _ in range(5)]
    await wait_until(lambda: len(proxy.state.clients) == 5)
    extra = await Wire.open(proxy.bound_port)
    resp = await extra.response()
    assert resp.status == 503 and resp.header("Retry-After") == "5"
    assert await extra.closed(3)
    for wire in held:
        await wire.close()
    await wait_until(lambda: not proxy.state.clients)
    assert (await request(proxy.bound_port, path="/after")).status == 200


async def test_client_vanishing_mid_download_frees_everything(proxy):
    wire = await Wire.open(proxy.bound_port)
    await wire.send(b"GET /bytes/500000000 HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.wait_for(wire.reader.read(65536), 5)
    wire.writer.transport.abort()
    assert await wait_until(lambda: not proxy.state.clients and not proxy.targets.busy)


def test_settings_name_the_bad_value():
    from traitlets import TraitError

    with pytest.raises(TraitError, match="-3"):
        Proxy(head_timeout=-3)
    with pytest.raises(TraitError, match="70000"):
        Proxy(port=70000)
    with pytest.raises(TraitError, match="not-a-net"):
        Proxy(trusted_proxies=["not-a-net"])
