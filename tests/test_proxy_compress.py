"""Compression in the proxy, against small real servers: framing, validators, and what is left alone."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from proxy.encoding import accepted, compressible
from proxy.server import Proxy
from tests.httpwire import Wire, request
from tests.resources import static_site
from tests.resources.static_site import APP_JS

GZ = {"Accept-Encoding": "gzip, deflate"}
BR = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.fixture
async def site(tmp_path):
    running = await static_site.start(name="a", folder=static_site.make_files(tmp_path / "site"))
    yield running
    await running.stop()


@pytest.fixture
async def cproxy(site):
    p = Proxy(port=0)
    p.routes.add("/user/a", site.url, share="img#0")
    await p.start()
    yield p
    await p.stop()


def gunzip(body: bytes) -> bytes:
    return zlib.decompress(body, 31)


# --- which coding --------------------------------------------------------------------

def test_accept_encoding_is_read_with_its_qualities():
    assert accepted(b"gzip, deflate, br") == b"br"
    assert accepted(b"gzip") == b"gzip"
    assert accepted(b"br;q=0, gzip;q=0.5") == b"gzip"
    assert accepted(b"gzip;q=0, br;q=0") is None
    assert accepted(b"identity") is None
    assert accepted(b"*") == b"br"
    assert accepted(b"*, br;q=0") == b"gzip"
    assert accepted(b"gzip;q=bogus") is None
    assert accepted(None) is None and accepted(b"") is None


def test_compressible_types():
    for ok in (b"application/javascript", b"text/css; charset=utf-8", b"application/json", b"image/svg+xml",
               b"text/html", b"application/vnd.api+json"):
        assert compressible(ok), ok
    for no in (b"image/png", b"font/woff2", b"application/octet-stream", b"text/event-stream", b"video/mp4"):
        assert not compressible(no), no


# --- framing -------------------------------------------------------------------------

async def test_content_length_response_becomes_chunked_gzip(cproxy):
    resp = await request(cproxy.bound_port, path="/user/a/static/app.js?v=1", headers=GZ)
    assert resp.status == 200
    assert resp.header("Content-Encoding") == "gzip"
    assert resp.header("Transfer-Encoding") == "chunked" and resp.header("Content-Length") is None
    assert resp.header("Vary") == "Accept-Encoding"
    assert resp.header("Accept-Ranges") is None  # ranges of the encoded body are not offered
    assert gunzip(resp.body).decode().endswith(APP_JS)
    assert len(resp.body) < len(APP_JS) / 3


async def test_brotli_when_accepted(cproxy):
    resp = await request(cproxy.bound_port, path="/user/a/static/style.css", headers=BR)
    assert resp.header("Content-Encoding") == "br"
    assert b".c399 { margin: 399px; }" in brotli.decompress(resp.body)


async def test_chunked_response_is_recoded(cproxy):
    resp = await request(cproxy.bound_port, path="/user/a/static/chunked.js", headers=GZ)
    assert resp.header("Content-Encoding") == "gzip" and resp.header("Transfer-Encoding") == "chunked"
    assert gunzip(resp.body).decode() == APP_JS[:5000]


async def test_close_delimited_response_is_compressed_and_framed(raw_backend):
    body = APP_JS.encode()

    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    url = await raw_backend(handler)
    p = Proxy(port=0)
    p.routes.add("/user/e", url)
    await p.start()
    try:
        resp = await request(p.bound_port, path="/user/e/static/x.js", headers=GZ)
        assert resp.status == 200 and resp.header("Transfer-Encoding") == "chunked"
        assert gunzip(resp.body) == body
    finally:
        await p.stop()


async def test_pipelined_compressed_responses_keep_their_order(cproxy):
    wire = await Wire.open(cproxy.bound_port)
    one = b"GET /user/a/static/app.js?v=1 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n"
    two = b"GET /user/a/static/style.css HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\n\r\n"
    await wire.send(one + two + one)
    first, second, third = [await wire.response() for _ in range(3)]
    await wire.close()
    assert gunzip(first.body).decode().endswith(APP_JS) and gunzip(third.body) == gunzip(first.body)
    assert b".c0 {" in brotli.decompress(second.body)


async def test_head_gets_the_get_headers_and_no_body(cproxy):
    wire = await Wire.open(cproxy.bound_port)
    await wire.send(b"HEAD /user/a/static/app.js?v=1 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n")
    head = await wire.response(head_only=True)
    assert head.status == 200 and head.header("Content-Encoding") == "gzip"
    assert head.header("Content-Length") is None and head.header("Vary") == "Accept-Encoding"
    # Nothing followed the head: the same connection serves the next request.
    await wire.send(b"GET /user/a/static/tiny.css HTTP/1.1\r\nHost: h\r\n\r\n")
    nxt = await wire.response()
    await wire.close()
    assert nxt.status == 200 and nxt.body == b"b{}"


async def test_not_modified_passes_untouched(cproxy):
    first = await request(cproxy.bound_port, path="/user/a/static/app.js", headers=GZ)
    assert first.header("ETag").startswith('W/"')  # an encoded body's validator is weak
    since = first.header("Last-Modified")
    resp = await request(cproxy.bound_port, path="/user/a/static/app.js",
                         headers={**GZ, "If-Modified-Since": since})
    assert resp.status == 304 and resp.body == b""
    assert resp.header("Content-Encoding") is None and resp.header("Transfer-Encoding") is None
    # The weak validator still matches at the server (weak comparison): 304 again.
    resp = await request(cproxy.bound_port, path="/user/a/static/app.js",
                         headers={**GZ, "If-None-Match": first.header("ETag")})
    assert resp.status == 304


async def test_ranges_are_never_compressed(cproxy):
    resp = await request(cproxy.bound_port, path="/user/a/static/app.js", headers={**GZ, "Range": "bytes=0-99"})
    assert resp.status == 206 and resp.header("Content-Encoding") is None
    assert resp.body == (b"/*  */\n" + APP_JS.encode())[:100]


async def test_left_alone_small_binary_encoded_and_identity(cproxy):
    tiny = await request(cproxy.bound_port, path="/user/a/static/tiny.css", headers=GZ)
    assert tiny.body == b"b{}" and tiny.header("Content-Encoding") is None
    png = await request(cproxy.bound_port, path="/user/a/static/logo.png", headers=GZ)
    assert png.header("Content-Encoding") is None and png.body.startswith(b"\x89PNG")
    assert png.header("Content-Length") == str(len(png.body))
    pre = await request(cproxy.bound_port, path="/user/a/static/gz.js", headers=BR)
    assert pre.header("Content-Encoding") == "gzip" and gzip.decompress(pre.body).decode() == APP_JS
    plain = await request(cproxy.bound_port, path="/user/a/static/app.js")
    assert plain.header("Content-Encoding") is None and plain.body.decode().endswith(APP_JS)
    refused = await request(cproxy.bound_port, path="/user/a/static/app.js",
                            headers={"Accept-Encoding": "gzip;q=0, br;q=0"})
    assert refused.header("Content-Encoding") is None


async def test_http10_clients_get_identity(cproxy):
    wire = await Wire.open(cproxy.bound_port)
    await wire.send(b"GET /user/a/static/app.js HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
    resp = await wire.response()
    await wire.close()
    assert resp.header("Content-Encoding") is None and resp.body.decode().endswith(APP_JS)


async def test_dynamic_responses_only_for_the_page_itself(cproxy):
    """BREACH: a response that is not a static file is compressed only for same-origin requests."""
    path = "/user/a/api/who"
    same = await request(cproxy.bound_port, path=path, headers={**GZ, "Sec-Fetch-Site": "same-origin"})
    assert same.header("Content-Encoding") == "gzip" and b'"server": "a"' in gunzip(same.body)
    for site in ("cross-site", "same-site", None):
        headers = {**GZ, **({"Sec-Fetch-Site": site} if site else {})}
        resp = await request(cproxy.bound_port, path=path, headers=headers)
        assert resp.header("Content-Encoding") is None, site
    cproxy.compress_dynamic = "never"
    resp = await request(cproxy.bound_port, path=path, headers={**GZ, "Sec-Fetch-Site": "same-origin"})
    assert resp.header("Content-Encoding") is None
    cproxy.compress = False
    resp = await request(cproxy.bound_port, path="/user/a/static/app.js", headers=GZ)
    assert resp.header("Content-Encoding") is None


async def test_websocket_upgrade_untouched(ws_backend):
    p = Proxy(port=0)
    p.routes.add("/", ws_backend.url)
    await p.start()
    try:
        conn = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{p.bound_port}/ws",
                                                   headers={"Accept-Encoding": "gzip, br"}))
        hello = await conn.read_message()
        assert '"path": "/ws"' in hello
        conn.write_message("x" * 5000)
        assert await conn.read_message() == "x" * 5000
        conn.close()
    finally:
        await p.stop()
