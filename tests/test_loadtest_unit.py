"""The load generator (loadtest/) against a small real server that fails on purpose.

``tests/resources/fake_nbpool.py`` speaks the service's HTTP contract and
breaks one thing at a time; each breakage must end up as a failure of the
right phase, with the run completing and reporting it. Also: the cookie jar adapter,
the percentile and summary math, the plot being self-contained, and the CLI.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import sys
import xml.etree.ElementTree as ET
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

import loadtest
from loadtest.__main__ import main as cli_main
from loadtest.cookies import add_cookie_header, cookie_header, extract_cookies
from loadtest.progress import Progress, progress_line
from loadtest.record import EXECUTE, KERNEL, LANDING, LEAVE, PAGE, PHASES, SPAWN, AttendeeRecord, Failure, PhaseTiming
from loadtest.report import percentile, summarize, table
from loadtest.settings import Settings, SettingsError, parse_arrival
from tests.resources import fake_nbpool

ROOT = Path(__file__).resolve().parent.parent
# Fast settings: no think time, one cell, short timeouts and polls.
FAST = dict(session_seconds=0, think=0, poll_interval=0.02, stats_interval=0.05, request_timeout=5,
            kernel_timeout=5, spawn_timeout=5)


@pytest.fixture
async def service():
    """Start a fake nbpool with a given ``Behaviour``; every one started is stopped afterwards."""
    started = []

    async def start(**behaviour) -> fake_nbpool.RunningFake:
        running = await fake_nbpool.start(behaviour=fake_nbpool.Behaviour(**behaviour))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the whole visit, healthy ------------------------------------------------


async def test_every_attendee_goes_through_every_phase_from_spares(service):
    svc = await service()
    report = await loadtest.run(svc.url, users=3, **FAST)
    assert report.ok and report.summary.ok == 3 and report.summary.failed == 0, report.table()
    for record in report.attendees:
        assert list(record.phases) == list(PHASES)
        assert all(t.ok and t.end >= t.start for t in record.phases.values())
        assert record.served == "spare" and record.queued_at is None
        assert len(record.cell_results) == 1  # session 0 s: exactly one cell
        assert 0 < record.time_to_page < record.time_to_first_result
    assert len({r.container for r in report.attendees}) == 3  # a container each
    assert svc.state.spawn_paths == ["/spawn"] * 3
    assert sorted(svc.state.page_paths) == [f"/user/{r.container}/tree" for r in
                                            sorted(report.attendees, key=lambda r: r.container)]
    assert svc.state.kernel_names == ["python3"] * 3 and svc.state.executed == ["print(6*7)"] * 3
    assert svc.state.kernels_deleted == 3  # each shut its kernel down on leaving
    assert report.summary.row("spawn/spare").count == 3 and report.summary.row("spawn/queue").count == 0
    assert report.pool_samples and report.service["image"] == "fake-notebook:latest"


async def test_waiting_line_is_followed_with_the_ticket_cookie(service):
    svc = await service(spares=1, queue_polls=2)
    report = await loadtest.run(svc.url, users=3, **FAST)
    assert report.ok, report.table()
    queued = [r for r in report.attendees if r.served == "queue"]
    assert len(queued) == 2 and report.summary.served_from_spare == 1
    for record in queued:
        assert record.queue_position in (1, 2) and record.queue_polls == 3  # 2 "not yet", then ready
        assert record.phases[SPAWN].start < record.queued_at < record.phases[SPAWN].end
        assert any("/spawn/wait/" in text and text.endswith("302") for _, _, text in record.events)
    assert report.summary.row("time to notebook page/queue").count == 2


async def test_waiting_page_is_polled_when_the_queue_api_is_missing(service):
    svc = await service(spares=0, queue_polls=2, queue_api=False)
    report = await loadtest.run(svc.url, users=2, **FAST)
    assert report.ok, report.table()
    assert all(r.served == "queue" for r in report.attendees)


async def test_notebook_cells_run_in_order_with_its_kernel(service):
    svc = await service(kernelspec="workshop-python")
    report = await loadtest.run(svc.url, users=2, notebook="notebooks/01-python-introduction.ipynb",
                                **{**FAST, "session_seconds": 0.15, "think": 0.03})
    assert report.ok, report.table()
    assert svc.state.spawn_paths == ["/spawn/notebooks/01-python-introduction.ipynb"] * 2
    assert all(p.endswith("/notebooks/01-python-introduction.ipynb") for p in svc.state.page_paths)
    assert svc.state.kernel_names == ["workshop-python"] * 2
    code_cells = [c for c in fake_nbpool.NOTEBOOK_CELLS if c.strip()]
    for record in report.attendees:
        ran = svc.state.executed_by[record.container]
        assert len(ran) == len(record.cell_results) >= 3  # looped past the end of the notebook
        assert ran == [code_cells[i % len(code_cells)] for i in range(len(ran))]  # in order, blank one skipped


async def test_walking_away_leaves_kernels_running(service):
    svc = await service()
    report = await loadtest.run(svc.url, users=4, walk_away=0.5, **FAST)
    assert report.ok and report.summary.walked_away == 2
    assert svc.state.kernels_deleted == 2


async def test_ramp_spreads_arrivals(service):
    svc = await service()
    report = await loadtest.run(svc.url, users=3, arrival="ramp:0.2", **FAST)
    assert [r.arrival for r in report.attendees] == [0.0, 0.1, 0.2]
    assert all(r.started >= r.arrival for r in report.attendees)
    assert report.attendees[2].started >= 0.2


# -- failures, each in its phase ----------------------------------------------


@pytest.mark.parametrize(("behaviour", "options", "phase", "kind"), [
    (dict(landing_status=500), {}, LANDING, "http 500"),
    (dict(full=100), {}, SPAWN, "full"),
    (dict(rate_limited=100), {}, SPAWN, "rate-limited"),
    (dict(spawn_status=500), {}, SPAWN, "http 500"),
    (dict(spares=0, never_ready=True), dict(spawn_timeout=0.3), SPAWN, "timeout"),
    (dict(page_status=500), {}, PAGE, "http 500"),
    (dict(page_status=404), {}, PAGE, "session-ended"),
    (dict(session_cookie_path="/elsewhere/"), {}, PAGE, "forbidden"),
    (dict(contents_status=404), dict(notebook="missing.ipynb"), KERNEL, "session-ended"),
    (dict(kernels_status=500), {}, KERNEL, "http 500"),
    (dict(ws_status=403), {}, KERNEL, "websocket"),
    (dict(kernel="mute"), dict(kernel_timeout=0.3), KERNEL, "timeout"),
    (dict(kernel="close"), {}, EXECUTE, "websocket"),
    (dict(kernel="error"), {}, EXECUTE, "cell-error"),
    (dict(kernel="wrong"), {}, EXECUTE, "wrong-output"),
    (dict(kernel="silent"), dict(kernel_timeout=0.3), EXECUTE, "timeout"),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_failure_is_classified_by_phase(service, behaviour, options, phase, kind):
    svc = await service(**behaviour)
    report = await loadtest.run(svc.url, users=2, **{**FAST, **options})
    summary = report.summary
    assert not report.ok and summary.failed == 2 and summary.failures == {f"{phase}/{kind}": 2}, report.table()
    for record in report.attendees:
        assert record.failure.phase == phase and record.failure.kind == kind and record.failure.message
        assert record.phases[phase].ok is False and list(record.phases)[-1] == phase  # went no further
        assert all(t.ok for name, t in record.phases.items() if name != phase)
    assert summary.row(phase).failed == 2
    assert f"{phase}/{kind}: 2" in report.table()
    assert svc.state.kernels_deleted == len(svc.state.kernel_names)  # a kernel started is shut down, even so


async def test_one_failure_does_not_stop_the_others(service):
    svc = await service(full=1)  # only the first /spawn is turned away
    report = await loadtest.run(svc.url, users=3, **FAST)
    assert report.summary.failed == 1 and report.summary.ok == 2
    assert report.summary.failures == {"spawn/full": 1}


async def test_full_is_retried_after_retry_after(service):
    svc = await service(full=1, retry_after=0)
    report = await loadtest.run(svc.url, users=2, retries=1, **FAST)
    assert report.ok, report.table()
    assert sum(r.retries for r in report.attendees) == 1


async def test_retries_are_bounded(service):
    svc = await service(full=100, retry_after=0)
    report = await loadtest.run(svc.url, users=1, retries=2, **FAST)
    (record,) = report.attendees
    assert record.failure.kind == "full" and record.retries == 2 and "after 2 retries" in record.failure.message
    assert svc.state.spawn_requests == 3


async def test_no_service_at_all_is_a_landing_failure():
    report = await loadtest.run(f"http://127.0.0.1:{free_port()}", users=2, **FAST)
    assert report.summary.failures == {"landing/connection": 2}
    assert report.service["stats_samples"] == 0 and report.service["stats_errors"] >= 1


async def test_stop_interrupts_the_run_and_still_reports(service):
    svc = await service(kernel="mute")  # kernels never answer: attendees hang in the kernel phase
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    report = await loadtest.run(svc.url, users=2, stop=stop, arrival="ramp:60", **{**FAST, "kernel_timeout": 30})
    first, second = report.attendees
    assert first.failure.phase == KERNEL and first.failure.kind == "interrupted"
    assert second.failure.kind == "interrupted" and not second.phases  # had not arrived yet
    assert not report.ok


async def test_progress_lines_are_written(service):
    svc = await service()
    out = io.StringIO()
    await loadtest.run(svc.url, users=2, progress=Progress(out, tty=False, plain_interval=0.01), **FAST)
    lines = out.getvalue().splitlines()
    assert lines and "done 2" in lines[-1] and "failed 0" in lines[-1] and "pool:" in lines[-1]


# -- summary math ----------------------------------------------------------------


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(100, 0, -1)]  # 100..1, unsorted
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100 and percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def visit(index: int, spawn: float, *, failed_in: str | None = None, served: str = "spare") -> AttendeeRecord:
    """A synthetic record: 0.01 s landing, ``spawn`` s spawn, 0.02 s page, 1 s kernel, one cell 0.5 s."""
    r = AttendeeRecord(index=index, arrival=0.0, served=served)
    t = 0.0
    for name, seconds in ((LANDING, 0.01), (SPAWN, spawn), (PAGE, 0.02), (KERNEL, 1.0), (EXECUTE, 0.5),
                          (LEAVE, 0.01)):
        ok = name != failed_in
        r.phases[name] = PhaseTiming(t, t + seconds, ok)
        t += seconds
        if name == EXECUTE and ok:
            r.cell_results.append(t)
            r.cell_durations.append(0.5)
        if not ok:
            r.failure = Failure(name, "http 500", "boom", t)
            break
    return r


def test_summary_rows_count_completions_and_failures():
    records = [visit(0, 0.01), visit(1, 0.03), visit(2, 4.0, served="queue"), visit(3, 0.02, failed_in=KERNEL),
               visit(4, 0.05, failed_in=SPAWN)]
    s = summarize(records, duration=10.0)
    assert (s.users, s.ok, s.failed) == (5, 3, 2)
    assert s.failures == {"kernel/http 500": 1, "spawn/http 500": 1}
    spawn = s.row(SPAWN)
    assert (spawn.count, spawn.failed) == (5, 1)  # durations only of the 4 that got through
    assert spawn.max == pytest.approx(4.0) and spawn.p50 == pytest.approx(0.025)
    assert s.row("spawn/spare").count == 3 and s.row("spawn/queue").count == 1
    assert (s.row(KERNEL).count, s.row(KERNEL).failed) == (4, 1)
    page = s.row("time to notebook page")
    assert (page.count, page.failed) == (5, 1)
    assert page.max == pytest.approx(0.01 + 4.0 + 0.02)
    first = s.row("time to first result")
    assert (first.count, first.failed) == (5, 2) and first.p50 == pytest.approx(0.01 + 0.03 + 0.02 + 1.0 + 0.5)
    text = table(s)
    for label in ("landing", "spawn", "from a spare", "after waiting in line", "time to notebook page",
                  "time to first result", "cell round trip", "kernel/http 500: 1"):
        assert label in text
    assert "4.00 s" in text and "30 ms" in text


def test_records_are_json_ready():
    record = visit(0, 0.5)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["state"] == "ok" and data["phases"]["spawn"]["duration"] == pytest.approx(0.5)
    assert data["time_to_page"] == pytest.approx(0.53)


# -- plot and JSON files ---------------------------------------------------------


def assert_self_contained(text: str) -> None:
    without_namespace = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://", without_namespace)
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!#)""", text, re.I)  # nothing loaded, nothing linked
    assert "<script" not in text and "@import" not in text and "url(" not in text


