"""A real browser follows the public link, lands in the notebook UI and runs a cell (end to end)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time

import pytest

from tests.dockertools import remove_pool_containers
from tests.service import Service

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("NBPOOL_CHROMIUM", "/usr/bin/chromium")
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing is None and not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        missing = f"no Chromium at {CHROMIUM} ('make browser' installs Debian's)"
    if missing:
        if UNDER_CI:
            pytest.fail(missing + " -- under CI=true the browser test must run", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


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
            assert time.monotonic() < deadline, "no message from the kernel over its WebSocket within 90 s"
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
