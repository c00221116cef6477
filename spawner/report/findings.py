"""What the report says, computed once from a recording: ``findings(events, advice)``; ``html.page`` only lays it
out. Each field is a figure of ``analysis`` (or the events of one kind a section draws), so the page's sections
never go back to the events."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .analysis import (
    Advice,
    ClassSummary,
    Hands,
    StuckSpot,
    class_summary,
    cpu_seconds,
    format_bytes,
    format_seconds,
    hand_stats,
    last_config,
    of_kind,
    peak_attendees,
    peak_memory,
    percentile,
    served,
    stuck_spots,
    tally,
    waits,
)


@dataclass(frozen=True)
class Findings:
    advice: Advice
    events: int  # how many were recorded
    first: float | None  # when the recording began and ended (None: nothing was recorded)
    last: float | None
    served: int
    peak: int
    samples: list[dict]  # the pool's samples, for the chart over time
    sources: Counter[str]  # hand-outs by source (spare, queue)
    refused: int
    refused_why: Counter[str]
    ended: Counter[str]  # sessions ended, by kind
    failed: int
    failed_reasons: Counter[str]
    oom: int
    abuse: int
    abuse_rules: Counter[str]
    guard_warnings: int
    kept: str  # kept work's saves, in words
    config: dict  # in force at the end ({}: none recorded)
    config_changes: int
    waits: dict[str, list[float]]  # hand-out waits (seconds) by source
    peak_memory: list[float]  # each attendee's, bytes
    cpu: list[float]  # each attendee's CPU seconds
    class_events: bool  # the class view recorded anything (stuck, hands, summaries)
    stuck: list[StuckSpot]
    hands: Hands
    summary: ClassSummary


def findings(events: list[dict], advice: Advice) -> Findings:
    """Everything the report shows of ``events`` (oldest first), with the ``advice`` made from them."""
    times = [e["t"] for e in events]
    configs = of_kind(events, "config")
    return Findings(
        advice=advice, events=len(events), first=min(times, default=None), last=max(times, default=None),
        served=served(events), peak=peak_attendees(events), samples=of_kind(events, "sample"),
        sources=tally(events, "handout", "source"), refused=len(of_kind(events, "refused")),
        refused_why=tally(events, "refused", "why"), ended=tally(events, "end", "kind"),
        failed=len(of_kind(events, "failed")), failed_reasons=tally(events, "failed", "reason"),
        oom=len(of_kind(events, "oom")), abuse=len(of_kind(events, "abuse")),
        abuse_rules=tally(events, "abuse", "rule"), guard_warnings=len(of_kind(events, "guard_warning")),
        kept=kept_words(of_kind(events, "kept")), config=last_config(events), config_changes=len(configs),
        waits=waits(events), peak_memory=list(peak_memory(events).values()), cpu=list(cpu_seconds(events).values()),
        class_events=any(of_kind(events, kind) for kind in ("stuck", "hand", "class")),
        stuck=stuck_spots(events), hands=hand_stats(events), summary=class_summary(events))


def kept_words(saves: list[dict]) -> str:
    """Saves of attendees' files: how many, how many failed, and what the last ones took."""
    if not saves:
        return "nothing saved (or keeping was off)"
    final = [e for e in saves if e.get("final")]
    failed = [e for e in saves if e.get("error")]
    took = percentile([float(e.get("seconds") or 0) for e in final], 95)
    last = f", p95 {format_seconds(took)} per session's last save" if took is not None else ""
    return (f"{len(final)} sessions' last saves and {len(saves) - len(final)} checkpoints, "
            f"{format_bytes(sum(float(e.get('bytes') or 0) for e in saves))} copied, {len(failed)} failed{last}")