async def test_plot_and_json_files(service, tmp_path):
    svc = await service(full=1, spares=1)  # one failure, one spare, one in line
    report = await loadtest.run(svc.url, users=3, **FAST)
    html_path, svg_path, json_path = tmp_path / "run.html", tmp_path / "run.svg", tmp_path / "run.json"
    report.write_plot(html_path)
    report.write_plot(svg_path)
    report.write_json(json_path)
    page, drawing = html_path.read_text(), svg_path.read_text()
    for text in (page, drawing):
        assert_self_contained(text)
        assert len(re.findall(r'<g class="attendee[" ]', text)) == 3
        assert text.count('<g class="attendee failed"') == 1 and 'class="failure"' in text
        assert 'data-series="available"' in text and 'data-series="queue"' in text
        for phase in (LANDING, SPAWN, PAGE, KERNEL, EXECUTE):
            assert f">{phase}<" in text  # legend
    assert page.startswith("<!DOCTYPE html>") and "time to notebook page" in page
    ET.fromstring(drawing.split("\n", 1)[1])  # well-formed XML after the declaration
    data = json.loads(json_path.read_text())
    assert len(data["attendees"]) == 3 and data["summary"]["failed"] == 1
    assert data["pool_samples"] and data["settings"]["arrival"] == "burst"
    assert {a["state"] for a in data["attendees"]} == {"ok", "failed"}


