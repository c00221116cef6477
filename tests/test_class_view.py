"""The class view (issue 26) against the real service, engine, image and kernels: what the proxy sees of each
attendee's kernel WebSocket, in Jupyter's JSON protocol and its binary v1 subprotocol; hands raised and lowered;
who may look (helpers with their key, the operator; never a stranger or an attendee); several workshops.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests

from tests.service import cid_of, kernel_client, spawn, visitor

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NOTEBOOK = "01-python-introduction.ipynb"  # in the image's home folder; its cells have ids cell-00 ... cell-16
FAST = {"Pool__warm": 2, "Pool__max_containers": 4, "AbuseGuard__check_interval": 1.0}


def helper_key(service, workshop: str | None = None) -> str:
    """The class view's key as the service derives it (no WebApp.helper_key set): read from the status page."""
    page = service.admin("GET", "/api/admin/class-links").json()
    return page["workshops"][workshop] if workshop is not None else page["all"]


def class_api(service, key: str, **params) -> dict:
    resp = requests.get(f"{service.url}/api/class", headers={"Authorization": f"token {key}"}, params=params,
                        timeout=30)
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    return resp.json()


def tile(service, key: str, cid: str) -> dict | None:
    return next((s for s in class_api(service, key)["sessions"] if s["id"] == cid), None)


