"""The shared static cache, against small real servers standing in for containers of one image.

``spare`` is a container no request that can run code has reached (its route
is ``fill_ok``); ``a`` and ``b`` are attendees' containers that have had
such requests. All serve the same static files (one
folder: one image) but answer their per-user paths with their own name.
"""

from __future__ import annotations

import asyncio
import json
import zlib

import brotli
import pytest

from proxy.http import Response
from proxy.server import Proxy
from tests.httpwire import request
from tests.resources import static_site
from tests.resources.static_site import APP_JS

SHARE = "nbpool/notebook:latest#0"
GZ = {"Accept-Encoding": "gzip"}


@pytest.fixture
async def servers(tmp_path):
    folder = static_site.make_files(tmp_path / "image")
    running = {name: await static_site.start(name=name, folder=folder) for name in ("spare", "a", "b")}
    yield running
    for server in running.values():
        await server.stop()


@pytest.fixture
async def cached(servers):
    p = Proxy(port=0)
    p.routes.add("/user/spare", servers["spare"].url, share=SHARE, fill_ok=True)
    p.routes.add("/user/a", servers["a"].url, share=SHARE)
    p.routes.add("/user/b", servers["b"].url, share=SHARE)
    await p.start()
    yield p
    await p.stop()


async def counts(server) -> dict[str, int]:
    return json.loads((await request(server.port, path="/counts")).body)


async def settled(p: Proxy) -> None:
    """Wait for the cache's background fetches to end."""
    for _ in range(200):
        if not p.cache.tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the cache's fetches did not end")


async def test_second_attendee_is_served_from_memory(cached, servers):
    path = "static/app.js?v=abc"
    first = await request(cached.bound_port, path=f"/user/a/{path}", headers=GZ)
    await settled(cached)
    assert (await counts(servers["a"]))["static/app.js"] == 1  # the first visitor's own container served it
    assert (await counts(servers["spare"]))["static/app.js"] == 1  # the cache fetched it from the spare
    assert cached.cache.fills == 1 and cached.cache.misses == 1

    again = await request(cached.bound_port, path=f"/user/b/{path}", headers=GZ)
    br = await request(cached.bound_port, path=f"/user/b/{path}", headers={"Accept-Encoding": "br"})
    plain = await request(cached.bound_port, path=f"/user/b/{path}")
    assert "static/app.js" not in await counts(servers["b"])  # never reached b's container
    assert cached.cache.hits == 3
    original = zlib.decompress(first.body, 31)
    assert zlib.decompress(again.body, 31) == original == brotli.decompress(br.body) == plain.body
    assert original.decode().endswith(APP_JS)
    assert again.header("Content-Encoding") == "gzip" and again.header("Content-Length") == str(len(again.body))
    assert br.header("Content-Encoding") == "br" and plain.header("Content-Encoding") is None
    for resp in (again, br, plain):
        assert resp.header("Vary") == "Accept-Encoding"
        assert resp.header("Cache-Control") == "public, max-age=31536000, immutable"
        assert resp.header("Set-Cookie") is None
    assert cached.routes.get("/user/b").requests == 3  # served from memory, still the visitor's activity


async def test_per_user_paths_never_mix(cached, servers):
    """API and files answers are each container's own, even with an immutable cache policy."""
    for _ in range(2):
        for name in ("a", "b", "spare"):
            who = await request(cached.bound_port, path=f"/user/{name}/api/who", headers=GZ)
            assert json.loads(who.body)["server"] == name
            txt = await request(cached.bound_port, path=f"/user/{name}/files/who.txt")
            assert txt.body.startswith(f"server {name}\n".encode())
    await settled(cached)
    assert cached.cache.entries == {} and cached.cache.fills == 0
    for name in ("a", "b"):
        seen = await counts(servers[name])
        assert seen["api/who"] == 2 and seen["files/who.txt"] == 2