# -- cookie jar, settings ----------------------------------------------------------


def respond(url: str, *set_cookies: str) -> tuple[HTTPRequest, HTTPResponse]:
    """A request to ``url`` and a Tornado response to it carrying ``set_cookies``."""
    request = HTTPRequest(url)
    headers = HTTPHeaders()
    for value in set_cookies:
        headers.add("Set-Cookie", value)
    return request, HTTPResponse(request, 200, headers=headers)


def test_cookie_jar_scopes_by_host_and_path_and_expires():
    jar = CookieJar()
    extract_cookies(jar, *respond("http://h:1/spawn", "nbpool-session=abc; Path=/user/c1/; HttpOnly",
                                  'nbpool-ticket="t1:x"; Path=/'))
    assert cookie_header(jar, "http://h:1/") == 'nbpool-ticket="t1:x"'  # quotes kept, as a browser keeps them
    assert cookie_header(jar, "http://h:1/user/c1/api/kernels") == 'nbpool-session=abc; nbpool-ticket="t1:x"'
    assert cookie_header(jar, "http://h:1/user/c10/tree") == 'nbpool-ticket="t1:x"'  # /user/c1/ is not a prefix
    assert cookie_header(jar, "http://other:1/user/c1/") is None
    assert cookie_header(CookieJar(), "http://h:1/user/c1/") is None  # another attendee's jar has none
    extract_cookies(jar, *respond("http://h:1/spawn/wait/t1", "nbpool-ticket=; Path=/; Max-Age=0"))
    assert cookie_header(jar, "http://h:1/") is None
    extract_cookies(jar, *respond("http://h:1/a/b", "dflt=1", "old=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT"))
    assert cookie_header(jar, "http://h:1/a/c") == "dflt=1" and cookie_header(jar, "http://h:1/b") is None  # path /a
    extract_cookies(jar, *respond("https://s:1/", "sec=1; Path=/; Secure"))
    assert cookie_header(jar, "https://s:1/") == "sec=1" and cookie_header(jar, "http://s:1/") is None
    assert {c.name for c in jar} == {"nbpool-session", "dflt", "sec"}


