"""The post-workshop report (spawner.report) from synthetic recordings written with the real Recorder.

The advice's numbers are recomputed here from the rules, independently of
the code: percentiles with ``statistics.quantiles(method="inclusive")``,
sliding windows by brute force, limits rounded in MiB by hand.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from spawner.record.recorder import EVENTS, Recorder, read_events
from spawner.report import advise, build_report
from spawner.report.__main__ import main as cli_main
from spawner.report.analysis import ClassSummary, class_summary, hand_stats, percentile, stuck_spots
from spawner.traits import parse_memory

ROOT = Path(__file__).resolve().parent.parent
MIB, GIB = 2**20, 2**30
START = 1_700_000_000.0
HOSTILE = "<script>alert(1)</script>"


class Clock:
    """The recorder's clock, set by the test: events get exactly the times written."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Recording:
    """Writes events at given seconds after START into ``folder`` through a real Recorder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.clock = Clock()
        self.recorder = Recorder(folder, clock=self.clock)

    def at(self, after: float, kind: str, /, **fields) -> None:
        """Record ``kind`` ``after`` seconds from START."""
        self.clock.now = START + after
        if "kind" not in fields:
            self.recorder(kind, **fields)
            return
        # Recorder.__call__(self, kind, **fields) cannot take the end event's own ``kind`` field
        # (TypeError: multiple values for 'kind'), so such a line is written as the recorder writes lines.
        line = json.dumps({"t": round(self.clock.now, 3), "e": kind, **fields}, separators=(",", ":"))
        with (self.folder / EVENTS).open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def events(self) -> list[dict]:
        self.recorder.close()
        return list(read_events(self.folder))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def most_within(times: list[float], window: float) -> int:
    """Brute force: for each hand-out, how many fall in [its time, its time + window]."""
    return max(sum(1 for u in times if t <= u <= t + window) for t in times)


def limit_mib(wanted_bytes: float) -> int:
    """Rounded up to a multiple of 64 MiB, at least 256 MiB, in MiB."""
    return max(256, 64 * math.ceil(round(wanted_bytes / MIB, 6) / 64))


def workshop(folder: Path, *, launch: list[float], handouts: list[float], peak: int, host_memory: int = 0,
             mem_limit: int = GIB) -> Recording:
    """A config, samples rising to ``peak`` assigned, launches and hand-outs at the given seconds."""
    rec = Recording(folder)
    rec.at(0, "config", pool="nbpool", image="nbpool/notebook:latest", warm=3, max_containers=20,
           mem_limit=mem_limit, cpu_limit=1.0, host_memory=host_memory, host_cores=8, backend="docker",
           version="1.0")
    for i, seconds in enumerate(launch):
        rec.at(1 + i * 0.01, "launch", cid=f"l{i}", seconds=seconds)
    for i, t in enumerate(handouts):
        rec.at(t, "handout", cid=f"c{i}", source="spare", wait=0.2)
    for minute, assigned in enumerate((0, peak // 2, peak, 1)):
        rec.at(minute * 60 + 0.5, "sample", assigned=assigned, available=3, launching=0, queue=0, capacity=20,
               warm=3)
    return rec


def with_peaks(rec: Recording, peaks_mib: list[float]) -> None:
    for i, peak in enumerate(peaks_mib):
        rec.at(300 + i, "usage", cid=f"u{i}", state="assigned", mem=peak * MIB / 2, mem_peak=peak * MIB, cpu=i)


def test_percentile_is_linear_between_closest_ranks():
    assert percentile([], 50) is None
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([10, 20], 95) == pytest.approx(19.5)
    values = [1.0, 7.5, 2.25, 40.0, 3.0, 11.0, 6.0]
    assert percentile(values, 95) == pytest.approx(p95(values))
    assert percentile(values, 100) == 40.0


def test_burst_of_ten_in_five_seconds_with_8s_starts_gives_warm_ten(tmp_path):
    # 10 hand-outs 0.5 s apart, then stragglers: the busiest 8 s window holds all ten.
    handouts = [100 + 0.5 * i for i in range(10)] + [400, 500]
    rec = workshop(tmp_path, launch=[8.0] * 20, handouts=handouts, peak=10)
    advice = advise(rec.events())
    assert (advice.attendees, advice.warm, advice.max_containers) == (10, 10, 20)


def test_warm_uses_the_p95_start_window_and_scales_to_the_attendees(tmp_path):
    launch = [1.0 + 0.1 * i for i in range(20)]  # p95 by interpolation: 2.805 s
    handouts = [10 + 0.5 * i for i in range(12)] + [200, 200.5, 700]
    rec = workshop(tmp_path, launch=launch, handouts=handouts, peak=14)
    events = rec.events()
    burst = most_within(handouts, p95(launch))
    assert burst == 6  # 10.0 .. 12.5 within 2.805 s
    for attendees in (None, 30, 3):
        n = attendees or 14
        expected = min(max(math.ceil(burst * n / 14), 1), n)
        advice = advise(events, attendees)
        assert (advice.attendees, advice.warm, advice.max_containers) == (n, expected, n + expected)
    assert "6 hand-outs" in advise(events).reasons["warm"]


def test_warm_is_capped_at_the_attendees(tmp_path):
    # 10 hand-outs at once but at most 8 assigned at a time: scaled to 8 attendees, 10 spares would be too many.
    rec = workshop(tmp_path, launch=[8.0], handouts=[1.0] * 10, peak=8)
    advice = advise(rec.events())
    assert (advice.attendees, advice.warm, advice.max_containers) == (8, 8, 16)
    assert "Kept between 1 and 8: 8." in advice.reasons["warm"]


def test_without_recorded_starts_the_window_is_ten_seconds(tmp_path):
    handouts = [0.0, 5.0, 10.0, 20.0]  # the 10 s window from 0 holds 0, 5 and 10: both ends count
    rec = workshop(tmp_path, launch=[], handouts=handouts, peak=5)
    advice = advise(rec.events())
    assert advice.warm == most_within(handouts, 10.0) == 3
    assert "10 s is assumed" in advice.reasons["warm"]


def test_queue_waits_are_quoted_in_the_warm_reason(tmp_path):
    rec = workshop(tmp_path, launch=[5.0], handouts=[1.0], peak=3)
    for i, wait in enumerate((4.0, 6.0, 30.0)):
        rec.at(50 + i, "handout", cid=f"q{i}", source="queue", wait=wait)
    reason = advise(rec.events()).reasons["warm"]
    assert "3 of the 4 hand-outs waited in the queue" in reason
    assert f"p95 wait {p95([4.0, 6.0, 30.0]):.1f} s" in reason


def test_mem_limit_is_p95_with_headroom_rounded_to_64_mib(tmp_path):
    peaks = [300.0 + 10 * i for i in range(20)]  # p95 480.5 MiB x 1.3 beats the largest 490 x 1.1
    rec = workshop(tmp_path, launch=[5.0], handouts=[1.0], peak=1)
    with_peaks(rec, peaks)
    rec.at(400, "usage", cid="spare1", state="spare", mem=8 * GIB, mem_peak=8 * GIB, cpu=1)  # spares do not count
    advice = advise(rec.events())
    expected = limit_mib(max(p95(peaks) * 1.3, max(peaks) * 1.1) * MIB)
    assert expected == 640
    assert advice.mem_limit == expected * MIB
    assert "640 MiB" in advice.reasons["mem_limit"]


def test_mem_limit_never_below_the_largest_peak_with_room_nor_256_mib(tmp_path):
    rec = workshop(tmp_path / "outlier", launch=[5.0], handouts=[1.0], peak=1)
    with_peaks(rec, [100.0] * 19 + [900.0])  # p95 140 x 1.3 = 182, but 900 x 1.1 = 990
    assert advise(rec.events()).mem_limit == limit_mib(990 * MIB) * MIB == 1024 * MIB
    rec = workshop(tmp_path / "small", launch=[5.0], handouts=[1.0], peak=1)
    with_peaks(rec, [40.0, 50.0])
    assert advise(rec.events()).mem_limit == 256 * MIB


def test_peak_memory_falls_back_to_mem_and_takes_each_attendees_max(tmp_path):
    rec = workshop(tmp_path, launch=[5.0], handouts=[1.0], peak=1)
    rec.at(300, "usage", cid="a", state="assigned", mem=500 * MIB, cpu=1)  # no mem_peak: mem counts
    rec.at(310, "usage", cid="a", state="assigned", mem=200 * MIB, cpu=2)
    rec.at(310, "usage", cid="b", state="assigned", mem=100 * MIB, mem_peak=None, cpu=2)
    # peaks 500 and 100: p95 480 x 1.3 = 624, 500 x 1.1 = 550 -> 640 MiB
    assert advise(rec.events()).mem_limit == limit_mib(max(p95([500, 100]) * 1.3, 550) * MIB) * MIB == 640 * MIB


def test_oom_kills_raise_the_limit_to_one_and_a_half_times_the_configured(tmp_path):
    rec = workshop(tmp_path, launch=[5.0], handouts=[1.0], peak=3, mem_limit=512 * MIB)
    with_peaks(rec, [500.0, 505.0, 300.0])  # cut off at the limit: p95 x 1.3 = 656 -> 704 MiB
    rec.at(600, "oom", cid="u0")
    rec.at(601, "oom", cid="u0")
    rec.at(602, "end", cid="u1", kind="oom", reason="killed", assigned_seconds=300)
    advice = advise(rec.events())
    without_oom = limit_mib(max(p95([500, 505, 300]) * 1.3, 505 * 1.1) * MIB)
    assert without_oom == 704
    assert advice.mem_limit == max(without_oom, 768) * MIB == 768 * MIB
    assert "2 attendees hit the memory limit (2 OOM kills, 1 sessions ended by OOM)" in advice.reasons["mem_limit"]


def test_oom_rule_keeps_a_larger_p95_advice(tmp_path):
    rec = workshop(tmp_path, launch=[5.0], handouts=[1.0], peak=2, mem_limit=256 * MIB)
    with_peaks(rec, [900.0, 950.0])  # the engine reported more than 1.5 x 256 MiB anyway
    rec.at(600, "oom", cid="u1")
    assert advise(rec.events()).mem_limit == limit_mib(max(p95([900, 950]) * 1.3, 950 * 1.1) * MIB) * MIB


def test_memory_check_says_how_many_fit_when_the_machine_is_too_small(tmp_path):
    rec = workshop(tmp_path, launch=[8.0], handouts=[1.0, 2.0], peak=2, host_memory=8 * GIB)
    with_peaks(rec, [400.0, 420.0])  # -> 576 MiB
    advice = advise(rec.events(), attendees=40)
    assert advice.mem_limit == 576 * MIB
    assert advice.max_containers == 40 + advice.warm
    fits = math.floor(0.9 * 8192 / 576)
    assert advice.fits == fits == 12
    assert advice.machine_too_small
    need = advice.max_containers * 576 / 1024 / 0.9
    assert f"only {fits} containers fit, so this machine is too small for 40 attendees" in advice.reasons["memory"]
    assert f"{need:.1f} GiB of memory" in advice.reasons["memory"]

    small = advise(rec.events(), attendees=4)
    assert small.fits == 12 and not small.machine_too_small
    assert "too small" not in small.reasons["memory"]


def test_unknown_host_memory_is_said_not_guessed(tmp_path):
    rec = workshop(tmp_path, launch=[8.0], handouts=[1.0], peak=1, host_memory=0)
    advice = advise(rec.events())
    assert advice.fits is None and not advice.machine_too_small
    assert "was not recorded" in advice.reasons["memory"]


def test_config_snippet_is_ready_to_paste(tmp_path):
    rec = workshop(tmp_path, launch=[8.0] * 3, handouts=[100 + 0.5 * i for i in range(10)], peak=10)
    with_peaks(rec, [300.0, 320.0])  # p95 319 x 1.3 = 414.7 -> 448 MiB
    advice = advise(rec.events())
    c = Config()
    exec(advice.config_snippet(), {"c": c})
    assert (c.Pool.warm, c.Pool.max_containers, c.DockerBackend.mem_limit) == (10, 20, "448M")
    assert parse_memory(c.DockerBackend.mem_limit) == advice.mem_limit


def full_recording(folder: Path) -> Recording:
    rec = workshop(folder, launch=[6.0, 7.0, 9.5], handouts=[60 + i for i in range(8)], peak=8, host_memory=16 * GIB)
    with_peaks(rec, [250.0, 380.0, 410.0, 700.0])
    rec.at(70, "handout", cid="q0", source="queue", wait=12.5)
    rec.at(80, "refused", why="full")
    rec.at(81, "failed", what="start", reason=HOSTILE)
    rec.at(900, "end", cid="c1", kind="idle", reason="idle for 600 s", assigned_seconds=840)
    rec.at(901, "end", cid="c2", kind=HOSTILE, reason=HOSTILE, assigned_seconds=1)
    rec.at(902, "oom", cid="u3")
    rec.at(903, "kept", cid="c1", files=3, bytes=1000, seconds=0.1, final=True, error="")
    rec.at(904, "guard_warning", cid="c3", rule="cpu_budget", cpu_seconds=2900)
    rec.at(905, "abuse", cid="c3", rule="cpu_budget", reason="used 3600 CPU-seconds", ban="ab12")
    return rec


def test_report_is_self_contained_html_with_charts(tmp_path):
    full_recording(tmp_path).events()
    page = build_report(tmp_path, title="Workshop 7")
    assert page.startswith("<!DOCTYPE html>") and "<title>Workshop 7</title>" in page
    assert page.count("<svg") == 4  # attendees, latency, memory, culls
    lowered = page.lower()
    for fetch in ('src="http', "<script", "src=", "href=", "@import", "url(", "<link", "<img"):
        assert fetch not in lowered, fetch
    assert "minutes since the first event" in page and "spares ready" in page
    assert "configured mem_limit 1.0 GiB" in page  # the limit marked on the histogram
    assert "c.Pool.warm = " in page and "c.DockerBackend.mem_limit = &quot;" in page


def test_recorded_strings_are_escaped(tmp_path):
    full_recording(tmp_path).events()
    page = build_report(tmp_path)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_summary_quotes_the_recording(tmp_path):
    full_recording(tmp_path).events()
    page = build_report(tmp_path)
    assert "<td>Attendees served</td><td>9</td>" in page
    assert "<td>Peak concurrent attendees</td><td>8</td>" in page
    assert "8 from a spare, 1 from the queue" in page
    assert "1 (full 1)" in page  # refusals, by why
    assert "<td>Abuse guard</td><td>1 sessions ended (cpu_budget 1), 1 warned of their CPU budget</td>" in page
    assert "<td>mem_limit</td><td>1.0 GiB</td>" in page


def test_empty_recording_gives_a_report_saying_so(tmp_path):
    page = build_report(tmp_path)
    assert "Nothing was recorded." in page
    assert "No pool samples were recorded" in page
    assert "No hand-out was recorded" in page
    assert "No memory use of assigned containers was recorded" in page
    assert "<svg" not in page
    advice = advise([])
    assert (advice.attendees, advice.warm, advice.max_containers, advice.mem_limit) == (1, 1, 2, 256 * MIB)


def test_torn_last_line_is_skipped(tmp_path):
    full_recording(tmp_path).events()
    whole = build_report(tmp_path)
    with (tmp_path / EVENTS).open("a", encoding="utf-8") as f:
        f.write('{"t": 1700000999.0, "e": "handout", "cid": "torn", "sou')
    assert build_report(tmp_path) == whole


def test_attendees_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        advise([], attendees=0)


def test_cli_exits_2_on_a_missing_or_empty_recording(tmp_path, capsys):
    assert cli_main(["--data-dir", str(tmp_path)]) == 2
    assert f"no such folder: {tmp_path / 'record'}" in capsys.readouterr().err
    (tmp_path / "record").mkdir()
    (tmp_path / "record" / EVENTS).write_text("")
    assert cli_main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no events recorded in {tmp_path / 'record'}" in err and err.count("\n") == 1
    assert not (tmp_path / "record" / "report.html").exists()


def test_cli_writes_the_report_next_to_the_recording(tmp_path, capsys):
    full_recording(tmp_path / "record").events()
    assert cli_main(["--data-dir", str(tmp_path), "--attendees", "16"]) == 0
    written = tmp_path / "record" / "report.html"
    assert capsys.readouterr().out.strip() == str(written)
    page = written.read_text(encoding="utf-8")
    assert page == build_report(tmp_path / "record", attendees=16)
    assert "Sized for 16 attendees, as asked" in page


def test_cli_prints_to_stdout_with_out_dash(tmp_path, capsys):
    full_recording(tmp_path / "record").events()
    assert cli_main(["--data-dir", str(tmp_path), "--out", "-"]) == 0
    assert capsys.readouterr().out == build_report(tmp_path / "record")
    assert not (tmp_path / "record" / "report.html").exists()


def test_cli_says_when_the_report_cannot_be_written(tmp_path, capsys):
    full_recording(tmp_path / "record").events()
    assert cli_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "missing" / "r.html")]) == 1
    assert "could not write the report" in capsys.readouterr().err


def test_cli_rejects_a_non_positive_attendees(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli_main(["--data-dir", str(tmp_path), "--attendees", "0"])
    assert exited.value.code == 2 and "must be at least 1, not 0" in capsys.readouterr().err


def test_python_m_spawner_report_runs(tmp_path):
    empty = subprocess.run([sys.executable, "-m", "spawner.report", "--data-dir", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and str(tmp_path / "record") in empty.stderr
    full_recording(tmp_path / "record").events()
    out = tmp_path / "elsewhere.html"
    done = subprocess.run([sys.executable, "-m", "spawner.report", "--data-dir", str(tmp_path), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and "<svg" in out.read_text(encoding="utf-8")


def test_refusal_reasons_are_escaped_too(tmp_path):
    rec = Recording(tmp_path)
    rec.at(5, "refused", why=HOSTILE)
    rec.events()
    page = build_report(tmp_path)
    assert "<script" not in page and "1 (&lt;script&gt;alert(1)&lt;/script&gt; 1)" in page


# The class view: ``stuck``, ``hand`` and ``class`` events, and the report's "Where the class got stuck".


def stuck(cid: str, notebook: str | None, section: str | None, seconds: float | None, error: str | None = None,
          **fields) -> dict:
    return {"t": START, "e": "stuck", "cid": cid, "notebook": notebook, "section": section, "cell": 3,
            "rule": "errors" if error else "no_success", "error": error, "seconds": seconds, **fields}


def hand(cid: str, action: str, by: str | None = None, seconds: float | None = None, **fields) -> dict:
    event = {"t": START, "e": "hand", "cid": cid, "action": action, "notebook": "01.ipynb", "section": "Loops"}
    if action == "lowered":
        event.update(by=by, seconds=seconds)
    return {**event, **fields}


def summed_up(cid: str, cells_run: int, errors: int, done: bool, **fields) -> dict:
    return {"t": START, "e": "class", "cid": cid, "notebook": "01.ipynb", "furthest": cells_run, "cells_run": cells_run,
            "errors": errors, "hands": 0, "done": done, **fields}


CLASS_EVENTS = [
    # 01 / Loops: 3 attendees (a twice), 2 + 5 + 1 + 10 min
    stuck("a", "01.ipynb", "Loops", 120, "NameError"), stuck("a", "01.ipynb", "Loops", 300, "NameError"),
    stuck("b", "01.ipynb", "Loops", 60, "KeyError"), stuck("c", "01.ipynb", "Loops", 600),
    # 01 before its first heading: 1 attendee, 30 min; null and '' are the same place
    stuck("d", "01.ipynb", None, 1200), stuck("d", "01.ipynb", "", 600, "SyntaxError"),
    # 02 / Plots and 02 / Widgets: 2 attendees each; Widgets, more time stuck in total (20 min to 2), comes first
    stuck("e", "02.ipynb", "Plots", 60, "TypeError"), stuck("f", "02.ipynb", "Plots", 60, "TypeError"),
    stuck("g", "02.ipynb", "Widgets", 600), stuck("h", "02.ipynb", "Widgets", 600),
    hand("a", "raised"), hand("a", "lowered", "helper", 60), hand("b", "raised"), hand("b", "lowered", "helper", 180),
    hand("c", "raised"), hand("c", "lowered", "attendee", 30), hand("d", "raised"), hand("d", "lowered", "ended", 600),
    hand("e", "raised"),  # still up when the record ends: raised, but no time up
    summed_up("a", 10, 2, True), summed_up("b", 3, 0, False), summed_up("c", 25, 5, True), summed_up("d", 8, 0, False),
]


def class_section(page: str) -> str:
    """The HTML of the report's "Where the class got stuck" section alone."""
    start = page.index("<h2>Where the class got stuck</h2>")
    return page[start:page.index("<h2>", start + 1)]


