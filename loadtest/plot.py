"""The run as a picture: one timeline row per attendee, and the pool's state over time.

Self-contained by construction: inline SVG with its own styles, no scripts,
fonts, images or links to fetch. Hovering a row shows its details (SVG
``<title>``), which every browser renders without JavaScript. Both charts share
one time axis, so a queue building up lines up with the attendees waiting in it.
"""

from __future__ import annotations

import math
from html import escape as _escape
from urllib.parse import urlsplit

from .record import EXECUTE, FROM_QUEUE, KERNEL, LANDING, LEAVE, PAGE, SPAWN, AttendeeRecord
from .report import format_seconds

WIDTH = 1000
LEFT, RIGHT = 70, 20
IN_LINE = "waiting in line"
COLORS = {
    LANDING: "#9aa5b1",
    SPAWN: "#e8a33d",
    IN_LINE: "#f6d88e",
    PAGE: "#4e79a7",
    KERNEL: "#9c6ade",
    EXECUTE: "#59a14f",
    LEAVE: "#c9ced6",
}
FAILED = "#d62728"
POOL_SERIES = (  # field, label, color, dashed
    ("available", "spares ready", "#59a14f", False),
    ("assigned", "assigned", "#4e79a7", False),
    ("launching", "launching", "#e8a33d", True),
    ("queue", "in line", FAILED, False),
    ("capacity", "capacity", "#888888", True),
)
STYLE = """
text { font: 11px sans-serif; fill: #333; }
.axis line, .axis path { stroke: #bbb; }
.grid { stroke: #eee; }
.label.failed { fill: #d62728; font-weight: bold; }
.failure { stroke: #d62728; stroke-width: 2; }
.cell { stroke: #1b5e20; stroke-width: 1; }
.heading { font: bold 13px sans-serif; }
"""


def escape(text: str) -> str:
    """HTML-escaped text; a URL in an error message also loses its ``://``, so nothing in the file
    even looks like a reference to fetch (``&#58;`` still shows as ``:``)."""
    return _escape(text).replace("://", "&#58;//")