def test_add_cookie_header_keeps_the_request_headers():
    jar = CookieJar()
    extract_cookies(jar, *respond("http://h:1/", "a=1; Path=/"))
    request = HTTPRequest("http://h:1/x", headers={"Accept": "text/html"})  # a plain dict, as the attendee passes
    add_cookie_header(jar, request)
    assert request.headers == {"Accept": "text/html", "Cookie": "a=1"}
    own = HTTPRequest("http://h:1/x", headers={"cookie": "mine=1"})
    add_cookie_header(jar, own)  # a Cookie header already there (any case) is left as it is
    assert own.headers == {"cookie": "mine=1"}


class CookieHandler(RequestHandler):
    """Sets, clears and echoes cookies the way the service does (Tornado's set_cookie / clear_cookie)."""

    def get(self, action: str) -> None:
        if action == "set":
            self.set_cookie("nbpool-session", "s1", path="/user/c1/", httponly=True)
            self.set_cookie("nbpool-ticket", "t1:nb", path="/", httponly=True)
        elif action == "clear":
            self.clear_cookie("nbpool-ticket", path="/")
        self.finish(self.request.headers.get("Cookie", ""))


async def test_cookies_between_real_responses_and_requests():
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([(r"/(?:user/c1/)?(\w+)", CookieHandler)]))
    server.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    http = AsyncHTTPClient(force_instance=True)
    jar = CookieJar()

    async def get(path: str) -> str:
        request = HTTPRequest(base + path, follow_redirects=False)
        add_cookie_header(jar, request)
        response = await http.fetch(request)
        extract_cookies(jar, request, response)
        return response.body.decode()

    try:
        assert await get("/set") == ""  # nothing to send before the first response
        assert await get("/echo") == "nbpool-ticket=t1:nb"  # the next request carries it, only the / one
        assert await get("/user/c1/echo") == "nbpool-session=s1; nbpool-ticket=t1:nb"
        assert await get("/clear") == "nbpool-ticket=t1:nb"
        assert await get("/echo") == "" and await get("/user/c1/echo") == "nbpool-session=s1"
        assert cookie_header(jar, base.replace("127.0.0.1", "localhost") + "/user/c1/") is None  # another host
    finally:
        http.close()
        server.stop()
        await server.close_all_connections()


