"""Chromium's ERR_NETWORK_CHANGED on a Docker host, and the one rerun it earns a browser test.

Chromium watches the host's addresses over netlink and, when any changes, fails the requests that are
waiting for a connection with ``net::ERR_NETWORK_CHANGED`` (a ``fetch`` rejects with "Failed to
fetch"; a navigation throws). Here the browser runs on the Docker host itself, where every container
start or stop and every network a test service creates adds or drops an address (a bridge's gateway,
a veth's IPv6 link-local one): with two test workers, about one change a second (a NetLog of 60 runs
of one browser test counted 123 in 130 s, and one of its POSTs failed so). An attendee's browser is
not on the Docker host and never sees them, so such a failure says nothing about nbpool.

No Chromium switch turns the watcher off, and a network namespace of its own would take from the browser the
loopback address the tests serve on. So the browser fixture records every request the browser failed with that
error, and a test using the browser whose run failed in the browser (a Playwright error: a rejected fetch, a
navigation, a wait that timed out; or PageNotReady, a test's own wait for the page) while one was recorded
runs once more (pytest-rerunfailures' ``flaky`` marker, with ``rerun_condition`` as its condition): the run's
summary counts it as a rerun and a warning names the requests. A test that fails again, or fails with no such
request, fails as always. WebSockets failed so count too, and JupyterLab's "Server Connection Error" dialog,
which such losses open and which takes every click, is closed then (and only then). A failed browser test's
report gets a "browser" section with the rest of what the browser went through. This module is a pytest
plugin (tests/conftest.py registers it).
"""

from __future__ import annotations

import time
import traceback
import warnings

import pytest

ERROR = "net::ERR_NETWORK_CHANGED"

# Requests failed with ERROR since the current test's setup began ("METHOD URL"). One test runs at a
# time in a pytest process (xdist workers are processes of their own).
failed: list[str] = []

# What else the browser went through in the current test: requests failed for any reason, answers of 400 and
# more, WebSocket errors and JupyterLab dialogs dismissed. A failed test's report shows it (the "browser" section).
trouble: list[str] = []

# JupyterLab's modal "Server Connection Error" dialog: JupyterLab opens it when its requests fail (it keeps
# reconnecting by itself), and until someone closes it, it takes every click on the page.
CONNECTION_LOST = ".jp-Dialog:has-text('Server Connection Error')"


class NetworkChurnWarning(UserWarning):
    """A browser test ran again because the host's network changed under the browser."""


class PageNotReady(AssertionError):
    """A test's own wait for the page (its kernel's WebSocket, its cells) ran out: a failure in the browser."""


def page_deadline(deadline: float, what) -> None:
    """Raise PageNotReady(what) once time.monotonic() is past ``deadline`` (``what``: a text, or a callable
    giving it, for a message that costs something to write)."""
    if time.monotonic() >= deadline:
        raise PageNotReady(what() if callable(what) else what)


def _note(line: str) -> None:
    trouble.append(f"{time.strftime('%H:%M:%S')} {line}")
    del trouble[:-200]  # (the last ones are those that matter)


def watch(browser) -> None:
    """Record, in every context ``browser`` opens from now on, the requests and WebSockets it failed with ERROR
    (and the rest of its trouble), and close JupyterLab's connection-lost dialog when the network changed."""
    def request_failed(request) -> None:
        _note(f"failed {request.method} {request.url[:200]}: {request.failure}")
        if request.failure and ERROR in request.failure:
            failed.append(f"{request.method} {request.url[:200]}")

    def response(response) -> None:
        if response.status >= 400:
            _note(f"{response.status} {response.request.method} {response.url[:200]}")

    def websocket(ws) -> None:
        def socket_error(error) -> None:
            _note(f"WebSocket {ws.url[:200]}: {error}")
            if ERROR in str(error):
                failed.append(f"WebSocket {ws.url[:200]}")
        ws.on("socketerror", socket_error)

    def page(page) -> None:
        page.on("websocket", websocket)
        page.add_locator_handler(page.locator(CONNECTION_LOST), connection_lost, no_wait_after=True)

    def connection_lost(dialog) -> None:
        # Closed only when the host's network changed under the browser (a person would close it and JupyterLab
        # reconnects); otherwise it stays, and the test's next click fails on it as it would for anyone.
        if failed:
            _note("closed JupyterLab's 'Server Connection Error' dialog (the host's network changed)")
            dialog.get_by_role("button", name="Close").click()

    open_context = browser.new_context

    def new_context(*args, **kwargs):  # (the tests open every page in a context of their own)
        context = open_context(*args, **kwargs)
        context.on("requestfailed", request_failed)
        context.on("response", response)
        context.on("page", page)
        return context

    browser.new_context = new_context


def rerun_condition(error) -> bool:
    """The ``flaky`` marker's condition: whether the run failed in the browser while the host's network changed.

    Only the browser's own errors count (Playwright's: a rejected fetch in the page, a navigation, a wait for the
    page that timed out; and PageNotReady, the test's own wait for the page); a failed assertion or a bad answer
    to a request the test made itself is the test's finding, whatever the browser saw meanwhile.
    """
    if error is None:
        return bool(failed)
    if not failed or not _from_the_browser(error):
        return False
    seen = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    warnings.warn(NetworkChurnWarning(
        f"the host's network changed under Chromium ({ERROR}: {seen}) in a run that failed with "
        f"{type(error).__name__}: {str(error)[:300]}{_where(error)} (a browser test runs once more for this, "
        "never twice)"), stacklevel=2)
    return True


def _from_the_browser(error: BaseException) -> bool:
    if isinstance(error, PageNotReady):
        return True
    return any(cls.__module__.startswith("playwright.") for cls in type(error).__mro__)


def _where(error: BaseException) -> str:
    """The test's own lines the error went through (the first run's report is not kept)."""
    frames = [f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{line}"
              for frame, line in traceback.walk_tb(error.__traceback__)
              if "/tests/" in frame.f_code.co_filename or "/test_" in frame.f_code.co_filename]
    return f", at {' < '.join(reversed(frames[-4:]))}" if frames else ""


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.flaky(reruns=1, condition=rerun_condition))


def pytest_runtest_setup(item) -> None:
    failed.clear()  # what the browser saw in an earlier test, or an earlier run of this one, is not this run's
    trouble.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    outcome = yield
    if outcome.excinfo is not None and trouble and "chromium" in getattr(item, "fixturenames", ()):
        item.add_report_section("call", "browser", "\n".join(trouble))
