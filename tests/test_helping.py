"""Helping inside an attendee's notebook and following the instructor (issue 27), on the real service, engine,
image and kernels, at the protocol level (the browser tests show the same from Chromium):

- a helper's grant comes as a one-use link; a watcher reads and the proxy refuses every write, run and terminal;
  a helper in help mode runs code; ending the grant (teaching team or attendee) refuses the next request and
  closes its WebSockets at once; every join and end is recorded;
- a grant opens its own container only, dies with the session, and in path mode the browser that opens it gives
  up every other credential of nbpool's it held;
- the instructor key marks a session as the instructor's; anyone follows its current notebook, as text.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from loadtest.jupyter import KernelClient, KernelError
from tests.service import cid_of, spawn, through_the_line, visitor
from tests.test_class_view import FAST, NOTEBOOK, helper_key, one_attendee, wait_tile

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def grant(service, key: str, cid: str, mode: str, name: str = "Sam") -> dict:
    resp = requests.post(f"{service.url}/api/class/{cid}/{mode}", json={"name": name},
                         headers={"Authorization": f"token {key}"}, timeout=30)
    assert resp.status_code == 200, (resp.status_code, resp.text[:300])
    return resp.json()


def open_link(helper: requests.Session, link: str) -> requests.Response:
    """Follow a helper link as a browser does (its first answer: the cookie, and the notebook's address)."""
    return helper.get(link, allow_redirects=False, timeout=30)


def cookie_header(session: requests.Session) -> dict:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in session.cookies.items())}


async def websocket_status(url: str, headers: dict) -> int:
    """The status a WebSocket handshake gets (101 when it opens)."""
    try:
        conn = await websocket_connect(HTTPRequest(url.replace("http", "ws", 1), headers=headers, request_timeout=20))
    except HTTPClientError as exc:
        return exc.code
    conn.close()
    return 101


def records(service) -> list[dict]:
    path = service.data_dir / "record" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_watcher_reads_the_notebook_and_the_proxy_refuses_every_write_run_and_terminal(make_service):
    service, key, attendee, _, cid = one_attendee(make_service)
    base = f"{service.url}/user/{cid}/"
    # The attendee has a kernel running (a watcher must not reach it either).
    async def start_kernel() -> str:
        client = KernelClient(base, cookie_header(attendee))
        await client.start_session(NOTEBOOK)
        client.detach()
        return client.kernel_id

    kernel_id = asyncio.run(start_kernel())
    made = grant(service, key, cid, "watch")
    assert made["mode"] == "watch" and made["url"].startswith(f"{service.url}/help/"), made

    stranger = visitor()  # nothing of a link's until it is opened, and nothing without it
    assert stranger.get(f"{base}api/contents", timeout=30).status_code == 403

    helper = visitor()
    opened = open_link(helper, made["url"])
    assert opened.status_code == 302 and opened.headers["Location"].startswith(f"/user/{cid}/lab"), opened.headers
    assert open_link(visitor(), made["url"]).status_code == 403  # one use
    own = {"Origin": service.url}
    assert helper.get(f"{base}api/contents/{NOTEBOOK}", timeout=30).status_code == 200
    assert helper.get(f"{base}api/kernels", timeout=30).status_code == 200
    refused = {
        "save": helper.put(f"{base}api/contents/{NOTEBOOK}", json={"type": "file", "format": "text", "content": "x"},
                           headers=own, timeout=30),
        "new file": helper.post(f"{base}api/contents", json={"type": "file"}, headers=own, timeout=30),
        "rename": helper.patch(f"{base}api/contents/{NOTEBOOK}", json={"path": "y.ipynb"}, headers=own, timeout=30),
        "delete": helper.delete(f"{base}api/contents/{NOTEBOOK}", headers=own, timeout=30),
        "kernel": helper.post(f"{base}api/kernels", json={"name": "python3"}, headers=own, timeout=30),
        "session": helper.post(f"{base}api/sessions", json={"path": NOTEBOOK, "type": "notebook"}, headers=own,
                               timeout=30),
        "run on the server": helper.post(f"{base}api/kernels/{kernel_id}/execute",
                                         json={"code": "print(1)"}, headers=own, timeout=30),
        "interrupt": helper.post(f"{base}api/kernels/{kernel_id}/interrupt", headers=own, timeout=30),
        "terminal": helper.post(f"{base}api/terminals", headers=own, timeout=30),
    }
    assert {what: r.status_code for what, r in refused.items()} == {what: 403 for what in refused}
    assert "read-only" in refused["save"].text
    sockets = {
        "kernel channels": asyncio.run(websocket_status(
            f"{base}api/kernels/{kernel_id}/channels?session_id=x", {**cookie_header(helper), **own})),
        "terminal": asyncio.run(websocket_status(f"{base}terminals/websocket/1", {**cookie_header(helper), **own})),
    }
    assert sockets == {"kernel channels": 403, "terminal": 403}
    # The attendee's own work went on untouched, and their page says who is watching.
    assert attendee.get(f"{base}api/contents/{NOTEBOOK}", timeout=30).status_code == 200
    me = attendee.get(f"{service.url}/api/me", timeout=30).json()
    assert [(h["name"], h["mode"], h["joined"]) for h in me["helpers"]] == [("Sam", "watch", True)], me
    assert me["viewer"] == "attendee" and me["follow_url"] == "/api/follow", me
    helping = helper.get(f"{service.url}/api/me", timeout=30).json()
    assert helping == {"viewer": "helper", "mode": "watch", "name": "Sam", "id": cid, "attendee": "Attendee 1",
                       "expires": made["expires"]}, helping
    joined = [e for e in records(service) if e["e"] == "help"]
    assert [(e["cid"], e["action"], e["helper"], e["mode"], e["by"]) for e in joined] == \
        [(cid, "joined", "Sam", "watch", "helper key")], joined
    assert "joined" in service.logs() and made["url"].rsplit("/", 1)[1] not in service.logs()  # (the link: never)


