"""A real browser follows the public link, lands in the notebook UI and runs a cell (end to end)."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from tests.dockertools import remove_pool_containers
from tests.network_churn import page_deadline
from tests.screenshots import shoot
from tests.service import Service

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

@pytest.fixture
def service(docker_client, notebook_image, tmp_path, request):
    svc = Service(tmp_path, f"nbpool-browser-{secrets.token_hex(3)}", Pool__warm=1, Pool__max_containers=3,
                  WebApp__workshop_name="Browser test workshop")
    svc.start()
    yield svc
    svc.stop()
    failed = getattr(request.node, "call_failed", False)
    if failed:
        print(svc.logs()[-5000:])
    remove_pool_containers(docker_client, svc.pool_name, show_logs=failed)


def test_public_link_to_a_running_cell(chromium, service, tmp_path):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{service.url}/")
        # The landing page's script moves on to /spawn, which redirects into the visitor's own server.
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        listing = page.get_by_text("01-python-introduction.ipynb", exact=True)
        listing.wait_for()
        logo = page.locator("#jp-NotebookLogo")
        assert "logo.svg" in logo.evaluate("el => getComputedStyle(el).backgroundImage")
        shoot(page, "attendee-tree")

        # Notebook 7 opens notebooks in a new tab. Watch that tab's kernel WebSocket from the
        # start: a Shift+Enter before the kernel is connected is not run (JupyterLab asks
        # "Select Kernel" instead), so the test, like a person, waits for the kernel first.
        kernel_frames: list[str] = []

        def watch_kernel(ws) -> None:
            if "/api/kernels/" in ws.url and ws.url.split("?")[0].endswith("/channels"):
                ws.on("framereceived", lambda _payload: kernel_frames.append(ws.url))

        context.on("page", lambda tab: tab.on("websocket", watch_kernel))
        with context.expect_page() as opened:
            listing.dblclick()
        notebook = opened.value
        notebook.set_default_timeout(90_000)
        notebook.wait_for_url(re.compile(r"/notebooks/01-python-introduction\.ipynb"))
        notebook.locator(".jp-Notebook").wait_for()
        deadline = time.monotonic() + 90
        while not kernel_frames:  # the kernel answered over the WebSocket, through the proxy
            page_deadline(deadline, "no message from the kernel over its WebSocket within 90 s")
            notebook.wait_for_timeout(100)
        notebook.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(state="attached")
        first_code = notebook.locator(".jp-CodeCell").first
        first_code.locator(".cm-content").click()
        notebook.keyboard.press("Shift+Enter")
        output = first_code.locator(".jp-OutputArea-output")
        output.wait_for()
        assert "Coffee for 42 people in Lecture hall B costs 75.60 euros" in output.inner_text()
    except Exception:
        for i, tab in enumerate(context.pages):
            tab.screenshot(path=str(tmp_path / f"failure-{i}.png"))
            print(f"--- tab {i}: {tab.url}\n{tab.locator('body').inner_text()[:3000]}")
        raise
    finally:
        context.close()


EVIL_PAGE = """<!doctype html><title>another site</title><script>
window.results = {};
const base = "%(base)s";
fetch(base + "api/contents", {method: "POST", credentials: "include", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: '{"type": "notebook"}'})
  .then(() => results.post = "sent", () => results.post = "failed");