def test_stuck_spots_group_by_section_and_order_by_attendees_then_time():
    spots = stuck_spots(CLASS_EVENTS)
    assert [(s.notebook, s.section) for s in spots] == [
        ("01.ipynb", "Loops"), ("02.ipynb", "Widgets"), ("02.ipynb", "Plots"), ("01.ipynb", "")]
    loops, widgets, plots, top = spots
    assert (loops.periods, loops.attendees) == (4, 3)
    assert loops.median_minutes == pytest.approx(3.5)  # of 1, 2, 5, 10
    assert loops.longest_minutes == pytest.approx(10) and loops.total_minutes == pytest.approx(18)
    assert loops.errors == (("NameError", 2), ("KeyError", 1))  # the no_success period has no error to count
    assert (widgets.attendees, widgets.total_minutes, plots.attendees, plots.total_minutes) == (2, 20, 2, 2)
    assert plots.errors == (("TypeError", 2),) and widgets.errors == ()
    assert (top.periods, top.attendees, top.total_minutes, top.longest_minutes) == (2, 1, 30, 20)


def test_stuck_spots_quote_the_three_commonest_errors_and_skip_missing_lengths():
    names = ["ValueError"] * 3 + ["KeyError"] * 2 + ["IndexError"] * 2 + ["ZeroDivisionError"]
    events = [stuck(f"c{i}", "n.ipynb", "S", 60 * (i + 1), name) for i, name in enumerate(names)]
    events.append(stuck("x", "n.ipynb", "S", None, "ValueError"))  # an older record without seconds
    (spot,) = stuck_spots(events)
    assert spot.errors == (("ValueError", 4), ("KeyError", 2), ("IndexError", 2))
    assert (spot.periods, spot.attendees) == (9, 9)
    assert spot.median_minutes == pytest.approx(4.5) and spot.longest_minutes == pytest.approx(8)
    (unknown,) = stuck_spots([stuck("y", "n.ipynb", "S", None)])
    assert (unknown.periods, unknown.median_minutes, unknown.longest_minutes, unknown.total_minutes) == (
        1, None, None, 0)
    assert stuck_spots([hand("a", "raised"), summed_up("a", 1, 0, True)]) == []


