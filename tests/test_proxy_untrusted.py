"""Untrusted routes (an attendee's container): the service's cookies stay out, its answers' headers are screened.

The containers here are small real servers playing an attendee who rewrote
theirs: the echo server (which shows the request it got) and a raw server
answering with every header that would reach past its own prefix.
"""

from __future__ import annotations

import asyncio
import gzip

import pytest

from proxy.server import Proxy
from proxy.untrusted import cookie_refusal, strip_cookies
from tests.httpwire import Wire, request

PRIVATE = (b"nbpool-",)


def cookies_of(echoed: dict) -> list[str]:
    return [value for name, value in echoed["headers"] if name.lower() == "cookie"]


@pytest.fixture
async def attendee(backend):
    """The service's own app at '/' and an attendee's container at /user/abc (both the echo server)."""
    seen: list[str | None] = []

    def authorize(head):
        seen.append(head.cookie("nbpool-session"))
        return None

    p = Proxy(port=0)
    p.routes.add("/", backend.url)
    p.routes.add("/user/abc", backend.url, authorize=authorize, untrusted=True)
    await p.start()
    p.seen = seen
    yield p
    await p.stop()


# --- the way in: the service's cookies ------------------------------------------------------

async def test_the_services_cookies_never_reach_a_container(attendee):
    jar = "nbpool-session=s1; nbpool-kept=k1; nbpool-admin=a1; theme=dark; nbpool-embedded=e1"
    resp = await request(attendee.bound_port, path="/user/abc/api/contents", headers={"Cookie": jar})
    assert cookies_of(resp.json()) == ["theme=dark"]
    assert attendee.seen == ["s1"]  # the route's own check still saw the visitor's session

    # Only the service's cookies: no Cookie header at all. Upgrades lose them the same way.
    only_ours = await request(attendee.bound_port, path="/user/abc/api/kernels/k/channels",
                              headers={"Cookie": "nbpool-session=s1", "Connection": "Upgrade",
                                       "Upgrade": "websocket"})
    assert cookies_of(only_ours.json()) == []
    assert attendee.seen == ["s1", "s1"]

    # The service's own app gets every cookie, as sent.
    own = await request(attendee.bound_port, path="/spawn", headers={"Cookie": jar})
    assert cookies_of(own.json()) == [jar]

    # Over HTTPS nbpool's cookies are __Host- cookies: nbpool's all the same.
    secure = "__Host-nbpool-session=s1; theme=dark; __Host-nbpool-kept=k1; __Secure-nbpool-x=2"
    resp = await request(attendee.bound_port, path="/user/abc/api/contents", headers={"Cookie": secure})
    assert cookies_of(resp.json()) == ["theme=dark"]


async def test_every_cookie_header_is_screened(attendee):
    wire = await Wire.open(attendee.bound_port)
    await wire.send(b"GET /user/abc/tree HTTP/1.1\r\nHost: h\r\nCookie: nbpool-session=s1\r\n"
                    b"Cookie: a=1;nbpool-ticket=t ;  b=2\r\nCookie: xnbpool-x=3; nbpool-key-w=4\r\n\r\n")
    resp = await wire.response()
    await wire.close()
    assert cookies_of(resp.json()) == ["a=1; b=2", "xnbpool-x=3"]
    assert attendee.seen == ["s1"]


@pytest.mark.parametrize(("sent", "forwarded"), [
    (b"theme=dark", b"theme=dark"),
    (b"nbpool-session=x", b""),
    (b"nbpool-session=x;theme=dark", b"theme=dark"),
    (b" theme=dark ;; nbpool-kept-ws=y ; z=1", b"theme=dark; z=1"),
    (b"nbpool-", b""),
    (b"NBPOOL-session=x; Nbpool-x=y", b"NBPOOL-session=x; Nbpool-x=y"),  # not the service's: its names are exact
    (b"mynbpool-x=1", b"mynbpool-x=1"),
])
def test_strip_cookies(sent, forwarded):
    assert strip_cookies(sent, PRIVATE) == forwarded


