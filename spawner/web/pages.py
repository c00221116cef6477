"""nbpool's own pages, from templates: for the web app's handlers, and for the proxy itself.

The proxy answers two pages without the web app: the 403 for someone else's
container, and the "session ended" page when a container's server has gone.
Both are plain ``proxy.http.Response`` objects built here, so the route's
callbacks stay cheap and Tornado stays out of the proxy's path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from tornado import template

from proxy.http import Response
from proxy.routes import RequestHead

from .. import __version__
from ..pool.ended import EndedSessions
from ..pool.slot import ASSIGNED, Slot, split_user_path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NOT_ANSWERING = "The notebook server is not answering right now; retry shortly."
NOT_ANSWERING_RETRY = "3"  # seconds: the unreachable page refreshes itself as often
PATH_SAFE = "/;:@&=+$,~!*'()"  # characters a notebook path keeps unencoded in nbpool's links


def fresh_url(path: str, prefix: str = "") -> str:
    """The link to a fresh notebook at ``path`` (as it came in a URL: already percent-encoded), in the
    workshop whose links start with ``prefix``."""
    return f"{prefix}/spawn/{quote(unquote(path), safe=PATH_SAFE)}?new=1" if path else f"{prefix}/spawn?new=1"


def slot_prefix(slot) -> str:
    return f"/w/{slot.workshop}" if getattr(slot, "workshop", "") else ""


def kept_time(seconds: float) -> str:
    """A wall-clock time as ISO 8601 UTC (the page's script shows it in the visitor's own time)."""
    return datetime.fromtimestamp(seconds or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kept_size(size: int) -> str:
    """'12.3 KB', '4.0 MB': a file's size as people read it."""
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class Pages:
    """Renders the templates with the workshop's name; builds the proxy's 403 and ended pages."""

    def __init__(self, workshop_name: Callable[[], str], ended: EndedSessions,
                 keeping: Callable[[], bool] = lambda: False,
                 display_name: Callable[[str], str | None] = lambda workshop: None):
        self.loader = template.Loader(str(TEMPLATES), autoescape="xhtml_escape")
        self.workshop_name = workshop_name  # read at each render: a reload changes it at once
        # A named workshop's display name (the proxy's own pages for its containers carry it).
        self.display_name = display_name
        self.ended = ended
        self.keeping = keeping  # whether attendees' work is kept (the pages say what happens to it)

    def render(self, name: str, **values) -> str:
        values.setdefault("workshop_name", self.workshop_name())
        values.setdefault("version", __version__)
        values.setdefault("keeping", self.keeping())
        for absent in ("kept", "saving", "restore_path", "expires", "nothing_kept", "elsewhere", "forgets"):
            values.setdefault(absent, None)
        values.setdefault("kept_time", kept_time)
        values.setdefault("kept_size", kept_size)
        return self.loader.load(name).generate(**values).decode()

    def _title(self, slot: Slot) -> dict:
        """The page's title for ``slot``'s workshop ({} : the service's own)."""
        name = self.display_name(slot.workshop) if slot.workshop else None
        return {"workshop_name": name} if name else {}

    def denied_page(self, head: RequestHead, slot: Slot) -> Response:
        """The 403 a request to someone else's container gets (no cookie, or another visitor's)."""
        _, path = split_user_path(head.path.decode("latin-1"))
        if head.wants_json():
            return Response(403, '{"error": "This notebook server belongs to another visitor."}',
                            content_type="application/json")
        return Response(403, self.render("forbidden.html", fresh_url=fresh_url(path, slot_prefix(slot)),
                                         **self._title(slot)),
                        headers=[("Cache-Control", "no-store")])

    def ended_page(self, status: int, head: RequestHead) -> Response | None:
        """A container route whose server does not answer (502/503/504).

        While the pool still counts the container as its visitor's (it may be
        a moment before the engine says it died), the page says "not answering"
        and tries again by itself; once the pool has let it go, the route is
        gone and the web app's ended page tells why.
        """
        if status not in (502, 503, 504):
            return None
        cid, path = split_user_path(head.path.decode("latin-1"))
        slot = head.route.data if head.route is not None else None
        if isinstance(slot, Slot) and slot.state == ASSIGNED:
            if head.wants_json():
                return Response(503, json.dumps({"error": NOT_ANSWERING}), content_type="application/json",
                                headers=[("Retry-After", NOT_ANSWERING_RETRY)])
            return Response(503, self.render("unreachable.html", **self._title(slot)),
                            headers=[("Cache-Control", "no-store"), ("Retry-After", NOT_ANSWERING_RETRY)])
        if head.wants_json():
            return Response(status, '{"error": "This notebook session has ended."}', content_type="application/json")
        prefix = slot_prefix(slot) if isinstance(slot, Slot) else ""
        page = self.render("ended.html", fresh_url=fresh_url(path, prefix), reason=self.ended.reason(cid),
                           **(self._title(slot) if isinstance(slot, Slot) else {}))
        return Response(status, page,
                        headers=[("Cache-Control", "no-store"), ("Retry-After", "5")])
