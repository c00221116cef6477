"""What a rehearsal found: per cell, per attendee, the verdict; as a terminal summary, JSON and HTML.

The HTML page is built with the post-workshop report's machinery
(``spawner.report.html``): the same self-contained page, tables and escaping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path

from spawner.report.analysis import format_bytes, percentile
from spawner.report.html import document, missing, table

from ..report import format_seconds
from .attendee import ERROR, NOT_RUN, OK, Rehearsed
from .verdict import DOES_NOT_FIT, AttendeeUse, Limits, Verdict, judge

TITLE = "nbpool dress rehearsal"


def progress_line(t: float, people: list[Rehearsed]) -> str:
    """``12.3s  arrived 8/10  cells run 120 (3 problems)  done 2  failed 0``."""
    arrived = sum(1 for p in people if p.arrived)
    failed = sum(1 for p in people if p.record.failure is not None)
    runs = [r for p in people for r in p.runs if r.status != NOT_RUN]
    problems = sum(1 for r in runs if r.status != OK)
    done = sum(1 for p in people if p.use is not None)
    return (f"{t:6.1f}s  arrived {arrived}/{len(people)}  cells run {len(runs)} ({problems} problems)  "
            f"done {done}  failed {failed}")


@dataclass
class Rehearsal:
    settings: object  # loadtest.settings.Settings
    options: object  # RehearsalSettings
    notebooks: list
    people: list[Rehearsed]
    limits: Limits
    started_at: str
    duration: float
    interrupted: bool = False
    usage_errors: int = 0
    usage_last_error: str = ""

    @property
    def attendees_for(self) -> int:
        return self.options.attendees_for or self.settings.users

    def cells(self) -> list[dict]:
        """Per notebook and cell, in the material's order: how long it took, and what went wrong."""
        rows = []
        for nb in self.notebooks:
            for cell in nb.cells:
                runs = [r for p in self.people for r in p.runs if r.notebook == nb.path and r.index == cell.index]
                timed = [r.seconds for r in runs if r.seconds is not None and r.status != NOT_RUN]
                problems = [r for r in runs if r.status not in (OK, NOT_RUN)]
                rows.append({
                    "notebook": nb.path, "index": cell.index, "runs": len(timed),
                    "seconds_p50": _round(percentile(timed, 50)), "seconds_p95": _round(percentile(timed, 95)),
                    "errors": sum(1 for r in runs if r.status == ERROR),
                    "problems": len(problems), "not_run": sum(1 for r in runs if r.status == NOT_RUN),
                    "output_bytes_max": max((r.output_bytes for r in runs), default=0),
                    "kind": problems[0].status if problems else "", "example": problems[0].error if problems else "",
                    "not_run_because": next((r.error for r in runs if r.status == NOT_RUN), ""),
                    "code": cell.code.splitlines()[0][:80] if cell.code.strip() else "",
                })
        return rows

    def attendees(self) -> list[dict]:
        rows = []
        for p in self.people:
            use, record = p.use, p.record
            rows.append({
                "index": record.index, "container": record.container, "arrived": p.arrived,
                "failure": None if record.failure is None else
                f"{record.failure.phase}/{record.failure.kind}: {record.failure.message}",
                "time_to_page": _round(record.time_to_page), "active_seconds": p.active_seconds,
                "peak_memory_bytes": use.peak_memory_bytes if use else None,
                "engine_peak_memory_bytes": use.engine_peak_bytes if use else None,
                "cpu_seconds": use.cpu_seconds if use else None,
                "container_cpu_seconds": use.last_cpu if use else None,
                "disk_bytes": use.disk_bytes if use else None, "oom_kills": use.oom_kills if use else 0,
                "uploaded": p.uploaded,
                "cells_ok": sum(1 for r in p.runs if r.status == OK),
                "cells_with_problems": sum(1 for r in p.runs if r.status not in (OK, NOT_RUN)),
                "cells_not_run": sum(1 for r in p.runs if r.status == NOT_RUN),
            })
        return rows

    def verdict(self) -> Verdict:
        uses = [AttendeeUse(p.use.peak_memory_bytes, p.use.cpu_seconds or 0.0, p.active_seconds or 0.0,
                            p.use.oom_kills, p.use.first_cpu)
                for p in self.people if p.use is not None and p.use.samples]
        failed = sum(1 for p in self.people if not p.arrived) + (self.settings.users if self.interrupted else 0)
        failing = sum(1 for row in self.cells() if row["problems"] or row["not_run"])
        return judge(uses, self.limits, self.attendees_for, arrival_window=self.settings.ramp,
                     failed_attendees=min(failed, self.settings.users), failing_cells=failing)

    def to_dict(self) -> dict:
        verdict = self.verdict()
        return {"tool": "nbpool rehearsal", "started_at": self.started_at, "duration_seconds": round(self.duration, 1),
                "url": self.settings.url + self.settings.prefix, "material": self.options.material,
                "notebooks": [{"path": nb.path, "kernel": nb.kernel, "code_cells": len(nb.cells)}
                              for nb in self.notebooks],
                "simulated_attendees": self.settings.users, "arrival": self.settings.arrival_text,
                "think_seconds": self.settings.think, "interrupted": self.interrupted,
                **verdict.to_dict(), "service": _limits_dict(self.limits),
                "measurement_errors": self.usage_errors, "measurement_last_error": self.usage_last_error,
                "cells": self.cells(), "attendees": self.attendees()}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def write_html(self, path: str | Path) -> None:
        Path(path).write_text(self.html())

    def text(self) -> str:
        """The terminal summary: problem cells, attendees' use, the verdict and the settings."""
        verdict, cells, people = self.verdict(), self.cells(), self.attendees()
        lines = [f"{len(self.notebooks)} notebooks, {sum(len(nb.cells) for nb in self.notebooks)} code cells, "
                 f"{self.settings.users} simulated attendees ({self.settings.arrival_text}, think "
                 f"{self.settings.think:g} s), {self.duration:.0f} s", ""]
        slow = sorted(cells, key=lambda r: r["seconds_p95"] or 0, reverse=True)[:5]
        lines.append("slowest cells (p50 / p95):")
        lines += [f"  {r['notebook']} cell {r['index']}: {format_seconds(r['seconds_p50'])} / "
                  f"{format_seconds(r['seconds_p95'])}  {r['code']}" for r in slow]
        bad = [r for r in cells if r["problems"] or r["not_run"]]
        lines.append("")
        lines.append(f"cells that failed or passed a limit: {len(bad) or 'none'}")
        lines += [f"  {r['notebook']} cell {r['index']}: {r['problems']} {r['kind'] or 'problems'}"
                  f"{', ' + str(r['not_run']) + ' not run' if r['not_run'] else ''}; "
                  f"{r['example'] or r['not_run_because']}" for r in bad]
        measured = [p for p in people if p["peak_memory_bytes"]]
        lines.append("")
        if measured:
            mem = [p["peak_memory_bytes"] for p in measured]
            cpu = [p["cpu_seconds"] or 0 for p in measured]
            disk = [p["disk_bytes"] or 0 for p in measured]
            lines.append(f"per attendee ({len(measured)} measured): peak memory p50 {format_bytes(percentile(mem, 50))}"
                         f", max {format_bytes(max(mem))}; CPU p50 {percentile(cpu, 50):.1f} s, max {max(cpu):.1f} s; "
                         f"disk written max {format_bytes(max(disk))}")
        else:
            lines.append(f"no attendee was measured ({self.usage_last_error or 'none arrived'})")
        for p in people:
            if p["failure"]:
                lines.append(f"  attendee {p['index']} failed: {p['failure']}")
        lines += ["", f"verdict for {verdict.attendees} attendees: {verdict.verdict.upper()}"]
        lines += [f"  - {problem}" for problem in verdict.problems]
        lines.append("advice:")
        for name in ("mem_limit", "warm", "max_containers", "cores", "nodes"):
            value = verdict.advice[name + "_bytes"] if name == "mem_limit" else verdict.advice[name]
            shown = f"{value // 2**20} MiB" if name == "mem_limit" else value
            lines.append(f"  {name} = {shown}: {verdict.reasons[name]}")
        lines += ["for the config file:", *("  " + line for line in verdict.config_snippet().splitlines())]
        return "\n".join(lines)

    def html(self) -> str:
        verdict, cells, people = self.verdict(), self.cells(), self.attendees()
        word = verdict.verdict
        head = (f'<p class="{"warning" if word == DOES_NOT_FIT else ""}"><b>{escape(word.capitalize())}</b> for '
                f"{verdict.attendees} attendees at {escape(self.settings.url + self.settings.prefix)}.</p>"
                + ("<ul>" + "".join(f"<li>{escape(p)}</li>" for p in verdict.problems) + "</ul>"
                   if verdict.problems else ""))
        advice_rows = [(name, f"{verdict.advice['mem_limit_bytes'] // 2**20} MiB" if name == "mem_limit"
                        else verdict.advice[name], verdict.reasons[name])
                       for name in ("mem_limit", "warm", "max_containers", "cores", "nodes")]
        advice = (table(("setting", "advice", "why"), advice_rows)
                  + f"<p>For the config file:</p><pre>{escape(verdict.config_snippet())}</pre>")
        bad = [r for r in cells if r["problems"] or r["not_run"]]
        problem_table = table(("notebook", "cell", "problems", "kind", "not run", "example"),
                              [(r["notebook"], r["index"], r["problems"], r["kind"], r["not_run"],
                                r["example"] or r["not_run_because"])
                               for r in bad]) if bad else missing("Every cell ran without an error, in time.")
        cell_table = table(("notebook", "cell", "runs", "p50", "p95", "errors", "largest output", "code"),
                           [(r["notebook"], r["index"], r["runs"], format_seconds(r["seconds_p50"]),
                             format_seconds(r["seconds_p95"]), r["errors"], format_bytes(r["output_bytes_max"]),
                             r["code"]) for r in cells])
        people_table = table(("attendee", "peak memory", "CPU s", "disk written", "time to page", "cells ok",
                              "problems", "failure"),
                             [(p["index"], format_bytes(p["peak_memory_bytes"] or 0), p["cpu_seconds"] or 0,
                               format_bytes(p["disk_bytes"] or 0), format_seconds(p["time_to_page"]), p["cells_ok"],
                               p["cells_with_problems"], p["failure"] or "") for p in people])
        sections = [("Verdict", head), ("Settings for this workshop", advice),
                    ("Cells that failed or passed a limit", problem_table), ("Every cell", cell_table),
                    ("Every attendee", people_table)]
        return document(TITLE, sections)


def _limits_dict(limits: Limits) -> dict:
    return {"warm": limits.warm, "max_containers": limits.max_containers, "mem_limit_bytes": limits.mem_limit_bytes,
            "start_seconds_p50": limits.start_seconds_p50, "start_seconds_p95": limits.start_seconds_p95,
            "spawn_concurrency": limits.spawn_concurrency,
            "cores": limits.cores, "memory_bytes": limits.memory,
            "nodes": len(limits.nodes)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
