"""The rehearsal's verdict follows the numbers, and bad material is refused by name (no engine needed)."""

from __future__ import annotations

import json
import re

import pytest

from loadtest.rehearsal import MaterialError, read_material
from loadtest.rehearsal.usage import ContainerUse
from loadtest.rehearsal.verdict import DOES_NOT_FIT, FITS, AttendeeUse, Limits, judge

MIB, GIB = 2**20, 2**30
SERVICE = Limits(warm=5, max_containers=40, mem_limit_bytes=1 * GIB, start_seconds_p95=3.0, nodes=((8.0, 32 * GIB),))


def uses(peak_mib: float, cpu: float = 10.0, active: float = 600.0, n: int = 10, oom: int = 0) -> list[AttendeeUse]:
    return [AttendeeUse(int(peak_mib * MIB), cpu, active, oom) for _ in range(n)]


def test_more_memory_per_attendee_asks_for_a_larger_limit_and_past_the_service_s_it_does_not_fit():
    small = judge(uses(300), SERVICE, 30, arrival_window=120)
    large = judge(uses(900), SERVICE, 30, arrival_window=120)
    assert small.advice["mem_limit_bytes"] == 448 * MIB  # 300 × 1.3 = 390, rounded up to 64 MiB steps
    assert large.advice["mem_limit_bytes"] == 1216 * MIB  # 900 × 1.3 = 1170 → 1216
    assert small.verdict == FITS and small.problems == []
    assert large.verdict == DOES_NOT_FIT
    assert any("mem_limit is 1.0 GiB" in p for p in large.problems)
    assert "900.0 MiB" in large.reasons["mem_limit"]


def test_more_cpu_or_more_attendees_ask_for_more_cores_and_containers():
    light = judge(uses(300, cpu=30), SERVICE, 30, arrival_window=120)  # 0.05 of a core each
    heavy = judge(uses(300, cpu=240), SERVICE, 30, arrival_window=120)  # 0.4 of a core each
    assert light.advice["cores"] == 3  # 30 × 0.05 / 0.7 = 2.14 → 3
    assert heavy.advice["cores"] == 18  # 30 × 0.4 / 0.7 = 17.1 → 18
    assert heavy.verdict == DOES_NOT_FIT and any("8 cores" in p for p in heavy.problems)
    assert heavy.advice["nodes"] == 3  # 18 cores on machines of 8
    bigger = judge(uses(300, cpu=30), SERVICE, 60, arrival_window=120)
    assert bigger.advice["max_containers"] == 60 + bigger.advice["warm"]
    assert any("max_containers is 40" in p for p in bigger.problems)


def test_warm_spares_follow_how_fast_the_class_arrives_and_how_fast_the_pool_refills():
    assert judge(uses(300), SERVICE, 30, arrival_window=0).advice["warm"] == 30  # all at once
    # 4 starts at a time, 3 s each: 1.33 a second, faster than 30 arrivals in 30 s; 3 arrive during one start.
    assert judge(uses(300), SERVICE, 30, arrival_window=30).advice["warm"] == 3
    slow = Limits(5, 40, GIB, 12.0, ((8.0, 32 * GIB),))  # 0.33 a second: 30 − 10 arrive faster than that
    assert judge(uses(300), slow, 30, arrival_window=30).advice["warm"] == 20
    # One core paying 2 CPU-seconds per start refills 0.5 a second, whatever the concurrency.
    one_core = Limits(5, 40, GIB, 3.0, ((1.0, 32 * GIB),))
    costly = [AttendeeUse(300 * MIB, 10.0, 600.0, start_cpu_seconds=2.0) for _ in range(10)]
    verdict = judge(costly, one_core, 30, arrival_window=30)
    assert verdict.advice["warm"] == 15 and "2.00 CPU-seconds" in verdict.reasons["warm"]


def test_kernels_killed_at_the_limit_raise_the_advice_past_it_and_fail_the_verdict():
    verdict = judge(uses(200, oom=1), SERVICE, 10, arrival_window=60)
    assert verdict.advice["mem_limit_bytes"] == 1536 * MIB  # 1.5 × the configured 1 GiB: the real peak is unknown
    assert verdict.verdict == DOES_NOT_FIT