def test_a_helper_runs_code_and_ending_their_access_refuses_them_and_closes_their_kernel_at_once(make_service):
    service, key, attendee, _, cid = one_attendee(make_service)
    base = f"{service.url}/user/{cid}/"
    helper = visitor()
    assert open_link(helper, grant(service, key, cid, "help", name="Kim")["url"]).status_code == 302

    async def run_then_end() -> tuple[str, str]:
        client = KernelClient(base, cookie_header(helper))
        await client.start_session(NOTEBOOK)
        result = await client.execute("print(6 * 7)")
        ended = await asyncio.to_thread(requests.delete, f"{service.url}/api/class/{cid}/helpers",
                                        headers={"Authorization": f"token {key}"}, timeout=30)
        assert ended.json() == {"ended": 1}
        try:
            after = await asyncio.wait_for(client.execute("print(1)"), 10)
            return result.output, f"still ran: {after.status}"
        except (TimeoutError, KernelError, Exception) as exc:  # its WebSocket was closed
            return result.output, type(exc).__name__

    output, after = asyncio.run(run_then_end())
    assert output == "42\n"
    assert not after.startswith("still ran"), after
    assert helper.get(f"{base}api/contents", timeout=30).status_code == 403
    assert attendee.get(f"{base}api/contents", timeout=30).status_code == 200
    ends = [e for e in records(service) if e["e"] == "help" and e["action"] == "ended"]
    assert [(e["helper"], e["mode"], e["why"]) for e in ends] == [("Kim", "help", "ended by the teaching team")]

    # The attendee's own link for a helper, and their own "end": the same, from their page only.
    own = {"Origin": service.url}
    assert attendee.post(f"{service.url}/api/me/share", json={"mode": "help"},
                         headers={"Origin": "http://evil.example"}, timeout=30).status_code == 403
    shared = attendee.post(f"{service.url}/api/me/share", json={"mode": "help", "name": "Lee"}, headers=own,
                           timeout=30).json()
    friend = visitor()
    assert open_link(friend, shared["url"]).status_code == 302
    assert friend.put(f"{base}api/contents/note.txt", json={"type": "file", "format": "text", "content": "hi"},
                      headers=own, timeout=30).status_code == 201
    me = attendee.delete(f"{service.url}/api/me/helpers/{shared['id']}", headers=own, timeout=30).json()
    assert me["helpers"] == [], me
    assert friend.get(f"{base}api/contents", timeout=30).status_code == 403