const ws = new WebSocket(base.replace("http", "ws") + "api/kernels/%(kernel)s/channels");
ws.onopen = () => results.ws = "open";
ws.onerror = () => results.ws = "refused";
</script>"""


def test_a_page_on_another_origin_cannot_act_for_the_attendee(chromium, service, tmp_path):
    """Another port of the same host is the same *site*: the browser sends the attendee's SameSite=Lax
    cookie along. Only the proxy's origin check stands between that page and the attendee's kernel."""
    import http.server
    import threading

    import requests

    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    evil = None
    try:
        page.goto(f"{service.url}/")
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        base = page.url.rsplit("tree", 1)[0]
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        contents = lambda: [f["name"] for f in requests.get(f"{base}api/contents", cookies=cookies,  # noqa: E731
                                                             timeout=30).json()["content"]]
        kernel = requests.post(f"{base}api/kernels", json={}, cookies=cookies, headers={"Origin": service.url},
                               timeout=60).json()["id"]
        before = contents()

        body = (EVIL_PAGE % {"base": base, "kernel": kernel}).encode()

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        other = context.new_page()
        other.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        other.wait_for_function("window.results.post && window.results.ws", timeout=30_000)
        results = other.evaluate("window.results")
        assert results["ws"] == "refused", results
        assert contents() == before  # the POST reached nothing: no Untitled.ipynb

        # The control: the same request from the attendee's own page does create a notebook.
        status = page.evaluate("""base => fetch(base + "api/contents", {method: "POST",
            headers: {"Content-Type": "application/json"}, body: '{"type": "notebook"}'}).then(r => r.status)""",
                               base)
        assert status == 201 and len(contents()) == len(before) + 1

        # A link on the other site to ?new=1 asks before ending anything.
        other.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        other.evaluate(f"location.href = '{service.url}/spawn?new=1'")
        other.wait_for_url(re.compile(r"/spawn\?new=1"))
        assert other.locator("#fresh").is_visible()
        assert other.locator("#back").get_attribute("href").startswith(base.split(service.url, 1)[1])
        assert requests.get(f"{base}api/status", cookies=cookies, timeout=30).ok  # still the attendee's
    except Exception:
        for i, tab in enumerate(context.pages):
            tab.screenshot(path=str(tmp_path / f"failure-{i}.png"))
        raise
    finally:
        if evil is not None:
            evil.shutdown()
        context.close()


def _metric(service, name: str) -> float:
    import urllib.request
    request = urllib.request.Request(f"{service.url}/metrics",
                                     headers={"Authorization": f"token {service.admin_token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def _open_notebook(chromium, service) -> tuple[str, list[dict]]:
    """A fresh browser profile opens the deep link; returns the page's URL and its static responses."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    static: list[dict] = []

    def seen(response) -> None:
        if "/static/" in response.url:
            static.append({"url": response.url, "status": response.status,
                           "encoding": response.headers.get("content-encoding", ""),
                           "type": response.headers.get("content-type", ""),
                           "length": int(response.headers.get("content-length", "0") or 0)})

    page.on("response", seen)
    try:
        page.goto(f"{service.url}/spawn/notebooks/01-python-introduction.ipynb")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible")
        page.wait_for_load_state("networkidle")
        return page.url, static
    finally:
        context.close()


def test_the_second_attendee_gets_the_ui_from_the_shared_cache(chromium, service):
    """Issue 13, for real: compressed UI files, and a second attendee's page served without their container."""
    first_url, first = _open_notebook(chromium, service)
    scripts = [r for r in first if r["type"].startswith("application/javascript") and r["status"] == 200]
    # Compressed unless under Proxy.compress_min_size (1 KiB): a few webpack chunks are that small.
    plain = [r for r in scripts if r["encoding"] not in ("gzip", "br")]
    assert len(scripts) > 30 and len(plain) < len(scripts) / 4
    assert all(0 < r["length"] < 1024 for r in plain), plain
    deadline = time.monotonic() + 120
    while service.stats()["available"] < 1:  # the second attendee is served from a spare too
        assert time.monotonic() < deadline, "no spare for the second attendee within 120 s"
        time.sleep(0.2)
    # The cache fetches each file from a container that has not run code: the first page's
    # own until its notebook started a kernel, then the new spare as soon as it is routed.
    def rest(url: str) -> str:
        return url.split("/user/", 1)[1].split("/", 1)[1]

    loaded = {rest(r["url"]) for r in first if r["status"] == 200}
    entries, steady_since = -1.0, time.monotonic()
    while entries < len(loaded) or time.monotonic() - steady_since < 2:  # filled, and done filling
        assert time.monotonic() < deadline, "the shared cache did not fill from the first attendee's page"
        now_entries = _metric(service, "nbpool_static_cache_entries")
        if now_entries != entries:
            entries, steady_since = now_entries, time.monotonic()
        time.sleep(0.2)
    relayed = _metric(service, "nbpool_static_requests_to_containers_total")
    hits = _metric(service, "nbpool_static_cache_hits_total")

    second_url, second = _open_notebook(chromium, service)
    assert second_url.split("/user/")[1][:12] != first_url.split("/user/")[1][:12]  # a container of its own
    assert len(second) > 30 and all(r["status"] == 200 for r in second)
    # What the first page loaded, the second gets from memory; only a file no page has asked for
    # before (the kernel-busy favicon, say, depending on timing) may still reach its container.
    new = {rest(r["url"]) for r in second} - loaded
    assert len(new) <= 3, new
    assert _metric(service, "nbpool_static_requests_to_containers_total") - relayed <= len(new)
    assert _metric(service, "nbpool_static_cache_hits_total") - hits >= len(second) - len(new)

    # A visitor without that attendee's cookie gets the 403 page, not a cached byte.
    import urllib.error
    import urllib.request
    js = next(r["url"] for r in second if r["url"].endswith(".js") or ".js?" in r["url"])
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(js, timeout=10)
    assert denied.value.code == 403 and b"function" not in denied.value.read()