def test_failing_cells_or_attendees_do_not_fit_whatever_the_sizes():
    assert judge(uses(300), SERVICE, 10, arrival_window=60, failing_cells=1).verdict == DOES_NOT_FIT
    assert judge(uses(300), SERVICE, 10, arrival_window=60, failed_attendees=2).verdict == DOES_NOT_FIT
    with pytest.raises(ValueError, match="at least 1"):
        judge(uses(300), SERVICE, 0, arrival_window=60)


def test_the_working_set_sizes_memory_and_cpu_counts_from_the_first_sample():
    use = ContainerUse("abc")
    use.add({"memory_bytes": 100 * MIB, "memory_peak_bytes": 400 * MIB, "cpu_seconds": 2.0, "oom_kills": 0})
    use.add({"memory_bytes": 150 * MIB, "memory_peak_bytes": 420 * MIB, "cpu_seconds": 5.5, "oom_kills": 1})
    use.add({"memory_bytes": 120 * MIB, "memory_peak_bytes": 420 * MIB, "cpu_seconds": 6.0, "disk_bytes": 4096})
    assert (use.peak_memory_bytes, use.engine_peak_bytes) == (150 * MIB, 420 * MIB)
    assert use.cpu_seconds == 4.0 and use.disk_bytes == 4096 and use.oom_kills == 1
    use.add({"ended": True})
    assert use.ended and use.samples == 3


def notebook(cells: list[str], kernel: str = "python3") -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": kernel}},
            "cells": [{"cell_type": "markdown", "source": "# a title", "metadata": {}}]
            + [{"cell_type": "code", "id": f"c{i}", "source": src, "metadata": {}, "outputs": []}
               for i, src in enumerate(cells)]}


def test_folders_keep_their_layout_and_cells_keep_their_place(tmp_path):
    (tmp_path / "day1").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "day1" / "b.ipynb").write_text(json.dumps(notebook(["x = 1", "   ", ["print(", "x)"]], "ir")))
    (tmp_path / "a.ipynb").write_text(json.dumps(notebook(["1 + 1"])))
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text(json.dumps(notebook(["2"])))
    found = read_material([str(tmp_path)])
    assert [nb.path for nb in found] == ["a.ipynb", "day1/b.ipynb"]
    b = found[1]
    assert b.kernel == "ir" and [(c.index, c.cell_id, c.code) for c in b.cells] == [(1, "c0", "x = 1"),
                                                                                      (3, "c2", "print(x)")]
    assert [nb.path for nb in read_material([str(tmp_path / "day1" / "b.ipynb")])] == ["b.ipynb"]


@pytest.mark.parametrize("content, error", [
    ("{not json", "not JSON"),
    (json.dumps({"cells": []}), "nbformat 4"),
    (json.dumps(notebook(["", "  "])), "has a code cell to run"),
])
def test_bad_notebooks_are_refused_by_name(tmp_path, content, error):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(content)
    with pytest.raises(MaterialError, match=error) as caught:
        read_material([str(bad)])
    assert "bad.ipynb" in str(caught.value)


def test_missing_paths_empty_folders_and_clashing_names_are_refused(tmp_path):
    with pytest.raises(MaterialError, match="no such file or folder"):
        read_material([str(tmp_path / "nowhere")])
    with pytest.raises(MaterialError, match="no notebook"):
        read_material([str(tmp_path)])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.ipynb").write_text(json.dumps(notebook(["1"])))
    (tmp_path / "a.ipynb").write_text(json.dumps(notebook(["1"])))
    with pytest.raises(MaterialError, match=r"two notebooks would go to a\.ipynb"):
        read_material([str(tmp_path / "a.ipynb"), str(tmp_path / "x" / "a.ipynb")])


def test_the_generated_admin_token_reads_as_a_value_on_any_command_line(tmp_path):
    # token_urlsafe started with "-" one time in 32, and `--admin-token <token>` was then read as an option.
    from spawner.secret import ServerSecret
    from spawner.web.app import WebApp

    for i in range(64):
        token = WebApp(secret=ServerSecret(b"t" * 32), data_dir=str(tmp_path / str(i))).admin_token
        assert re.fullmatch(r"[0-9a-f]{48}", token), token
        assert (tmp_path / str(i) / "admin_token").read_text().strip() == token