def test_hand_stats_count_raised_time_up_and_who_lowered():
    hands = hand_stats(CLASS_EVENTS)
    assert hands.raised == 5
    assert (hands.lowered_by["helper"], hands.lowered_by["attendee"], hands.lowered_by["ended"]) == (2, 1, 1)
    assert hands.median_minutes == pytest.approx(2.0)  # of 0.5, 1, 3, 10
    assert hands.longest_minutes == pytest.approx(10)
    none = hand_stats([hand("a", "raised")])
    assert (none.raised, sum(none.lowered_by.values()), none.median_minutes, none.longest_minutes) == (
        1, 0, None, None)


def test_class_summary_counts_each_session_once():
    summary = class_summary(CLASS_EVENTS)
    assert (summary.attendees, summary.done, summary.with_errors) == (4, 2, 2)
    assert summary.median_cells == pytest.approx(9)  # of 3, 8, 10, 25
    again = class_summary([*CLASS_EVENTS, summed_up("b", 40, 1, True)])  # b's summary again: the last counts
    assert (again.attendees, again.done, again.with_errors, again.median_cells) == (4, 3, 3, 17.5)
    assert class_summary([]) == ClassSummary(attendees=0, done=0, median_cells=None, with_errors=0)


def test_report_shows_where_the_class_got_stuck(tmp_path):
    rec = Recording(tmp_path)
    for event in [*CLASS_EVENTS, stuck("z", "03.ipynb", HOSTILE, 60, HOSTILE)]:
        rec.at(event["t"] - START, event["e"], **{k: v for k, v in event.items() if k not in ("t", "e")})
    rec.events()
    page = build_report(tmp_path)
    section = class_section(page)
    rows = [
        "<tr><td>01.ipynb</td><td>Loops</td><td class=\"n\">3</td><td class=\"n\">4</td><td class=\"n\">3.5</td>"
        "<td class=\"n\">10.0</td><td>NameError 2, KeyError 1</td></tr>",
        "<tr><td>02.ipynb</td><td>Widgets</td><td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">10.0</td>"
        "<td class=\"n\">10.0</td><td>none</td></tr>",
        "<tr><td>02.ipynb</td><td>Plots</td><td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">1.0</td>"
        "<td class=\"n\">1.0</td><td>TypeError 2</td></tr>",
        "<tr><td>01.ipynb</td><td>(before the first heading)</td><td class=\"n\">1</td><td class=\"n\">2</td>"
        "<td class=\"n\">15.0</td><td class=\"n\">20.0</td><td>SyntaxError 1</td></tr>",
        "<tr><td>03.ipynb</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td class=\"n\">1</td>"
        "<td class=\"n\">1</td><td class=\"n\">1.0</td><td class=\"n\">1.0</td>"
        "<td>&lt;script&gt;alert(1)&lt;/script&gt; 1</td></tr>",
    ]
    at = [section.index(row) for row in rows]
    assert at == sorted(at)  # in that order
    assert "<script" not in page
    assert ("Hands: 5 raised; up a median 2.0 min, the longest 10.0 min; lowered by a helper 2, by the attendee 1, "
            "by the session ending 1.") in section
    assert "Class: 4 sessions ended; 2 attendees said they were done; median 9 cells run; 2 had at least one " \
           "error." in section


