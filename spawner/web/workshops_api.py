"""Operators' API for the workshops: each one's state, and live updates pushed into its containers.

``GET /api/admin/workshops``: every workshop (pool numbers, schedule windows
and whether they are on track, the last push's progress).
``POST /api/admin/workshops/<name>/push``: files as multipart form data (each
part's filename is the path in the attendees' home, e.g.
``exercises/ex1.ipynb``), or JSON ``{"files": {path: text}}`` (or base64 with
``"encoding": "base64"``), or ``{"from_folder": true}`` for the workshop's
``push_folder``. Answers 202 with the push's progress; ``GET`` on the same
URL shows it until it is done (done/failed per container).
"""

from __future__ import annotations

import base64
import binascii

from tornado.httputil import parse_body_arguments
from tornado.web import stream_request_body

from ..workshops.push import MAX_BYTES, PushError, files_from_folder
from .api import AdminHandler

# The largest push body the proxy and the web app take (a push's files, base64 or form-encoded).
PUSH_BODY = MAX_BYTES * 4 // 3 + 2**20


class WorkshopsHandler(AdminHandler):
    def get(self) -> None:
        workshops = self.workshops
        shares = workshops.cap.shares() if workshops.cap.total else {}
        rows = []
        for ws in workshops.all():
            rows.append({**ws.status(), "share": shares.get(ws.pool)})
        self.finish({"named": workshops.named, "total_containers": workshops.cap.total or None, "workshops": rows})


@stream_request_body
class PushHandler(AdminHandler):
    """Streamed: the admin checks (prepare) run before a byte of the body is read, so only an operator's
    push is ever held in memory, up to PUSH_BODY."""

    def prepare(self) -> None:
        super().prepare()
        self.chunks: list[bytes] = []
        self.size = 0
        if not self._finished:
            self.request.connection.set_max_body_size(PUSH_BODY)

    def data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= PUSH_BODY:
            self.chunks.append(chunk)

    def workshop_named(self, name: str):
        ws = self.workshops.get(name) if self.workshops.named else None
        if ws is None:
            self.set_status(404)
            self.finish({"error": f"no workshop {name!r}", "workshops": sorted(self.workshops.active)})
        return ws

    def get(self, name: str) -> None:
        ws = self.workshop_named(name)
        if ws is not None:
            self.finish({"push": ws.updates.status(), "push_folder": ws.push_folder})

    def post(self, name: str) -> None:
        ws = self.workshop_named(name)
        if ws is None:
            return
        try:
            files, source = self.files(ws)
            job = ws.updates.push(ws.pool, files, source)
        except (PushError, OSError) as exc:
            self.set_status(400)
            self.finish({"error": str(exc)})
            return
        self.nb.log.info("workshop %s: push %s of %s started by the admin API (%s)", ws.name, job.id,
                         ", ".join(job.paths[:5]) + (" …" if len(job.paths) > 5 else ""), source)
        self.set_status(202)
        self.finish({"push": job.summary()})

    def files(self, ws) -> tuple[dict[str, bytes], str]:
        """The push's files from the request: uploaded, in JSON, or the workshop's push_folder."""
        self.request.body = b"".join(self.chunks)
        self.chunks = []
        parse_body_arguments(self.request.headers.get("Content-Type", ""), self.request.body,
                             self.request.body_arguments, self.request.files, self.request.headers)
        uploads = [f for parts in self.request.files.values() for f in parts]
        if uploads:
            return {f["filename"].lstrip("/"): f["body"] for f in uploads}, "upload"
        data = self.json_object()
        if data is None:
            raise PushError("send files as multipart form data, or JSON {\"files\": {path: text}} or "
                            "{\"from_folder\": true}")
        if data.get("from_folder") or self.get_argument("from", "") == "folder":
            if not ws.push_folder:
                raise PushError(f"workshop {ws.name} has no push_folder in its settings")
            return files_from_folder(ws.push_folder), ws.push_folder
        given = data.get("files")
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise PushError("\"files\" must be an object of path -> content (text, or base64 with "
                            "\"encoding\": \"base64\")")
        if data.get("encoding") == "base64":
            try:
                return {str(k): base64.b64decode(v, validate=True) for k, v in given.items()}, "upload"
            except (binascii.Error, ValueError):
                raise PushError("a file's content is not valid base64") from None
        return {str(k): v.encode() for k, v in given.items()}, "upload"


class ContentHandler(AdminHandler):
    """GET /api/admin/content: every git source (URL without credentials, ref, commit, when, size, error) and
    every repository links brought. POST /api/admin/content/pull (all workshops) or
    /api/admin/workshops/<name>/pull: fetch now; a new commit is poured into running containers (in the
    background: ``pours`` in the GET shows the last one of each workshop)."""

    def get(self, name: str | None = None) -> None:
        self.finish(self.nb.material.status())

    async def post(self, name: str | None = None) -> None:
        material = self.nb.material
        if not self.request.path.rstrip("/").endswith("/pull"):
            self.set_status(405)
            self.finish({"error": "POST /api/admin/content/pull fetches every source now"})
            return
        name = name or None
        if name is not None and (not self.workshops.named or self.workshops.get(name) is None):
            self.set_status(404)
            self.finish({"error": f"no workshop {name!r}", "workshops": sorted(self.workshops.active)})
            return
        if name is not None and not material.sources.get(name):
            self.set_status(400)
            self.finish({"error": f"workshop {name} has no 'content' in its settings"})
            return
        results = await material.pull(name)
        self.nb.log.info("content pull%s by the admin API: %s", f" of workshop {name}" if name else "",
                         "; ".join(f"{r['repo']} {(r['commit'] or 'none')[:10]}" + (f" ({r['error']})" if r["error"]
                                                                                      else "") for r in results)
                         or "no sources")
        self.finish({"sources": results})


def workshops_handlers() -> list:
    return [
        (r"/api/admin/workshops/?", WorkshopsHandler),
        (r"/api/admin/workshops/([a-z0-9-]+)/push", PushHandler),
        (r"/api/admin/workshops/([a-z0-9-]+)/pull", ContentHandler),
        (r"/api/admin/content/?()", ContentHandler),
        (r"/api/admin/content/pull()", ContentHandler),
    ]
