"""Issue 27 in Chromium, against the real service and image (collaboration and server-side execution on):

- a running cell's output survives a reload of the page, and ten seconds with the network cut;
- a helper in another browser watches the attendee's live notebook (text typed and not saved included) and cannot
  run anything (the proxy refuses it, whatever the page tries); in help mode the helper runs a cell and the
  attendee sees its output; the attendee sees who is there and ends it, after which the helper gets 403; in
  subdomain mode the helper's grant lives on the attendee's origin only; a stranger gets nothing;
- anyone follows the instructor's notebook at /follow, and "Catch me up" copies the instructor's cells below the
  attendee's own, with undo.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.network_churn import page_deadline
from tests.screenshots import shoot
from tests.test_browser_class import settle
from tests.test_browser_isolation import SUB, goto

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "01-python-introduction.ipynb"
SLOW_CELL = 'import time; time.sleep(8); print("survived")'


def open_notebook(context, service, main: str, ui: str = "lab", path: str = NOTEBOOK):
    """An attendee's page on the workshop notebook, loaded once the pool is still; (page, container id)."""
    page = context.new_page()
    page.set_default_timeout(90_000)
    goto(page, f"{main}/spawn/lab/tree/{path}" if ui == "lab" else f"{main}/spawn/notebooks/{path}")
    page.wait_for_url(f"**/user/*/{ui}/**")
    cid = page.url.split("/user/", 1)[1].split("/", 1)[0]
    settle(service)  # (a spare starting aborts Chromium's loads: see test_browser_class)
    load_notebook(page, page.reload)
    return page, cid


def load_notebook(page, navigate, timeout: float = 90) -> None:
    """``navigate()``, then wait until the notebook can run a cell: its kernel connected and idle, all its cells shown.

    A person waits for the same. Run before the page's session has its kernel, server-side execution drops the run
    without a word (jupyter-server-nbmodel's executor clears a cell whose session has no kernel id yet), and a cell
    added below "the last cell" while the notebook is still being drawn lands in the middle of it.
    """
    sockets: list[str] = []

    def opened(ws) -> None:
        if "/channels" in ws.url:
            sockets.append(ws.url)

    page.on("websocket", opened)
    try:
        navigate()
        cells, deadline = -1, time.monotonic() + timeout
        while True:
            now = page.locator(".jp-Notebook .jp-Cell").count()
            if sockets and now and now == cells:
                break
            page_deadline(deadline, lambda n=now: f"the notebook is not ready: {n} cells, kernel sockets {sockets}; "
                                          f"page {page.url}, dialogs {page.locator('.jp-Dialog').all_inner_texts()}")
            cells = now
            page.wait_for_timeout(500)
    finally:
        page.remove_listener("websocket", opened)
    wait_kernel_idle(page, timeout)


def wait_kernel_idle(page, timeout: float = 90) -> None:
    """The notebook's kernel is connected and idle (the toolbar's status says so)."""
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                 ".jp-Toolbar-kernelStatus[data-status='idle']").first.wait_for(timeout=timeout * 1000)


