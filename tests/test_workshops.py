"""Several workshops on one service, against the real service, engine and image.

Each workshop has its own links, pool, landing path and sizes; a service-wide
cap keeps each workshop's share; SIGHUP adds and removes workshops (a bad
config changes nothing); a scheduled window raises the spares ahead of its
start; an instructor's push adds, replaces and keeps files beside.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import requests

from .dockertools import remove_pool_containers
from .service import cid_of, through_the_line, visitor

NOTEBOOK = "01-python-introduction.ipynb"  # one of the image's own workshop notebooks, in the home folder


def spawn_in(session: requests.Session, service, workshop: str, path: str = "") -> str:
    resp = session.get(f"{service.url}/w/{workshop}/spawn{'/' + path if path else ''}", allow_redirects=False,
                       timeout=30)
    return through_the_line(session, service.url, resp)


def stats(service, workshop: str) -> dict:
    return requests.get(f"{service.url}/w/{workshop}/api/stats", timeout=10).json()


def workshops_setting(**workshops) -> dict:
    return {"NbpoolApp__workshops": workshops}


@pytest.fixture
def workshop_service(make_service, docker_client):
    """make(workshops={...}, **settings) -> a started Service whose workshops' containers are removed after."""
    made = []

    def make(workshops: dict, wait_for: dict[str, int] | None = None, **settings):
        service = make_service(NbpoolApp__workshops=workshops, **settings)
        made.append(service)
        service.start(wait_warm=False)
        for name, count in (wait_for or {}).items():
            service.wait_for(lambda n=name, c=count: stats(service, n).get("available", 0) >= c, timeout=120,
                             what=f"{count} spares of {name}")
        return service

    yield make
    for service in made:
        service.stop()
        for name in ("python-intro", "r-stats", "late", "solo"):
            remove_pool_containers(docker_client, f"{service.pool_name}-{name}")