def test_settings_are_checked():
    assert parse_arrival("burst") == 0 and parse_arrival("ramp:30") == 30
    for bad in ("ramp", "ramp:-1", "ramp:x", "slow"):
        with pytest.raises(SettingsError, match="arrival"):
            parse_arrival(bad)
    with pytest.raises(SettingsError, match="users"):
        Settings(url="http://x", users=0)
    with pytest.raises(SettingsError, match="walk_away"):
        Settings(url="http://x", users=1, walk_away=2)
    with pytest.raises(SettingsError, match="URL"):
        Settings(url="localhost:8000", users=1)
    s = Settings(url="http://x/", users=5, ramp=10, walk_away=0.4)
    assert s.url == "http://x" and [s.arrival(i) for i in (0, 4)] == [0, 10]
    assert sum(s.walks_away(i) for i in range(5)) == 2


def test_progress_line_counts_states():
    records = [visit(0, 0.1), visit(1, 0.1, failed_in=PAGE), AttendeeRecord(index=2, arrival=5.0)]
    active = AttendeeRecord(index=3, arrival=0.0)
    active.phases[LANDING] = PhaseTiming(0.0, 0.01, True)
    active.phases[SPAWN] = PhaseTiming(0.01)
    line = progress_line(1.5, [*records, active], None)
    assert "arrived 3/4" in line and "active 1 (spawn 1)" in line and "done 1" in line and "failed 1" in line