def test_a_grant_opens_its_own_notebook_only_and_ends_with_the_session(make_service):
    service = make_service(**FAST)
    service.start()
    key = helper_key(service)
    first, second = visitor(), visitor()
    url1, url2 = spawn(first, service.url), spawn(second, service.url)
    cid1, cid2 = cid_of(url1), cid_of(url2)
    wait_tile(service, key, cid1, lambda t: True, "the first attendee's tile")
    wait_tile(service, key, cid2, lambda t: True, "the second attendee's tile")

    # Path mode: one origin, one credential at a time. A helper with a notebook of their own in this browser
    # gives it up for the grant; signing in to the class view gives up the grant; and back.
    helper = visitor()
    own_url = spawn(helper, service.url)
    assert open_link(helper, grant(service, key, cid1, "help")["url"]).status_code == 302
    names = {c.name for c in helper.cookies}
    assert "nbpool-grant" in names and "nbpool-session" not in names, names
    assert helper.get(f"{own_url.rsplit('/tree', 1)[0]}/api/contents", timeout=30).status_code == 403  # given up
    assert helper.get(f"{service.url}/api/class", timeout=30).status_code == 403  # (never beside a grant)
    assert helper.get(f"{service.url}/class?key={key}", timeout=30).status_code == 200
    assert helper.get(f"{service.url}/api/class", timeout=30).status_code == 200
    assert helper.get(f"{service.url}/user/{cid1}/api/contents", timeout=30).status_code == 403  # given up
    assert open_link(helper, grant(service, key, cid1, "help")["url"]).status_code == 302
    assert "nbpool-helper" not in {c.name for c in helper.cookies}
    assert helper.get(f"{service.url}/api/class", timeout=30).status_code == 403
    assert helper.get(f"{service.url}/user/{cid1}/api/contents", timeout=30).status_code == 200
    assert helper.get(f"{service.url}/user/{cid2}/api/contents", timeout=30).status_code == 403  # not theirs
    # A made-up cookie for the other notebook, or this one's value under its name: nothing.
    value = helper.cookies["nbpool-grant"]
    forged = value.replace(cid1, cid2)
    assert requests.get(f"{service.url}/user/{cid2}/api/contents", cookies={"nbpool-grant": forged},
                        timeout=30).status_code == 403
    assert requests.get(f"{service.url}/user/{cid2}/api/contents", cookies={"nbpool-session": value},
                        timeout=30).status_code == 403
    # The attendee leaves (a fresh notebook in its place): the grant dies with the session.
    fresh = first.post(f"{service.url}/spawn?new=1", headers={"Origin": service.url}, allow_redirects=False,
                       timeout=60)
    assert fresh.status_code in (302, 303), fresh.status_code
    deadline = time.monotonic() + 15
    while helper.get(f"{service.url}/user/{cid1}/api/contents", timeout=30).status_code == 200:
        assert time.monotonic() < deadline, "the grant outlived its session"
        time.sleep(0.5)
    # Nobody but the teaching team makes grants: a stranger, an attendee, another site.
    for who, headers in (("stranger", {}), ("attendee", cookie_header(second)),
                         ("bad key", {"Authorization": "token x"})):
        resp = requests.post(f"{service.url}/api/class/{cid2}/watch", headers={**headers, "Origin": service.url},
                             json={}, timeout=30)
        assert resp.status_code == 403, (who, resp.status_code)


