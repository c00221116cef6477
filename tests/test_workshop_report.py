"""The workshop's record and report from a real run: the load tester's attendees against the real service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from spawner.record import read_events
from spawner.report import advise
from spawner.report.analysis import MIB
from tests.service import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_report_builds_from_a_recorded_loadtest_and_its_advice_follows_the_numbers(make_service, tmp_path):
    import loadtest

    service = make_service(Pool__warm=2, Pool__max_containers=5, WorkshopRecord__sample_interval=1)
    service.start()
    run = asyncio.run(loadtest.run(service.url, users=4, session_seconds=4, think=0.5,
                                   notebook="01-python-introduction.ipynb"))
    assert run.ok, run.table()
    time.sleep(2.5)  # a sample or two with the attendees' kernels still running
    cid = next(row["id"] for row in service.admin("GET", "/api/admin/containers").json()["containers"]
               if row["state"] == "assigned")
    assert service.admin("DELETE", f"/api/admin/containers/{cid}").status_code == 204

    events = list(read_events(service.data_dir / "record"))
    kinds = {e["e"] for e in events}
    assert {"config", "sample", "handout", "launch", "usage", "end"} <= kinds
    handouts = [e for e in events if e["e"] == "handout"]
    assert len(handouts) == 4 and {e["source"] for e in handouts} <= {"spare", "queue"}
    used = [e for e in events if e["e"] == "usage" and e["state"] == "assigned"]
    assert used and all(e["mem"] > 10 * MIB and e["mem_peak"] >= e["mem"] for e in used)
    assert any(e["cpu"] > 0 for e in used)
    ended = [e for e in events if e["e"] == "end"]
    assert [(e["cid"], e["kind"]) for e in ended] == [(cid, "operator")]

    # The command line writes the page; its advice is the one the recorded numbers give.
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "spawner.report", "--data-dir", str(service.data_dir),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    advice = advise(events)
    assert advice.attendees == max(e["assigned"] for e in events if e["e"] == "sample")
    for line in advice.config_snippet().splitlines():
        assert line.replace('"', "&quot;") in html or line in html, line
    assert "<svg" in html and "<script src" not in html

    # Advice follows the numbers: the same workshop with four times the memory gets a larger limit.
    heavier = [dict(e, mem=e["mem"] * 4, mem_peak=e["mem_peak"] * 4) if e["e"] == "usage" else e for e in events]
    assert advise(heavier).mem_limit > advice.mem_limit
    # And more attendees get more spares and a larger cap.
    assert advise(events, attendees=40).max_containers > advice.max_containers

    # Operators see the same page behind the admin token; nobody else does.
    page = service.admin("GET", "/status/report")
    assert page.status_code == 200 and advice.config_snippet().splitlines()[0] in page.text
    import requests

    assert requests.get(f"{service.url}/status/report", timeout=30).status_code == 401
