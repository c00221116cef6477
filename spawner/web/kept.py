"""Kept work, given back to its owner: the page, the zip, "continue in a fresh notebook", delete.

Every handler here answers only the visitor whose signed cookie names the
session (``PageHandler.kept``); anyone else, with or without a cookie, gets
the same 404 as for an id that never existed, so nothing tells a stranger
that there is work at that address. Operators list and delete kept work
through the admin API, and read the workshop's report at /status/report.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from tornado.iostream import StreamClosedError

from ..keep.archive import Busy, Downloads, ZipStream
from ..keep.store import Kept
from ..record import WorkshopRecord
from ..record.sampler import RECORD_FOLDER
from ..report import build_report
from .api import AdminHandler, StatusPageHandler
from .handler import PageHandler
from .visitor import SpawnHandler

ZIP_STALL = 120.0  # seconds a download may wait for its client to take a piece before it is let go


def where_they_were(kept: Kept, landing_path: str) -> str:
    """The page a restored visitor lands on: the notebook they changed last, in the interface they used."""
    notebooks = sorted((f["saved"], p) for p, f in kept.files.items() if p.endswith(".ipynb"))
    if not notebooks:
        return landing_path
    newest = notebooks[-1][1]
    return f"lab/tree/{newest}" if landing_path.startswith("lab") else f"notebooks/{newest}"


class KeptAccess(PageHandler):
    """Finds the visitor's own kept work, or answers the one 404 everyone else gets."""

    def own(self, cid: str) -> Kept | None:
        kept = self.kept(cid)
        if kept is None:
            self.error_answer(404, "Nothing kept here", "There is no kept work at this address for this browser. "
                              "Kept work is shown only in the browser that made it.", "Nothing is kept here for you.")
        return kept

    def continued_already(self, kept: Kept, path: str) -> None:
        """``kept`` went into a fresh notebook already: there (``path``: where in it, as in a URL) while that
        session is live and this browser's, else its ended page, which says so (409)."""
        current = self.current_slot()
        if current is not None and current.cid == kept.restored_into:
            self.redirect(current.url(path))
            return
        self.set_status(409)
        if self.wants_json():
            self.finish({"error": "This kept work was continued in a fresh notebook already."})
        else:
            self.finish(self.ended_page(kept.cid, path))


class KeptPageHandler(KeptAccess):
    """GET /kept/<id>: the session's kept files, download, continue, delete (the ended page's offer)."""

    def get(self, cid: str) -> None:
        kept = self.own(cid)
        if kept is None:
            return
        path = self.get_argument("path", "")  # as in a URL (the /spawn redirect encodes it once more)
        current = self.current_slot()
        if kept.state != "ended" and current is not None and current.cid == cid:
            self.redirect(current.url(path))  # its session is still on (this is its latest checkpoint): go there
            return
        self.finish(self.ended_page(cid, path))


class KeptZipHandler(KeptAccess):
    """GET /kept/<id>.zip: every kept file in one archive, made while it is sent (see keep.archive)."""

    async def get(self, cid: str) -> None:
        kept = self.own(cid)
        if kept is None:
            return
        downloads = self.keeper.downloads
        try:
            with downloads.one(kept.cid):
                await self.send(kept, downloads)
        except Busy:
            self.set_header("Retry-After", "10")
            self.error_answer(429, "Already downloading", "This work is being downloaded already (at most "
                              f"{downloads.per_session} at once). Please wait for that download to finish, then "
                              "try again.", "This work is being downloaded already.")

    async def send(self, kept: Kept, downloads: Downloads) -> None:
        """The archive, a piece at a time: the next is made only once the client has taken the last one."""
        stream = ZipStream(await asyncio.to_thread(self.keeper.store.zip_entries, kept))
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", f'attachment; filename="notebooks-{kept.cid}.zip"')
        try:
            while chunk := await downloads.step(stream):
                self.write(chunk)
                # A client that stops reading holds this coroutine and one piece, no thread; one that
                # reads nothing for ZIP_STALL seconds is let go.
                await asyncio.wait_for(self.flush(), ZIP_STALL)
        except (TimeoutError, StreamClosedError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, StreamClosedError):  # (headers are gone already)
                self.nb.log.error("kept work of %s: the download failed: %s", kept.cid, exc)
            self.request.connection.close()
            return
        finally:
            stream.close()
        self.finish()