# -- command line ----------------------------------------------------------------


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["http://127.0.0.1:1", "--users", "2", "--arrival", "slow"])
    assert exc.value.code == 2 and "ramp:SECONDS" in capsys.readouterr().err


async def run_cli(*args: str, cwd=ROOT) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", *args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode()


async def test_cli_exit_status_table_and_files(service, tmp_path):
    good, bad = await service(), await service(page_status=500)
    fast = ["--users", "2", "--session-seconds", "0", "--think", "0", "--poll-interval", "0.02"]
    code, out = await run_cli(good.url, *fast, "--json", str(tmp_path / "r.json"),
                              "--plot", str(tmp_path / "r.svg"))
    assert code == 0, out
    assert "time to notebook page" in out and "2 attendees: 2 ok, 0 failed" in out
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["ok"] == 2
    assert (tmp_path / "r.svg").read_text().count('<g class="attendee"') == 2
    code, out = await run_cli(bad.url, *fast, "--quiet", cwd=tmp_path)
    assert code == 1 and "page/http 500: 2" in out, out
    assert (tmp_path / "loadtest-plot.html").exists()  # the plot is written by default


async def test_assets_are_fetched_after_the_page_with_the_cookie(service):
    svc = await service()
    assets = ("static/notebook/main.js?v=1", "static/style.css", "lab/extensions/x/static/remoteEntry.js")
    report = await loadtest.run(svc.url, users=2, assets=assets, **FAST)
    assert report.ok, report.table()
    for record in report.attendees:
        assert record.asset_requests == 3 and record.asset_bytes > 0
        fetched = [p for p in svc.state.page_paths if p.startswith(f"/user/{record.container}/")]
        assert sorted(fetched) == sorted([f"/user/{record.container}/tree"] +
                                         [f"/user/{record.container}/{a.split('?')[0]}" for a in assets])


def test_assets_must_be_paths_under_the_base_url():
    for bad in ("/static/x.js", "http://elsewhere/x.js", "static/a b.js", ""):
        with pytest.raises(SettingsError, match="assets"):
            Settings(url="http://127.0.0.1:8000", users=1, assets=(bad,))


def test_a_named_workshop_puts_the_attendees_links_under_its_prefix():
    s = Settings(url="http://127.0.0.1:8000", users=1, workshop="/python-intro/")
    assert s.workshop == "python-intro" and s.prefix == "/w/python-intro"
    assert Settings(url="http://127.0.0.1:8000", users=1).prefix == ""
    for bad in ("", "a/b", "two words"):
        with pytest.raises(SettingsError, match="workshop must be"):
            Settings(url="http://127.0.0.1:8000", users=1, workshop=bad)


async def test_a_kernel_client_notices_when_the_server_closes_its_websocket():
    # The soak counts open tabs whose session ended by the server closing their kernel's WebSocket; Tornado's
    # client keeps its protocol object after that, so `connected` read True for ever (the soak counted 0).
    from tornado.websocket import WebSocketHandler, websocket_connect

    from loadtest.jupyter import KernelClient

    class ClosesSoon(WebSocketHandler):
        def open(self):
            asyncio.get_running_loop().call_later(0.2, self.close)

    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    server = HTTPServer(Application([(r"/ws", ClosesSoon)]))
    server.add_sockets(sockets)
    try:
        client = KernelClient(f"http://127.0.0.1:{port}/", {}, timeout=10)
        client._ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        assert client.connected
        for _ in range(100):
            if not client.connected:
                break
            await asyncio.sleep(0.05)
        assert not client.connected, "the server closed the WebSocket 5 s ago"
    finally:
        server.stop()
