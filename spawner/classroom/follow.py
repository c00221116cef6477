"""Following the instructor: their current notebook, cells and outputs as text, live, for anyone with the link.

The instructor's session is a container like any other, marked as theirs by
the instructor key (``Slot.instructor``). Their "current" notebook is the one
they last ran a cell in (the kernel watch says which, as for any attendee),
else the notebook they last changed. nbpool reads it from their server with
its token, through the contents API (with real-time collaboration on, the file
follows the live document within a second), only while someone follows: once
every ``EVERY`` seconds it asks the file's last change (a small answer) and
reads the notebook only when that moved. What it keeps and serves is a
bounded, text-only view: each cell's type, source and its outputs' text
(``text/plain`` and streams; errors as their name and message), cut to
``CELL_TEXT`` characters, at most ``MAX_CELLS`` cells. No HTML, script or
image of the instructor's reaches a follower's browser.

Followers need no container: the follow page is nbpool's own, public like the
workshop's link (``/follow``, ``/api/follow``). What the instructor's notebook
shows is shown to everyone following: that is the point, and the documentation says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from urllib.parse import quote

from ..contents import PATH_SAFE, ContentsError, NotebookFiles
from ..pool.slot import ASSIGNED, Slot
from .changes import Changes
from .outline import NOTEBOOK_BYTES

WAITING = "The instructor has not started yet: this page follows their notebook as soon as they do."
EVERY = 0.5  # seconds between two looks at the instructor's notebook while someone follows
FOLLOWED_FOR = 20.0  # seconds a follower's last request counts as following (a stream counts while open)
MAX_CELLS = 1000
CELL_TEXT = 20_000  # characters of one cell's source, and of its outputs' text
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colours in tracebacks and some streams


def text_of(value) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def outputs_text(outputs) -> str:
    """A code cell's outputs as the text a terminal would show."""
    parts = []
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(text_of(out.get("text")))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") if isinstance(out.get("data"), dict) else {}
            text = text_of(data.get("text/plain"))
            if text:
                parts.append(text if text.endswith("\n") else text + "\n")
            elif any(k.startswith("image/") for k in data):
                parts.append("[image]\n")
        elif kind == "error":
            traceback = out.get("traceback")
            text = "\n".join(t for t in traceback if isinstance(t, str)) if isinstance(traceback, list) else ""
            parts.append(ANSI.sub("", text) or f"{text_of(out.get('ename'))}: {text_of(out.get('evalue'))}")
            parts.append("\n")
        if sum(len(p) for p in parts) > CELL_TEXT:
            break
    return "".join(parts)[:CELL_TEXT]


def follow_view(model, path: str) -> dict | None:
    """The text-only view of a notebook's contents model, or None if it is not one."""
    content = model.get("content") if isinstance(model, dict) else None
    cells = content.get("cells") if isinstance(content, dict) else None
    if not isinstance(cells, list):
        return None
    view = []
    for index, cell in enumerate(cells[:MAX_CELLS]):
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "raw"
        cell_id = cell.get("id") if isinstance(cell.get("id"), str) else f"cell-{index}"
        count = cell.get("execution_count")
        view.append({"id": cell_id[:64], "cell_type": kind, "source": text_of(cell.get("source"))[:CELL_TEXT],
                     "outputs_text": outputs_text(cell.get("outputs")) if kind == "code" else "",
                     "execution_count": count if isinstance(count, int) and not isinstance(count, bool) else None})
    return {"notebook": path, "cells": view}


def current_cell(cells: list[dict], cell_id: str) -> int | None:
    """The cell the instructor ran last: the one the kernel watch saw run (when the run named its cell), else the
    highest execution count (the notebook's own record, whichever way the cell was run)."""
    if cell_id:
        for i, c in enumerate(cells):
            if c["id"] == cell_id:
                return i
    counts = [(c["execution_count"], i) for i, c in enumerate(cells) if c["execution_count"] is not None]
    return max(counts)[1] if counts else None


class Followed:
    """One workshop's instructor notebook, as last read."""

    def __init__(self) -> None:
        self.cid = ""
        self.path = ""
        self.modified = ""  # its last_modified when read
        self.view: dict | None = None
        self.current_id = ""  # the cell the instructor ran last
        self.updated = 0.0
        self.changes = Changes()  # what the follow pages' streams wait on
        self.seen = 0.0  # monotonic: a follower's last request
        self.streams = 0  # follow pages with a stream open
        self.reading: asyncio.Task | None = None
        self.encoded = (-1, "")  # (version, the stream's event data for it): one encoding for every follower


