"""Where an attendee is: which notebook a kernel serves, and where a cell sits in it, asked of their own server.

A kernel WebSocket names its kernel and a run names its cell by id; the
notebook's path and the cell's position come from the attendee's notebook
server (``api/sessions``, then the notebook's model), through the same
endpoint and token nbpool uses for kept work. Only the outline is kept: cell
ids in order and the markdown headings with their positions (the workshop's
material; never a code cell's source or an output). A notebook is asked again
only when a run names a cell it does not know (a cell added since), at most
once every ``REFRESH`` seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from ..contents import PATH_SAFE, ContentsError, NotebookFiles

NOTEBOOK_BYTES = 16 << 20  # a notebook's model read at most (outputs included: images make them large)
REFRESH = 10.0  # seconds between two reads of one notebook's outline
TITLE = 80  # characters of a heading kept
# An outline's size, at most: the attendee's server answers (their own notebook may have a million cells).
MAX_CELLS = 5000
MAX_HEADINGS = 500
MAX_KERNELS = 64  # kernels (and notebooks) remembered per attendee
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass
class Outline:
    """One notebook's cells: ids in order, and its headings as (first cell index, level, title)."""

    cells: dict[str, int] = field(default_factory=dict)
    headings: list[tuple[int, int, str]] = field(default_factory=list)
    read_at: float = 0.0  # monotonic

    def section(self, index: int | None) -> str | None:
        """The title of the (top-level) section holding cell ``index``."""
        if index is None:
            return None
        title = None
        for first, _, name in self.sections():
            if first > index:
                break
            title = name
        return title

    def sections(self) -> list[tuple[int, int, str]]:
        """The headings that divide the notebook: those of its two highest levels (a title and its parts)."""
        levels = sorted({level for _, level, _ in self.headings})[:2]
        return [h for h in self.headings if h[1] in levels]


def outline_of(model) -> Outline | None:
    """The outline of a notebook's contents model, or None if it is not one."""
    content = model.get("content") if isinstance(model, dict) else None
    cells = content.get("cells") if isinstance(content, dict) else None
    if not isinstance(cells, list):
        return None
    outline = Outline(read_at=time.monotonic())
    for index, cell in enumerate(cells[:MAX_CELLS]):
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if isinstance(cell_id, str) and cell_id:
            outline.cells.setdefault(cell_id[:64], index)
        if cell.get("cell_type") == "markdown":
            source = cell.get("source")
            text = "".join(source) if isinstance(source, list) else source if isinstance(source, str) else ""
            for line in text.splitlines():
                found = HEADING.match(line)
                if found and len(outline.headings) < MAX_HEADINGS:
                    outline.headings.append((index, len(found.group(1)), found.group(2)[:TITLE]))
                    break  # a cell's first heading names it
    return outline


async def kernel_paths(files: NotebookFiles) -> dict[str, str]:
    """kernel id -> the path of the notebook it serves, from the server's sessions."""
    sessions = await files.get_json("api/sessions")
    found = {}
    for session in sessions[:MAX_KERNELS] if isinstance(sessions, list) else []:
        kernel = (session.get("kernel") or {}) if isinstance(session, dict) else {}
        path = session.get("path") if isinstance(session, dict) else None
        if isinstance(kernel, dict) and isinstance(kernel.get("id"), str) and isinstance(path, str):
            found[kernel["id"][:64]] = path[:1024]
    return found


async def read_outline(files: NotebookFiles, path: str) -> Outline | None:
    try:
        model = await files.get_json(f"api/contents/{quote(path, safe=PATH_SAFE)}?type=notebook&content=1",
                                     limit=NOTEBOOK_BYTES, timeout=20)
    except ContentsError:
        return None
    return outline_of(model)
