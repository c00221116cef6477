"""Attendees are strangers to each other, in a real browser (issue 24): Chromium, the real service and engine.

The attacker's notebook server is the hostile stand-in (tests/resources/hostile: the workshop image with its
server replaced by its attendee's own program; in the real image an attendee gets the same through a
JupyterLab extension installed into their home). Its page (page.html = evil.html) tries, from the visitor's
browser, to read another attendee's file, drive their kernel, write into their server, list and drain the
pool through nbpool's admin API, and plant cookies for the whole service. The visitor opened it themselves,
through the page's "Open in Jupyter" link and nbpool's question, and holds their own notebook and the
operator's sign-in in the same browser.

Chromium resolves every *.localhost name to this machine, which makes the wildcard name of subdomain mode
testable here: the service's main host is nb.localhost, each container <id>.nb.localhost.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from urllib.parse import quote

import pytest
import requests

from tests.test_binder_build import stream

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

SUB = "nb.localhost"
WORKSHOPS = {"course": {"display_name": "Course", "warm": 1, "max_containers": 3},
             "own": {"display_name": "Own", "warm": 1, "max_containers": 3, "prestart_kernel": False}}


def started(make_service, hostile_image, **settings):
    workshops = {**WORKSHOPS, "own": {**WORKSHOPS["own"], "image": hostile_image}}
    service = make_service(NbpoolApp__workshops=workshops, WebApp__address_share_exempt=[], **settings)
    service.start(wait_warm=False)
    settle(service)
    return service


def settle(service) -> None:
    """Every workshop has its spare again: no container is starting while the page fetches.

    A container starting adds a network interface, which Chromium takes for a change of network and aborts
    what it has in flight (ERR_NETWORK_CHANGED, "Failed to fetch"); a person would reload. The test waits
    for the pool to be still instead, so that what it asserts is never such an abort."""
    for name in WORKSHOPS:
        service.wait_for(lambda n=name: requests.get(f"{service.url}/w/{n}/api/stats", timeout=10, verify=False).json()
                         ["available"] >= 1, timeout=120, what=f"a spare of {name}")
    time.sleep(1)  # Chromium's own notice of the last interface comes a moment after it


def goto(page, url: str):
    """page.goto, once more if Chromium gave up because the machine's network changed under it: a container
    starting adds an interface, which Chromium takes for a network change (ERR_NETWORK_CHANGED); a person
    would reload."""
    from playwright.sync_api import Error

    try:
        return page.goto(url)
    except Error as exc:
        # The same abort, told either way: the error itself, or its error page taking the navigation over.
        if "ERR_NETWORK_CHANGED" not in str(exc) and "chrome-error://" not in str(exc):
            raise
        time.sleep(2)  # (an immediate retry met the same abort in CI)
        return page.goto(url)


def sign_in(page, main: str, token: str) -> None:
    """The operator signs in to /status (twice at most: the form's post, too, can meet a network change)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    heading = page.get_by_role("heading", name=re.compile("Course"))
    for attempt in range(2):
        goto(page, f"{main}/status")
        if heading.count():
            return  # signed in by the first attempt after all
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        try:
            heading.wait_for(timeout=30_000 if attempt == 0 else 90_000)
            return
        except PlaywrightTimeout:
            if attempt:
                raise


def write_diary(docker_client, cid: str) -> None:
    (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={cid}"})
    code, out = container.exec_run(["sh", "-c", "echo 'dear diary' > /home/jovyan/diary.txt"], user="1000")
    assert code == 0, out


def home_files(docker_client, cid: str) -> list[str]:
    (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={cid}"})
    code, out = container.exec_run(["ls", "-A", "/home/jovyan"], user="1000")
    assert code == 0, out
    return out.decode().split()


def start_kernel(page, base: str) -> str:
    """A kernel in the visitor's own server (their work), started from its own page; its id."""
    return page.evaluate("""async (base) => (await (await fetch(base + 'api/kernels', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{}'})).json()).id""", base)


def kernels(page, base: str) -> list:
    return page.evaluate("async (base) => await (await fetch(base + 'api/kernels')).json()", base)


def open_their_link(page, url: str, token: str) -> None:
    """Follow the page's server's link (MyST's "Open in Jupyter") and say yes on nbpool's question."""
    goto(page, f"{url}page.html?token={token}")
    page.get_by_role("heading", name="Open this notebook server?").wait_for()
    page.click("#open")
    page.wait_for_url(re.compile(r"/page\.html$"))


def run_attack(page, url: str, victim: str, kernel: str, main: str) -> dict:
    goto(page, f"{url}page.html?a={quote(victim, safe='')}&k={kernel}&main={quote(main, safe='')}")
    page.wait_for_function("document.getElementById('results').textContent.length > 0", timeout=60_000)
    return json.loads(page.locator("#results").text_content())


@pytest.fixture(scope="module")
def wildcard_certificate(tmp_path_factory):
    """(cert, key) for nb.localhost and *.nb.localhost: subdomain mode over HTTPS (self-signed)."""
    folder = tmp_path_factory.mktemp("wildcard")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={SUB}",
                    "-addext", f"subjectAltName=DNS:{SUB},DNS:*.{SUB}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_subdomain_mode_one_attendees_page_cannot_reach_another_nor_nbpools_admin(scheme, chromium, make_service,
                                                                                 hostile_image, docker_client,
                                                                                 wildcard_certificate):
    tls = {"Proxy__certfile": wildcard_certificate[0], "Proxy__keyfile": wildcard_certificate[1]} \
        if scheme == "https" else {}
    service = started(make_service, hostile_image, Proxy__subdomain_host=SUB,
                      WebApp__admin_hosts=["localhost", "127.0.0.1", SUB], **tls)
    port = service.port
    main = f"{scheme}://{SUB}:{port}"
    # The attacker takes a server of their own for a page's live code (a script: no browser, no cookie).
    _, messages = stream(f"{service.url}/build/gh/someone/own/main", origin=None, verify=False)
    theirs, token = messages[-1]["url"], messages[-1]["token"]
    b = re.fullmatch(rf"{scheme}://([0-9a-f]{{12}})\.{re.escape(SUB)}:{port}/user/\1/", theirs)
    assert b, theirs  # at an origin of its own

    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    entries: list[str] = []
    page.on("request", lambda request: entries.append(request.url) if "/enter/" in request.url else None)
    try:
        sign_in(page, main, service.admin_token)  # the operator, at the main host
        goto(page, f"{main}/w/course/")  # and their own notebook, in the same browser
        page.wait_for_url(re.compile(rf"{scheme}://[0-9a-f]{{12}}\.{re.escape(SUB)}:{port}/user/[0-9a-f]{{12}}/tree"))
        mine = re.match(rf"{scheme}://([0-9a-f]{{12}})\.", page.url).group(1)
        victim = f"{scheme}://{mine}.{SUB}:{port}/user/{mine}/"
        if scheme == "https":  # nbpool's own cookies are __Host- cookies there, Secure, for one host alone
            names = {c["name"] for c in context.cookies() if c["name"].endswith("nbpool-session-course")}
            assert names == {"__Host-nbpool-session-course"}, names
        write_diary(docker_client, mine)
        settle(service)
        kernel = start_kernel(page, victim)
        before = home_files(docker_client, mine)

        open_their_link(page, theirs, token)
        settle(service)
        results = run_attack(page, theirs, victim, kernel, main)
        assert results["own_server"] == 200, results  # the page ran, with its own server's credential
        assert results["read_victim"].startswith("blocked"), results  # another origin: nothing readable
        assert results["admin_list"].startswith("blocked"), results
        assert results["kernel_socket"] != "open", results
        # What it sent blind did nothing: no file, no kernel in the other server; no drain.
        assert home_files(docker_client, mine) == before
        goto(page, victim + "tree")
        assert [k["id"] for k in kernels(page, victim)] == [kernel]
        assert "drain requested" not in service.logs()
        # Its cookies planted for the whole service changed nothing: the visitor is still theirs, and the operator.
        goto(page, f"{main}/w/course/spawn")
        page.wait_for_url(re.compile(rf"{scheme}://{mine}\.{re.escape(SUB)}:{port}/user/{mine}/tree"))
        goto(page, f"{main}/status")
        page.get_by_role("heading", name=re.compile("Course")).wait_for()
        # The link that took this browser into its notebook's origin does nothing in another browser.
        (entry,) = [u for u in entries if f"/enter/{mine}?" in u][:1]
        other = chromium.new_context(ignore_https_errors=True)
        try:
            stolen = other.new_page()
            answer = goto(stolen, entry)
            assert answer.status == 403 and "only in the browser it was made for" in stolen.content()
            assert not [c for c in other.cookies() if c["name"].startswith("nbpool-session")]
        finally:
            other.close()
    finally:
        context.close()


def test_path_mode_a_browser_holds_one_notebook_and_never_the_admin_sign_in_beside_it(chromium, make_service,
                                                                                      hostile_image, docker_client):
    service = started(make_service, hostile_image)
    main = service.url
    _, messages = stream(f"{service.url}/build/gh/someone/own/main", origin=None)
    theirs, token = messages[-1]["url"], messages[-1]["token"]

    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        sign_in(page, main, service.admin_token)
        goto(page, f"{main}/w/course/")
        page.wait_for_url(re.compile(r"/user/[0-9a-f]{12}/tree"))
        mine = re.search(r"/user/([0-9a-f]{12})/", page.url).group(1)
        victim = f"{main}/user/{mine}/"
        # The hand-out ended the sign-in: this origin now holds a notebook, so never the operator's cookie.
        assert page.evaluate("async () => (await fetch('/api/admin/containers')).status") == 401
        write_diary(docker_client, mine)
        settle(service)
        kernel = start_kernel(page, victim)

        goto(page, f"{theirs}page.html?token={token}")
        page.locator("#closes").wait_for()  # the question says what opening it ends
        assert any(c["name"] == "nbpool-session-course" for c in context.cookies())  # nothing changed yet
        page.click("#open")
        page.wait_for_url(re.compile(r"/page\.html$"))
        settle(service)
        results = run_attack(page, theirs, victim, kernel, main)
        assert results["own_server"] == 200, results
        # The visitor's own notebook ended when they opened this one, and this browser holds nothing else of
        # nbpool's: no file of theirs, no kernel, no admin answer.
        assert results["read_victim"] in (403, 404), results
        assert results["admin_list"] == 401, results
        assert results["kernel_socket"] != "open", results
        names = {c["name"] for c in context.cookies()}
        assert names & {"nbpool-session-course", "nbpool-kept-course", "nbpool-admin"} == set(), names
        assert "drain requested" not in service.logs()
    finally:
        context.close()
