"""A workshop's own web page runs live code on nbpool: the real Thebe (0.9.3, as `make browser` fetches it) in
Chromium, with nbpool as its ``binderUrl`` (issue 16).

The page is served from a second local port under another host name (``localhost``; nbpool answers on
``127.0.0.1``), so it is another origin and another site, as a course's pages are: Thebe opens
``/build/…``, then talks to the container from the page's origin with the credential, and never has
nbpool's cookie.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import UNDER_CI

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

THEBE = Path(os.environ.get("NBPOOL_THEBE_DIR", Path(__file__).parent / ".cache" / "thebe-0.9.3")) / "lib"
CODE = 'import platform; print("answer", 6 * 7, "from", platform.node())'

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Week 1: live code</title>
<link rel="stylesheet" href="thebe/thebe.css">
<script type="text/x-thebe-config">
{{
  requestKernel: true,
  binderOptions: {{ binderUrl: "{binder_url}", repo: "teach/python-intro", ref: "main", repoProvider: "github" }},
  kernelOptions: {{ kernelName: "python3" }},
  mathjaxUrl: "",
}}
</script>
<script src="thebe/index.js"></script>
</head><body>
<h1>Week 1</h1>
<div class="thebe-activate"></div>
<div class="thebe-status"></div>
<pre data-executable="true" data-language="python">{code}</pre>
</body></html>
"""


@pytest.fixture(scope="module")
def thebe():
    if not (THEBE / "index.js").exists():
        missing = f"Thebe is not in {THEBE} ('make browser' fetches it)"
        if UNDER_CI:
            pytest.fail(missing + " -- under CI=true the Thebe test must run", pytrace=False)
        pytest.skip(missing)
    return THEBE


class Site:
    """A static site on its own port, as a course's pages are served: origin http://localhost:<port>."""

    def __init__(self, root: Path, host: str = "localhost"):
        self.root = root
        handler = functools.partial(QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, binder_url: str) -> str:
        """Write the course page, with Thebe pointed at ``binder_url``; its URL."""
        (self.root / "week1.html").write_text(PAGE.format(binder_url=binder_url, code=CODE))
        return f"{self.origin}/week1.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def sites(tmp_path, thebe):
    made: list[Site] = []

    def make(name: str, host: str = "localhost") -> Site:
        root = tmp_path / name
        root.mkdir()
        (root / "thebe").symlink_to(thebe, target_is_directory=True)
        made.append(Site(root, host))
        return made[-1]

    yield make
    for site in made:
        site.close()


def serve(make_service, trusted: Site, page_on: Site):
    """nbpool trusting ``trusted``'s pages, and the course page on ``page_on`` pointed at it: (service, page URL)."""
    service = make_service(WebApp__cors_origin=[trusted.origin], Pool__warm=1, Pool__max_containers=3)
    url = page_on.page(service.url)
    service.start()
    return service, url


def browse(chromium):
    """A fresh browser context and page: (context, page, the page's uncaught errors)."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    failures: list[str] = []
    page.on("pageerror", lambda e: failures.append(str(e)))
    return context, page, failures


def activate_and_run(page, url: str) -> str:
    """Open the page, press Thebe's Activate, run the cell; the cell's output."""
    page.goto(url)
    page.locator(".thebe-activate-button").click()
    page.locator(".thebe-status-field", has_text="Kernel Connected").wait_for()
    page.locator(".thebe-run-button").first.click()
    output = page.locator(".jp-OutputArea-output", has_text="answer 42")
    output.wait_for()
    return output.inner_text()


def test_thebe_on_a_course_page_runs_its_cell_in_an_nbpool_container(chromium, make_service, sites, docker_client):
    course = sites("course")
    service, url = serve(make_service, trusted=course, page_on=course)
    context, page, failures = browse(chromium)
    builds = []
    page.on("request", lambda r: builds.append(r.url) if "/build/" in r.url else None)
    try:
        text = activate_and_run(page, url)
        rows = service.admin("GET", "/api/admin/containers").json()["containers"]
        (embedded,) = [r for r in rows if r["embedded"]]
        assert embedded["state"] == "assigned" and embedded["websockets"] >= 1
        # The cell ran in that container: the kernel's host name is the container's own.
        (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={embedded['id']}"})
        assert text.split()[-1] == container.attrs["Config"]["Hostname"], text
        assert builds == [f"{service.url}/build/gh/teach/python-intro/main"], builds
        assert not failures, failures

        # A reload finds its saved session: no second container, the same server, a new WebSocket.
        activate_and_run(page, url)
        assert len(builds) == 1, builds
        assert service.stats()["assigned"] == 1
    finally:
        context.close()


def test_a_page_on_nbpools_own_host_name_reconnects_after_a_reload(chromium, make_service, sites):
    # Another port on the same host name (an author's `myst start` on localhost:3000 beside nbpool):
    # the reloaded page's kernel WebSocket carries no ?token=, only cookies.
    course = sites("course", host="127.0.0.1")
    service, url = serve(make_service, trusted=course, page_on=course)
    context, page, failures = browse(chromium)
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        activate_and_run(page, url)
        activate_and_run(page, url)
        assert service.stats()["assigned"] == 1
        assert len(sockets) == 2 and "token=" in sockets[0] and "token=" not in sockets[1], sockets
        assert not failures, failures
    finally:
        context.close()


def test_a_page_left_open_without_running_code_lets_its_server_go_and_gets_a_fresh_one_when_reloaded(
        chromium, make_service, sites):
    course = sites("course")
    service = make_service(WebApp__cors_origin=[course.origin], Pool__warm=1, Pool__max_containers=3,
                           Pool__cull_embedded_idle=5, Pool__cull_interval=1)
    url = course.page(service.url)
    service.start()
    context, page, _ = browse(chromium)  # (the dead server's refused preflight is a console error, not a page's)
    builds = []
    page.on("request", lambda r: builds.append(r.url) if "/build/" in r.url else None)
    try:
        first = activate_and_run(page, url).split()[-1]
        # The tab stays open, Thebe keeps polling, nobody runs anything: the server goes.
        service.wait_for(lambda: service.stats()["assigned"] == 0, timeout=40, what="the page's server culled")
        assert "no kernel run for" in service.logs()
        page.locator(".thebe-run-button").first.click()
        page.locator(".thebe-status-field", has_text="dead").wait_for()  # Thebe says so
        # The reader reloads the page and activates: its saved session is gone, so it asks for a server again.
        second = activate_and_run(page, url).split()[-1]
        assert second != first
        assert len(builds) == 2, builds
        assert service.stats()["assigned"] == 1
    finally:
        context.close()


def test_a_page_on_a_site_nbpool_does_not_trust_gets_no_container_and_no_kernel(chromium, make_service, sites):
    service, url = serve(make_service, trusted=sites("course"), page_on=sites("elsewhere"))
    context, page, failures = browse(chromium)
    try:
        page.goto(url)
        page.locator(".thebe-activate-button").click()
        # Thebe gives up on the build stream (no CORS answer for this site) and says so.
        for _ in range(60):
            if failures:
                break
            page.wait_for_timeout(500)
        assert any("/build/gh/teach/python-intro/main" in f for f in failures), failures
        assert page.locator(".jp-OutputArea-output").count() == 0
        stats = service.stats()
        assert stats["assigned"] == 0 and stats["available"] == 1, stats
        assert "build refused for a page on" in service.logs()
    finally:
        context.close()
    # Nothing else about nbpool changed: its own pages still answer.
    assert requests.get(f"{service.url}/api/stats", timeout=10).ok