def test_the_ended_page_gives_the_attendee_their_work_back(chromium, service, tmp_path):
    """Issue 14: after an operator ends the session, its owner downloads the work and continues in a fresh one."""
    import io
    import json
    import zipfile

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{service.url}/")
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        first = page.url
        cid = re.search(r"/user/([0-9a-f]{12})/", first).group(1)
        notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "mine", "metadata": {},
                               "outputs": [], "source": ["answer = 6 * 7  # my own cell"]}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        # Saved from the page, as the notebook UI saves (the browser's own fetch: its cookie and Origin).
        status = page.evaluate("""async ([base, nb]) => {
            const put = (path, model) => fetch(base + "api/contents/" + path, {method: "PUT",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify(model)});
            const a = await put("my-analysis.ipynb", {type: "notebook", format: "json", content: nb});
            const b = await put("notes.txt", {type: "file", format: "text", content: "remember this"});
            return [a.status, b.status];
        }""", [first.split("/tree")[0] + "/", notebook])
        assert status == [201, 201]
        assert service.admin("DELETE", f"/api/admin/containers/{cid}").status_code == 204

        page.goto(first)
        kept = page.locator("#kept")
        kept.wait_for()
        assert "has ended" in page.content() and "An operator of this workshop stopped it." in page.content()
        files = page.locator("#kept-files").inner_text()
        assert "my-analysis.ipynb" in files and "notes.txt" in files and "01-python-introduction" not in files
        shoot(page, "ended-kept-work")

        with page.expect_download() as downloading:
            page.locator("#download").click()
        archive = zipfile.ZipFile(io.BytesIO(open(downloading.value.path(), "rb").read()))
        assert sorted(archive.namelist()) == ["my-analysis.ipynb", "notes.txt"]
        assert json.loads(archive.read("my-analysis.ipynb"))["cells"][0]["source"] == notebook["cells"][0]["source"]

        page.locator("#restore").click()
        # A fresh container, on the page they were on (the file browser), with their files in it.
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        assert cid not in page.url
        page.get_by_text("my-analysis.ipynb", exact=True).wait_for()
        page.get_by_text("notes.txt", exact=True).wait_for()
    finally:
        context.close()


def own_service_failed(svc, page, *shown) -> None:
    """What a test with a service of its own prints when it fails: the page's URL (and ``shown``) and the service's
    log. (It runs before the test's report exists: request.node.call_failed is not set yet.)"""
    print(f"--- the page: {page.url}", *shown, sep="\n")
    svc.stop()
    print(svc.logs()[-8000:])


def own_service_ends(svc, context, docker_client, pools: list[str]) -> None:
    """A test's own service, its browser context and its pools' containers, gone whatever happened."""
    context.close()
    svc.stop()
    for pool in pools:
        remove_pool_containers(docker_client, pool)


