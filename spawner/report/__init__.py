"""The post-workshop report: what a recording (``spawner.record``) says, and how to size the next workshop.

``python -m spawner.report`` writes it as one self-contained HTML page;
:func:`build_report` returns the same page, :func:`spawner.report.analysis.advise`
the sizing advice alone.
"""

from __future__ import annotations

import os

from spawner.record.recorder import read_events

from . import html
from .analysis import Advice, advise, of_workshop
from .findings import findings

__all__ = ["Advice", "advise", "build_report", "render"]

TITLE = "nbpool workshop report"


def render(events: list[dict], attendees: int | None = None, title: str = TITLE) -> str:
    """The report's HTML for ``events`` (oldest first), with advice for ``attendees`` (default: the recorded peak)."""
    return html.page(findings(events, advise(events, attendees)), title)


def build_report(folder: str | os.PathLike, attendees: int | None = None, title: str = TITLE,
                 workshop: str | None = None) -> str:
    """The report's HTML for the recording in ``folder`` (the recorder's folder, ``<data_dir>/record``),
    of the whole service or of one ``workshop`` (a service with several).

    An empty or missing recording gives a report that says nothing was recorded.
    """
    return render(of_workshop(read_events(folder), workshop), attendees, title)
