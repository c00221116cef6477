"""Subdomain mode's host-name rules in the proxy (proxy.hosts, issue 24), with small real servers.

Two echo servers play a container ('/user/abc', untrusted, guarded by a cookie check) and nbpool's web app
(the default route); the Host header decides which one answers. tests/test_browser_isolation.py runs the
same rules with the whole service in Chromium.
"""

from __future__ import annotations

import pytest

from proxy.hosts import container_label, split_host
from proxy.http import Response
from proxy.server import Proxy
from tests.httpwire import request

SUB = "nb.example.org"
DENIED = Response(403, "not yours")


@pytest.fixture
async def hosted(backend, backend2):
    p = Proxy(port=0, subdomain_host=SUB)
    p.routes.add("/", backend2.url)  # nbpool's web app
    for cid in ("abc", "def"):
        p.routes.add(f"/user/{cid}", backend.url, untrusted=True,
                     authorize=lambda head: None if head.cookie("nbpool-session") == "ok" else DENIED)
    await p.start()
    yield p
    await p.stop()


COOKIE = {"Cookie": "nbpool-session=ok; theme=dark"}


def who(resp) -> str:
    """Which server answered: the container's route strips nbpool's cookies on the way (it is untrusted),
    the web app's does not."""
    assert resp.status == 200, resp
    cookies = [v for k, v in resp.json()["headers"] if k.lower() == "cookie"]
    return "web app" if cookies == ["nbpool-session=ok; theme=dark"] else "container"


async def test_a_container_answers_only_at_its_own_host_name(hosted):
    port = hosted.bound_port
    own = await request(port, path="/user/abc/api/contents", host=f"abc.{SUB}:8443", headers=COOKIE)
    assert who(own) == "container" and own.json()["path"] == "/user/abc/api/contents"
    # At another container's host name: never, whatever the cookie.
    other = await request(port, path="/user/abc/api/contents", host=f"def.{SUB}:8443", headers=COOKIE)
    assert other.status == 404 and "another notebook server" in other.body.decode()
    # Names that only look like its own (deeper, or the wildcard name inside another) are not: nbpool's web
    # app answers there, as at the main host.
    for host in (f"x.abc.{SUB}", f"abc.x{SUB}", f"abc.{SUB}.evil.example"):
        looked = await request(port, path="/user/abc/api/contents", host=host, headers=COOKIE)
        assert who(looked) == "web app", host


async def test_at_the_main_host_a_containers_paths_go_to_the_web_app(hosted):
    resp = await request(hosted.bound_port, path="/user/abc/tree?x=1", host=f"{SUB}:8443", headers=COOKIE)
    assert who(resp) == "web app" and resp.json()["target"] == "/user/abc/tree?x=1"


async def test_at_a_containers_host_nbpool_answers_only_its_entry_opener_and_ended_page(hosted):
    port = hosted.bound_port
    for path in ("/enter/abc?t=x", "/embedded/abc?token=y", "/user/abc"):
        resp = await request(port, path=path, host=f"abc.{SUB}:8443")
        assert resp.status in (200, 403), path  # (the route's own check for /user/abc, the web app otherwise)
    for path in ("/", "/status", "/api/admin/containers", "/spawn?new=1", "/enter/def?t=x", "/kept/abc"):
        moved = await request(port, path=path, host=f"abc.{SUB}:8443")
        assert moved.status == 302 and moved.header("Location") == f"http://{SUB}:8443{path}", path
    refused = await request(port, "POST", "/api/admin/drain", host=f"abc.{SUB}:8443", body=b"{}")
    assert refused.status == 404


async def test_without_a_wildcard_name_hosts_change_nothing(backend):
    p = Proxy(port=0)
    p.routes.add("/user/abc", backend.url, untrusted=True)
    await p.start()
    try:
        resp = await request(p.bound_port, path="/user/abc/x", host=f"def.{SUB}")
        assert resp.status == 200 and resp.json()["path"] == "/user/abc/x"
    finally:
        await p.stop()


def test_host_names_are_read_as_browsers_send_them():
    assert split_host(b"ABC.Nb.Example.org:8443") == (b"abc.nb.example.org", b":8443")
    assert split_host(b"nb.example.org") == (b"nb.example.org", b"")
    assert split_host(b"[::1]:8000") == (b"[::1]", b":8000")
    assert container_label(b"abc.nb.example.org", SUB.encode()) == b"abc"
    assert container_label(b"nb.example.org", SUB.encode()) is None
    assert container_label(b"x.abc.nb.example.org", SUB.encode()) is None
    assert container_label(b"abcnb.example.org", SUB.encode()) is None


def test_the_setting_refuses_what_is_not_a_host_name():
    from traitlets import TraitError

    assert Proxy(subdomain_host="NB.Example.org.").subdomain_host == "nb.example.org"
    for bad in ("https://nb.example.org", "nb.example.org:8443", "*.nb.example.org", "localhost", "nb..org"):
        with pytest.raises(TraitError, match="subdomain_host"):
            Proxy(subdomain_host=bad)