def test_several_workshops_from_the_front_page_to_each_ones_own_landing_and_the_status_page(
        chromium, docker_client, notebook_image, tmp_path):
    svc = Service(tmp_path, f"nbpool-browser-{secrets.token_hex(3)}", NbpoolApp__workshops={
        "python-intro": {"display_name": "Python intro", "warm": 1, "max_containers": 2, "landing_path": "tree"},
        "r-stats": {"display_name": "R stats", "warm": 1, "max_containers": 2, "landing_path": "lab",
                    "schedule": [{"start": "2030-01-01T09:00+00:00", "end": "2030-01-01T12:00+00:00", "warm": 2}]}})
    svc.start(wait_warm=False)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{svc.url}/")
        page.get_by_role("link", name="R stats").wait_for()
        shoot(page, "workshops-front-page")
        page.get_by_role("link", name="R stats").click()
        # Its landing page moves on to its own /spawn, which redirects into JupyterLab (its landing path).
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/lab"))
        page.get_by_text("01-python-introduction.ipynb", exact=True).first.wait_for()
        assert any(c["name"] == "nbpool-session-r-stats" for c in context.cookies())

        # The other workshop's link in the same browser: its notebooks share this origin (path mode), so
        # the browser holds one at a time, and the visitor is asked before the R one ends.
        page.goto(f"{svc.url}/w/python-intro/")
        page.locator("#elsewhere").get_by_text("R stats").wait_for()
        page.click("#fresh")
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        page.get_by_text("01-python-introduction.ipynb", exact=True).wait_for()

        page.goto(f"{svc.url}/status")
        page.fill("input[name=token]", svc.admin_token)
        page.click("button[type=submit]")
        page.get_by_role("heading", name=re.compile("Python intro")).wait_for()
        page.get_by_role("heading", name=re.compile("R stats")).wait_for()
        page.get_by_text("scheduled", exact=True).wait_for()  # the coming window, with its state
        page.get_by_text("1 in use", exact=False).wait_for()
        assert page.get_by_text("1 in use", exact=False).count() == 1  # only the notebook still open
        # Signing in ended this browser's hold on its notebook: the operator's cookie never sits beside it.
        assert not any(c["name"].startswith("nbpool-session") for c in context.cookies())
    except Exception:
        own_service_failed(svc, page)
        raise
    finally:
        own_service_ends(svc, context, docker_client,
                         [f"{svc.pool_name}-{name}" for name in ("python-intro", "r-stats")])


def test_the_waiting_page_moves_on_by_its_script_alone(chromium, docker_client, notebook_image, tmp_path):
    # The page had a <meta refresh> its script removed, but Chromium keeps a refresh once parsed: a waiting
    # visitor reloaded every 2 s beside the script's long poll, and a reload racing the script's own move once
    # the place was served left the visitor on the "expired" page (a CI failure of the several-workshops test).
    svc = Service(tmp_path, f"nbpool-browser-{secrets.token_hex(3)}", Pool__warm=0, Pool__max_containers=2)
    svc.start(wait_warm=False)
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    documents: list[str] = []
    page.on("request", lambda r: documents.append(r.url) if r.resource_type == "document" else None)
    # A long line, which a real start on this machine is too quick to give: the script's polls hear "not
    # yet" until the test lets them through to nbpool.
    line = {"long": True}
    page.route("**/api/queue/**", lambda route: route.fulfill(json={"ready": False, "position": 2})
               if line["long"] else route.continue_())
    try:
        page.goto(f"{svc.url}/spawn")
        page.get_by_text("You are number 2 in line.").wait_for()  # (the script's poll wrote it)
        page.wait_for_timeout(5_000)  # more than twice the refresh's 2 s
        waits = [url for url in documents if "/spawn/wait/" in url]
        assert len(waits) == 1, f"the waiting page was loaded again while its script waited: {waits}"
        line["long"] = False
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        assert [url for url in documents if "/spawn/wait/" in url] == waits * 2  # its script's one move on
    except Exception:
        own_service_failed(svc, page, documents)
        raise
    finally:
        own_service_ends(svc, context, docker_client, [svc.pool_name])