def labels_of(docker_client, cid: str) -> dict:
    (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={cid}"})
    return container.labels


def test_two_workshops_each_link_lands_in_its_own_workshops_container(workshop_service, docker_client):
    service = workshop_service({
        "python-intro": {"display_name": "Python intro", "warm": 2, "max_containers": 3, "landing_path": "tree"},
        "r-stats": {"display_name": "R stats", "warm": 1, "max_containers": 2,
                    "landing_path": f"notebooks/{NOTEBOOK}"},
    }, wait_for={"python-intro": 2, "r-stats": 1})

    # The front page lists both; each landing page is its own.
    front = requests.get(service.url + "/", timeout=10).text
    assert 'href="/w/python-intro/"' in front and 'href="/w/r-stats/"' in front
    landing = requests.get(f"{service.url}/w/r-stats/", timeout=10).text
    assert "R stats" in landing and 'action="/w/r-stats/spawn"' in landing
    assert requests.get(f"{service.url}/w/nope/", timeout=10).status_code == 404

    py, r = visitor(), visitor()
    py_url = spawn_in(py, service, "python-intro")
    r_url = spawn_in(r, service, "r-stats")
    assert py_url.endswith("/tree") and r_url.endswith(f"/notebooks/{NOTEBOOK}")
    assert py.get(py_url, timeout=30).status_code == 200
    assert r.get(r_url, timeout=30).status_code == 200
    py_cid, r_cid = cid_of(py_url), cid_of(r_url)
    assert labels_of(docker_client, py_cid)["org.nbpool.workshop"] == "python-intro"
    assert labels_of(docker_client, r_cid)["org.nbpool.workshop"] == "r-stats"
    assert labels_of(docker_client, r_cid)["org.nbpool.pool"] == f"{service.pool_name}-r-stats"
    # One workshop's cookie does not open the other's container (the proxy's 403 page is that workshop's,
    # and offers a fresh notebook there).
    denied = py.get(r_url, timeout=30)
    assert denied.status_code == 403 and "<title>Not your notebook · R stats</title>" in denied.text
    assert "/w/r-stats/spawn" in denied.text

    # Per-workshop stats, and the total with each one's.
    assert stats(service, "python-intro")["assigned"] == 1 and stats(service, "python-intro")["capacity"] == 3
    assert stats(service, "r-stats")["assigned"] == 1 and stats(service, "r-stats")["capacity"] == 2
    total = service.stats()
    assert total["assigned"] == 2 and total["capacity"] == 5
    assert set(total["workshops"]) == {"python-intro", "r-stats"}
    metrics = service.admin("GET", "/metrics").text
    assert 'nbpool_pool_assigned{workshop="r-stats"} 1.0' in metrics
    status = service.admin("GET", "/api/admin/workshops").json()
    assert [w["name"] for w in status["workshops"]] == ["python-intro", "r-stats"]

    # Path mode: a browser holds one notebook at a time (they share one origin), so a second track's link
    # asks first, and only the visitor's POST from that page ends the first.
    asked = py.get(f"{service.url}/w/r-stats/spawn", allow_redirects=False, timeout=30)
    assert asked.status_code == 200 and 'id="elsewhere"' in asked.text and "Python intro" in asked.text
    assert py.get(py_url, timeout=30).status_code == 200  # still theirs
    second = through_the_line(py, service.url, py.post(f"{service.url}/w/r-stats/spawn", allow_redirects=False,
                                                       headers={"Origin": service.url}, timeout=30))
    assert cid_of(second) != r_cid and py.get(second, timeout=30).status_code == 200
    service.wait_for(lambda: py.get(py_url, timeout=30).status_code == 404, what="the first track's notebook ended")


def test_the_total_cap_keeps_each_workshops_share(workshop_service):
    # Caps 3 + 3 under a total of 3: shares 1 each; the one place beyond the shares goes to who asks first.
    service = workshop_service({"python-intro": {"warm": 0, "max_containers": 3},
                                "r-stats": {"warm": 0, "max_containers": 3}}, NbpoolApp__total_containers=3)
    first, second = visitor(), visitor()
    spawn_in(first, service, "python-intro")
    spawn_in(second, service, "python-intro")
    third = visitor().get(f"{service.url}/w/python-intro/spawn", allow_redirects=False, timeout=30)
    assert third.status_code == 503 and "Retry-After" in third.headers  # r-stats' share is held for it
    r_url = spawn_in(visitor(), service, "r-stats")
    assert "/user/" in r_url
    assert service.stats()["assigned"] == 3


def write_workshops(service, workshops: dict) -> None:
    service.write_config(NbpoolApp__workshops=workshops)
    service.sighup()


def test_sighup_adds_changes_and_removes_workshops_and_refuses_bad_ones(workshop_service, docker_client):
    base = {"python-intro": {"warm": 1, "max_containers": 3}}
    service = workshop_service(base, wait_for={"python-intro": 1})

    added = {**base, "late": {"display_name": "Late track", "warm": 1, "max_containers": 2}}
    write_workshops(service, added)
    service.wait_for(lambda: requests.get(f"{service.url}/w/late/api/stats", timeout=5).status_code == 200
                     and stats(service, "late")["available"] >= 1, timeout=120, what="the added workshop's spare")
    attendee = visitor()
    late_url = spawn_in(attendee, service, "late")
    assert "workshop late added" in service.logs()

    # Bad config: each refused with a message naming it, and nothing changes.
    for bad, words in (({**added, "Bad Name!": {}}, "'Bad Name!' is not URL-safe"),
                       ({**added, "late": {"warm": 1, "colour": "red"}}, "unknown setting 'colour'"),
                       ({**added, "late": {"image": "nbpool/no-such-image:1"}},
                        "'nbpool/no-such-image:1' does not exist"),
                       ({**added, "late": {"warm": -2}}, "warm")):
        before = service.logs().count("config reload failed")
        write_workshops(service, bad)
        service.wait_for(lambda b=before: service.logs().count("config reload failed") > b, timeout=30,
                         what=f"the refusal of {words}")
        assert words in service.logs().rsplit("config reload failed", 1)[1]
    assert stats(service, "late")["capacity"] == 2 and requests.get(f"{service.url}/w/late/", timeout=5).ok

    # A change applies live.
    write_workshops(service, {**base, "late": {"display_name": "Late track", "warm": 1, "max_containers": 4}})
    service.wait_for(lambda: stats(service, "late")["capacity"] == 4, timeout=30, what="the new cap")

    # Removed: no new attendees, its spares go, its attendee keeps working until culled.
    write_workshops(service, base)
    service.wait_for(lambda: requests.get(f"{service.url}/w/late/spawn", allow_redirects=False,
                                          timeout=5).status_code == 404, timeout=30, what="the removal")
    spares = lambda: [c for c in docker_client.containers.list(  # noqa: E731
        filters={"label": f"org.nbpool.pool={service.pool_name}-late"}) if "--a" not in c.name]
    service.wait_for(lambda: not spares(), timeout=60, what="the removed workshop's spares gone")
    assert attendee.get(late_url, timeout=30).status_code == 200
    assert "workshop late removed" in service.logs()
    assert requests.get(f"{service.url}/w/python-intro/", timeout=5).ok


def test_a_scheduled_window_raises_spares_before_its_start_and_lowers_them_after(workshop_service):
    workshop = {"warm": 1, "max_containers": 4}
    service = workshop_service({"solo": workshop}, wait_for={"solo": 1})
    start = datetime.now().astimezone() + timedelta(seconds=75)
    window = {"start": start.isoformat(timespec="seconds"),
              "end": (start + timedelta(seconds=20)).isoformat(timespec="seconds"), "warm": 3}
    write_workshops(service, {"solo": {**workshop, "schedule": [window]}})
    # Its lead (at least the margin) reaches back before now: the raise begins at once, and says why.
    service.wait_for(lambda: "raising spares to 3" in service.logs(), timeout=30, what="the raise")
    assert "a launch" in service.logs().split("raising spares to 3", 1)[1].split("\n", 1)[0]
    rows = service.admin("GET", "/api/admin/workshops").json()["workshops"][0]["schedule"]
    assert rows[0]["warm"] == 3 and rows[0]["state"].startswith("warming") and rows[0]["lead_seconds"] >= 60
    service.wait_for(lambda: stats(service, "solo")["available"] >= 3, timeout=120, what="3 spares")
    assert datetime.now().astimezone() < start, "the spares were not ready before the window's start"
    service.wait_for(lambda: "is over: back to the base warm (1)" in service.logs(), timeout=150,
                     what="the window's end")
    service.wait_for(lambda: stats(service, "solo")["available"] == 1, timeout=60, what="back to 1 spare")


def admin_post(service, path: str, body: dict) -> requests.Response:
    headers = {"Authorization": f"token {service.admin_token}", "Origin": service.url}
    return requests.post(service.url + path, json=body, headers=headers, timeout=30)


def put(session: requests.Session, container_url: str, service, path: str, text: str) -> None:
    base = container_url.split("/user/")[0] + "/user/" + cid_of(container_url) + "/"
    body = {"type": "file", "format": "text", "content": text}
    resp = session.put(f"{base}api/contents/{path}", json=body, headers={"Origin": service.url}, timeout=30)
    assert resp.status_code in (200, 201), resp.text[:300]


def read(session: requests.Session, container_url: str, path: str) -> str | None:
    base = container_url.split("/user/")[0] + "/user/" + cid_of(container_url) + "/"
    resp = session.get(f"{base}files/{path}", timeout=30)
    return resp.text if resp.status_code == 200 else None


def test_a_push_adds_new_files_replaces_untouched_ones_and_keeps_edited_ones_beside(workshop_service):
    service = workshop_service({"python-intro": {"warm": 1, "max_containers": 5}}, wait_for={"python-intro": 1})
    editor, untouched = visitor(), visitor()
    editor_url = spawn_in(editor, service, "python-intro")
    untouched_url = spawn_in(untouched, service, "python-intro")
    put(editor, editor_url, service, NOTEBOOK, "the attendee's own version")
    service.wait_for(lambda: stats(service, "python-intro")["available"] >= 1, timeout=120, what="a spare")

    fixed = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "fixed": "10:05"})
    files = {NOTEBOOK: fixed, "exercises/extra.md": "# A new exercise\n"}
    resp = admin_post(service, "/api/admin/workshops/python-intro/push", {"files": files})
    assert resp.status_code == 202, resp.text
    service.wait_for(lambda: service.admin("GET", "/api/admin/workshops/python-intro/push").json()["push"]["finished"],
                     timeout=60, what="the push")
    push = service.admin("GET", "/api/admin/workshops/python-intro/push").json()["push"]
    assert push["failed"] == 0 and push["done"] == push["containers"] == 3

    assert read(editor, editor_url, NOTEBOOK) == "the attendee's own version"
    assert read(editor, editor_url, "01-python-introduction (updated).ipynb") == fixed
    assert read(untouched, untouched_url, NOTEBOOK) == fixed
    assert read(untouched, untouched_url, "01-python-introduction (updated).ipynb") is None
    for who, url in ((editor, editor_url), (untouched, untouched_url)):
        assert read(who, url, "exercises/extra.md") == "# A new exercise\n"
    by_cid = {r["cid"]: r for r in push["results"]}
    assert by_cid[cid_of(editor_url)]["beside"] == [NOTEBOOK]
    assert by_cid[cid_of(untouched_url)]["replaced"] == [NOTEBOOK]

    # The spare got it, and so does a container started after the push.
    late = [visitor() for _ in range(2)]
    urls = [spawn_in(v, service, "python-intro") for v in late]
    for v, url in zip(late, urls, strict=True):
        assert read(v, url, NOTEBOOK) == fixed and read(v, url, "exercises/extra.md") == "# A new exercise\n"

    # Pushed files are the instructor's, not the attendee's work: when the session ends, only what the
    # attendee changed is kept.
    assert service.admin("DELETE", f"/api/admin/containers/{cid_of(editor_url)}").status_code == 204
    ended = editor.get(editor_url, timeout=30)
    assert ended.status_code == 404 and NOTEBOOK in ended.text
    kept_part = ended.text.split("<table", 1)[1].split("</table>", 1)[0]
    assert "extra.md" not in kept_part and "(updated)" not in kept_part, kept_part

    # A bad push is refused and names what is wrong.
    bad = admin_post(service, "/api/admin/workshops/python-intro/push", {"files": {"../etc/x": "y"}})
    assert bad.status_code == 400 and "'../etc/x'" in bad.json()["error"]