def test_report_says_the_class_view_recorded_nothing_without_inventing_numbers(tmp_path):
    full_recording(tmp_path).events()
    section = class_section(build_report(tmp_path))
    assert "The class view recorded nothing" in section and "no attendee ran a cell" in section
    assert "<table" not in section and "Hands:" not in section and "Class:" not in section
    assert "The class view recorded nothing" in class_section(build_report(tmp_path / "empty"))


def test_report_says_which_parts_of_the_class_view_are_missing(tmp_path):
    rec = Recording(tmp_path)
    rec.at(10, "hand", cid="a", action="raised", notebook="", section="")
    rec.events()
    section = class_section(build_report(tmp_path))
    assert "No attendee was stuck" in section and "<table" not in section
    assert "Hands: 1 raised; none was lowered; lowered by a helper 0, by the attendee 0, by the session ending 0." \
        in section
    assert "No session summed itself up" in section and "recorded nothing" not in section


def test_class_view_follows_the_workshop_filter(tmp_path):
    rec = Recording(tmp_path)
    rec.at(10, "stuck", **{k: v for k, v in stuck("a", "a.ipynb", "Intro", 120).items() if k not in ("t", "e")},
           workshop="alpha")
    rec.at(11, "stuck", **{k: v for k, v in stuck("b", "b.ipynb", "Setup", 60).items() if k not in ("t", "e")},
           workshop="beta")
    rec.at(12, "hand", cid="b", action="raised", notebook="b.ipynb", section="Setup", workshop="beta")
    rec.at(13, "class", cid="b", notebook="b.ipynb", furthest=4, cells_run=4, errors=1, hands=1, done=False,
           workshop="beta")
    rec.events()
    alpha = class_section(build_report(tmp_path, workshop="alpha"))
    assert "<td>a.ipynb</td><td>Intro</td>" in alpha and "b.ipynb" not in alpha
    assert "No hand was raised." in alpha and "No session summed itself up" in alpha
    beta = class_section(build_report(tmp_path, workshop="beta"))
    assert "<td>b.ipynb</td><td>Setup</td>" in beta and "a.ipynb" not in beta
    assert "Hands: 1 raised" in beta and "Class: 1 sessions ended" in beta
    whole = class_section(build_report(tmp_path))
    assert "a.ipynb" in whole and "b.ipynb" in whole
