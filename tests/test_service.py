"""The whole service end to end: the real port, the real engine and image (issue: the front door)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import pytest
import requests

from tests.dockertools import remove_pool_containers
from tests.service import Service, cid_of, kernel_client, spawn, through_the_line, visitor

pytestmark = [pytest.mark.docker, pytest.mark.slow]




@pytest.fixture(scope="module")
def shared(docker_client, notebook_image, tmp_path_factory):
    """One service for the visitor-path tests: warm 2, cap 14 (each test keeps its containers)."""
    service = Service(tmp_path_factory.mktemp("nbpool"), f"nbpool-e2e-{secrets.token_hex(3)}",
                      Pool__warm=2, Pool__max_containers=14)
    service.start()
    yield service
    service.stop()
    remove_pool_containers(docker_client, service.pool_name)



# --- the visitor's path --------------------------------------------------------------------

def test_landing_page_takes_no_container(shared):
    before = shared.stats()
    page = visitor().get(f"{shared.url}/", timeout=10)
    assert page.status_code == 200
    assert 'action="/spawn"' in page.text and "landing.js" in page.text
    time.sleep(0.5)
    assert shared.stats()["assigned"] == before["assigned"]


def test_link_previews_and_crawlers_take_no_container(shared):
    before = shared.stats()["assigned"]
    for agent in ("Slackbot-LinkExpanding 1.0", "Twitterbot/1.0", "Mozilla/5.0 (compatible; Googlebot/2.1)"):
        page = requests.get(f"{shared.url}/spawn", headers={"User-Agent": agent}, allow_redirects=False, timeout=10)
        assert page.status_code == 200
    robots = requests.get(f"{shared.url}/robots.txt", timeout=10).text
    assert "Disallow: /spawn" in robots
    assert shared.stats()["assigned"] == before


def test_spawn_hands_out_a_container_with_a_cookie(shared):
    session = visitor()
    resp = session.get(f"{shared.url}/spawn", allow_redirects=False, timeout=30)
    assert resp.status_code == 302
    assert re.fullmatch(r"/user/[0-9a-f]{12}/tree", resp.headers["Location"])
    cookie = resp.headers["Set-Cookie"]
    assert "nbpool-session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "token" not in resp.headers["Location"]
    page = session.get(shared.url + resp.headers["Location"], timeout=30)
    assert page.status_code == 200 and "jupyter-config-data" in page.text
    listing = session.get(f"{shared.url}{resp.headers['Location'][:-4]}api/contents", timeout=30).json()
    names = {item["name"] for item in listing["content"]}
    assert {"01-python-introduction.ipynb", "04-bash-introduction.ipynb"} <= names


def test_deep_link_opens_the_notebook(shared):
    session = visitor()
    url = spawn(session, shared.url, "notebooks/02-r-introduction.ipynb")
    assert url.endswith("/notebooks/02-r-introduction.ipynb")
    assert session.get(url, timeout=30).status_code == 200


def test_returning_visitor_goes_back_unless_asking_for_new(shared):
    session = visitor()
    first = spawn(session, shared.url)
    again = spawn(session, shared.url, "lab")
    assert cid_of(again) == cid_of(first) and again.endswith("/lab")
    # ?new=1 never ends a live session by a link alone: it asks, and nbpool's own page confirms by POST.
    asked = session.get(f"{shared.url}/spawn?new=1", allow_redirects=False, timeout=30)
    assert asked.status_code == 200 and 'id="fresh"' in asked.text and cid_of(first) in asked.text
    confirmed = session.post(f"{shared.url}/spawn?new=1", headers={"Origin": shared.url}, allow_redirects=False,
                             timeout=30)
    fresh = through_the_line(session, shared.url, confirmed)
    assert cid_of(fresh) != cid_of(first)
    assert session.get(first, timeout=30).status_code in (403, 404) and session.get(fresh, timeout=30).ok


def test_another_client_gets_403_offering_a_fresh_notebook(shared):
    owner = visitor()
    url = spawn(owner, shared.url, "notebooks/01-python-introduction.ipynb")
    stranger = visitor()
    page = stranger.get(url, timeout=30)
    assert page.status_code == 403
    assert 'href="/spawn/notebooks/01-python-introduction.ipynb?new=1"' in page.text
    api = stranger.get(url.split("/notebooks/")[0] + "/api/contents", timeout=30)
    assert api.status_code == 403 and api.headers["Content-Type"].startswith("application/json")
    forged = stranger.get(url, cookies={"nbpool-session": f"{cid_of(url)}:{'0' * 16}.{'f' * 32}"}, timeout=30)
    assert forged.status_code == 403
    assert owner.get(url, timeout=30).status_code == 200


def test_ended_session_offers_a_fresh_one_at_the_same_path(shared):
    session = visitor()
    url = spawn(session, shared.url, "notebooks/03-octave-introduction.ipynb")
    assert shared.admin("DELETE", f"/api/admin/containers/{cid_of(url)}").status_code == 204
    ended = session.get(url, timeout=30)
    assert ended.status_code == 404
    assert "has ended" in ended.text
    link = re.search(r'href="(/spawn/[^"]+)"', ended.text).group(1)
    assert link == "/spawn/notebooks/03-octave-introduction.ipynb?new=1"
    new_url = spawn(session, shared.url, link.removeprefix("/spawn/"))
    assert cid_of(new_url) != cid_of(url)
    assert session.get(new_url, timeout=30).status_code == 200


def test_kernel_runs_through_the_proxy_with_only_the_cookie(shared):
    session = visitor()
    url = spawn(session, shared.url)

    async def run() -> str:
        client = kernel_client(session, url)
        try:
            await client.start("python3")
            return (await client.execute("print(6 * 7)")).output.strip()
        finally:
            await client.shutdown()

    assert asyncio.run(run()) == "42"


def test_api_spawn_gives_a_one_time_link(shared):
    resp = requests.post(f"{shared.url}/api/spawn", json={"path": "lab"}, timeout=60)
    assert resp.status_code == 200
    link = resp.json()["url"]
    assert link.startswith(f"{shared.url}/spawn/claim/")
    browser = visitor()
    opened = browser.get(link, allow_redirects=False, timeout=30)
    assert opened.status_code == 302 and opened.headers["Location"].endswith("/lab")
    assert browser.get(shared.url + opened.headers["Location"], timeout=30).status_code == 200
    reopened = browser.get(link, allow_redirects=False, timeout=30)  # a reload, a second click: back in
    assert reopened.status_code == 302 and reopened.headers["Location"] == opened.headers["Location"]
    again = visitor().get(link, allow_redirects=False, timeout=30)  # anyone else: it was used
    assert again.status_code == 410 and not again.cookies


def test_stats_health_and_metrics(shared):
    stats = shared.stats()
    assert set(stats) == {"available", "assigned", "launching", "capacity", "queue", "image", "version"}
    assert stats["capacity"] == 14 and stats["image"] == "nbpool/notebook:latest"
    health = requests.get(f"{shared.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["breaker_open"] is False
    assert requests.get(f"{shared.url}/metrics", timeout=10).status_code == 401  # the admin token, even from here
    metrics = shared.admin("GET", "/metrics").text
    for name in ("nbpool_pool_available", "nbpool_spawn_seconds_bucket", "nbpool_proxy_requests_total",
                 "nbpool_proxy_websockets_total"):
        assert name in metrics


def test_admin_api_needs_the_token(shared):
    assert requests.get(f"{shared.url}/api/admin/containers", timeout=10).status_code == 401
    wrong = requests.get(f"{shared.url}/api/admin/containers", headers={"Authorization": "token nope"}, timeout=10)
    assert wrong.status_code == 401
    listing = shared.admin("GET", "/api/admin/containers").json()
    assert {"id", "state", "age_seconds", "idle_seconds"} <= set(listing["containers"][0])
    assert shared.admin("POST", "/api/admin/resize", json={"warm": -1}).status_code == 400
    assert "-1" in shared.admin("POST", "/api/admin/resize", json={"warm": -1}).json()["error"]
    page = requests.get(f"{shared.url}/status", timeout=10)
    assert page.status_code == 401 and 'name="token"' in page.text
    session = requests.Session()
    assert session.post(f"{shared.url}/status/login", data={"token": shared.admin_token}, timeout=10).status_code == 200
    assert "Pool status" in session.get(f"{shared.url}/status", timeout=10).text
    assert session.get(f"{shared.url}/api/admin/history", timeout=10).json()["samples"]
    assert shared.admin_token not in shared.logs()


# --- the waiting line, the cap, the rate limit --------------------------------------------------

def test_queue_then_success_when_no_spare_then_full_at_the_cap(make_service):
    service = make_service(Pool__warm=0, Pool__max_containers=2)
    service.start(wait_warm=False)
    session = visitor()
    resp = session.get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/spawn/wait/")
    page = session.get(service.url + resp.headers["Location"], allow_redirects=False, timeout=30)
    if page.status_code == 200:  # still starting: the waiting page shows the place in line
        assert "in line" in page.text or "You are next" in page.text
        # A refresh for browsers without scripts only: in a scripted one it raced with the script's own move.
        assert '<noscript><meta http-equiv="refresh"' in page.text
    url = spawn(session, service.url)  # the same visitor keeps its ticket cookie... or goes back to its container
    assert session.get(url, timeout=30).status_code == 200
    second = visitor()
    spawn(second, service.url)
    third = visitor().get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert third.status_code == 503
    assert int(third.headers["Retry-After"]) > 0
    assert "busy" in third.text
    api = requests.post(f"{service.url}/api/spawn", timeout=30)
    assert api.status_code == 429 and "Retry-After" in api.headers


def test_a_place_in_line_asked_for_again_once_served_leads_its_own_browser_alone_to_the_same_container(
        make_service):
    # The waiting page's script and a reload (or a second tab) can both ask for a place the moment it is
    # served; the second request used to find it "expired" and left the visitor there, their container taken.
    service = make_service(Pool__warm=0, Pool__max_containers=2)
    service.start(wait_warm=False)
    session = visitor()
    resp = session.get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/spawn/wait/")
    wait_url = service.url + resp.headers["Location"]
    key = wait_url.rsplit("/", 1)[1]
    ticket = dict(session.cookies)  # what a request sent before the first answer still carries
    deadline = time.monotonic() + 120
    while not session.get(f"{service.url}/api/queue/{key}?wait=20", timeout=30).json().get("ready"):
        assert time.monotonic() < deadline, "the container was never ready"

    first = session.get(wait_url, allow_redirects=False, timeout=30)
    assert first.status_code == 302 and "/user/" in first.headers["Location"]
    assert "nbpool-ticket" not in session.cookies  # the first answer ends the place in line

    # A second request of the same browser sent before that answer: the same container, its cookie again.
    early = requests.get(wait_url, cookies=ticket, headers=session.headers, allow_redirects=False, timeout=30)
    assert early.status_code == 302 and early.headers["Location"] == first.headers["Location"]
    assert "nbpool-session" in early.cookies
    # One sent after it (the session cookie, no ticket): the same container too, and the script's poll says so.
    assert session.get(wait_url, allow_redirects=False, timeout=30).headers["Location"] == first.headers["Location"]
    assert session.get(f"{service.url}/api/queue/{key}", timeout=30).json()["ready"] is True

    # Anyone else who learnt the link (a shared screen, a history) gets nothing from it.
    stranger = visitor()
    taken = stranger.get(wait_url, allow_redirects=False, timeout=30)
    assert taken.status_code == 410 and "Location" not in taken.headers and not stranger.cookies
    assert stranger.get(f"{service.url}/api/queue/{key}", timeout=30).status_code == 410
    other = visitor()  # with a ticket of their own, for another place
    other.get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert "nbpool-ticket" in other.cookies
    assert other.get(wait_url, allow_redirects=False, timeout=30).status_code == 410
    assert session.get(first.headers["Location"] if first.headers["Location"].startswith("http")
                       else service.url + first.headers["Location"], timeout=30).status_code == 200


def test_spawn_rate_limit_per_address(make_service):
    service = make_service(Pool__warm=1, Pool__max_containers=3, WebApp__spawn_rate_limit=2)
    service.start()
    statuses = [visitor().get(f"{service.url}/spawn?new=1", allow_redirects=False, timeout=30).status_code
                for _ in range(4)]
    assert statuses[:2] != [429, 429]
    limited = visitor().get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


# --- restarts and reloads -------------------------------------------------------------------------

def test_restart_keeps_an_assigned_visitors_session(make_service):
    service = make_service(Pool__warm=1)
    service.start()
    session = visitor()
    url = spawn(session, service.url)

    async def set_variable() -> str:
        client = kernel_client(session, url)
        kernel = await client.start("python3")
        await client.execute("survivor = 'still here'")
        client.detach()
        return kernel

    kernel_id = asyncio.run(set_variable())
    service.restart()
    assert session.get(url, timeout=30).status_code == 200  # same URL, same cookie

    async def read_variable() -> str:
        client = kernel_client(session, url)
        await client.attach(kernel_id)
        try:
            return (await client.execute("print(survivor)")).output.strip()
        finally:
            await client.shutdown()

    assert asyncio.run(read_variable()) == "still here"
    assert "1 assigned adopted" in service.logs()


def test_sighup_resizes_live_and_a_bad_file_changes_nothing(make_service):
    service = make_service(Pool__warm=1, Pool__max_containers=4)
    service.start()
    service.write_config(Pool__warm=2, Pool__max_containers=5)
    service.sighup()
    service.wait_for(lambda: service.stats()["capacity"] == 5, timeout=15, what="capacity 5")
    service.wait_for(lambda: service.stats()["available"] == 2, timeout=90, what="two spares")
    service.write_config(Pool__max_containers="lots")
    service.sighup()
    service.wait_for(lambda: "config reload failed" in service.logs(), timeout=15, what="the reload error")
    assert "'lots'" in service.logs()
    assert service.stats()["capacity"] == 5
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200


def test_stop_removes_spares_and_keeps_assigned(make_service, docker_client):
    service = make_service(Pool__warm=2)
    service.start()
    session = visitor()
    url = spawn(session, service.url)
    assert service.stop() == 0
    names = [c.name for c in docker_client.containers.list(
        all=True, filters={"label": f"org.nbpool.pool={service.pool_name}"})]
    assert len(names) == 1 and cid_of(url) in names[0] and "--a" in names[0]


# --- the load generator against the real service ---------------------------------------------------

def test_loadtest_three_attendees_against_the_service(make_service, tmp_path):
    import loadtest

    service = make_service(Pool__warm=2, Pool__max_containers=4)
    service.start()
    report = asyncio.run(loadtest.run(service.url, users=3, session_seconds=3, think=0.5,
                                      notebook="01-python-introduction.ipynb"))
    assert report.ok, report.table()
    assert report.summary.failed == 0
    first = report.summary.row("time to first result")
    assert first.count == 3
    report.write_plot(str(tmp_path / "plot.html"))
    html = (tmp_path / "plot.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_container_killed_mid_session_shows_the_ended_page(make_service, docker_client):
    # No reconcile pass during the test: only the engine's event can tell the pool.
    service = make_service(Pool__warm=1, Pool__max_containers=3, Pool__reconcile_interval=3600)
    service.start()
    session = visitor()
    url = spawn(session, service.url, "notebooks/01-python-introduction.ipynb")
    engine = next(c for c in docker_client.containers.list(
        filters={"label": f"org.nbpool.pool={service.pool_name}"}) if cid_of(url) in c.name)
    engine.kill()
    # A moment after the kill, the page stops saying "not answering" (the route's own page) and says why.
    service.wait_for(lambda: session.get(url, timeout=30).status_code == 404, timeout=20, what="the ended page")
    page = session.get(url, timeout=30)
    assert "has ended" in page.text and "Its server stopped unexpectedly." in page.text
    assert 'href="/spawn/notebooks/01-python-introduction.ipynb?new=1"' in page.text
    # Killed before its first checkpoint, with nothing made: its owner is told plainly; a stranger is not.
    assert "Nothing of yours was kept" in page.text
    assert "Nothing of yours was kept" not in requests.get(url, timeout=30).text
    api = session.get(url.split("/notebooks/")[0] + "/api/contents", timeout=30)
    assert api.headers["Content-Type"].startswith("application/json") and "ended" in api.text
    service.wait_for(lambda: service.stats()["assigned"] == 0 and service.stats()["available"] == 1,
                     timeout=30, what="the pool healed")