def test_a_restart_adopts_each_workshops_attendees_and_kept_work_returns_to_its_workshop(workshop_service,
                                                                                        docker_client):
    base = {"python-intro": {"warm": 1, "max_containers": 3, "landing_path": "tree"}}
    service = workshop_service({**base, "late": {"warm": 1, "max_containers": 2}},
                               wait_for={"python-intro": 1, "late": 1})
    py, late = visitor(), visitor()
    py_url, late_url = spawn_in(py, service, "python-intro"), spawn_in(late, service, "late")
    put(py, py_url, service, "mine.ipynb", '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')

    # Restarted with 'late' gone from the config: both attendees keep their containers.
    assert service.stop() == 0
    service.write_config(NbpoolApp__workshops=base)
    service.start(wait=False)
    # From the moment it listens, a returning attendee is asked to wait while the restart adopts the
    # containers: never told their session ended (404) because their route is not back yet.
    statuses = []
    deadline = time.monotonic() + 60
    while not statuses or statuses[-1] != 200:
        assert time.monotonic() < deadline, statuses[-5:]
        try:
            statuses.append(late.get(late_url, timeout=30).status_code)
        except requests.ConnectionError:
            time.sleep(0.02)  # not listening yet
    assert set(statuses) <= {503, 200}, statuses
    service.wait_for(lambda: stats(service, "python-intro")["assigned"] == 1, timeout=60, what="adoption")
    assert py.get(py_url, timeout=30).status_code == 200
    assert "workshop late is no longer in the config: its 1 attendees keep working" in service.logs()
    assert requests.get(f"{service.url}/w/late/", timeout=5).status_code == 404
    left = docker_client.containers.list(filters={"label": f"org.nbpool.pool={service.pool_name}-late"})
    assert [c.labels["org.nbpool.id"] for c in left] == [cid_of(late_url)]  # its spare went, its attendee stayed

    # An operator ends the Python attendee's session: their work is kept, and comes back in that workshop.
    cid = cid_of(py_url)
    assert service.admin("DELETE", f"/api/admin/containers/{cid}").status_code == 204
    ended = py.get(py_url, timeout=30)
    assert ended.status_code == 404 and "mine.ipynb" in ended.text and "/w/python-intro/spawn" in ended.text
    restored = py.post(f"{service.url}/kept/{cid}/restore", data={"path": "tree"}, allow_redirects=False,
                       headers={"Origin": service.url}, timeout=60)
    new_url = through_the_line(py, service.url, restored)
    assert labels_of(docker_client, cid_of(new_url))["org.nbpool.workshop"] == "python-intro"
    assert read(py, new_url, "mine.ipynb") is not None