def test_no_private_cookie_returns_the_header_itself():
    value = b"theme=dark; _xsrf=2|ab"
    assert strip_cookies(value, PRIVATE) is value


# --- the way out: headers that reach past the route ---------------------------------------------

# What a rewritten server answers, each line a try to reach past /user/abc.
HOSTILE = [
    b"Set-Cookie: everywhere=1; Path=/",
    b"Set-Cookie: nopath=1",
    b"Set-Cookie: wide=1; Path=/user/abc/; Domain=proxy.test",
    b"Set-Cookie: neighbour=1; Path=/user/abcd",
    b"Set-Cookie: parent=1; Path=/user",
    b"Set-Cookie: nbpool-session=forged; Path=/user/abc/",
    b"Set-Cookie: NBPOOL-KEPT=forged; Path=/user/abc/",
    b"Set-Cookie: twice=1; Path=/user/abc/; Path=/",
    b"Set-Cookie: climb=1; Path=/user/abc/%2e%2e/",
    b"Service-Worker-Allowed: /",
    b'Clear-Site-Data: "*"',
    b'NEL: {"report_to": "x", "max_age": 9999}',
    b"Strict-Transport-Security: max-age=31536000; includeSubDomains",
]
# What Jupyter Server itself sets: scoped to its base URL, so it passes.
LEGIT = [
    b"Set-Cookie: _xsrf=2|d2e0|7a4c|1700000000; expires=Thu, 01 Jan 2099 00:00:00 GMT; Path=/user/abc/",
    b"Set-Cookie: username-abc=2|ab; HttpOnly; Path=/user/abc; SameSite=Lax",
]
BODY = b"export const x = 1;\n" * 200  # compressible, and over compress_min_size


async def hostile_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers in the framing its path names: /length, /chunked, /gzip (compressed by the proxy), /early
    (a 103 first), /socket (a 101, then echoes bytes); every answer's head carries HOSTILE and LEGIT."""
    head = await reader.readuntil(b"\r\n\r\n")
    kind = head.split(b" ", 2)[1].rsplit(b"/", 1)[1]
    lines = b"".join(line + b"\r\n" for line in HOSTILE + LEGIT)
    if kind == b"socket":
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     + lines + b"\r\n")
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()
        return
    if kind == b"early":
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </user/abc/static/a.js>; rel=preload\r\n" + lines + b"\r\n")
    if kind == b"chunked":
        framing = b"Transfer-Encoding: chunked\r\n"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    else:
        framing = b"Content-Length: %d\r\n" % len(BODY)
        body = BODY
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\n" + framing + lines + b"\r\n" + body)
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("kind", ["length", "chunked", "gzip", "early", "socket"])
async def test_a_container_cannot_set_what_reaches_past_its_prefix(raw_backend, kind):
    p = Proxy(port=0)
    p.routes.add("/user/abc", await raw_backend(hostile_server), untrusted=True)
    await p.start()
    try:
        wire = await Wire.open(p.bound_port)
        extra = b""
        if kind == "socket":
            extra = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
        elif kind == "gzip":
            extra = b"Accept-Encoding: gzip\r\nSec-Fetch-Site: same-origin\r\n"
        await wire.send(b"GET /user/abc/x/%s HTTP/1.1\r\nHost: h\r\n%s\r\n" % (kind.encode(), extra))
        answers = [await wire.response()]
        if kind == "early":
            answers.append(await wire.response())
        assert [r.status for r in answers] == {"early": [103, 200], "socket": [101]}.get(kind, [200])
        if kind == "socket":
            await wire.send(b"still spliced")
            while b"still spliced" not in wire.upgraded:
                wire.upgraded += await asyncio.wait_for(wire.reader.read(65536), 5)
        else:
            last = answers[-1]
            assert (gzip.decompress(last.body) if kind == "gzip" else last.body) == BODY
            assert (last.header("Content-Encoding") == "gzip") == (kind == "gzip")
        await wire.close()
        for answer in answers:
            names = {name.lower() for name, _ in answer.headers}
            assert [v.encode() for n, v in answer.headers if n.lower() == "set-cookie"] == \
                [line.split(b": ", 1)[1] for line in LEGIT]
            assert not names & {"service-worker-allowed", "clear-site-data", "nel", "strict-transport-security"}
        assert p.stats.filtered_headers == len(HOSTILE) * len(answers)
    finally:
        await p.stop()