def wait_tile(service, key: str, cid: str, check, what: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = tile(service, key, cid)
        if found is not None and check(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s; tile {found}")


def one_attendee(make_service):
    """A started service (the class view's settings for tests), its helper key, and one attendee's session:
    (service, key, their requests session, their container's URL, its id)."""
    service = make_service(**FAST)
    service.start()
    attendee = visitor()
    url = spawn(attendee, service.url)
    return service, helper_key(service), attendee, url, cid_of(url)


async def run_cells(session, url: str, cells: list[tuple[str, str]], binary: bool) -> list[str]:
    """Open the workshop notebook's kernel as the notebook page does, run ``cells`` ((cell id, code)); statuses."""
    client = kernel_client(session, url)
    client.binary = binary
    await client.start_session(NOTEBOOK)
    assert (client.subprotocol == "v1.kernel.websocket.jupyter.org") == binary, client.subprotocol
    try:
        return [(await client.execute(code, cell_id=cell)).status for cell, code in cells]
    finally:
        await client.shutdown()


@pytest.mark.parametrize("binary", [True, False], ids=["v1-binary", "json"])
def test_a_failing_cell_shows_on_its_tile_and_three_in_a_row_make_the_attendee_stuck(make_service, binary):
    service, key, attendee, url, cid = one_attendee(make_service)
    first = wait_tile(service, key, cid, lambda t: True, "a tile for the new session")
    assert first["name"] == "Attendee 1" and first["cell"] is None and first["cells_run"] == 0, first

    statuses = asyncio.run(run_cells(attendee, url, [("cell-02", "attendees = 42\nroom = 'B'"),
                                                     ("cell-06", "lengths = [len(n) for n in languages]")], binary))
    assert statuses == ["ok", "error"]
    shown = wait_tile(service, key, cid, lambda t: t["outcome"] == "error", "the failed cell")
    assert shown["error"] == "NameError" and shown["error_line"] == "name 'languages' is not defined", shown
    assert shown["cell"] == {"index": 6, "first_line": "lengths = [len(n) for n in languages]"}, shown
    assert shown["notebook"] == NOTEBOOK and shown["section"] == "2. Lists and loops", shown
    assert shown["cells_run"] == 2 and shown["errors_in_a_row"] == 1 and not shown["stuck"], shown
    assert shown["memory_limit_bytes"] == 512 * 1024 * 1024, shown

    asyncio.run(run_cells(attendee, url, [("cell-06", "lengths = [len(n) for n in languages]"),
                                          ("cell-06", "print(languages)")], binary))
    stuck = wait_tile(service, key, cid, lambda t: t["stuck"], "stuck after three failures in a row")
    assert stuck["errors_in_a_row"] == 3 and stuck["state"] == "stuck" and stuck["stuck_reason"], stuck
    assert 0 < stuck["memory_bytes"] < 512 * 1024 * 1024, stuck  # (the guard reads it every second here)
    summary = class_api(service, key)["summary"]
    assert summary["counts"]["stuck"] == 1 and summary["counts"]["total"] == 1, summary
    (progress,) = summary["notebooks"]
    at = {s["title"]: s["attendees"] for s in progress["sections"]}
    assert progress["path"] == NOTEBOOK and at["2. Lists and loops"] == 1 and sum(at.values()) == 1, progress

    # A success ends the stuck period; the record keeps where it was (for the report), not the code.
    asyncio.run(run_cells(attendee, url, [("cell-04", "languages = ['Python', 'R']")], binary))
    wait_tile(service, key, cid, lambda t: not t["stuck"] and t["outcome"] == "ok", "un-stuck after a success")
    events = [json.loads(line) for line in (service.data_dir / "record" / "events.jsonl").read_text().splitlines()]
    stuck_events = [e for e in events if e["e"] == "stuck"]
    assert [(e["cid"], e["notebook"], e["section"], e["rule"], e["error"]) for e in stuck_events] == \
        [(cid, NOTEBOOK, "2. Lists and loops", "errors", "NameError")], stuck_events
    assert "languages" not in json.dumps(stuck_events)


def test_hands_come_first_and_go_when_lowered_and_only_from_the_attendees_own_page(make_service):
    service = make_service(**FAST)
    service.start()
    key = helper_key(service)
    first, second = visitor(), visitor()
    url1, url2 = spawn(first, service.url), spawn(second, service.url)
    cid1, cid2 = cid_of(url1), cid_of(url2)
    own = {"Origin": service.url}
    wait_tile(service, key, cid1, lambda t: t["hand"] is None, "the first attendee's tile")

    named = second.post(f"{service.url}/api/me", json={"name": "Ada"}, headers=own, timeout=30)
    assert named.status_code == 200 and named.json()["name"] == "Ada" and named.json()["named"], named.text
    raised = second.post(f"{service.url}/api/hand", json={"text": "ex 3?"}, headers=own, timeout=30)
    assert raised.status_code == 200 and raised.json()["hand"]["text"] == "ex 3?", raised.text
    sessions = class_api(service, key)["sessions"]
    assert [s["id"] for s in sessions][:1] == [cid2] and sessions[0]["name"] == "Ada", sessions
    assert sessions[0]["state"] == "hand" and class_api(service, key)["summary"]["counts"]["hands"] == 1

    # Another site's page cannot raise a hand with the attendee's cookie (a browser would send its Origin).
    forged = first.post(f"{service.url}/api/hand", json={"text": "x"}, headers={"Origin": "https://evil.example"},
                        timeout=30)
    assert forged.status_code == 403 and tile(service, key, cid1)["hand"] is None
    # Without a session, nobody's hand goes up; a bad value is named.
    assert visitor().post(f"{service.url}/api/hand", json={}, headers=own, timeout=30).status_code == 403
    too_long = first.post(f"{service.url}/api/me", json={"name": "x" * 41}, headers=own, timeout=30)
    assert too_long.status_code == 400 and "40" in too_long.json()["error"]

    lowered = second.delete(f"{service.url}/api/hand", headers=own, timeout=30)
    assert lowered.status_code == 200 and lowered.json()["hand"] is None
    assert tile(service, key, cid2)["hand"] is None
    # A helper lowers one from the view; "done" shows.
    first.post(f"{service.url}/api/hand", json={}, headers=own, timeout=30)
    first.post(f"{service.url}/api/me", json={"done": True}, headers=own, timeout=30)
    by_helper = requests.delete(f"{service.url}/api/class/hand/{cid1}", headers={"Authorization": f"token {key}"},
                                timeout=30)
    assert by_helper.status_code == 200 and tile(service, key, cid1)["hand"] is None
    assert tile(service, key, cid1)["done"] is True
    events = [json.loads(line) for line in (service.data_dir / "record" / "events.jsonl").read_text().splitlines()]
    hands = [(e["cid"], e["action"], e.get("by")) for e in events if e["e"] == "hand"]
    assert hands == [(cid2, "raised", None), (cid2, "lowered", "attendee"), (cid1, "raised", None),
                     (cid1, "lowered", "helper")], hands
    assert all(e["seconds"] >= 0 for e in events if e["e"] == "hand" and e["action"] == "lowered")

    # An image without nbpool's control: the attendee raises a hand from nbpool's own page.
    page = second.get(f"{service.url}/hand", timeout=30)
    assert page.status_code == 200 and 'name="action" value="raise"' in page.text and "Ada" in page.text
    sent = second.post(f"{service.url}/hand?id={cid2}", data={"action": "raise", "text": "from the page"},
                       headers=own, allow_redirects=False, timeout=30)
    assert sent.status_code == 302 and tile(service, key, cid2)["hand"]["text"] == "from the page"
    assert "from the page" in second.get(f"{service.url}/hand", timeout=30).text
    assert visitor().get(f"{service.url}/hand", timeout=30).status_code == 403
    metrics = service.admin("GET", "/metrics").text
    assert "nbpool_class_hands_total 3.0" in metrics and "nbpool_class_hands_raised 1.0" in metrics
    assert "nbpool_class_attendees 2.0" in metrics

    # The session's details go when it ends.
    service.admin("DELETE", f"/api/admin/containers/{cid2}")
    service.wait_for(lambda: tile(service, key, cid2) is None, timeout=20, what="the ended session's tile gone")


def test_strangers_and_attendees_are_refused_and_the_helper_link_reaches_no_admin_action(make_service):
    service = make_service(**FAST)
    service.start()
    key = helper_key(service)
    attendee = visitor()
    spawn(attendee, service.url)
    stranger = visitor()
    for who in (stranger, attendee):
        for path in ("/class", "/api/class", "/api/class/events"):
            resp = who.get(f"{service.url}{path}", timeout=30)
            assert resp.status_code == 403, (path, resp.status_code)
        wrong = who.get(f"{service.url}/api/class", headers={"Authorization": "token not-the-key"}, timeout=30)
        assert wrong.status_code == 403
    # The attendee's own page cannot read the class with their cookie, nor lower another's hand.
    assert attendee.delete(f"{service.url}/api/class/hand/abc", headers={"Origin": service.url},
                           timeout=30).status_code == 403

    helper = visitor()
    signed_in = helper.get(f"{service.url}/class?key={key}", allow_redirects=False, timeout=30)
    assert signed_in.status_code == 302 and "key=" not in signed_in.headers["Location"]
    assert signed_in.headers["Referrer-Policy"] == "no-referrer"
    page = helper.get(f"{service.url}/class", timeout=30)
    assert page.status_code == 200 and 'data-events-url="/api/class/events"' in page.text
    assert f"<code>{service.url}/hand</code>" in page.text  # where attendees without the hand control raise one
    assert helper.get(f"{service.url}/api/class", timeout=30).status_code == 200
    for method, path in (("GET", "/api/admin/containers"), ("POST", "/api/admin/resize"), ("GET", "/metrics"),
                         ("POST", "/api/admin/drain"), ("GET", "/api/admin/bans"), ("GET", "/api/admin/history"),
                         ("GET", "/api/admin/class-links")):
        resp = helper.request(method, f"{service.url}{path}", headers={"Origin": service.url}, json={}, timeout=30)
        assert resp.status_code in (401, 403), (method, path, resp.status_code)
        with_key = requests.request(method, f"{service.url}{path}", headers={"Authorization": f"token {key}",
                                                                             "Origin": service.url}, json={},
                                    timeout=30)
        assert with_key.status_code in (401, 403), (method, path, with_key.status_code)
    assert helper.get(f"{service.url}/status", timeout=30).status_code == 401
    # The operator's token works too.
    assert service.admin("GET", "/api/class").status_code == 200

    # Path mode: a helper who opens a notebook in the same browser is signed out of the view (the notebook's
    # pages share the origin and would read the whole class with the helper's cookie).
    spawn(helper, service.url)
    assert helper.get(f"{service.url}/api/class", timeout=30).status_code == 403


def test_each_workshop_sees_its_own_and_the_service_key_sees_all(make_service):
    workshops = {"intro": {"warm": 1, "max_containers": 2}, "advanced": {"warm": 1, "max_containers": 2}}
    service = make_service(NbpoolApp__workshops=workshops, Pool__warm=1, AbuseGuard__check_interval=1.0)
    service.start()
    links = service.admin("GET", "/api/admin/class-links").json()
    intro_key, advanced_key = links["workshops"]["intro"], links["workshops"]["advanced"]
    a, b = visitor(), visitor()
    cid_a = cid_of(spawn(a, f"{service.url}/w/intro"))
    cid_b = cid_of(spawn(b, f"{service.url}/w/advanced"))
    service.wait_for(lambda: len(class_api(service, links["all"])["sessions"]) == 2, timeout=10,
                     what="both attendees' tiles")
    assert [s["id"] for s in class_api(service, intro_key)["sessions"]] == [cid_a]
    assert [s["id"] for s in class_api(service, advanced_key)["sessions"]] == [cid_b]
    everyone = class_api(service, links["all"])["sessions"]
    assert sorted((s["id"], s["workshop"]) for s in everyone) == sorted([(cid_a, "intro"), (cid_b, "advanced")])
    assert [s["id"] for s in class_api(service, links["all"], workshop="advanced")["sessions"]] == [cid_b]
    # A workshop's key shows neither the other workshop nor its page.
    other = requests.get(f"{service.url}/api/class", params={"workshop": "advanced"},
                         headers={"Authorization": f"token {intro_key}"}, timeout=30)
    assert other.status_code == 403
    helper = visitor()
    assert helper.get(f"{service.url}/w/intro/class?key={intro_key}", timeout=30).status_code == 200
    assert helper.get(f"{service.url}/w/advanced/class", timeout=30).status_code == 403
    assert helper.get(f"{service.url}/class", timeout=30).status_code == 200  # (its own workshop's sessions only)
    assert [s["id"] for s in helper.get(f"{service.url}/api/class", timeout=30).json()["sessions"]] == [cid_a]


def test_the_stream_pushes_a_run_as_it_happens(make_service):
    service, key, attendee, url, cid = one_attendee(make_service)
    seen: list[tuple[float, dict]] = []

    async def watch_and_run() -> None:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        buffer = b""

        def on_chunk(chunk: bytes) -> None:
            nonlocal buffer
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if event.startswith(b"data: "):
                    seen.append((time.monotonic(), json.loads(event[6:])))

        stream = AsyncHTTPClient().fetch(HTTPRequest(f"{service.url}/api/class/events", request_timeout=60,
                                                     headers={"Authorization": f"token {key}"},
                                                     streaming_callback=on_chunk), raise_error=False)
        client = kernel_client(attendee, url)
        await client.start_session(NOTEBOOK)
        await client.execute("1 / 0", cell_id="cell-09")
        for _ in range(100):
            # The error comes from the kernel at once, its cell's position once the notebook's outline is read.
            if any(t["id"] == cid and t["error"] == "ZeroDivisionError" and (t["cell"] or {}).get("index") is not None
                   for _, snap in seen for t in snap["sessions"]):
                break
            await asyncio.sleep(0.1)
        await client.shutdown()
        stream.cancel()

    asyncio.run(watch_and_run())
    # Pushed (benchmarks/class_view.py measures how soon): the stream's snapshots show the run and its error.
    shown = [s for _, snap in seen for s in snap["sessions"] if s["id"] == cid and s["error"] == "ZeroDivisionError"]
    assert shown and shown[-1]["cell"] == {"index": 9, "first_line": "1 / 0"}, seen[-1:]