async def test_an_attendees_container_never_fills_the_cache(cached, servers, tmp_path):
    """What a (possibly rewritten) attendee's server answers reaches only that attendee."""
    tampered = static_site.make_files(tmp_path / "tampered", variant="evil")
    evil = await static_site.start(name="evil", folder=tampered)
    cached.routes.add("/user/evil", evil.url, share=SHARE)  # handed out: not fill_ok
    try:
        own = await request(cached.bound_port, path="/user/evil/static/app.js?v=1")
        assert own.body.startswith(b"/* evil */")
        await settled(cached)
        other = await request(cached.bound_port, path="/user/b/static/app.js?v=1")
        assert other.body.startswith(b"/*  */") and b"evil" not in other.body
        # Without any spare, nothing is fetched at all: each container serves its own.
        cached.routes.remove("/user/spare")
        for name in ("evil", "a"):
            await request(cached.bound_port, path=f"/user/{name}/static/style.css?v=1")
        await settled(cached)
        assert list(cached.cache.entries) == [(SHARE.encode(), b"static/app.js?v=1")]
    finally:
        await evil.stop()


async def test_the_first_request_that_can_run_code_ends_a_source(cached, servers):
    """A POST (or an upgrade) through a route clears its fill_ok before the container sees it."""
    spare = cached.routes.get("/user/spare")
    for method in ("GET", "HEAD"):
        await request(cached.bound_port, method=method, path="/user/spare/api/who")
    assert spare.fill_ok
    await request(cached.bound_port, method="POST", path="/user/spare/api/who", body=b"{}")
    assert not spare.fill_ok
    await request(cached.bound_port, path="/user/a/static/app.js?v=1")
    await settled(cached)
    assert cached.cache.entries == {} and "static/app.js" not in await counts(servers["spare"])
    # An upgrade ends it too.
    fresh = cached.routes.add("/user/fresh", servers["b"].url, share=SHARE, fill_ok=True)
    await request(cached.bound_port, path="/user/fresh/api/who",
                  headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert not fresh.fill_ok


async def test_code_run_during_the_fetch_means_it_is_not_stored(cached):
    route = cached.routes.get("/user/a")
    assert cached.cache.lookup(route, b"/user/a/static/app.js", b"?v=1", b"GET", []) is None
    assert cached.cache.tasks  # the fetch from the spare is under way...
    cached.routes.get("/user/spare").fill_ok = False  # ...when a POST goes through to it
    await settled(cached)
    assert cached.cache.entries == {} and cached.cache.fills == 0


async def test_the_access_check_comes_before_the_cache(cached, servers):
    await request(cached.bound_port, path="/user/a/static/app.js?v=1")
    await settled(cached)

    def only_with_cookie(head):
        return None if head.cookie("pass") == "yes" else Response(403, "no entry")

    cached.routes.add("/user/b", servers["b"].url, share=SHARE, authorize=only_with_cookie)
    denied = await request(cached.bound_port, path="/user/b/static/app.js?v=1", headers=GZ)
    assert denied.status == 403 and denied.body == b"no entry"
    allowed = await request(cached.bound_port, path="/user/b/static/app.js?v=1", headers={"Cookie": "pass=yes"})
    assert allowed.status == 200 and allowed.body.decode().endswith(APP_JS)
    assert cached.cache.hits == 1


async def test_what_is_not_the_same_for_everyone_is_not_kept(cached, servers):
    for name in ("cookie.js", "vary.js", "gz.js", "missing.js"):
        await request(cached.bound_port, path=f"/user/a/static/{name}", headers=GZ)
    await settled(cached)
    assert cached.cache.entries == {}
    for name in ("cookie.js", "vary.js", "gz.js", "missing.js"):
        await request(cached.bound_port, path=f"/user/b/static/{name}", headers=GZ)
        assert (await counts(servers["b"]))[f"static/{name}"] == 1
    # Not asked again at every request: a refused path waits before the next try.
    assert (await counts(servers["spare"]))["static/cookie.js"] == 1


async def test_ranges_and_posts_go_to_the_container(cached, servers):
    await request(cached.bound_port, path="/user/a/static/app.js")
    await settled(cached)
    assert len(cached.cache.entries) == 1
    part = await request(cached.bound_port, path="/user/b/static/app.js", headers={"Range": "bytes=0-9"})
    assert part.status == 206 and part.body == b"/*  */\nexp"
    assert (await counts(servers["b"]))["static/app.js"] == 1
    assert cached.cache.static_relayed == 2  # the first miss and the range


async def test_validators_and_head_from_memory(cached, servers):
    first = await request(cached.bound_port, path="/user/a/static/style.css")  # no-cache, like lab/extensions
    await settled(cached)
    since = first.header("Last-Modified")
    fresh = await request(cached.bound_port, path="/user/b/static/style.css", headers={"If-Modified-Since": since})
    assert fresh.status == 304 and fresh.body == b"" and fresh.header("Cache-Control") == "no-cache"
    etag = first.header("ETag")
    assert etag and (await request(cached.bound_port, path="/user/b/static/style.css",
                                   headers={**GZ, "If-None-Match": f"W/{etag}"})).status == 304
    head = await request(cached.bound_port, method="HEAD", path="/user/b/static/style.css", headers=GZ)
    assert head.status == 200 and head.body == b"" and head.header("Content-Encoding") == "gzip"
    assert "static/style.css" not in await counts(servers["b"])


async def test_least_recently_used_files_go_first(cached):
    cached.cache_size = 30_000  # app.js (~40 KB raw) cannot fit; the css files can
    for name in ("style.css", "tiny.css", "logo.png", "app.js"):
        await request(cached.bound_port, path=f"/user/a/static/{name}?v=1")
        await settled(cached)
    keys = [k[1] for k in cached.cache.entries]
    assert b"static/app.js?v=1" not in keys and cached.cache.bytes <= 30_000
    cached.cache_size = 12_000
    assert cached.cache.bytes <= 12_000 and cached.cache.evictions >= 1
    assert [k[1] for k in cached.cache.entries][-1] == b"static/logo.png?v=1"  # the newest stays


async def test_a_drained_image_is_let_go(cached):
    await request(cached.bound_port, path="/user/a/static/app.js?v=1")
    await settled(cached)
    assert cached.cache.bytes > 0
    freed = cached.cache.drop(keep=b"nbpool/notebook:latest#1")
    assert freed > 0 and cached.cache.entries == {} and cached.cache.bytes == 0


async def test_off_means_every_request_reaches_its_container(cached, servers):
    cached.cache_size = 0
    for name in ("a", "b"):
        await request(cached.bound_port, path=f"/user/{name}/static/app.js?v=1")
    await settled(cached)
    assert cached.cache.entries == {} and cached.cache.static_relayed == 2
    assert (await counts(servers["b"]))["static/app.js"] == 1


def test_static_paths_refuse_per_user_folders():
    from traitlets import TraitError
    for bad in (["api/"], ["files/"], ["/static/"], ["lab/"], ["static"]):
        with pytest.raises(TraitError, match="static_paths"):
            Proxy(static_paths=bad)


async def test_until_encoded_the_plain_file_is_served_from_memory(cached, servers):
    """Encoding runs last on a busy machine: meanwhile the stored file goes out as it is, never to a container."""
    from proxy.cache_entry import Entry

    body = APP_JS.encode()
    entry = Entry(b"Content-Type: application/javascript\r\n", {b"": body}, b"", b"")
    cached.cache._store((SHARE.encode(), b"static/pending.js"), entry)
    resp = await request(cached.bound_port, path="/user/b/static/pending.js", headers={"Accept-Encoding": "br"})
    assert resp.status == 200 and resp.body == body and resp.header("Content-Encoding") is None
    assert resp.header("Vary") == "Accept-Encoding" and "static/pending.js" not in await counts(servers["b"])


async def test_the_least_used_source_is_asked(cached, servers):
    """A spare (no requests yet) is asked rather than a container whose visitor's page is loading."""
    loading = cached.routes.add("/user/loading", servers["a"].url, share=SHARE, fill_ok=True)
    loading.requests = 5
    await request(cached.bound_port, path="/user/loading/static/style.css?v=9")
    await settled(cached)
    assert (await counts(servers["spare"]))["static/style.css"] == 1
    assert (await counts(servers["a"]))["static/style.css"] == 1  # only the visitor's own request
    assert len(cached.cache.entries) == 1


async def test_files_asked_for_with_no_source_are_fetched_from_the_next_spare(cached, servers):
    cached.routes.remove("/user/spare")
    await request(cached.bound_port, path="/user/a/static/app.js?v=3")
    await settled(cached)
    assert cached.cache.entries == {} and list(cached.cache.wanted) == [(SHARE.encode(), b"static/app.js?v=3")]
    cached.routes.add("/user/spare", servers["spare"].url, share=SHARE, fill_ok=True)  # a new spare is routed
    await settled(cached)
    assert list(cached.cache.entries) == [(SHARE.encode(), b"static/app.js?v=3")] and not cached.cache.wanted
    again = await request(cached.bound_port, path="/user/b/static/app.js?v=3")
    assert again.body.decode().endswith(APP_JS) and "static/app.js" not in await counts(servers["b"])