def test_sighup_turns_a_single_workshop_service_into_several_and_back(make_service, docker_client):
    from .service import spawn

    service = make_service()
    service.start()
    first = visitor()
    first_url = spawn(first, service.url)
    try:
        write_workshops(service, {"solo": {"warm": 1, "max_containers": 2}})
        service.wait_for(lambda: 'href="/w/solo/"' in requests.get(service.url + "/", timeout=5).text, timeout=60,
                         what="the list of workshops at /")
        assert "workshop at / removed" in service.logs()
        assert requests.get(f"{service.url}/spawn", allow_redirects=False, timeout=10).headers["Location"] == "/"
        assert first.get(first_url, timeout=30).status_code == 200  # its attendee keeps working
        assert "/user/" in spawn_in(visitor(), service, "solo")

        service.settings.pop("NbpoolApp.workshops")
        service.write_config()
        service.sighup()
        service.wait_for(lambda: "'/' serves the service's own pool again" in service.logs(), timeout=60,
                         what="the return to one workshop")
        service.wait_for(lambda: service.stats().get("available", 0) >= 1, timeout=120, what="a spare at /")
        assert "/user/" in spawn(visitor(), service.url)
        assert requests.get(f"{service.url}/w/solo/", timeout=5).status_code == 404
    finally:
        service.stop()
        remove_pool_containers(docker_client, f"{service.pool_name}-solo")


