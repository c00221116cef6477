"""The CPU budget's warning, seen where the attendee works: Chromium on their JupyterLab and Notebook pages
(issue 25), against the real service and image."""

from __future__ import annotations

import pytest

from tests.test_abuse_guard import run_as_attendee

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("page_path", ["lab", "tree"])
def test_the_cpu_warning_shows_in_the_attendees_page(page_path, chromium, make_service, docker_client):
    service = make_service(AbuseGuard__check_interval=1.0, AbuseGuard__cpu_budget=60, AbuseGuard__cpu_warning=0.1,
                           Pool__warm=1, Pool__max_containers=3)
    service.start()
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{service.url}/spawn/{page_path}")
        page.wait_for_url(f"**/user/*/{page_path}**")
        cid = page.url.split("/user/", 1)[1].split("/", 1)[0]
        page.locator(".jp-LabShell, #main-panel, .jp-FileBrowser").first.wait_for()
        assert "of the computing time" not in page.content()
        run_as_attendee(docker_client, cid, "nohup python3 -c 'while True: pass' >/dev/null 2>&1 &")
        warning = page.get_by_text("of the computing time one session may have")
        warning.first.wait_for(timeout=60_000)
        assert f"session {cid} from 127.0.0.1 used" in service.logs()
    finally:
        context.close()