async def test_the_services_own_routes_relay_every_header(raw_backend):
    p = Proxy(port=0)
    p.routes.add("/", await raw_backend(hostile_server))
    await p.start()
    try:
        resp = await request(p.bound_port, path="/x/length")
        assert resp.status == 200 and p.stats.filtered_headers == 0
        relayed = b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in resp.headers)
        for line in HOSTILE + LEGIT:
            assert line + b"\r\n" in relayed
    finally:
        await p.stop()


@pytest.mark.parametrize(("value", "why"), [
    (b"_xsrf=1; Path=/user/abc/", None),
    (b"a=1; Path=/user/abc", None),
    (b"a=1; Path=/user/abc/lab/tree; Secure", None),
    (b"a=1;path = /user/abc/ ", None),
    (b"a=1; Path=/user/abcd/", "outside"),
    (b"a=1; Path=/user/ab", "outside"),
    (b"a=1; Path=/", "outside"),
    (b"a=1; Path=", "outside"),
    (b"a=1; Path=user/abc/", "outside"),
    (b"a=1", "without a Path"),
    (b"a=1; Path=/user/abc/; domain=", "Domain"),
    (b"a=1; Path=/user/abc/; Path=/user/x/", "outside"),  # the last Path counts
    (b"a=1; Path=/user/abc/./../x", "dot"),
    (b"nbpool-session=x; Path=/user/abc/", "the service's"),
    (b" Nbpool-Admin =x; Path=/user/abc/", "the service's"),
    (b"nbpool-kept; Path=/user/abc/", "the service's"),
])
def test_cookie_refusal(value, why):
    refusal = cookie_refusal(value, b"/user/abc", PRIVATE)
    assert refusal is None if why is None else why in refusal


def test_private_cookies_setting_is_checked_and_copied():
    from traitlets import TraitError

    with pytest.raises(TraitError, match="a=b"):
        Proxy(private_cookies=["a=b"])
    p = Proxy(private_cookies=["nbpool-", "hub-"])
    assert set(p.limits.private_cookies) == {b"nbpool-", b"__Host-nbpool-", b"__Secure-nbpool-",
                                             b"hub-", b"__Host-hub-", b"__Secure-hub-"}
    p.private_cookies = []
    assert p.limits.private_cookies == ()


async def test_each_request_on_a_kept_alive_connection_is_screened(attendee):
    wire = await Wire.open(attendee.bound_port)
    for jar, forwarded in ((b"nbpool-session=s1; a=1", ["a=1"]), (b"b=2; nbpool-session=s2", ["b=2"])):
        await wire.send(b"GET /user/abc/x HTTP/1.1\r\nHost: h\r\nCookie: %s\r\n\r\n" % jar)
        resp = await wire.response()
        assert cookies_of(resp.json()) == forwarded
    await wire.close()
    assert attendee.seen == ["s1", "s2"]


def test_every_container_route_is_untrusted():
    """The service marks each container's route (spawner.web.access), so all of the above applies to them."""
    from proxy.http import Response
    from proxy.origin import OriginPolicy
    from proxy.routes import RouteTable
    from spawner.pool.slot import ASSIGNED, Slot
    from spawner.secret import ServerSecret
    from spawner.web.access import RouteAccess

    access = RouteAccess(ServerSecret(b"k" * 32), lambda head, slot: Response(403), lambda status, head: None,
                         OriginPolicy([]))
    slot = Slot(cid="abc", state=ASSIGNED, generation=1, created=0.0)
    assert RouteTable().add("/user/abc", "http://127.0.0.1:9", **access.route_options(slot)).untrusted
