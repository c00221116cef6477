"""The dress rehearsal on the real service: the workshop's notebooks run cell by cell by simulated attendees,
measured through the admin API, with a verdict (``python -m loadtest URL --rehearse …``, run as users run it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import requests

from tests.service import ROOT

pytestmark = [pytest.mark.docker]

BUNDLED = ROOT / "notebook-image" / "workshops" / "01-python-introduction.ipynb"
MIB = 2**20


def notebook(cells: list[str]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5,
                       "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
                       "cells": [{"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# Day 2"}]
                       + [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
                           "execution_count": None} for i, src in enumerate(cells)]})


def rehearse(service, *material, attendees: int = 2, token: str | None = None, extra: tuple = (),
             tmp_path=None) -> tuple[int, dict | None, str]:
    out = tmp_path / "rehearsal.json"
    command = [sys.executable, "-m", "loadtest", service.url, "--rehearse", *map(str, material),
               "--attendees", str(attendees), "--arrival", "burst", "--think", "0", "--quiet",
               "--json", str(out), "--html", str(tmp_path / "rehearsal.html"), *extra]
    if token is not None:
        command += [f"--admin-token={token}"]  # one form that reads whatever the token starts with
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin"})
    return done.returncode, json.loads(out.read_text()) if out.exists() else None, done.stdout + done.stderr


def by_cell(report: dict) -> dict[tuple[str, int], dict]:
    return {(row["notebook"], row["index"]): row for row in report["cells"]}


def assigned(service) -> int:
    rows = service.admin("GET", "/api/admin/containers").json()["containers"]
    return sum(1 for c in rows if c["state"] == "assigned")


def test_a_rehearsal_lists_failing_cells_by_notebook_and_cell_and_measures_each_attendee(make_service, tmp_path):
    service = make_service(Pool__warm=2, Pool__max_containers=4, DockerBackend__mem_limit="512M")
    service.start()
    material = tmp_path / "material"
    (material / "day2").mkdir(parents=True)
    (material / "day2" / "broken.ipynb").write_text(notebook(
        ["x = 1", "print(undefined_name)", "print(x + 1)", "print('y' * 3_000_000)", "import time; time.sleep(30)",
         "print('after')"]))
    (material / "hog.ipynb").write_text(notebook(["x = 1", "hog = bytearray(700 * 2**20)", "print(x)"]))
    code, report, output = rehearse(service, material, BUNDLED, token=service.admin_token,
                                    extra=("--cell-timeout", "4"), tmp_path=tmp_path)
    assert code == 1, output
    assert report["verdict"] == "does not fit", output
    cells = by_cell(report)
    assert cells[("day2/broken.ipynb", 2)]["errors"] == 2
    assert "NameError" in cells[("day2/broken.ipynb", 2)]["example"]
    assert cells[("day2/broken.ipynb", 3)]["problems"] == 0  # the attendee carried on after the error
    assert cells[("day2/broken.ipynb", 4)]["kind"] == "too much output"  # the server's rate limit ate it
    assert cells[("day2/broken.ipynb", 5)]["kind"] == "timeout"
    assert cells[("day2/broken.ipynb", 6)]["not_run"] == 2
    assert cells[("hog.ipynb", 2)]["kind"] == "kernel died" and cells[("hog.ipynb", 3)]["not_run"] == 2
    bundled = [row for row in report["cells"] if row["notebook"] == BUNDLED.name]
    assert bundled and all(row["problems"] == 0 and row["runs"] == 2 for row in bundled)
    assert all(row["seconds_p50"] is not None for row in bundled)
    assert any("day2/broken.ipynb cell 2" in line and "NameError" in line for line in output.splitlines())
    for person in report["attendees"]:
        assert person["arrived"] and person["failure"] is None
        assert person["uploaded"] == ["day2/broken.ipynb", "hog.ipynb"]  # the bundled one was there already
        assert person["peak_memory_bytes"] > 40 * MIB and person["cpu_seconds"] > 0 and person["disk_bytes"] > 0
        assert person["oom_kills"] >= 1
    assert report["advice"]["mem_limit_bytes"] >= 768 * MIB  # killed at 512M: at least 1.5 × that
    assert any("Kernels were killed" in p for p in report["problems"])
    page = (tmp_path / "rehearsal.html").read_text()
    assert "Does not fit" in page and "day2/broken.ipynb" in page and "NameError" in page
    assert assigned(service) == 0  # the simulated attendees' containers were ended


def test_material_that_runs_fits_and_the_advice_is_computed_from_what_was_measured(make_service, tmp_path):
    service = make_service(Pool__warm=2, Pool__max_containers=4, DockerBackend__mem_limit="1G")
    service.start()
    # Thinking a second or so between cells, as people do: the CPU an attendee needs is spread over their time.
    code, report, output = rehearse(service, BUNDLED, token=service.admin_token, extra=("--for", "3", "--think", "1.5"),
                                    tmp_path=tmp_path)
    assert code == 0 and report["verdict"] == "fits", output
    assert report["problems"] == [] and report["attendees"] and report["simulated_attendees"] == 2
    peaks = sorted(p["peak_memory_bytes"] for p in report["attendees"])
    p95 = peaks[0] + (peaks[1] - peaks[0]) * 0.95
    wanted = max(p95 * 1.3, peaks[1] * 1.1)
    assert report["advice"]["mem_limit_bytes"] == max(256 * MIB, math.ceil(round(wanted / (64 * MIB), 6)) * 64 * MIB)
    assert report["attendees"] and report["advice"]["max_containers"] == 3 + report["advice"]["warm"]
    assert report["advice"]["warm"] == 3  # three attendees arriving at once
    assert {"notebook", "index", "seconds_p50", "seconds_p95", "errors"} <= set(report["cells"][0])
    assert "fits" in output.lower() and 'c.DockerBackend.mem_limit = "' in output


def test_without_the_admin_token_nothing_is_measured_and_no_container_is_taken(make_service, tmp_path):
    service = make_service(Pool__warm=1, Pool__max_containers=2)
    service.start()
    code, report, output = rehearse(service, BUNDLED, tmp_path=tmp_path)
    assert code == 2 and report is None and "--admin-token" in output
    code, report, output = rehearse(service, BUNDLED, token="not-the-token", tmp_path=tmp_path)
    assert code == 2 and "401" in output and "admin token needed" in output
    assert assigned(service) == 0
    usage = f"{service.url}/api/admin/usage"
    assert requests.get(usage, timeout=10).status_code == 401
    bad = service.admin("GET", "/api/admin/usage?cid=../../etc")
    assert bad.status_code == 400 and "container id" in bad.json()["error"]
    gone = service.admin("GET", "/api/admin/usage?cid=abc123").json()
    assert gone["containers"] == {"abc123": {"ended": True}} and gone["workshop"]["max_containers"] == 2
