"""The whole class at a glance: how many work, are stuck, have a hand up, idle, are done, and how far they got.

"How far" is each attendee's furthest cell run in a notebook, grouped under
that notebook's sections (its headings of the two highest levels): the view's
progress strip shows how many attendees are furthest in each section.
"""

from __future__ import annotations

from collections import Counter

from .outline import Outline
from .seat import IDLE, WORKING, Seat

BEFORE = "(before the first heading)"


def summary(seats: list[Seat], tiles: list[dict], outlines: dict[tuple[str, str], Outline]) -> dict:
    states = Counter(tile["state"] for tile in tiles)
    counts = {
        "hands": sum(1 for tile in tiles if tile["hand"] is not None),
        "stuck": sum(1 for tile in tiles if tile["stuck"]),
        "working": states[WORKING],
        "idle": states[IDLE],
        "done": sum(1 for tile in tiles if tile["done"]),
        "total": len(tiles),
    }
    return {"counts": counts, "notebooks": progress(seats, outlines)}


def progress(seats: list[Seat], outlines: dict[tuple[str, str], Outline]) -> list[dict]:
    """Per notebook run in: attendees furthest in each of its sections."""
    by_notebook: dict[str, list[tuple[str, int]]] = {}
    for seat in seats:
        for notebook, index in seat.furthest.items():
            by_notebook.setdefault(notebook, []).append((seat.cid, index))
    out = []
    for notebook in sorted(by_notebook, key=lambda n: (-len(by_notebook[n]), n)):
        reached = by_notebook[notebook]
        outline = _fullest(notebook, outlines, [cid for cid, _ in reached])
        heads = outline.sections() if outline is not None else []
        sections = [{"title": BEFORE, "first_cell": 0, "attendees": 0}] if not heads or heads[0][0] > 0 else []
        sections += [{"title": title, "first_cell": first, "attendees": 0} for first, _, title in heads]
        for _, index in reached:
            at = 0
            for k, section in enumerate(sections):
                if section["first_cell"] <= index:
                    at = k
            sections[at]["attendees"] += 1
        out.append({"path": notebook, "attendees": len(reached), "sections": sections})
    return out


def _fullest(notebook: str, outlines: dict[tuple[str, str], Outline], cids: list[str]) -> Outline | None:
    """The outline of ``notebook`` with the most cells among its attendees' (the material, plus their own)."""
    found = [outlines[(cid, notebook)] for cid in cids if (cid, notebook) in outlines]
    return max(found, key=lambda o: len(o.cells), default=None)
