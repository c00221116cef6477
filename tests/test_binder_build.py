"""Live code on other sites' pages (issue 16, its build side): /build/<provider>/<spec> as BinderHub's event
stream, and the embedded container's credential, with the real service, engine and image.

What a page's script does is done here with plain HTTP, as Thebe does it: the stream without cookies, REST
calls with ``Authorization: token``, the kernel's WebSocket with ``?token=``, each with the page's Origin.
(tests/test_browser.py runs the real Thebe in Chromium.)
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from loadtest.jupyter import KernelClient

from .service import cid_of, visitor

PAGE = "http://localhost:9431"  # the site whose pages embed live code (WebApp.cors_origin)
STRANGER = "https://elsewhere.example"  # a site the operator did not name
SPEC = "/build/gh/teach/python-intro/main"
NOTEBOOK = "01-python-introduction.ipynb"


def stream(url: str, origin: str | None = PAGE, timeout: float = 120,
           verify: bool = True) -> tuple[requests.Response, list[dict]]:
    """Read a /build event stream to its end, as an EventSource does: its messages in order."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if origin:
        headers["Origin"] = origin
    with requests.get(url, headers=headers, stream=True, timeout=timeout, verify=verify) as resp:
        messages = []
        if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            for line in resp.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    messages.append(json.loads(line[len("data: "):]))
        else:
            resp.content  # noqa: B018 (read the refusal)
        return resp, messages


def page_headers(token: str, origin: str = PAGE) -> dict:
    return {"Authorization": f"token {token}", "Origin": origin, "Content-Type": "application/json"}


@pytest.fixture
def embedding(make_service):
    # (this machine is not exempt from the per-address share here: half of 4 containers)
    service = make_service(WebApp__cors_origin=[PAGE], Pool__warm=1, Pool__max_containers=4,
                           WebApp__address_share_exempt=[])
    service.start()
    return service


