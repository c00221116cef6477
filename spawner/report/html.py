"""The report as one self-contained HTML page: summary, charts, where the class got stuck, and the advice for next time.

Nothing is fetched when it is opened (no scripts, stylesheets, fonts or
images: the charts are inline SVG), so it can be mailed or archived as is.
Every recorded string is escaped, since a failure reason or an image name is
whatever the engine or the operator wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape

from . import svg
from .analysis import MIB, SOURCES, Advice, ClassSummary, Hands, format_bytes, format_seconds, number, percentile
from .findings import Findings

SAMPLE_SERIES = (("assigned", "assigned", svg.PALETTE[0]), ("available", "spares ready", svg.PALETTE[1]),
                 ("queue", "in the queue", svg.PALETTE[2]))
LATENCY = (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("max", 100))
SOURCE_COLORS = {"spare": svg.PALETTE[1], "queue": svg.PALETTE[2]}
ENDED, PROBLEM = svg.PALETTE[0], svg.PALETTE[2]
TOP_REASONS = 10  # failure reasons listed; the rest are counted together
BEFORE_FIRST_HEADING = "(before the first heading)"
NO_NOTEBOOK = "(no notebook recorded)"
LOWERED = (("helper", "by a helper"), ("attendee", "by the attendee"), ("ended", "by the session ending"))
CSS = """
body { font: 14px sans-serif; margin: 1.5em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
td.n { text-align: right; }
.missing { color: #666; font-style: italic; }
.warning { background: #fff3cd; padding: 0.5em; border-left: 4px solid #e15759; }
pre { background: #f5f5f5; padding: 0.7em; }
"""


def page(found: Findings, title: str) -> str:
    """The whole report: what ``found`` says (findings.findings, computed once), laid out."""
    sections = [("Summary", _summary(found)), ("Attendees over time", _over_time(found)),
                ("Hand-out latency", _latency(found)), ("Memory and CPU per attendee", _usage(found)),
                ("Culls and failures", _problems(found)), ("Where the class got stuck", _stuck(found)),
                ("Sizing for the next workshop", _advice(found.advice))]
    return document(title, sections)


def document(title: str, sections: Iterable[tuple[str, str]]) -> str:
    """One self-contained page: the title, then each (heading, HTML) section."""
    body = "\n".join(f"<h2>{escape(name)}</h2>\n{content}" for name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>\n'
            f"<style>{CSS}{svg.CSS}</style></head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n")


def missing(sentence: str) -> str:
    return f'<p class="missing">{escape(sentence)}</p>'


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A table of escaped cells, numbers right-aligned; an empty ``header`` gives no header row."""
    def cell(value: object) -> str:
        numeric = isinstance(value, int | float)
        return f'<td class="n">{value}</td>' if numeric else f"<td>{escape(str(value))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {count}" for key, count in counter.most_common()) or "none"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _span(f: Findings) -> str:
    hours, rest = divmod(round(f.last - f.first), 3600)
    return f"{_when(f.first)} to {_when(f.last)} UTC ({hours} h {rest // 60} min, {f.events} events)"


def _summary(f: Findings) -> str:
    if not f.events:
        return missing("Nothing was recorded.")
    sampled = "" if f.samples else " (no pool sample was recorded: this is the attendees served)"
    rows = [("Recording", _span(f)), ("Attendees served", str(f.served)),
            ("Peak concurrent attendees", f"{f.peak}{sampled}"),
            ("Hand-outs", f"{f.sources['spare']} from a spare, {f.sources['queue']} from the queue"),
            ("Refusals", f"{f.refused} ({_counts(f.refused_why)})"),
            ("Sessions ended, by kind", _counts(f.ended)),
            ("Failed starts", str(f.failed)), ("OOM kills", str(f.oom)),
            ("Abuse guard", f"{f.abuse} sessions ended ({_counts(f.abuse_rules)}), "
                            f"{f.guard_warnings} warned of their CPU budget"),
            ("Kept work", f.kept)]
    return table((), rows) + _config(f)


def _config(f: Findings) -> str:
    config = f.config
    if not config:
        return missing("No configuration was recorded.")
    changes = f.config_changes
    shown: dict[str, Callable[[object], str]] = {
        "pool": str, "image": str, "backend": str, "version": str, "warm": str, "max_containers": str,
        "mem_limit": _size_or("none"), "cpu_limit": lambda v: f"{v} cores" if v else "none",
        "host_memory": _size_or("unknown"), "host_cores": lambda v: str(v) if v else "unknown"}
    rows = [(key, describe(config[key])) for key, describe in shown.items() if key in config]
    note = f" (the last of {changes} recorded)" if changes > 1 else ""
    return f"<p>Configuration in force at the end{note}, recorded at {_when(config['t'])} UTC:</p>" + table(
        ("setting", "value"), rows)


def _size_or(nothing: str) -> Callable[[object], str]:
    return lambda value: format_bytes(value) if isinstance(value, int | float) and value > 0 else nothing


def _over_time(f: Findings) -> str:
    samples = f.samples
    if not samples:
        return missing("No pool samples were recorded, so attendees over time cannot be drawn.")
    start = f.first
    lines = [svg.Line(label, color, [((s["t"] - start) / 60, number(s, key) or 0) for s in samples])
             for key, label, color in SAMPLE_SERIES]
    return svg.line_chart(lines, "minutes since the first event", "attendees (containers)")


def _latency(f: Findings) -> str:
    found = f.waits
    if not any(found.values()):
        return missing("No hand-out was recorded, so there is no hand-out latency to show.")
    series = [svg.Bars(f"from a {source}" if source == "spare" else f"from the {source}", SOURCE_COLORS[source],
                       [percentile(found[source], p) for _, p in LATENCY]) for source in SOURCES]
    rows = [(source, len(values), *(_seconds(percentile(values, p)) for _, p in LATENCY))
            for source, values in found.items()]
    chart = svg.bar_chart([name for name, _ in LATENCY], series, "seconds from request to container",
                          lambda v: f"{v:.2f}" if v < 10 else f"{v:.0f}")
    return chart + table(("source", "hand-outs", *(name for name, _ in LATENCY)), rows)


def _seconds(value: float | None) -> str:
    return "-" if value is None else format_seconds(value)


def _usage(f: Findings) -> str:
    peaks, advice = f.peak_memory, f.advice
    if peaks:
        limit = number(f.config, "mem_limit") or 0
        markers = [svg.Marker(f"configured mem_limit {format_bytes(limit)}", svg.PALETTE[2], limit / MIB)] if limit \
            else []
        markers.append(svg.Marker(f"advised mem_limit {advice.mem_limit // MIB} MiB", svg.PALETTE[3],
                                  advice.mem_limit / MIB))
        memory = svg.histogram([peak / MIB for peak in peaks], "peak memory per attendee (MiB)", "attendees",
                               markers)
    else:
        memory = missing("No memory use of assigned containers was recorded, so there is no histogram.")
    cpu = f.cpu
    if not cpu:
        return memory + missing("No CPU use of assigned containers was recorded.")
    rows = [(len(cpu), *(format_seconds(percentile(cpu, p)) for p in (50, 95, 100)))]
    return memory + "<p>CPU seconds used per attendee:</p>" + table(("attendees", "p50", "p95", "max"), rows)


def _problems(f: Findings) -> str:
    rows = [(f"ended: {kind}", count, ENDED) for kind, count in f.ended.most_common()]
    rows += [(name, count, PROBLEM) for name, count in (("failed starts", f.failed), ("OOM kills", f.oom),
                                                        ("refused", f.refused))]
    if not any(count for _, count, _ in rows):
        return missing("No session ended, no start failed, no OOM kill and no refusal was recorded.")
    chart = svg.hbar_chart(rows, "events", [("sessions ended, by kind", ENDED), ("problems", PROBLEM)])
    reasons = f.failed_reasons
    if not reasons:
        return chart
    top = reasons.most_common(TOP_REASONS)
    others = sum(reasons.values()) - sum(count for _, count in top)
    rows = top + ([("(other reasons)", others)] if others else [])
    return chart + "<p>Why starts failed:</p>" + table(("reason", "failed starts"), rows)


def _stuck(f: Findings) -> str:
    """Where attendees got stuck, their raised hands, and how the class did: from the class view's events."""
    if not f.class_events:
        return missing("The class view recorded nothing: no attendee was stuck, no hand was raised and no "
                        "session summed itself up (no attendee ran a cell, or the service did not watch the class).")
    return _stuck_table(f) + _hands(f.hands) + _class(f.summary)


def _stuck_table(f: Findings) -> str:
    spots = f.stuck
    if not spots:
        return missing("No attendee was stuck: no run of failing cells and no long stretch without a successful "
                        "cell was recorded.")
    rows = [(spot.notebook or NO_NOTEBOOK, spot.section or BEFORE_FIRST_HEADING, spot.attendees, spot.periods,
             _minutes(spot.median_minutes), _minutes(spot.longest_minutes),
             ", ".join(f"{name} {count}" for name, count in spot.errors) or "none")
            for spot in spots]
    return ("<p>Sections where attendees were stuck (a run of failing cells, or a long stretch without a successful "
            "cell), the most attendees first, then the most time stuck:</p>"
            + table(("notebook", "section", "attendees stuck", "periods", "median min", "longest min",
                      "common errors"), rows))


def _minutes(value: float | None) -> float | str:
    # a number stays a number, so the table right-aligns it; one decimal is all a teacher needs
    return "-" if value is None else round(value, 1)


def _hands(hands: Hands) -> str:
    if not hands.raised and not hands.lowered_by:
        return missing("No hand was raised.")
    lowered = ", ".join(f"{words} {hands.lowered_by[by]}" for by, words in LOWERED)
    waited = ("none was lowered" if hands.median_minutes is None else
              f"up a median {hands.median_minutes:.1f} min, the longest {hands.longest_minutes:.1f} min")
    return f"<p>{escape(f'Hands: {hands.raised} raised; {waited}; lowered {lowered}.')}</p>"


def _class(summary: ClassSummary) -> str:
    if not summary.attendees:
        return missing("No session summed itself up, so there is no class summary.")
    cells = "-" if summary.median_cells is None else f"{summary.median_cells:g}"
    text = (f"Class: {summary.attendees} sessions ended; {summary.done} attendees said they were done; "
            f"median {cells} cells run; {summary.with_errors} had at least one error.")
    return f"<p>{escape(text)}</p>"


def _advice(advice: Advice) -> str:
    rows = [("attendees", advice.attendees, advice.reasons["attendees"]),
            ("warm", advice.warm, advice.reasons["warm"]),
            ("max_containers", advice.max_containers, advice.reasons["max_containers"]),
            ("mem_limit", f"{advice.mem_limit // MIB} MiB", advice.reasons["mem_limit"])]
    memory = advice.reasons["memory"]
    check = f'<p class="warning">{escape(memory)}</p>' if advice.machine_too_small else f"<p>{escape(memory)}</p>"
    return (table(("setting", "advice", "why"), rows) + check
            + f"<p>For the config file:</p><pre>{escape(advice.config_snippet())}</pre>")
