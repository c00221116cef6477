"""Percentiles, the per-phase summary, the terminal table and the JSON document of a run."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from .pool_stats import StatsSample
from .record import FROM_QUEUE, FROM_SPARE, PHASES, AttendeeRecord
from .settings import Settings

PERCENTILES = (50, 95, 99)
BREAKDOWN = (("from a spare", FROM_SPARE), ("after waiting in line", FROM_QUEUE))


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks.

    The same definition as numpy's default: rank ``p/100 * (n-1)`` in the
    sorted values, interpolated. None for no values.
    """
    if not values:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p!r}")
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Row:
    """One line of the table: how many entered, how many failed, and the durations of the rest."""

    name: str  # unique key, e.g. "spawn", "spawn/spare", "time to notebook page"
    count: int = 0  # attendees (or cells) that entered this phase / reached this point
    failed: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    label: str = ""  # what the table shows; a breakdown of the row above is indented
    indent: bool = False

    @classmethod
    def of(cls, name: str, values: list[float], *, count: int | None = None, failed: int = 0,
           label: str | None = None) -> Row:
        top = max(values) if values else None
        return cls(name, len(values) if count is None else count, failed,
                   *(percentile(values, p) for p in PERCENTILES), top, label or name, label is not None)


@dataclass
class Summary:
    """The outcome of a run: counts, a row per phase plus the key figures, failures by kind."""

    users: int
    ok: int
    failed: int
    duration: float  # seconds from the first arrival to the last attendee done
    served_from_spare: int
    served_after_queue: int
    walked_away: int
    rows: list[Row] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # "phase/kind" -> count
    failure_examples: dict[str, str] = field(default_factory=dict)  # "phase/kind" -> one message

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(records: list[AttendeeRecord], duration: float) -> Summary:
    """Per-phase rows (durations of the attendees that completed it), then the key figures."""
    failures = Counter(f"{r.failure.phase}/{r.failure.kind}" for r in records if r.failure)
    examples: dict[str, str] = {}
    for r in records:
        if r.failure:
            examples.setdefault(f"{r.failure.phase}/{r.failure.kind}", r.failure.message)
    rows = []
    for name in PHASES:
        entered = [r.phases[name] for r in records if name in r.phases]
        done = [t.duration for t in entered if t.ok]
        rows.append(Row.of(name, done, count=len(entered), failed=sum(1 for t in entered if t.ok is False)))
        if name == "spawn":
            for label, served in BREAKDOWN:
                values = [r.phases[name].duration for r in records if r.served == served and r.phases[name].ok]
                rows.append(Row.of(f"spawn/{served}", values, label=label))
    rows.append(Row.of("cell round trip", [d for r in records for d in r.cell_durations]))
    reached_page = [r.time_to_page for r in records if r.time_to_page is not None]
    rows.append(Row.of("time to notebook page", reached_page, count=len(records),
                       failed=len(records) - len(reached_page)))
    for label, served in BREAKDOWN:
        values = [r.time_to_page for r in records if r.served == served and r.time_to_page is not None]
        rows.append(Row.of(f"time to notebook page/{served}", values, label=label))
    first = [r.time_to_first_result for r in records if r.time_to_first_result is not None]
    rows.append(Row.of("time to first result", first, count=len(records), failed=len(records) - len(first)))
    failed = sum(1 for r in records if r.failure)
    return Summary(
        users=len(records), ok=sum(1 for r in records if r.state == "ok"), failed=failed, duration=duration,
        served_from_spare=sum(1 for r in records if r.served == FROM_SPARE),
        served_after_queue=sum(1 for r in records if r.served == FROM_QUEUE),
        walked_away=sum(1 for r in records if r.walked_away),
        rows=rows, failures=dict(failures.most_common()), failure_examples=examples,
    )


def format_seconds(value: float | None) -> str:
    """``35 ms``, ``1.24 s``, ``83.4 s``; ``-`` for nothing."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s"


def table(summary: Summary) -> str:
    """The end-of-run table: one line per phase and key figure, then the failures."""
    header = f"{'phase':<26}{'count':>6}{'failed':>8}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}"
    lines = [header, "-" * len(header)]
    for row in summary.rows:
        if row.indent and row.count == 0:
            continue
        name = ("  " + row.label) if row.indent else row.label
        failed = "" if row.indent else str(row.failed)
        lines.append(f"{name:<26}{row.count:>6}{failed:>8}"
                     + "".join(f"{format_seconds(v):>10}" for v in (row.p50, row.p95, row.p99, row.max)))
    lines.append("")
    lines.append(f"{summary.users} attendees: {summary.ok} ok, {summary.failed} failed; "
                 f"{summary.served_from_spare} served from a spare, {summary.served_after_queue} after waiting "
                 f"in line; {summary.walked_away} walked away; {summary.duration:.1f} s in all")
    if summary.failures:
        lines.append("failures (phase/kind: count, one example):")
        for key, count in summary.failures.items():
            lines.append(f"  {key}: {count}  e.g. {summary.failure_examples[key]}")
    return "\n".join(lines)


def document(settings: Settings, started_at: str, summary: Summary, records: list[AttendeeRecord],
             samples: list[StatsSample], service: dict) -> dict:
    """The --json document: settings, summary, every attendee's record and the pool samples."""
    return {
        "tool": "nbpool loadtest",
        "started_at": started_at,
        "settings": settings.to_dict(),
        "service": service,
        "summary": summary.to_dict(),
        "attendees": [r.to_dict() for r in records],
        "pool_samples": [s.to_dict() for s in samples],
    }