def nice_step(span: float, target: int = 10) -> float:
    """A 1/2/5×10^k step giving about ``target`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _fmt(value: float, step: float) -> str:
    """``value`` with as many decimals as ``step`` needs (0.02 -> 2)."""
    return f"{value:.{max(0, -math.floor(math.log10(step)))}f}"


class _Scale:
    def __init__(self, last: float):
        # The axis ends on a tick just past the last thing drawn.
        self.step = nice_step(max(last, 1e-3))
        self.t_max = math.ceil(max(last, 1e-3) / self.step + 1e-9) * self.step
        self.width = WIDTH - LEFT - RIGHT

    def x(self, t: float) -> float:
        return LEFT + max(0.0, min(t, self.t_max)) / self.t_max * self.width


def _time_axis(scale: _Scale, top: float, bottom: float) -> list[str]:
    parts = ['<g class="axis">']
    for i in range(round(scale.t_max / scale.step) + 1):
        tick = i * scale.step
        x = scale.x(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 13:.1f}" text-anchor="middle">{_fmt(tick, scale.step)} s'
                     "</text>")
    parts.append("</g>")
    return parts


def _describe(r: AttendeeRecord) -> str:
    bits = [f"attendee {r.index}"]
    if r.container:
        bits.append(f"container {r.container}")
    if r.served:
        bits.append("served from a spare" if r.served != FROM_QUEUE else
                    f"waited in line (first position {r.queue_position})")
    if r.time_to_page is not None:
        bits.append(f"notebook page after {format_seconds(r.time_to_page)}")
    if r.time_to_first_result is not None:
        bits.append(f"first result after {format_seconds(r.time_to_first_result)}")
    if r.cell_results:
        bits.append(f"{len(r.cell_results)} cells run")
    if r.walked_away:
        bits.append("walked away without closing")
    for name, timing in r.phases.items():
        bits.append(f"{name}: {format_seconds(timing.duration)}")
    if r.failure:
        bits.append(f"FAILED in {r.failure.phase} ({r.failure.kind}): {r.failure.message}")
    return "\n".join(bits)


def _segments(r: AttendeeRecord, t_end: float) -> list[tuple[str, float, float]]:
    out = []
    for name, timing in r.phases.items():
        end = timing.end if timing.end is not None else t_end
        if name == SPAWN and r.queued_at is not None and timing.start <= r.queued_at <= end:
            out += [(SPAWN, timing.start, r.queued_at), (IN_LINE, r.queued_at, end)]
        else:
            out.append((name, timing.start, end))
    return out


def _timeline(report, scale: _Scale, top: float) -> tuple[list[str], float]:
    records: list[AttendeeRecord] = report.attendees
    row = 14.0 if len(records) <= 60 else max(2.0, 840.0 / len(records))
    bar = max(1.5, row * 0.7)
    parts = [f'<text class="heading" x="{LEFT}" y="{top + 12:.1f}">Attendees (one row each; '
             f'hover for details)</text>']
    rows_top = top + 22
    bottom = rows_top + row * len(records)
    parts += _time_axis(scale, rows_top, bottom)
    for i, r in enumerate(records):
        y = rows_top + i * row
        mid = y + row / 2
        failed = r.failure is not None
        parts.append(f'<g class="attendee{" failed" if failed else ""}" data-index="{r.index}">')
        parts.append(f"<title>{escape(_describe(r))}</title>")
        if row >= 9:
            parts.append(f'<text class="label{" failed" if failed else ""}" x="{LEFT - 6}" y="{mid + 4:.1f}" '
                         f'text-anchor="end">#{r.index}</text>')
        for name, start, end in _segments(r, scale.t_max):
            x1, x2 = scale.x(start), scale.x(end)
            parts.append(f'<rect x="{x1:.2f}" y="{mid - bar / 2:.2f}" width="{max(x2 - x1, 0.8):.2f}" '
                         f'height="{bar:.2f}" fill="{COLORS[name]}"/>')
        if row >= 6:
            for t in r.cell_results:
                x = scale.x(t)
                parts.append(f'<line class="cell" x1="{x:.1f}" y1="{mid - bar / 2:.1f}" x2="{x:.1f}" '
                             f'y2="{mid + bar / 2:.1f}"/>')
        if failed:
            x, s = scale.x(r.failure.at), max(2.0, bar / 2)
            parts.append(f'<path class="failure" d="M{x - s:.1f},{mid - s:.1f}L{x + s:.1f},{mid + s:.1f}'
                         f'M{x - s:.1f},{mid + s:.1f}L{x + s:.1f},{mid - s:.1f}"/>')
        parts.append("</g>")
    return parts, bottom + 20


def _pool_chart(samples, scale: _Scale, top: float) -> tuple[list[str], float]:
    height = 180.0
    parts = [f'<text class="heading" x="{LEFT}" y="{top + 12:.1f}">Pool (sampled from /api/stats)</text>']
    chart_top, chart_bottom = top + 22, top + 22 + height
    if not samples:
        parts.append(f'<text x="{LEFT}" y="{chart_top + 20:.1f}">no /api/stats samples were taken</text>')
        return parts, chart_top + 40
    top_value = max(max(getattr(s, f) for s in samples for f, *_ in POOL_SERIES), 1)
    step = max(1.0, nice_step(top_value, 5))  # counts: whole steps
    y_max = math.ceil(top_value / step) * step

    def y(v: float) -> float:
        return chart_bottom - v / y_max * height

    parts += _time_axis(scale, chart_top, chart_bottom)
    parts.append('<g class="axis">')
    for i in range(round(y_max / step) + 1):
        tick = i * step
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y(tick):.1f}" x2="{WIDTH - RIGHT}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick, step)}</text>')
    parts.append("</g>")
    for field_name, label, color, dashed in POOL_SERIES:
        points = " ".join(f"{scale.x(s.t):.1f},{y(getattr(s, field_name)):.1f}" for s in samples)
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<polyline class="series" data-series="{field_name}" fill="none" stroke="{color}" '
                     f'stroke-width="2"{dash} points="{points}"><title>{escape(label)}</title></polyline>')
    return parts, chart_bottom + 20


def _legend(top: float) -> tuple[list[str], float]:
    parts, x = [], LEFT
    items = [(name, color, False) for name, color in COLORS.items()] + [("failure", FAILED, True)]
    items += [(f"pool: {label}", color, True) for _, label, color, _ in POOL_SERIES]
    y = top
    for label, color, is_line in items:
        width = 24 + 6.5 * len(label)
        if x + width > WIDTH - RIGHT:
            x, y = LEFT, y + 16
        if is_line:
            parts.append(f'<line x1="{x}" y1="{y + 6}" x2="{x + 14}" y2="{y + 6}" stroke="{color}" stroke-width="3"/>')
        else:
            parts.append(f'<rect x="{x}" y="{y}" width="14" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 18}" y="{y + 10}">{escape(label)}</text>')
        x += width
    return parts, y + 24


def _where(report) -> str:
    parts = urlsplit(report.settings.url)
    return parts.netloc + parts.path  # no scheme: the page must not look like it links anywhere


def _body(report) -> tuple[str, float]:
    settings, summary = report.settings, report.summary
    ends = [t.end or 0.0 for r in report.attendees for t in r.phases.values()]
    ends += [s.t for s in report.pool_samples] + [r.failure.at for r in report.attendees if r.failure]
    scale = _Scale(max(ends, default=0.0))
    title = (f"nbpool load test of {_where(report)}: {settings.users} attendees, {settings.arrival_text}, "
             f"{summary.ok} ok, {summary.failed} failed")
    parts = [f"<style>{STYLE}</style>", f'<text class="heading" x="{LEFT}" y="18">{escape(title)}</text>']
    legend, y = _legend(30)
    parts += legend
    timeline, y = _timeline(report, scale, y)
    parts += timeline
    pool, y = _pool_chart(report.pool_samples, scale, y)
    parts += pool
    return "\n".join(parts), y


def svg(report, *, standalone: bool = True) -> str:
    """The whole picture as one SVG document (``standalone``) or an element to inline in HTML."""
    body, height = _body(report)
    namespace = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""  # a name, not a resource
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if standalone else ""
    return (f'{head}<svg{namespace} width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'role="img">\n{body}\n</svg>\n')


def _summary_table(summary) -> str:
    cells = "".join(f"<th>{h}</th>" for h in ("phase", "count", "failed", "p50", "p95", "p99", "max"))
    rows = [f"<tr>{cells}</tr>"]
    for row in summary.rows:
        if row.indent and row.count == 0:
            continue
        label = ("&nbsp;&nbsp;" + escape(row.label)) if row.indent else escape(row.label)
        values = "".join(f"<td>{format_seconds(v)}</td>" for v in (row.p50, row.p95, row.p99, row.max))
        failed = "" if row.indent else str(row.failed)
        rows.append(f"<tr><td>{label}</td><td>{row.count}</td><td>{failed}</td>{values}</tr>")
    failures = "".join(f"<li><b>{escape(key)}</b>: {count} (e.g. {escape(summary.failure_examples[key])})</li>"
                       for key, count in summary.failures.items())
    return f"<table>{''.join(rows)}</table>" + (f"<h2>Failures</h2><ul>{failures}</ul>" if failures else "")


def html(report) -> str:
    """A self-contained HTML page: settings, the summary table and the inline SVG."""
    settings = report.settings
    title = f"nbpool load test: {settings.users} attendees, {settings.arrival_text}"
    described = ", ".join(f"{k}={v}" for k, v in settings.to_dict().items() if k not in ("url", "ramp"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font: 14px sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>{escape(title)}</h1>
<p>Service {escape(_where(report))}, started {escape(report.started_at)}; {escape(described)}.</p>
{_summary_table(report.summary)}
{svg(report, standalone=False)}
</body></html>
"""