def test_a_page_gets_a_ready_server_and_reaches_only_it_with_its_credential(embedding):
    service = embedding
    resp, messages = stream(service.url + SPEC)
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert [m["phase"] for m in messages] == ["launching", "ready"]
    ready = messages[-1]
    url, token = ready["url"], ready["token"]
    assert url.startswith(service.url + "/user/") and url.endswith("/")
    # The credential is made for this hand-out: not the server's secret, not the notebook's own token.
    assert token not in service.logs() and token not in (service.data_dir / "secret").read_text(errors="replace")

    # The browser's preflight (no credential) is answered by the proxy, for the trusted page only.
    preflight = requests.options(url + "api/kernels?1", timeout=10, headers={
        "Origin": PAGE, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == PAGE
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    strange = requests.options(url + "api/kernels?1", timeout=10, headers={
        "Origin": STRANGER, "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in strange.headers

    # REST with the header (a cache-busting query, as @jupyterlab/services adds) and with ?token=.
    kernels = requests.get(url + "api/kernels?1796037119934", headers=page_headers(token), timeout=30)
    assert kernels.status_code == 200 and kernels.json() == []
    assert kernels.headers["Access-Control-Allow-Origin"] == PAGE
    by_query = requests.get(url + f"api/status?token={token}", headers={"Origin": PAGE}, timeout=30)
    assert by_query.status_code == 200 and "started" in by_query.json()

    # A kernel, and its WebSocket with ?token= from the page's origin, as Thebe opens it: code runs.
    session = requests.post(url + "api/sessions?2", headers=page_headers(token), timeout=60, data=json.dumps(
        {"name": "thebe.ipynb", "path": "/", "type": "notebook", "kernel": {"name": "python3"}}))
    assert session.status_code == 201, session.text
    kernel_id = session.json()["kernel"]["id"]
    assert asyncio.run(run_over_token_socket(url, kernel_id, token)) == "42"

    # The credential from a site the operator did not name: refused, REST and WebSocket alike.
    assert requests.get(url + "api/kernels", headers=page_headers(token, STRANGER), timeout=30).status_code == 403
    with pytest.raises(HTTPClientError) as refused:
        asyncio.run(open_token_socket(url, kernel_id, token, STRANGER))
    assert refused.value.code == 403
    # Without any Origin (a script that is no browser page): refused too.
    assert requests.get(url + "api/kernels", headers={"Authorization": f"token {token}"},
                        timeout=30).status_code == 403
    # A wrong credential, or none, from the trusted page: nothing (a forged cookie neither).
    assert requests.get(url + "api/kernels", headers=page_headers("0" * 64), timeout=30).status_code == 403
    assert requests.get(url + "api/kernels", headers={"Origin": PAGE}, timeout=30).status_code == 403

    # The operators see it as embedded.
    rows = service.admin("GET", "/api/admin/containers").json()["containers"]
    (row,) = [r for r in rows if r["id"] == cid_of(url)]
    assert row["state"] == "assigned" and row["embedded"] is True

    # A second page's server: neither credential opens the other's.
    _, second = stream(service.url + SPEC)
    other_url, other_token = second[-1]["url"], second[-1]["token"]
    assert other_url != url and other_token != token
    assert requests.get(other_url + "api/kernels", headers=page_headers(token), timeout=30).status_code == 403
    assert requests.get(url + "api/kernels", headers=page_headers(other_token), timeout=30).status_code == 403
    # A third from the same address: past its share, the page is told so.
    _, third = stream(service.url + SPEC)
    assert [m["phase"] for m in third] == ["failed"] and "network address" in third[0]["message"]

    # MyST's "Open in Jupyter" after connecting: a tab opened at '{url}lab/tree/…?token=…'. The link never
    # opens the server by itself (anyone can take one and send it round): the person is asked, and the
    # POST from that page makes it their session; the address they land on no longer carries the token.
    tab = visitor()
    navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document"}
    opened = tab.get(url + f"lab/tree/{NOTEBOOK}?token={token}", headers=navigate, timeout=30, allow_redirects=False)
    assert opened.status_code == 302 and opened.headers["Location"].startswith(f"/embedded/{cid_of(url)}?")
    asked = tab.get(service.url + opened.headers["Location"], headers=navigate, timeout=30, allow_redirects=False)
    assert asked.status_code == 200 and "Open this notebook server?" in asked.text
    assert "Set-Cookie" not in asked.headers and not tab.cookies
    landed = tab.post(service.url + opened.headers["Location"], headers={"Origin": service.url}, timeout=30,
                      allow_redirects=False)
    assert landed.status_code == 302 and landed.headers["Location"] == f"/user/{cid_of(url)}/lab/tree/{NOTEBOOK}"
    assert tab.get(service.url + landed.headers["Location"], timeout=30).status_code == 200
    refused = visitor().post(service.url + opened.headers["Location"], headers={"Origin": "http://evil.example"},
                             timeout=30, allow_redirects=False)  # another site cannot press the button
    assert refused.status_code == 403 and "Set-Cookie" not in refused.headers
    assert token not in service.logs()
    stranger_tab = visitor().get(url + f"lab/tree/{NOTEBOOK}?token={'0' * 64}", headers=navigate, timeout=30,
                                 allow_redirects=False)
    assert stranger_tab.status_code == 403
    forged = visitor().get(f"{service.url}/embedded/{cid_of(url)}?token={'0' * 64}&path=lab", timeout=30,
                           allow_redirects=False)
    assert forged.status_code == 410 and "Set-Cookie" not in forged.headers

    # Once the container has ended, its credential opens nothing: a saved Thebe session finds out and asks anew.
    assert service.admin("DELETE", f"/api/admin/containers/{cid_of(url)}").status_code == 204
    service.wait_for(lambda: requests.get(url + "api/kernels", headers=page_headers(token), timeout=30)
                     .status_code == 404, what="the ended container's route gone")


async def open_token_socket(url: str, kernel_id: str, token: str, origin: str) -> None:
    """Open the kernel's WebSocket with ?token= from ``origin`` (raises HTTPClientError when refused)."""
    conn = await websocket_connect(HTTPRequest(
        "ws" + url[4:] + f"api/kernels/{kernel_id}/channels?session_id=s&token={token}", headers={"Origin": origin}))
    conn.close()


async def run_over_token_socket(url: str, kernel_id: str, token: str) -> str:
    """Run print(6*7) over the kernel's WebSocket opened as Thebe opens it (?session_id=&token=, the page's
    Origin, no Authorization header)."""
    client = KernelClient(url, {"Origin": PAGE}, ws_query=f"token={token}")
    await client.attach(kernel_id)
    try:
        return (await client.execute("print(6 * 7)")).output.strip()
    finally:
        client.detach()


def test_the_stream_waits_in_line_fails_at_the_cap_and_refuses_strangers(make_service):
    service = make_service(WebApp__cors_origin=[PAGE], Pool__warm=0, Pool__max_containers=1)
    service.start(wait_warm=False)

    # A site the operator did not name gets no container: refused before anything is taken.
    resp, messages = stream(service.url + SPEC, origin=STRANGER)
    assert resp.status_code == 403 and not messages and "Access-Control-Allow-Origin" not in resp.headers
    assert service.stats()["assigned"] == 0 and service.stats()["launching"] == 0

    # No spare: the page is told its place in line, then its server is ready.
    resp, messages = stream(service.url + SPEC)
    phases = [m["phase"] for m in messages]
    assert phases[0] == "waiting" and "number 1 in line" in messages[0]["message"]
    assert phases[-2:] == ["launching", "ready"], messages
    assert service.stats()["assigned"] == 1

    # At the cap: "failed", with a message a reader understands, and nothing taken.
    resp, messages = stream(service.url + SPEC)
    assert [m["phase"] for m in messages] == ["failed"]
    assert "in use" in messages[0]["message"] and "try again" in messages[0]["message"], messages
    assert service.stats()["assigned"] == 1


def test_a_workshop_key_and_unknown_specs_fail_with_a_message(make_service):
    service = make_service(WebApp__cors_origin=[PAGE], NbpoolApp__workshops={
        "python-intro": {"warm": 1, "max_containers": 2, "key": "s3cret-key"},
        "r-stats": {"warm": 0, "max_containers": 1}})
    service.start(wait_warm=False)
    _, messages = stream(service.url + "/build/gh/teach/other-course/main")
    assert [m["phase"] for m in messages] == ["failed"]
    assert "other-course" in messages[0]["message"] and "python-intro" in messages[0]["message"]

    _, messages = stream(service.url + SPEC)
    assert [m["phase"] for m in messages] == ["failed"] and "link" in messages[0]["message"]
    _, messages = stream(service.url + SPEC + "?key=s3cret-key")
    assert messages[-1]["phase"] == "ready"
    assert service.stats()["workshops"]["python-intro"]["assigned"] == 1


def test_a_pages_server_and_its_credential_survive_a_restart_of_nbpool(make_service, docker_client):
    service = make_service(WebApp__cors_origin=[PAGE], Pool__warm=1, Pool__max_containers=2)
    service.start()
    _, messages = stream(service.url + SPEC)
    url, token = messages[-1]["url"], messages[-1]["token"]
    session = requests.post(url + "api/sessions", headers=page_headers(token), timeout=60, data=json.dumps(
        {"name": "thebe.ipynb", "path": "/", "type": "notebook", "kernel": {"name": "python3"}}))
    kernel_id = session.json()["kernel"]["id"]
    (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={cid_of(url)}"})
    assert "--e" in container.name  # the hand-out to a page is recorded with the engine

    service.restart()
    kernels = requests.get(url + "api/kernels", headers=page_headers(token), timeout=30)
    assert kernels.status_code == 200 and [k["id"] for k in kernels.json()] == [kernel_id]
    assert kernels.headers["Access-Control-Allow-Origin"] == PAGE
    rows = service.admin("GET", "/api/admin/containers").json()["containers"]
    assert [r["embedded"] for r in rows if r["id"] == cid_of(url)] == [True]


def test_a_page_left_open_without_running_code_lets_its_server_go_and_gets_a_fresh_one_on_its_next_run(
        make_service):
    service = make_service(WebApp__cors_origin=[PAGE], Pool__warm=1, Pool__max_containers=3, Pool__cull_idle=600,
                           Pool__cull_embedded_idle=6, Pool__cull_interval=1)
    service.start()
    _, messages = stream(service.url + SPEC)
    url, token = messages[-1]["url"], messages[-1]["token"]
    kernel = requests.post(url + "api/kernels", json={"name": "python3"}, headers=page_headers(token),
                           timeout=60).json()["id"]

    # The reader runs a cell now and then (every 3 s, against a 6 s limit) while Thebe polls: it stays.
    for _ in range(5):
        assert asyncio.run(run_over_token_socket(url, kernel, token)) == "42"
        last_run = time.monotonic()
        assert requests.get(url + "api/kernels", headers=page_headers(token), timeout=30).status_code == 200
        time.sleep(3)
    assert service.stats()["assigned"] == 1
    # The tab stays open but nobody runs anything: the polls (every 2 s) do not keep it.
    while service.stats()["assigned"] == 1 and time.monotonic() - last_run < 30:
        requests.get(url + "api/kernels", headers=page_headers(token), timeout=30)
        time.sleep(2)
    assert service.stats()["assigned"] == 0, "polled without a run, the page's server was kept"
    assert 6 < time.monotonic() - last_run < 20
    assert "no kernel run for" in service.logs()
    # The reader runs code again: the page asks for a server as it does at its start, and gets a fresh one.
    _, messages = stream(service.url + SPEC)
    again, fresh_token = messages[-1]["url"], messages[-1]["token"]
    assert again != url and messages[-1]["phase"] == "ready"
    fresh = requests.post(again + "api/kernels", json={"name": "python3"}, headers=page_headers(fresh_token),
                          timeout=60).json()["id"]
    assert asyncio.run(run_over_token_socket(again, fresh, fresh_token)) == "42"


def test_a_page_left_open_keeps_its_server_and_a_closed_one_lets_it_be_culled(make_service):
    service = make_service(WebApp__cors_origin=[PAGE], Pool__warm=1, Pool__max_containers=2, Pool__cull_idle=8,
                           Pool__cull_interval=1)
    service.start()
    _, messages = stream(service.url + SPEC)
    url, token = messages[-1]["url"], messages[-1]["token"]
    # The open page: Thebe polls its server every 10 s (here every 2 s, against an 8 s idle limit).
    deadline = time.monotonic() + 16
    while time.monotonic() < deadline:
        assert requests.get(url + "api/kernels", headers=page_headers(token), timeout=30).status_code == 200
        time.sleep(2)
    # The page closed: nothing comes, and the server goes like any idle one.
    service.wait_for(lambda: service.stats()["assigned"] == 0, timeout=30, what="the idle embedded server culled")
    assert requests.get(url + "api/kernels", headers=page_headers(token), timeout=30).status_code == 404