class Follow:
    """Every workshop's instructor notebook, read while followed (``view``), told to streams (``wait``)."""

    def __init__(self, pools: Callable[[], list], seat_of: Callable[[str], object], token_for: Callable[[str], str],
                 log) -> None:
        self.pools = pools  # the classroom's pools
        self.seat_of = seat_of  # cid -> its class view seat (the instructor's last run), or None
        self.token_for = token_for  # cid -> its notebook server's token
        self.log = log
        self.followed: dict[str, Followed] = {}
        self.reads = 0

    def instructor(self, workshop: str) -> Slot | None:
        found = None
        for pool in self.pools():
            if pool.workshop != workshop:
                continue
            for slot in pool.slots.values():
                if slot.instructor and slot.state == ASSIGNED and slot.endpoint is not None and (
                        found is None or (slot.assigned_at or 0) > (found.assigned_at or 0)):
                    found = slot
        return found

    def state(self, workshop: str) -> Followed:
        got = self.followed.get(workshop)
        if got is None:
            got = self.followed[workshop] = Followed()
        return got

    def view(self, workshop: str) -> dict | None:
        """The instructor's notebook now (None: no instructor session, or nothing read yet)."""
        got = self.state(workshop)
        got.seen = time.monotonic()
        self.poke(workshop)
        if got.view is None or self.instructor(workshop) is None:
            return None
        return {**got.view, "current": current_cell(got.view["cells"], got.current_id), "updated": got.updated}

    def event_data(self, workshop: str) -> str:
        """view() as JSON ({"waiting": true, …} without one), encoded once per change for every stream."""
        got = self.state(workshop)
        if got.encoded[0] != got.changes.version:
            view = self.view(workshop)
            body = view if view is not None else {"waiting": True, "message": WAITING}
            got.encoded = (got.changes.version, json.dumps(body, separators=(",", ":")))
        else:
            got.seen = time.monotonic()
        return got.encoded[1]

    async def first_view(self, workshop: str, wait: float = 3.0) -> dict | None:
        """view(), after waiting up to ``wait`` seconds for a first read (the first follower of a workshop)."""
        got = self.state(workshop)
        if got.view is None and self.instructor(workshop) is not None:
            self.poke(workshop)
            if got.reading is not None:
                await asyncio.wait([got.reading], timeout=wait)
        return self.view(workshop)

    async def wait(self, workshop: str, version: int, timeout: float) -> None:
        await self.state(workshop).changes.wait(version, timeout)

    def followed_now(self, got: Followed) -> bool:
        return got.streams > 0 or time.monotonic() - got.seen < FOLLOWED_FOR

    def tick(self) -> None:
        """Look again at every followed workshop's instructor notebook (ClassView's loop, every EVERY s)."""
        for workshop, got in self.followed.items():
            if self.followed_now(got):
                self.poke(workshop)

    def poke(self, workshop: str) -> None:
        got = self.state(workshop)
        if got.reading is None or got.reading.done():
            got.reading = asyncio.get_running_loop().create_task(self._read(workshop, got))

    def _bump(self, got: Followed) -> None:
        got.updated = time.time()
        got.changes.bump()

    async def _read(self, workshop: str, got: Followed) -> None:
        slot = self.instructor(workshop)
        if slot is None:
            if got.view is not None or got.cid:
                got.view, got.cid, got.path, got.modified = None, "", "", ""
                self._bump(got)
            return
        files = NotebookFiles(slot.url("", slot.endpoint.url), self.token_for(slot.cid), timeout=5)
        seat = self.seat_of(slot.cid)
        path = getattr(seat, "notebook", None) or ""
        current_id = getattr(seat, "cell_id", "") or ""
        try:
            if not path:
                path = await self._latest_notebook(files)
            if not path:
                return
            quoted = quote(path, safe=PATH_SAFE)
            meta = await files.get_json(f"api/contents/{quoted}?content=0")
            modified = meta.get("last_modified") if isinstance(meta, dict) else None
            modified = modified if isinstance(modified, str) else ""
            if slot.cid == got.cid and path == got.path and modified == got.modified and got.view is not None:
                if current_id != got.current_id:
                    got.current_id = current_id
                    self._bump(got)
                return
            model = await files.get_json(f"api/contents/{quoted}?type=notebook&content=1", limit=NOTEBOOK_BYTES,
                                         timeout=20)
        except ContentsError as exc:
            self.log.debug("follow: could not read the instructor's notebook %r: %s", path, exc)
            return
        view = await asyncio.to_thread(follow_view, model, path)
        self.reads += 1
        if view is None:
            return
        if view != got.view or current_id != got.current_id or slot.cid != got.cid:
            got.view, got.current_id = view, current_id
            self._bump(got)
        got.cid, got.path, got.modified = slot.cid, path, modified

    async def _latest_notebook(self, files: NotebookFiles) -> str:
        """The notebook in the home folder the instructor changed last."""
        best = ("", "")
        listing = await files.get_json("api/contents?content=1")
        entries = listing.get("content") if isinstance(listing, dict) else None
        for entry in entries[:500] if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            path, modified = entry.get("path"), entry.get("last_modified")
            if entry.get("type") == "notebook" and isinstance(path, str) and isinstance(modified, str):
                best = max(best, (modified, path))
        return best[1]