def run_in_new_cell(page, code: str) -> None:
    """Add a cell at the end of the notebook, type ``code`` into it and run it (Shift+Enter)."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below, in command mode
    page.keyboard.press("Enter")  # edit it
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def cell_output(page, text: str):
    return page.locator(".jp-OutputArea-output").filter(has_text=text).first


@pytest.fixture
def service(make_service):
    svc = make_service(Pool__warm=2, Pool__max_containers=5, AbuseGuard__check_interval=1.0)
    svc.start()
    settle(svc)
    return svc


@pytest.mark.parametrize("ui", ["lab", "notebooks"], ids=["lab", "notebook7"])
def test_a_running_cells_output_survives_a_reload_and_a_dropped_network(ui, chromium, service):
    context = chromium.new_context()
    try:
        page, _ = open_notebook(context, service, service.url, ui)
        run_in_new_cell(page, SLOW_CELL)
        page.wait_for_timeout(2000)  # (sleeping now)
        load_notebook(page, page.reload)
        cell_output(page, "survived").wait_for(timeout=60_000)

        run_in_new_cell(page, 'import time; time.sleep(8); print("through the outage")')
        page.wait_for_timeout(1000)
        context.set_offline(True)
        page.wait_for_timeout(10_000)
        context.set_offline(False)
        cell_output(page, "through the outage").wait_for(timeout=60_000)
    finally:
        context.close()


def grant_link(service, cid: str, mode: str, name: str) -> str:
    key = service.admin("GET", "/api/admin/class-links").json()["all"]
    resp = requests.post(f"{service.url}/api/class/{cid}/{mode}", json={"name": name},
                         headers={"Authorization": f"token {key}"}, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    return resp.json()["url"]


def test_a_helper_watches_live_and_cannot_run_then_helps_and_the_attendee_ends_it(chromium, service):
    attendee, helper, stranger = chromium.new_context(), chromium.new_context(), chromium.new_context()
    try:
        page, cid = open_notebook(attendee, service, service.url)
        base = f"{service.url}/user/{cid}/"
        # Typed, not saved: the watcher sees it in the live document.
        first_code = page.locator(".jp-CodeCell").first
        first_code.locator(".cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.type("\n# typed by the attendee, not saved")

        watch = helper.new_page()
        watch.set_default_timeout(90_000)
        goto(watch, grant_link(service, cid, "watch", "Sam"))
        watch.wait_for_url(f"**/user/{cid}/lab**")
        watch.locator(".jp-CodeCell").filter(has_text="typed by the attendee, not saved").first.wait_for()
        page.locator("#nbpool-helpers").filter(has_text="Sam").wait_for()
        assert "watch" in page.locator("#nbpool-helpers").inner_text().lower()
        shoot(page, "attendee-helper-notice")
        watch.locator("#nbpool-helping").wait_for()
        granted = watch.request.get(f"{service.url}/api/me").json()
        assert granted["viewer"] == "helper" and granted["mode"] == "watch", granted
        time.sleep(1.5)
        watch.locator("#nbpool-helping-renew").click()  # another help_minutes, from the helper's own page
        deadline = time.monotonic() + 10
        while watch.request.get(f"{service.url}/api/me").json()["expires"] <= granted["expires"]:
            assert time.monotonic() < deadline, "Renew did not extend the helper's access"
            watch.wait_for_timeout(200)

        # Whatever the watcher's page tries, nothing runs and nothing is written: the proxy refuses it.
        kernels = watch.request.get(f"{base}api/kernels").json()
        assert kernels, "the attendee's kernel is listed for the watcher"
        own = {"Origin": service.url, "Content-Type": "application/json"}
        tries = {
            "run": watch.request.post(f"{base}api/kernels/{kernels[0]['id']}/execute",
                                      data=json.dumps({"code": "open('/tmp/x', 'w')"}), headers=own),
            "save": watch.request.put(f"{base}api/contents/{NOTEBOOK}",
                                      data=json.dumps({"type": "file", "format": "text", "content": ""}), headers=own),
            "terminal": watch.request.post(f"{base}api/terminals", headers=own),
        }
        assert {k: r.status for k, r in tries.items()} == {k: 403 for k in tries}
        # What the watcher types goes nowhere: the attendee's document never shows it.
        watch.locator(".jp-CodeCell").first.locator(".cm-content").click()
        watch.keyboard.type("# the watcher typed this")
        watch.keyboard.press("Shift+Enter")
        page.wait_for_timeout(3000)
        assert "the watcher typed this" not in page.locator(".jp-Notebook").inner_text()

        # Help mode: the helper runs a cell; the attendee sees its output.
        load_notebook(watch, lambda: goto(watch, grant_link(service, cid, "help", "Kim")))
        watch.wait_for_url(f"**/user/{cid}/lab**")
        run_in_new_cell(watch, 'print("from the helper")')
        cell_output(page, "from the helper").wait_for(timeout=60_000)
        page.locator("#nbpool-helpers").filter(has_text="Kim").wait_for()

        # The attendee ends it: the helper's next request is refused.
        page.locator("#nbpool-helpers-end-all").click()
        page.locator("#nbpool-helpers").wait_for(state="hidden")
        assert watch.request.get(f"{base}api/contents").status == 403

        # A stranger with the address and nothing else.
        assert stranger.new_page().goto(f"{base}lab").status == 403
    finally:
        for context in (attendee, helper, stranger):
            context.close()


def test_in_subdomain_mode_a_helpers_grant_lives_on_the_attendees_origin_only(chromium, make_service):
    service = make_service(Pool__warm=2, Pool__max_containers=5, Proxy__subdomain_host=SUB,
                           WebApp__admin_hosts=["localhost", "127.0.0.1", SUB])
    service.start()
    settle(service)
    main = f"http://{SUB}:{service.port}"
    attendee, other, helper = chromium.new_context(), chromium.new_context(), chromium.new_context()
    try:
        _, cid = open_notebook(attendee, service, main)
        _, other_cid = open_notebook(other, service, main)
        link = grant_link(service, cid, "watch", "Sam")
        assert link.startswith(f"http://{cid}.{SUB}:{service.port}/help/"), link
        watch = helper.new_page()
        watch.set_default_timeout(90_000)
        goto(watch, link)
        watch.wait_for_url(f"http://{cid}.{SUB}:*/user/{cid}/lab**")
        grants = [c for c in helper.cookies() if "nbpool-grant" in c["name"]]
        assert [c["domain"] for c in grants] == [f"{cid}.{SUB}"], grants  # host-only: no other origin gets it
        # (Chromium resolves *.localhost; Playwright's own requests would not: pages navigate instead.)
        probe = helper.new_page()
        assert probe.goto(f"http://{cid}.{SUB}:{service.port}/user/{cid}/api/contents").status == 200
        assert probe.goto(f"http://{other_cid}.{SUB}:{service.port}/user/{other_cid}/api/contents").status == 403
        # The same link's token on the main host (or another attendee's) opens nothing.
        token = link.rsplit("/", 1)[1]
        again = helper.new_page()
        assert again.goto(f"{main}/help/{token}").status == 403
    finally:
        for context in (attendee, other, helper):
            context.close()


def test_attendees_follow_the_instructor_and_catch_up_below_their_own_work(chromium, service):
    links = service.admin("GET", "/api/admin/class-links").json()
    instructor, follower, attendee = chromium.new_context(), chromium.new_context(), chromium.new_context()
    try:
        teach = instructor.new_page()
        teach.set_default_timeout(90_000)
        goto(teach, links["instructor"][""].replace("/?", "/spawn/lab/tree/" + NOTEBOOK + "?"))
        teach.wait_for_url("**/user/*/lab/**")
        settle(service)
        load_notebook(teach, teach.reload)

        follow = follower.new_page()  # no notebook of their own
        follow.set_default_timeout(60_000)
        goto(follow, f"{service.url}/follow")
        run_in_new_cell(teach, 'print("the instructor ran this")')
        follow.locator(".follow-cell.current .follow-output").filter(has_text="the instructor ran this").wait_for()
        assert follow.locator("#follow-notebook").inner_text().strip().endswith(NOTEBOOK)
        # A cell that keeps printing reaches the followers while it runs, not only once it is quiet.
        run_in_new_cell(teach, 'import time; [(print(f"step-{i}", flush=True), time.sleep(0.5)) for i in range(12)]')
        partial = follow.locator(".follow-cell.current .follow-output").filter(has_text="step-2")
        partial.wait_for(timeout=30_000)
        assert "step-11" not in partial.inner_text(), "the output reached the followers only once the cell ended"
        follow.locator(".follow-cell.current .follow-output").filter(has_text="step-11").wait_for(timeout=30_000)
        shoot(follow, "follow")

        page, cid = open_notebook(attendee, service, service.url)
        run_in_new_cell(page, "mine = 'the attendee wrote this'")  # their own work, which must stay as it is
        file_url = f"{service.url}/user/{cid}/api/contents/{NOTEBOOK}"

        def saved_cells(check) -> list[dict]:
            """The attendee's notebook as its server saved it (the live document is written within a second)."""
            deadline = time.monotonic() + 20
            while True:
                response = attendee.request.get(file_url)
                # (read mid-save, "Unreadable Notebook": jupyter_server's atomic_writing copies the file aside,
                # then rewrites it in place, so a reader can find it empty for a moment: read again)
                if response.status == 400 and "Unreadable Notebook" in response.text():
                    seen = response.text()[:500]
                else:
                    assert response.ok, (response.status, response.text()[:500])
                    cells = response.json()["content"]["cells"]
                    if check(cells):
                        return cells
                    seen = [c["source"][:40] for c in cells]
                if time.monotonic() >= deadline:  # (the page's own count says whether the change left the browser)
                    shown = page.locator(".jp-Notebook .jp-Cell").count()
                    status = page.locator("#nbpool-catch-up-status").all_inner_texts()
                    raise AssertionError(f"the saved notebook {seen}; the page shows {shown} cells; "
                                         f"catch-up says {status}")
                page.wait_for_timeout(300)

        # (their run finished and saved: its count set, nbmodel's request mark gone, so later saves change nothing)
        before = saved_cells(lambda cells: any("the attendee wrote this" in c["source"] and c["execution_count"]
                                               and "jupyter_server_nbmodel" not in c["metadata"] for c in cells))
        page.locator("#nbpool-catch-up").click()
        page.locator("#nbpool-catch-up-undo").wait_for()
        after = saved_cells(lambda cells: len(cells) > len(before))
        assert after[:len(before)] == before  # nothing of theirs changed: the instructor's cells come below
        added = after[len(before):]
        assert all(c["metadata"]["nbpool"]["from_instructor"] for c in added), added
        assert any("the instructor ran this" in c["source"] for c in added), added
        assert "step-" in added[-1]["source"] and not any(c.get("outputs") for c in added), added[-1]
        page.locator("#nbpool-catch-up-undo").click()
        saved_cells(lambda cells: cells == before)
    finally:
        for context in (instructor, follower, attendee):
            context.close()