def test_a_bad_workshop_config_at_start_is_refused_naming_it(make_service):
    service = make_service(NbpoolApp__workshops={"r-stats": {"warm": 1, "image": "nbpool/no-such-image:1"}})
    with pytest.raises(RuntimeError) as refused:
        service.start(wait_warm=False, timeout=60)
    assert service.proc.returncode == 2
    assert "workshops['r-stats'].image: 'nbpool/no-such-image:1' does not exist" in str(refused.value)


def test_pushes_are_for_operators_only(workshop_service):
    service = workshop_service({"solo": {"warm": 0, "max_containers": 1}})
    url = f"{service.url}/api/admin/workshops/solo/push"
    body = {"files": {"x.md": "y"}}
    assert requests.post(url, json=body, timeout=10).status_code == 401
    assert requests.post(url, json=body, timeout=10,
                         headers={"Authorization": "token wrong", "Origin": service.url}).status_code == 401
    cross_site = requests.post(url, json=body, timeout=10,
                               headers={"Authorization": f"token {service.admin_token}",
                                        "Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    # A stranger's large upload is refused before it is read (the body is streamed only after the checks).
    try:
        big = requests.post(url, files={"file": ("big.bin", b"\0" * (8 * 2**20))}, timeout=30).status_code
    except requests.ConnectionError:
        big = None  # (the connection closed under the rest of the upload: refused all the same)
    assert big in (401, None)
    assert admin_post(service, "/api/admin/workshops/nope/push", body).status_code == 404
    assert requests.get(f"{service.url}/w/solo/", timeout=10).ok  # and it goes on serving
