"""A browser test runs once more only when the host's network changed under Chromium (tests/network_churn.py).

An inner pytest run with the real pytest-rerunfailures plugin: what is faked is only the browser's
report of a failed request (the netlink event that causes it cannot be made on demand).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

INNER = """
import pytest
from playwright.sync_api import Error, TimeoutError

from tests import network_churn

runs = {"churn_then_pass": 0, "churn_twice": 0, "plain_failure": 0, "churn_in_passing_run": 0,
        "churn_beside_a_finding": 0, "page_wait_then_pass": 0}

@pytest.fixture
def chromium():  # stands for the browser fixture: the plugin marks whatever uses it
    return None

def test_churn_then_pass(chromium):
    runs["churn_then_pass"] += 1
    if runs["churn_then_pass"] == 1:
        network_churn.failed.append("POST http://127.0.0.1:1/user/x/api/contents")
        raise Error("Page.evaluate: TypeError: Failed to fetch")

def test_churn_twice(chromium):
    runs["churn_twice"] += 1
    network_churn.failed.append("GET http://127.0.0.1:1/user/x/tree")
    raise TimeoutError(f"Page.wait_for_url: Timeout 90000ms exceeded, run {runs['churn_twice']}")

def test_page_wait_then_pass(chromium):  # the test's own wait for the page counts as the browser's failure
    runs["page_wait_then_pass"] += 1
    if runs["page_wait_then_pass"] == 1:
        network_churn.failed.append("POST http://127.0.0.1:1/user/x/api/sessions")
        network_churn.page_deadline(0, "the notebook is not ready: 17 cells, kernel sockets []")

def test_churn_beside_a_finding(chromium):  # the test's own check failed: the browser's trouble is no excuse
    runs["churn_beside_a_finding"] += 1
    network_churn.failed.append("GET http://127.0.0.1:1/user/x/lab/api/themes/x.css")
    raise KeyError("content")

def test_plain_failure(chromium):
    runs["plain_failure"] += 1
    raise Error(f"a real failure, run {runs['plain_failure']}")

def test_churn_in_passing_run(chromium):
    runs["churn_in_passing_run"] += 1
    network_churn.failed.append("GET http://127.0.0.1:1/user/x/api/contents")

def test_no_browser_no_rerun():
    network_churn.failed.append("GET http://127.0.0.1:1/")
    raise AssertionError("not a browser test")

def test_runs_counted():  # runs last, in file order
    assert runs == {"churn_then_pass": 2, "churn_twice": 2, "plain_failure": 1, "churn_in_passing_run": 1,
                    "churn_beside_a_finding": 1, "page_wait_then_pass": 2}
"""


def test_only_a_failure_beside_network_churn_earns_one_more_run(pytester):
    pytester.syspathinsert(ROOT)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "tests.network_churn", "-p", "no:cacheprovider", "-p", "no:asyncio",
                                          "-rfR")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("failed"), outcomes.get("rerun")) == (4, 4, 3), outcomes
    failed = {line.split("::")[1].split()[0] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {"test_churn_twice", "test_plain_failure", "test_no_browser_no_rerun",
                      "test_churn_beside_a_finding"}
    result.stdout.fnmatch_lines(["*NetworkChurnWarning: the host's network changed under Chromium "
                                 "(net::ERR_NETWORK_CHANGED: POST http://127.0.0.1:1/user/x/api/contents) "
                                 "in a run that failed with Error: Page.evaluate: TypeError: Failed to fetch, "
                                 "at *test_inner.py:*"])


@pytest.mark.parametrize("failure", [None, "net::ERR_CONNECTION_RESET", "net::ERR_NETWORK_CHANGED"])
def test_the_browser_watch_records_that_error_alone(failure):
    from tests import network_churn

    class Request:
        method, url = "POST", "http://127.0.0.1:1/user/x/api/contents"

    class Context:
        def __init__(self):
            self.handlers = {}

        def on(self, event, handler):
            self.handlers[event] = handler

    class Browser:
        def new_context(self):
            return Context()

    browser = Browser()
    network_churn.watch(browser)
    context = browser.new_context()
    network_churn.failed.clear()
    Request.failure = failure
    context.handlers["requestfailed"](Request())
    assert network_churn.failed == (["POST http://127.0.0.1:1/user/x/api/contents"]
                                    if failure == "net::ERR_NETWORK_CHANGED" else [])
    assert any("api/contents" in line for line in network_churn.trouble)
    network_churn.failed.clear()
    network_churn.trouble.clear()


# JupyterLab's connection-lost dialog as JupyterLab 4 draws it (a modal over the whole page), above a button
DIALOG = """
<button id="under" onclick="this.textContent = 'clicked'">run</button>
<div class="jp-Dialog" style="position: fixed; inset: 0; background: rgba(0,0,0,.3)">
  <div class="jp-Dialog-content"><div class="jp-Dialog-header">Server Connection Error</div>
    <button class="jp-mod-reject" onclick="this.closest('.jp-Dialog').remove()">Close</button></div>
</div>
"""


@pytest.mark.browser
@pytest.mark.parametrize("network_changed", [False, True], ids=["network-kept", "network-changed"])
def test_the_connection_lost_dialog_is_closed_only_when_the_network_changed(chromium, network_changed):
    from playwright.sync_api import TimeoutError

    from tests import network_churn

    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_content(DIALOG)
        if network_changed:
            network_churn.failed.append("GET http://127.0.0.1:1/user/x/api/sessions")
            page.locator("#under").click(timeout=5000)
            assert page.locator("#under").inner_text() == "clicked"
            assert page.locator(".jp-Dialog").count() == 0
            assert any("Server Connection Error" in line for line in network_churn.trouble)
        else:  # the dialog stays and takes the click, as it would for anyone
            with pytest.raises(TimeoutError):
                page.locator("#under").click(timeout=2000)
            assert page.locator(".jp-Dialog").count() == 1
    finally:
        context.close()
        network_churn.failed.clear()
        network_churn.trouble.clear()