def test_the_instructors_notebook_is_followed_as_text_by_anyone(make_service):
    service = make_service(**FAST)
    service.start()
    links = service.admin("GET", "/api/admin/class-links").json()
    instructor_link = links["instructor"][""]
    follower = requests.Session()  # no container, no cookie
    assert follower.get(f"{service.url}/api/follow", timeout=30).status_code == 404
    assert follower.get(f"{service.url}/follow", timeout=30).status_code == 200

    wrong = visitor().get(f"{service.url}/spawn?instructor=not-the-key", allow_redirects=False, timeout=30)
    assert wrong.status_code == 403
    instructor = visitor()
    key = urlsplit(instructor_link).query.split("=", 1)[1]
    resp = instructor.get(f"{service.url}/spawn?instructor={key}", allow_redirects=False, timeout=60)
    url = through_the_line(instructor, service.url, resp)
    cid = cid_of(url)
    wait_tile(service, helper_key(service), cid, lambda t: t["instructor"], "the instructor's tile, marked")

    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"id": "a", "cell_type": "markdown", "metadata": {}, "source": "# Live\n<script>alert(1)</script>"},
        {"id": "b", "cell_type": "code", "metadata": {}, "execution_count": 2, "source": "print('hi')",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]},
        {"id": "c", "cell_type": "code", "metadata": {}, "execution_count": 1, "source": "x",
         "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                      "data": {"text/plain": "42", "text/html": "<b onmouseover=alert(1)>42</b>"}}]}]}
    own = {"Origin": service.url}
    saved = instructor.put(f"{service.url}/user/{cid}/api/contents/live.ipynb",
                           json={"type": "notebook", "content": notebook}, headers=own, timeout=30)
    assert saved.status_code in (200, 201), saved.text[:200]
    deadline = time.monotonic() + 10
    while True:  # (until then it follows the notebook the instructor changed last: one of the image's)
        answer = follower.get(f"{service.url}/api/follow", timeout=30)
        if answer.status_code == 200 and answer.json()["notebook"] == "live.ipynb":
            break
        assert time.monotonic() < deadline, answer.text[:300]
        time.sleep(0.3)
    view = answer.json()
    assert view["notebook"] == "live.ipynb" and view["current"] == 1, view
    assert [(c["cell_type"], c["source"], c["outputs_text"]) for c in view["cells"]] == [
        ("markdown", "# Live\n<script>alert(1)</script>", ""), ("code", "print('hi')", "hi\n"), ("code", "x", "42\n")]
    assert "onmouseover" not in answer.text  # outputs as text only: no HTML of the instructor's

    # A change reaches a follower's stream within two seconds.
    with follower.get(f"{service.url}/api/follow/events", stream=True, timeout=30) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith(b"data:"))
        assert json.loads(first[5:])["cells"][1]["source"] == "print('hi')"
        notebook["cells"].append({"id": "d", "cell_type": "code", "metadata": {}, "execution_count": 3,
                                  "source": "print('new')", "outputs": [{"output_type": "stream", "name": "stdout",
                                                                         "text": "new\n"}]})
        instructor.put(f"{service.url}/user/{cid}/api/contents/live.ipynb",
                       json={"type": "notebook", "content": notebook}, headers=own, timeout=30)
        update = json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])
    assert update["cells"][-1]["outputs_text"] == "new\n" and update["current"] == 3, update


def test_several_workshops_each_follow_their_own_instructor_and_keys_stay_in_their_workshop(make_service):
    service = make_service(NbpoolApp__workshops={"a": {"display_name": "A", "warm": 1, "max_containers": 3},
                                                 "b": {"display_name": "B", "warm": 1, "max_containers": 3}},
                           AbuseGuard__check_interval=1.0)
    service.start(wait_warm=False)
    links = service.admin("GET", "/api/admin/class-links").json()
    assert set(links["instructor"]) == {"a", "b"} and links["follow"]["a"].endswith("/w/a/follow"), links
    key_a = links["instructor"]["a"].split("instructor=", 1)[1]
    wrong = visitor().get(f"{service.url}/w/b/spawn?instructor={key_a}", allow_redirects=False, timeout=30)
    assert wrong.status_code == 403  # workshop a's instructor key is no key of b's
    instructor = visitor()
    resp = instructor.get(f"{service.url}/w/a/spawn?instructor={key_a}", allow_redirects=False, timeout=60)
    cid = cid_of(through_the_line(instructor, service.url, resp))
    deadline = time.monotonic() + 15
    while requests.get(f"{service.url}/w/a/api/follow", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "workshop a's follow view never showed its instructor's notebook"
        time.sleep(0.3)
    assert requests.get(f"{service.url}/w/b/api/follow", timeout=30).status_code == 404  # b has no instructor
    assert requests.get(f"{service.url}/w/nope/api/follow", timeout=30).status_code == 404

    # Workshop b's helper key makes no grant to workshop a's sessions.
    attendee = visitor()
    a_cid = cid_of(spawn(attendee, f"{service.url}/w/a"))
    wait_tile(service, links["workshops"]["a"], a_cid, lambda t: True, "workshop a's attendee")
    refused = requests.post(f"{service.url}/api/class/{a_cid}/help", json={},
                            headers={"Authorization": f"token {links['workshops']['b']}"}, timeout=30)
    assert refused.status_code == 404
    made = requests.post(f"{service.url}/api/class/{a_cid}/help", json={},
                         headers={"Authorization": f"token {links['workshops']['a']}"}, timeout=30)
    assert made.status_code == 200 and cid != a_cid
