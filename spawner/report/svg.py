"""Small charts drawn as inline SVG, so the report needs no script, font or file from anywhere.

Each chart function returns one ``<svg>`` element for an HTML page that
includes :data:`CSS`. Every label is HTML-escaped here, so callers pass
recorded strings as they are. Hovering a bar or line shows its exact value
(an SVG ``<title>``), which browsers render without JavaScript. All axes start
at zero: the charts show counts, durations and sizes, where zero means
something.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import NamedTuple

WIDTH = 720
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 40, 48  # room for tick labels, the legend above and the axis titles below
HEIGHT = 220  # of the plotting area
ROW = 22  # per bar of a horizontal bar chart
PALETTE = ("#4e79a7", "#59a14f", "#e15759", "#f28e2b", "#9c6ade", "#76b7b2")
CSS = """
svg.chart text { font: 11px sans-serif; fill: #333; }
svg.chart .grid { stroke: #e8e8e8; }
svg.chart .axis { stroke: #888; }
svg.chart .axis-title { font-weight: bold; }
"""


class Line(NamedTuple):
    """One series of a line chart: ``(x, y)`` points in order of x."""

    label: str
    color: str
    points: Sequence[tuple[float, float]]


class Bars(NamedTuple):
    """One series of a grouped bar chart: a value (or None: nothing recorded) per group."""

    label: str
    color: str
    values: Sequence[float | None]


class Marker(NamedTuple):
    """A vertical line across a histogram at ``x``, e.g. a limit."""

    label: str
    color: str
    x: float


@dataclass(frozen=True)
class Axis:
    """A linear axis from 0 to the first tick at or above the largest value."""

    high: float
    step: float

    @classmethod
    def over(cls, largest: float, ticks: int = 5, whole: bool = False) -> Axis:
        """An axis for values up to ``largest`` with about ``ticks`` steps (whole ones for counts)."""
        step = nice_step(largest, ticks)
        step = max(1.0, step) if whole else step
        return cls(max(1, math.ceil(largest / step - 1e-9)) * step, step)

    def ticks(self) -> list[float]:
        return [i * self.step for i in range(round(self.high / self.step) + 1)]

    def label(self, value: float) -> str:
        """``value`` with as many decimals as the step needs (a step of 0.02 -> 2)."""
        return f"{value:.{max(0, -math.floor(math.log10(self.step)))}f}"

    def at(self, value: float, start: float, end: float) -> float:
        """The pixel of ``value`` on an axis drawn from ``start`` (0) to ``end`` (high)."""
        return start + min(max(value, 0.0), self.high) / self.high * (end - start)


def nice_step(span: float, ticks: int) -> float:
    """A 1, 2 or 5 × 10^k step giving at most about ``ticks`` steps over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _svg(height: float, parts: list[str], description: str) -> str:
    return (f'<svg class="chart" width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'role="img" aria-label="{escape(description)}">\n' + "\n".join(parts) + "\n</svg>")


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    """Colour swatches with labels in a row above the plot; nothing for a single series."""
    if len(items) < 2:
        return []
    parts, x = [], float(LEFT)
    for label, color in items:
        parts.append(f'<rect x="{x:.0f}" y="10" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 16:.0f}" y="20">{escape(label)}</text>')
        x += 30 + 6.5 * len(label)
    return parts


def _value_grid(axis: Axis, title: str, vertical: bool, box: tuple[float, float, float, float]) -> list[str]:
    """Grid lines, tick labels and the axis title of a value axis (``vertical``: the y axis).

    ``box`` is the plotting area (left, top, right, bottom).
    """
    left, top, right, bottom = box
    parts = []
    for tick in axis.ticks():
        if vertical:
            y = axis.at(tick, bottom, top)
            parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
            parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{axis.label(tick)}</text>')
        else:
            x = axis.at(tick, left, right)
            parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
            parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{axis.label(tick)}</text>')
    if vertical:
        middle = (top + bottom) / 2
        parts.append(f'<text class="axis-title" transform="translate(14,{middle:.0f}) rotate(-90)" '
                     f'text-anchor="middle">{escape(title)}</text>')
    else:
        parts.append(f'<text class="axis-title" x="{(left + right) / 2:.0f}" y="{bottom + 34}" '
                     f'text-anchor="middle">{escape(title)}</text>')
    parts.append(f'<path class="axis" fill="none" d="M{left},{top}V{bottom}H{right}"/>')
    return parts


def _box() -> tuple[float, float, float, float]:
    return LEFT, TOP, WIDTH - RIGHT, TOP + HEIGHT


def line_chart(lines: Sequence[Line], x_title: str, y_title: str) -> str:
    """Series of counts over x (e.g. minutes), one coloured line each, with a legend."""
    left, top, right, bottom = box = _box()
    x_axis = Axis.over(max((x for line in lines for x, _ in line.points), default=0), ticks=10)
    y_axis = Axis.over(max((y for line in lines for _, y in line.points), default=0), whole=True)
    parts = _legend([(line.label, line.color) for line in lines])
    parts += _value_grid(x_axis, x_title, False, box) + _value_grid(y_axis, y_title, True, box)
    for line in lines:
        points = " ".join(f"{x_axis.at(x, left, right):.1f},{y_axis.at(y, bottom, top):.1f}" for x, y in line.points)
        parts.append(f'<polyline fill="none" stroke="{line.color}" stroke-width="2" points="{points}">'
                     f"<title>{escape(line.label)}</title></polyline>")
    return _svg(bottom + BOTTOM, parts, f"{y_title} over {x_title}")


def bar_chart(groups: Sequence[str], series: Sequence[Bars], y_title: str,
              value_text: Callable[[float], str] = str) -> str:
    """Grouped vertical bars: one group per label in ``groups``, one bar per series in each."""
    left, top, right, bottom = box = _box()
    y_axis = Axis.over(max((v for s in series for v in s.values if v is not None), default=0))
    parts = _legend([(s.label, s.color) for s in series]) + _value_grid(y_axis, y_title, True, box)
    group_width = (right - left) / max(len(groups), 1)
    bar_width = group_width * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = left + g * group_width + group_width * 0.1
        parts.append(f'<text x="{x0 + group_width * 0.4:.1f}" y="{bottom + 14}" text-anchor="middle">'
                     f"{escape(group)}</text>")
        for i, s in enumerate(series):
            value = s.values[g]
            if value is None:
                continue
            x, y = x0 + i * bar_width, y_axis.at(value, bottom, top)
            text = escape(value_text(value))
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_width - 2:.1f}" height="{bottom - y:.1f}" '
                         f'fill="{s.color}"><title>{escape(s.label)} {escape(group)}: {text}</title></rect>')
            parts.append(f'<text x="{x + bar_width / 2 - 1:.1f}" y="{y - 3:.1f}" text-anchor="middle">{text}</text>')
    return _svg(bottom + BOTTOM, parts, y_title)


def histogram(values: Sequence[float], x_title: str, y_title: str, markers: Sequence[Marker] = (),
              color: str = PALETTE[0]) -> str:
    """How many ``values`` fall in each of about a dozen equal bins from 0, with vertical ``markers``.

    The bins divide the values' own range, so a limit far above them widens the axis, not the bins.
    """
    left, top, right, bottom = box = _box()
    width = nice_step(max(values, default=0), 12)
    counts = Counter(int(value // width) for value in values)
    x_axis = Axis.over(max([(max(counts, default=0) + 1) * width, *(m.x for m in markers)]), ticks=12)
    y_axis = Axis.over(max(counts.values(), default=0), whole=True)
    parts = _legend([(y_title, color), *((m.label, m.color) for m in markers)])
    parts += _value_grid(x_axis, x_title, False, box) + _value_grid(y_axis, y_title, True, box)
    for i, count in sorted(counts.items()):
        x1, x2 = x_axis.at(i * width, left, right), x_axis.at((i + 1) * width, left, right)
        y = y_axis.at(count, bottom, top)
        parts.append(f'<rect x="{x1 + 1:.1f}" y="{y:.1f}" width="{max(x2 - x1 - 2, 1):.1f}" height="{bottom - y:.1f}" '
                     f'fill="{color}"><title>{count} in {i * width:g} to {(i + 1) * width:g}</title></rect>')
    for marker in markers:
        x = x_axis.at(marker.x, left, right)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{marker.color}" '
                     f'stroke-width="2" stroke-dasharray="6,3"><title>{escape(marker.label)}</title></line>')
    return _svg(bottom + BOTTOM, parts, f"{y_title} by {x_title}")


def hbar_chart(rows: Sequence[tuple[str, float, str]], x_title: str,
               legend: Sequence[tuple[str, str]] = ()) -> str:
    """One horizontal bar per ``(label, value, color)`` row, labels on the left (long ones shortened)."""
    labels = [label if len(label) <= 32 else label[:31] + "…" for label, _, _ in rows]
    left = 16 + 6.5 * max((len(label) for label in labels), default=0)
    top, right = TOP, WIDTH - RIGHT
    bottom = top + ROW * len(rows)
    x_axis = Axis.over(max((value for _, value, _ in rows), default=0), whole=True)
    parts = _legend(legend) + _value_grid(x_axis, x_title, False, (left, top, right, bottom))
    for i, ((label, value, color), shown) in enumerate(zip(rows, labels, strict=True)):
        y = top + i * ROW
        width = x_axis.at(value, left, right) - left
        parts.append(f'<text x="{left - 6:.1f}" y="{y + ROW / 2 + 4:.1f}" text-anchor="end">{escape(shown)}'
                     f"<title>{escape(label)}</title></text>")
        parts.append(f'<rect x="{left:.1f}" y="{y + 3:.1f}" width="{width:.1f}" height="{ROW - 6}" fill="{color}">'
                     f"<title>{escape(label)}: {value:g}</title></rect>")
        parts.append(f'<text x="{left + width + 4:.1f}" y="{y + ROW / 2 + 4:.1f}">{value:g}</text>')
    return _svg(bottom + BOTTOM, parts, x_title)
