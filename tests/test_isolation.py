"""No way into another attendee's notebook (issue 24): each way the review found, tried on the real service.

The real nbpool (start.py) on a port, the real engine and image. Where the
point is what an attendee's own server can do, a workshop runs the hostile
stand-in (tests/resources/hostile: the workshop image with its server
replaced by its attendee's program, which is what an attendee can make their
server be); where the point is a browser's behaviour (origins, cookies), the
browser is Chromium.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.dockertools import labelled
from tests.service import cid_of, spawn, through_the_line, visitor, vm_kib
from tests.test_binder_build import stream

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FOREIGN = "http://evil.example"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document"}


def base_of(url: str) -> str:
    return re.match(r"(.*/user/[0-9a-f]+/)", url).group(1)


def put_file(session: requests.Session, origin: str, base: str, path: str, data: bytes) -> None:
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    resp = session.put(f"{base}api/contents/{path}", json=body, headers={"Origin": origin}, timeout=30)
    assert resp.status_code in (200, 201), (resp.status_code, resp.text[:300])


def container_ids(service) -> set[str]:
    return {row["id"] for row in service.admin("GET", "/api/admin/containers").json()["containers"]}


def container_of(docker_client, cid: str):
    return docker_client.containers.list(all=True, filters={"label": f"org.nbpool.id={cid}"})[0]


def home_files(docker_client, cid: str) -> list[str]:
    code, out = container_of(docker_client, cid).exec_run(["ls", "-A", "/home/jovyan"], user="1000")
    assert code == 0, out
    return out.decode().split()


# --- spares are clean by construction -------------------------------------------------------------------------

def test_a_restored_and_abandoned_container_is_never_handed_to_anyone(make_service, docker_client):
    service = make_service(Pool__warm=1, Pool__max_containers=5, Pool__unopened_timeout=3, Pool__cull_interval=1)
    service.start()
    attacker = visitor()
    url = spawn(attacker, service.url)
    base = base_of(url)
    put_file(attacker, service.url, base, "numpy.py", b'print("ATTACKER CODE RAN")\n')
    put_file(attacker, service.url, base, "READ-ME-FIRST.txt", b"hello, next visitor\n")
    first = cid_of(url)
    assert service.admin("DELETE", f"/api/admin/containers/{first}").status_code == 204
    service.wait_for(lambda: "numpy.py" in attacker.get(f"{service.url}/kept/{first}", timeout=30).text,
                     what="the attacker's work kept")
    # "Continue in a fresh notebook", and never follow the redirect: its files go into a container nobody opens.
    restored = attacker.post(f"{service.url}/kept/{first}/restore", data={"path": ""}, allow_redirects=False,
                             headers={"Origin": service.url}, timeout=120)
    assert restored.status_code == 302, restored.text[:300]
    poisoned = cid_of(through_the_line(attacker, service.url, restored))
    assert "numpy.py" in home_files(docker_client, poisoned)
    service.wait_for(lambda: poisoned not in container_ids(service), timeout=60,
                     what="the restored, never opened container removed")
    assert labelled(docker_client, f"org.nbpool.id={poisoned}") == []
    # (Its owner never came, so nothing was continued: their kept work may be continued again, elsewhere.)
    page = attacker.get(f"{service.url}/kept/{first}", timeout=30)
    assert page.status_code == 200 and f'action="/kept/{first}/restore"' in page.text, page.text[:2000]
    # Whoever comes next gets a container nobody had: none of the attacker's files, nothing of theirs runs.
    for _ in range(3):
        victim = visitor()
        mine = spawn(victim, service.url)
        assert cid_of(mine) != poisoned
        assert victim.get(base_of(mine) + "files/numpy.py", timeout=30).status_code == 404
        assert "READ-ME-FIRST.txt" not in home_files(docker_client, cid_of(mine))


# --- nbpool's credentials stay with nbpool ------------------------------------------------------------------

def test_an_attendees_server_never_sees_nbpools_cookies_nor_sets_any_beyond_its_path(make_service, hostile_image,
                                                                                      docker_client):
    service = make_service(NbpoolApp__workshops={
        "course": {"warm": 1, "max_containers": 2},
        "own": {"image": hostile_image, "warm": 1, "max_containers": 2, "prestart_kernel": False}})
    service.start(wait_warm=False)
    service.wait_for(lambda: requests.get(f"{service.url}/w/own/api/stats", timeout=10).json()["available"] >= 1,
                     timeout=120, what="a spare of the attendee's own server")
    session = visitor()
    resp = session.get(f"{service.url}/w/own/spawn", allow_redirects=False, timeout=30)
    url = through_the_line(session, service.url, resp)
    base = base_of(url)
    host = requests.utils.urlparse(service.url).hostname
    # Whatever else nbpool keeps in this browser: an earlier session's kept work, a workshop key, an operator's
    # sign-in, a place in line, a page's credential; and one cookie of the attendee's own.
    for name in ("nbpool-kept-course", "nbpool-key-course", "nbpool-admin", "nbpool-ticket", "nbpool-embedded",
                 "nbpool-session-course"):
        session.cookies.set(name, f"secret-{secrets.token_hex(8)}.{secrets.token_hex(16)}", domain=host, path="/")
    session.cookies.set("theme", "dark", domain=host, path="/")
    assert session.get(base + "anything", timeout=30).status_code == 200
    seen = session.get(base + "seen", timeout=30).json()["seen"]
    cookies = [v for request in seen for k, v in request["headers"] if k.lower() == "cookie"]
    assert cookies, "the server saw no Cookie header at all: nothing was tested"
    for header in cookies:
        names = {part.split("=", 1)[0].strip() for part in header.split(";")}
        assert names == {"theme"}, header  # nbpool's own, the session included, never reach it
    # Nor can it set cookies (or worse) for nbpool's pages or the other containers on this origin.
    direct = requests.get(f"{base_of(container_endpoint(service, cid_of(url)))}hostile-headers", timeout=30)
    assert len(direct.raw.headers.getlist("Set-Cookie")) == 6 and direct.headers["Service-Worker-Allowed"] == "/"
    answer = session.get(base + "hostile-headers", timeout=30)
    assert answer.text == "hostile"
    assert answer.raw.headers.getlist("Set-Cookie") == [f"own=1; Path={requests.utils.urlparse(base).path}"]
    assert "Service-Worker-Allowed" not in answer.headers and "Clear-Site-Data" not in answer.headers


def container_endpoint(service, cid: str) -> str:
    """The container's own address (the proxy's target), as the admin API lists it."""
    rows = service.admin("GET", "/api/admin/containers").json()["containers"]
    endpoint = next(row["endpoint"] for row in rows if row["id"] == cid)
    return f"{endpoint}/user/{cid}/"


# --- no link changes which notebook a browser is attached to ---------------------------------------------------

def test_a_link_from_another_site_never_replaces_a_session(make_service):
    service = make_service(Pool__warm=2, Pool__max_containers=6, WebApp__address_share_exempt=[])
    service.start()
    victim = visitor()
    url = spawn(victim, service.url)

    def nbpool_cookies() -> dict:
        return {name: value for name, value in victim.cookies.items() if name.startswith("nbpool-")}

    mine = nbpool_cookies()
    # Anyone can take a server for a page's live code (no Origin needed) and hand its link round.
    _, messages = stream(f"{service.url}/build/gh/teach/python-intro/main", origin=None)
    theirs, token = messages[-1]["url"], messages[-1]["token"]
    opened = victim.get(f"{theirs}tree?token={token}", headers=NAVIGATE, allow_redirects=False, timeout=30)
    assert opened.status_code == 302 and opened.headers["Location"].startswith("/embedded/")
    asked = victim.get(service.url + opened.headers["Location"], headers=NAVIGATE, allow_redirects=False, timeout=30)
    # A question, with what it would end, and nothing set: the visitor's session is as it was.
    assert asked.status_code == 200 and 'id="closes"' in asked.text and "Set-Cookie" not in asked.headers
    assert nbpool_cookies() == mine and victim.get(url, timeout=30).status_code == 200
    # Another site cannot press the button for them.
    pressed = victim.post(service.url + opened.headers["Location"], headers={"Origin": FOREIGN},
                          allow_redirects=False, timeout=30)
    assert pressed.status_code == 403 and nbpool_cookies() == mine
    # Nor is a page's credential a way in without the page's origin (a link's own request has none).
    assert victim.get(f"{theirs}api/contents?token={token}", timeout=30).status_code == 403
    assert victim.get(url, timeout=30).status_code == 200


# --- the file as it is ----------------------------------------------------------------------------------------

def test_a_setting_removed_from_the_file_returns_to_its_default_on_sighup(make_service):
    service = make_service(Pool__warm=1, WebApp__cors_origin=["*"])
    service.start()
    session = visitor()
    base = base_of(spawn(session, service.url))
    made = session.post(f"{base}api/contents", json={"type": "notebook"}, headers={"Origin": FOREIGN}, timeout=30)
    assert made.status_code == 201  # ["*"]: any site's page may act for the attendee (the operator chose it)
    del service.settings["WebApp.cors_origin"]
    service.write_config()
    service.sighup()
    service.wait_for(lambda: "applied WebApp: cors_origin=[]" in service.logs(), timeout=30, what="the reload")
    refused = session.post(f"{base}api/contents", json={"type": "notebook"}, headers={"Origin": FOREIGN},
                           timeout=30)
    assert refused.status_code == 403


# --- restarts always come up ------------------------------------------------------------------------------------

def test_a_restart_comes_up_when_its_containers_were_removed_while_it_was_stopped(make_service, docker_client):
    from tests.dockertools import remove_service_containers

    service = make_service(Pool__warm=1, Pool__max_containers=6, WorkKeeper__keep_interval=10)
    service.start()
    people, idle = [], []
    for n in range(3):
        person = visitor()
        url = spawn(person, service.url)
        put_file(person, service.url, base_of(url), f"notes-{n}.txt", b"mine\n")
        people.append((person, cid_of(url), n))
    for _ in range(2):  # two who only looked: their checkpoints found nothing of theirs
        person = visitor()
        url = spawn(person, service.url)
        assert person.get(url, timeout=30).ok
        idle.append(cid_of(url))

    # Each is checkpointed (a live session on disk, with its file or with none) ...
    def checkpointed() -> bool:
        rows = {row["id"]: row["files"] for row in service.admin("GET", "/api/admin/kept").json()["sessions"]
                if row["state"] == "live"}
        return all(rows.get(cid, 0) >= 1 for _, cid, _ in people) and all(cid in rows for cid in idle)

    service.wait_for(checkpointed, timeout=60, what="a checkpoint of each")
    assert service.stop() == 0
    # ... then the machine reboots, or an operator runs make clean-containers, while nbpool is stopped.
    assert len(remove_service_containers(docker_client, service.pool_name)) >= 3
    service.start()  # comes up the first time
    for person, cid, n in people:
        ended = person.get(f"{service.url}/user/{cid}/tree", timeout=30)
        assert ended.status_code == 404 and f"notes-{n}.txt" in ended.text  # the last checkpoint, offered back
    assert "Traceback" not in service.logs()


# --- a few greedy networks cannot take the whole pool ------------------------------------------------------------

def test_greedy_networks_cannot_take_the_whole_pool_and_ipv6_counts_by_its_64(make_service):
    # Behind a balancer on this machine (trusted), so the visitors' own addresses come in X-Forwarded-For.
    service = make_service(Pool__warm=2, Pool__max_containers=10, WebApp__address_share_exempt=[],
                           Proxy__trust_forwarded=True)
    service.start()

    def take(address: str) -> int:
        return requests.get(f"{service.url}/spawn?new=1", headers={"X-Forwarded-For": address,
                                                                   "User-Agent": "Mozilla/5.0"},
                            allow_redirects=False, timeout=30).status_code

    # One subscriber's /64 is one network, however many addresses it uses: half of 10, then no more.
    got = [take(f"2001:db8:1:2::{n:x}") for n in range(1, 9)]
    assert got[:5] == [302] * 5 and set(got[5:]) == {429}
    # A second greedy network takes what the reserve leaves: 8 of 10 in all ...
    assert [take("198.51.100.7") for _ in range(4)] == [302, 302, 302, 429]
    assert service.stats()["assigned"] + service.stats()["queue"] == 8
    # ... and the last places go to newcomers from elsewhere.
    assert take("203.0.113.5") == 302 and take("192.0.2.99") == 302
    assert take("192.0.2.99") == 429  # (which then hold one, like everyone else)
    assert "reserve reached" in service.logs() or "newcomers" in service.logs()


# --- bounded where an attacker controls the size ------------------------------------------------------------

def rss_mib(pid: int) -> float:
    return vm_kib(pid, "VmRSS") / 1024


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_unread_static_requests_under_distinct_queries_cost_nbpool_no_memory(make_service, docker_client):
    service = make_service(Pool__warm=2, Pool__max_containers=4)
    service.start()
    session = visitor()
    url = spawn(session, service.url)
    code, out = container_of(docker_client, cid_of(url)).exec_run(
        ["sh", "-c", "find /opt/notebook -path '*/notebook/static/*.js' -size +1000k"])
    assert code == 0 and out.split(), out
    big = urlsplit(base_of(url)).path + "static/notebook/" + os.path.basename(out.split()[0].decode())
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    pid = service.proc.pid
    before = rss_mib(pid)
    # 300 requests for one large static file under distinct query strings, their answers never read: each a
    # cache miss that could start a fill of its own.
    unread = []
    try:
        for n in range(300):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
            sock.sendall(f"GET {big}?v={n} HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\nCookie: {cookie}\r\n\r\n"
                         .encode())
            unread.append(sock)
        peak = before
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            peak = max(peak, rss_mib(pid))
            time.sleep(0.25)
    finally:
        for sock in unread:
            sock.close()
    print(f"nbpool's RSS: {before:.0f} MiB before, {peak:.0f} MiB at most with 300 unread static requests")
    # Bounded by what the cache may hold (Proxy.cache_size, 64 MiB, which these distinct queries fill) and the
    # fills' budget (4 x cache_max_entry, 32 MiB), with the allocator's slack; without the bounds, 46 -> 1,512 MiB.
    assert peak - before < 200, (before, peak)
    assert service.stats()["assigned"] == 1  # and the service serves on


def test_connections_that_never_finish_a_tls_handshake_hold_nothing(make_service, certificate):
    cert, key = certificate
    service = make_service(Pool__warm=1, Proxy__certfile=cert, Proxy__keyfile=key,
                           Proxy__max_connections_per_address=10, Proxy__tls_handshake_timeout=3)
    service.start()
    pid = service.proc.pid
    before = open_files(pid)
    silent = [socket.create_connection(("127.0.0.1", service.port), timeout=10) for _ in range(300)]
    try:
        time.sleep(1)
        held = open_files(pid) - before
        # At most the per-network cap of them, and none once the handshake time has passed.
        assert held <= 12, held
        service.wait_for(lambda: open_files(pid) <= before + 1, timeout=15, what="the silent connections closed")
        # A real visitor is served, and over HTTPS nbpool's cookies are __Host- cookies, which no other host
        # (a sibling name in subdomain mode) can set or shadow; their container answers to them.
        session = visitor()
        session.verify, session.trust_env = False, False  # (a self-signed certificate; no CA bundle from the host)
        taken = session.get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
        url = through_the_line(session, service.url, taken)
        cookie = taken.headers["Set-Cookie"]
        assert cookie.startswith("__Host-nbpool-session=") and "Secure" in cookie and "Path=/" in cookie, cookie
        assert session.get(url, timeout=30).status_code == 200
    finally:
        for sock in silent:
            sock.close()
    print(f"nbpool's open files: {before} before, {before + held} with 300 silent TLS connections, "
          f"{open_files(pid)} after the handshake timeout")