class KeptRestoreHandler(SpawnHandler, KeptAccess):
    """POST /kept/<id>/restore: a fresh container with the kept files in it, landing where they were.

    Admitted like any spawn (the workshop key included: the visitor's remembered
    key cookie normally covers it), and once only: after that, the visitor is
    sent to the session it went into while that is theirs and live, or told it
    was continued already (that session's own kept work holds the files then).
    """

    async def get(self, cid: str) -> None:  # a link cannot start it: only the page's own button (a POST)
        self.redirect(f"/kept/{cid}")

    async def post(self, cid: str) -> None:
        if not self.same_origin():
            return
        kept = self.own(cid)
        if kept is None:
            return
        if kept.restored_into:
            self.continued_already(kept, self.get_body_argument("path", ""))
            return
        path = unquote(self.get_body_argument("path", "")) or where_they_were(
            kept, self.workshop.landing_path if self.workshop is not None else self.nb.landing_path)
        await self.spawn(path, confirmed=True, restore=kept)


class KeptDeleteHandler(KeptAccess):
    """POST /kept/<id>/delete: the owner deletes their kept work now."""

    async def post(self, cid: str) -> None:
        if not self.same_origin():
            return
        if self.own(cid) is None:
            return
        await self.keeper.delete(cid, "its owner deleted it")
        self.page("error.html", reason="Deleted", message="Your kept work was deleted.")


class KeptAdminHandler(AdminHandler):
    """GET /api/admin/kept: every session's kept work (no owner secrets); DELETE /api/admin/kept/<id>."""

    def get(self) -> None:
        keeper = self.nb.keeper
        if keeper is None:
            self.finish({"enabled": False, "sessions": []})
            return
        rows = [{"id": k.cid, "state": k.state, "files": len(k.files), "bytes": k.size, "not_kept": len(k.skipped),
                 "started": k.started, "updated": k.updated, "ended_at": k.ended_at or None, "error": k.error,
                 "restored_into": k.restored_into or None} for k in keeper.sessions.values()]
        self.finish({**keeper.summary(), "keep_hours": keeper.keep_hours, "sessions": rows})

    async def delete(self, cid: str) -> None:
        keeper = self.nb.keeper
        if keeper is not None and await keeper.delete(cid, "an operator deleted it"):
            self.set_status(204)
            self.finish()
            return
        self.set_status(404)
        self.finish({"error": f"no kept work {cid!r}"})


class ReportHandler(StatusPageHandler):
    """GET /status/report: the workshop's report, built from its record (see spawner.report); the status
    page's login (or the admin token) opens it."""

    async def get(self) -> None:
        record = self.settings["record"]
        folder = record.folder if isinstance(record, WorkshopRecord) and record.enabled else None
        attendees = self.get_argument("attendees", None)
        try:
            n = int(attendees) if attendees else None
        except ValueError:
            self.set_status(400)
            self.finish({"error": f"attendees must be a whole number, not {attendees!r}"})
            return
        if folder is None:
            self.set_status(404)
            self.finish({"error": f"nothing recorded (WorkshopRecord is off; it writes <data_dir>/{RECORD_FOLDER})"})
            return
        name = self.get_argument("workshop", None)
        ws = self.workshops.get(name) if name else None
        title = f"{ws.display_name if ws is not None else self.nb.workshop_name}: report"
        html = await asyncio.to_thread(build_report, folder, attendees=n, title=title, workshop=name or None)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(html)


def kept_handlers() -> list:
    return [
        (r"/kept/([0-9a-f]+)/?", KeptPageHandler),
        (r"/kept/([0-9a-f]+)\.zip", KeptZipHandler),
        (r"/kept/([0-9a-f]+)/restore", KeptRestoreHandler),
        (r"/kept/([0-9a-f]+)/delete", KeptDeleteHandler),
        (r"/api/admin/kept/?", KeptAdminHandler),
        (r"/api/admin/kept/([0-9a-f]+)", KeptAdminHandler),
        (r"/status/report", ReportHandler),
    ]
