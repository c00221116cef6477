"""The class view in Chromium (issue 26), against the real service and image: an attendee raises a hand from the
control in their own JupyterLab or Notebook 7 page, a failing cell run in the notebook shows on their tile, and a
helper's class view (opened with the helper link) lists the hand first and sees it go when lowered.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.network_churn import page_deadline
from tests.screenshots import shoot
from tests.test_browser_isolation import SUB, goto


def settle(service) -> None:
    """No container starting while a page loads (Chromium aborts loads when the machine's network changes: see
    test_browser_isolation.settle)."""
    service.wait_for(lambda: service.stats()["available"] >= 1 and service.stats()["launching"] == 0,
                     timeout=120, what="a still pool")
    time.sleep(1)


pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "01-python-introduction.ipynb"


def class_sessions(service, key: str) -> list[dict]:
    return requests.get(f"{service.url}/api/class", headers={"Authorization": f"token {key}"},
                        timeout=30).json()["sessions"]


@pytest.mark.parametrize("ui,subdomain", [("lab", False), ("notebooks", False), ("lab", True)],
                         ids=["lab", "notebook7", "lab-own-origin"])
def test_a_hand_raised_in_the_notebook_comes_first_in_the_class_view_and_goes_when_lowered(ui, subdomain, chromium,
                                                                                           make_service):
    # With subdomain_host, the notebook's page is at its container's own origin: the control asks nbpool there.
    own_origins = {"Proxy__subdomain_host": SUB, "WebApp__admin_hosts": ["localhost", "127.0.0.1", SUB]} \
        if subdomain else {}
    service = make_service(Pool__warm=2, Pool__max_containers=4, AbuseGuard__check_interval=1.0, **own_origins)
    service.start()
    settle(service)
    main = f"http://{SUB}:{service.port}" if subdomain else service.url
    key = service.admin("GET", "/api/admin/class-links").json()["all"]
    other = chromium.new_context()  # another attendee, who raises no hand
    attendee = chromium.new_context()
    helper = chromium.new_context(viewport={"width": 1600, "height": 900})
    try:
        quiet = other.new_page()
        quiet.set_default_timeout(90_000)
        goto(quiet, f"{main}/spawn/tree")
        quiet.wait_for_url("**/user/*/tree**")
        settle(service)
        page = attendee.new_page()
        page.set_default_timeout(90_000)
        heard = []  # the kernel's first words on the page's channels WebSocket: the page may run cells now
        page.on("websocket", lambda ws: "/channels" in ws.url and ws.on("framereceived", lambda _: heard.append(1)))
        goto(page, f"{main}/spawn/lab/tree/{NOTEBOOK}" if ui == "lab" else f"{main}/spawn/notebooks/{NOTEBOOK}")
        page.wait_for_url(f"**/user/*/{ui}/**")
        cid = page.url.split("/user/", 1)[1].split("/", 1)[0]
        assert page.url.startswith(f"http://{cid}.{SUB}:" if subdomain else service.url), page.url
        # The hand-out started a spare in its place, whose network interface Chromium takes for a change of
        # network, aborting what the page was loading (JupyterLab then says its theme failed to load): once
        # the pool is still, the page loads again, as a person would reload.
        settle(service)
        heard.clear()
        page.reload()

        # A failing cell, run from the notebook itself: its tile names the exception.
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        cell = page.locator(".jp-CodeCell").nth(2)  # "lengths = [len(name) for name in languages]": needs cell 4
        # (Run before the page's kernel is connected, Notebook 7 asks which kernel to start instead.)
        deadline = time.monotonic() + 90
        while not heard:
            page_deadline(deadline, "the notebook's kernel WebSocket said nothing in 90 s")
            page.wait_for_timeout(200)
        cell.click()
        page.keyboard.press("Shift+Enter")
        page.locator(".jp-OutputArea-output").filter(has_text="NameError").first.wait_for()

        # The helper's view, opened with the helper link (the key leaves the address at once).
        view = helper.new_page()
        view.set_default_timeout(60_000)
        goto(view, f"{main}/class?key={key}")
        assert "key=" not in view.url
        tile = view.locator(f"li.tile[data-id='{cid}']")
        tile.locator(".tile-outcome.is-error").wait_for()
        assert "NameError" in tile.inner_text()

        # The attendee raises a hand with a line of text from the control in their page.
        page.locator("#nbpool-hand-name").click()
        page.locator("#nbpool-hand-name-input").fill("Grace")
        page.locator("#nbpool-hand-name-input").press("Enter")
        page.locator("#nbpool-hand-raise").click()
        page.locator("#nbpool-hand-text").fill("stuck on the list comprehension")
        page.locator("#nbpool-hand-send").click()
        view.locator(f"li.tile[data-id='{cid}'] .tile-hand").wait_for()
        first = view.locator("#cv-tiles > li.tile").first
        assert first.get_attribute("data-id") == cid
        assert "stuck on the list comprehension" in first.inner_text() and "Grace" in first.inner_text()
        api = class_sessions(service, key)
        assert api[0]["id"] == cid and api[0]["hand"]["text"] == "stuck on the list comprehension", api
        if ui == "lab" and not subdomain:
            shoot(view, "class-view")

        # Lowered from the notebook: gone from the view.
        page.locator("#nbpool-hand-raise").click()
        view.locator(f"li.tile[data-id='{cid}'] .tile-hand").wait_for(state="detached")
        assert all(s["hand"] is None for s in class_sessions(service, key))
    finally:
        for context in (attendee, other, helper):
            context.close()
