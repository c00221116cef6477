"""The visitor's path: landing page, /spawn, the waiting line, claims, ended sessions.

(robots.txt is static/robots.txt: Tornado serves it from the static folder.)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from urllib.parse import quote

from tornado.web import RequestHandler

from proxy.http import MESSAGES, wants_json
from proxy.origin import OriginPolicy, own_origin
from proxy.server import Proxy

from ..keep import Kept, WorkKeeper
from ..keep.contents import ContentsError
from ..pool.errors import PoolError
from ..pool.pool import Pool
from ..pool.slot import ASSIGNED, Slot, split_user_path
from ..workshops import Workshop, Workshops
from .access import read_session, session_cookie, session_value
from .admission import KEY_COOKIE, Refused
from .app import WaitingVisitor, WebApp
from .pages import fresh_url

TICKET_COOKIE = "nbpool-ticket"
# The previous session's cookie value, kept when a new session begins, so its kept work stays reachable.
KEPT_COOKIE = "nbpool-kept"
_UNSET = object()


def kept_cookie(workshop: str) -> str:
    return f"{KEPT_COOKIE}-{workshop}" if workshop else KEPT_COOKIE


def key_cookie(workshop: str) -> str:
    return f"{KEY_COOKIE}-{workshop}" if workshop else KEY_COOKIE
UNBOUNDED_SESSION = 30 * 86400  # seconds a session cookie lasts when sessions have no maximum age


class PageHandler(RequestHandler):
    """Shared helpers: the WebApp, the pool, pages, cookies and the origin check."""

    @property
    def nb(self) -> WebApp:
        return self.settings["nb"]

    @property
    def workshops(self) -> Workshops:
        return self.settings["workshops"]

    @property
    def workshop(self) -> Workshop | None:
        """The workshop this request is for: from /w/<name>/…, or the container's (/user/<id>, /kept/<id>);
        elsewhere the one at '/' (None when the service has named workshops, or /w/<name> names none)."""
        if getattr(self, "_workshop", _UNSET) is _UNSET:
            parts = self.request.path.split("/")
            if len(parts) > 2 and parts[1] == "w":
                self._workshop = self.workshops.get(parts[2])
            elif len(parts) > 2 and parts[1] in ("user", "kept"):
                cid = parts[2].removesuffix(".zip")
                self._workshop = self.workshops.of_cid(cid) or self.workshops.default
            else:
                self._workshop = self.workshops.default
        return self._workshop

    @property
    def pool(self) -> Pool | None:
        ws = self.workshop
        return ws.pool if ws is not None else None

    @property
    def prefix(self) -> str:
        """Links of this request's workshop start with it ('/w/<name>', or '')."""
        ws = self.workshop
        return ws.prefix if ws is not None else ""

    def render_page(self, name: str, **values) -> str:
        """A template, titled with this request's workshop."""
        ws = self.workshop
        values.setdefault("workshop_name", ws.display_name if ws is not None else self.nb.workshop_name)
        return self.nb.render(name, **values)

    def no_workshop(self) -> None:
        """404 for /w/<name> naming no workshop (or a request needing one at '/' of a service with several)."""
        self.set_status(404)
        names = sorted(self.workshops.active)
        if self.wants_json():
            self.finish({"error": "No such workshop.", "workshops": names})
            return
        self.finish(self.render_page("workshops.html", status=404, workshops=self.workshops.active.values(),
                                     missing=True))

    @property
    def proxy(self) -> Proxy:
        return self.settings["proxy"]

    @property
    def keeper(self) -> WorkKeeper | None:
        keeper = self.nb.keeper
        return keeper if keeper is not None and keeper.enabled else None

    def record(self, event: str, /, **fields) -> None:
        self.settings["record"](event, **fields)


    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def page(self, name: str, status: int = 200, **values) -> None:
        self.set_status(status)
        self.finish(self.render_page(name, status=status, **values))

    def wants_json(self) -> bool:
        # The same rule as the proxy's own error pages, so a visitor gets one kind of answer.
        accept = self.request.headers.get("Accept", "").encode("latin-1", "replace")
        return wants_json([(b"accept", accept)], self.request.path.encode("utf-8", "replace"))

    def write_error(self, status_code: int, **kwargs) -> None:
        message = MESSAGES.get(status_code, "Something went wrong on our side; please try again.")
        if self.wants_json():
            self.finish({"status": status_code, "error": self._reason, "message": message})
        else:
            self.finish(self.render_page("error.html", status=status_code, reason=self._reason, message=message))

    def same_origin(self, policy: OriginPolicy | None = None) -> bool:
        """Whether this request may act for the visitor (or operator): from nbpool's own origin.

        For state-changing requests; answers 403 itself when not. Safe
        methods always pass. The proxy sets X-Forwarded-Proto/-Host (from a
        trusted balancer, or from what it saw), so this is the browser's view.
        """
        request = self.request
        host = request.headers.get("X-Forwarded-Host") or request.host or ""
        own = own_origin(request.protocol.encode("latin-1", "replace"), host.encode("latin-1", "replace"))
        headers = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                   for k, v in request.headers.get_all() if k.lower() in ("origin", "sec-fetch-site")]
        why = (policy or self.nb.origins).refusal(request.method.encode(), False, headers, own)
        if why is None:
            return True
        self.nb.log.info("refused %s %s from %s: %s", request.method, request.path, request.remote_ip, why)
        self.set_status(403)
        if self.wants_json():
            self.finish({"error": "This request came from another site."})
        else:
            self.finish(self.render_page("error.html", status=403, reason="Request from another site",
                                       message="This request came from another site, so nothing was done. "
                                               "Open this site's own page and try again from there."))
        return False

    def refuse_visitor(self, refusal: Refused) -> None:
        """A Refused from admission: its page (or JSON), status and Retry-After."""
        self.nb.log.info("spawn refused for %s: %s", self.request.remote_ip, refusal.log_message)
        self.record("refused", why=refusal.title.lower(), status=refusal.status)
        if refusal.retry_after:
            self.set_header("Retry-After", str(refusal.retry_after))
        self.set_status(refusal.status)
        if self.wants_json():
            self.finish({"error": refusal.message, "retry_after": refusal.retry_after})
        else:
            self.finish(self.render_page(refusal.page, status=refusal.status, reason=refusal.title,
                                       message=refusal.message))

    def set_visitor_cookie(self, name: str, value: str, *, days: float | None = None) -> None:
        """One of nbpool's cookies, signed: script-proof, sent on top-level visits from elsewhere only
        (Lax), Secure over HTTPS (as the browser reached us, through trusted forwarding)."""
        self.set_cookie(name, self.nb.secret.sign(value), path="/", httponly=True, samesite="Lax",
                        secure=self.request.protocol == "https", expires_days=days)

    def set_session_cookie(self, slot: Slot) -> None:
        """The visitor's key to ``slot``. While work is kept, it outlives the browser's session: as long as
        the session may last plus keep_hours (a laptop restarted after lunch still finds its work), and
        the session it replaces, whose work is kept or being saved, stays reachable through KEPT_COOKIE."""
        keeper = self.keeper
        name = session_cookie(slot.workshop)
        if keeper is None:
            self.set_visitor_cookie(name, session_value(slot))
            return
        ws = self.workshops.of_cid(slot.cid)
        longest = (ws.pool.cull_max_age if ws is not None else 0) or UNBOUNDED_SESSION
        days = (longest + keeper.keep_hours * 3600) / 86400
        previous = read_session(self.nb.secret, self.get_cookie(name))
        if previous and previous[0] != slot.cid and (previous[0] in keeper.sessions
                                                     or self.workshops.of_cid(previous[0]) is not None):
            self.set_visitor_cookie(kept_cookie(slot.workshop), ":".join(previous), days=days)
        self.set_visitor_cookie(name, session_value(slot), days=days)

    def kept(self, cid: str) -> Kept | None:
        """``cid``'s kept work, if this visitor's cookies say it is theirs."""
        keeper = self.keeper
        if keeper is None:
            return None
        held = keeper.sessions.get(cid)
        workshop = held.workshop if held is not None else ""
        return keeper.owned(cid, [self.get_cookie(session_cookie(workshop)), self.get_cookie(kept_cookie(workshop))])

    def ended_page(self, cid: str, path: str) -> str:
        """The "session ended" page of ``cid`` (``path``: where in it, as in a URL), for /user/<id>/… and
        /kept/<id>: to the session's owner (and nobody else) it offers the kept work, or says it is being
        saved, or that nothing of theirs was kept."""
        keeper = self.keeper
        ws = self.workshops.of_cid(cid)
        session = read_session(self.nb.secret, self.get_cookie(session_cookie(ws.name if ws is not None else "")))
        slot = ws.pool.slots.get(cid) if ws is not None else None
        kept = self.kept(cid)
        owner = kept is not None or (slot is not None and session == (cid, slot.nonce))
        # Its files are being copied right now (the route went first): the page waits for them.
        saving = keeper is not None and keeper.is_saving(cid) and owner
        if saving:
            kept = None
        reason = kept.reason if kept is not None and kept.reason else self.nb.ended.reason(cid)
        expires = keeper.expires_at(kept) if kept is not None else 0
        # Their own session, with nothing kept: say so plainly (a stranger is told nothing either way).
        nothing = keeper is not None and kept is None and not saving and session is not None and session[0] == cid
        return self.render_page("ended.html", fresh_url=fresh_url(path, ws.prefix if ws else ""), reason=reason,
                                kept=kept, saving=saving,
                                restore_path=path, expires=expires, nothing_kept=nothing)

    def waiting_work(self) -> Kept | None:
        """The visitor's last session's kept work, if it ended and was not brought back yet."""
        session = read_session(self.nb.secret, self.get_cookie(session_cookie(self.workshop.name)))
        kept = self.kept(session[0]) if session else None
        return kept if kept is not None and kept.state == "ended" and not kept.restored_into else None

    def current_slot(self, ws: Workshop | None = None) -> Slot | None:
        """The visitor's container in ``ws`` (this request's workshop), if their cookie names one still theirs."""
        ws = ws or self.workshop
        if ws is None:
            return None
        session = read_session(self.nb.secret, self.get_cookie(session_cookie(ws.name)))
        if session is None:
            return None
        slot = ws.pool.slots.get(session[0])
        if slot is not None and slot.state == ASSIGNED and slot.nonce == session[1] and slot.route is not None:
            return slot
        return None

    async def arrive(self, slot: Slot, path: str, restore: Kept | None) -> None:
        """Send the visitor into ``slot`` at ``path``, their kept work copied in first if they asked."""
        if restore is not None:
            try:
                count = await self.keeper.restore(restore, slot)
            except (ContentsError, OSError) as exc:
                self.nb.log.error("could not restore the kept work of %s into %s: %s", restore.cid, slot.cid, exc)
                self.workshops.of_cid(slot.cid).pool.release(slot, "restoring kept work into it failed")
                self.page("error.html", status=500, reason="Your work could not be copied",
                          message="Your kept work could not be copied into a fresh notebook; it is still kept. "
                                  "Please try again, or download it.")
                return
            self.nb.log.info("handed %s to %s with %d kept files", slot.cid, self.request.remote_ip, count)
        self.set_session_cookie(slot)
        self.redirect(slot.url(path))

    def refuse(self, error: PoolError, retry_page: str) -> None:
        """The 'full' (or unavailable) answer: 503 with Retry-After; the page retries by itself."""
        self.set_header("Retry-After", str(error.retry_after))
        self.record("refused", why=type(error).__name__, status=error.status)
        self.nb.log.info("spawn refused for %s: %s", self.request.remote_ip, error.log_message)
        if self.wants_json():
            self.set_status(error.status)
            self.finish({"error": error.visitor_message, "retry_after": error.retry_after})
            return
        self.page("full.html", status=error.status, message=error.visitor_message, retry_after=error.retry_after,
                  retry_url=retry_page)


class LandingHandler(PageHandler):
    """The public link. It takes no container itself: its script (or button) goes on to /spawn."""

    def get(self) -> None:
        if self.workshop is None:
            if self.request.path.startswith("/w/"):
                self.no_workshop()
            else:  # a service with several workshops: its front page lists them
                self.page("workshops.html", workshops=self.workshops.active.values(), missing=False)
            return
        target = f"{self.prefix}/spawn" + (f"?{self.request.query}" if self.request.query else "")
        self.page("landing.html", spawn_url=target)


class SpawnHandler(PageHandler):
    """Take a container and go to it (302), or join the waiting line.

    A visitor with a live session goes back to it. ``?new=1`` asks for a fresh
    one; it never silently ends a live session: a GET (which any site can
    start with a link) gets a page that asks first, and only a POST from
    nbpool's own page replaces the session.
    """

    async def get(self, path: str = "") -> None:
        if self.workshop is None:
            self.pick_workshop()
            return
        user_agent = self.request.headers.get("User-Agent", "").lower()
        if any(bot in user_agent for bot in self.nb.bot_user_agents):
            # Link previews and crawlers: show the page a person would see first, take nothing.
            self.page("landing.html", spawn_url=self.request.uri)
            return
        await self.spawn(path, confirmed=False)

    async def post(self, path: str = "") -> None:
        if self.workshop is None:
            self.pick_workshop()
        elif self.same_origin():
            await self.spawn(path, confirmed=True)

    def pick_workshop(self) -> None:
        """/spawn of a service with several workshops (which one?), or /w/<name> naming none."""
        if self.request.path.startswith("/w/"):
            self.no_workshop()
        else:
            self.redirect("/")

    async def spawn(self, path: str, confirmed: bool, restore: Kept | None = None) -> None:
        """A container for this visitor (``restore``: with that kept work copied in first)."""
        nb, pool, ws = self.nb, self.pool, self.workshop
        if ws is None:  # kept work of a workshop removed since: it can be downloaded, not continued
            self.page("error.html", status=410, reason="This workshop has ended",
                      message="The workshop this work came from is no longer offered here. Your kept work can "
                              "still be downloaded from its page.")
            return
        address = self.request.remote_ip
        given_key = self.get_argument("key", None)
        try:
            path = nb.admission.spawn_path(path, ws.landing_path)
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        current = self.current_slot()
        fresh = self.get_argument("new", None) or restore is not None
        if current is None and not fresh:
            waiting = self.waiting_work()
            if waiting is not None:  # their session ended, its work is kept: offer it before anything else
                self.redirect(f"/kept/{waiting.cid}?path={quote(path, safe='')}")
                return
        if current is not None:
            if not fresh:
                # A returning visitor whose container is alive goes back to it.
                self.redirect(current.url(path))
                return
            if not confirmed:
                self.page("confirm.html", back_url=current.url(path), action=self.request.uri)
                return
            pool.release(current, "its visitor started a fresh notebook",  # (its work is kept)
                         visitor_reason="You started a fresh notebook in its place.", kind="fresh")
        elif not self.get_argument("new", None):
            key = nb.secret.verify(self.get_cookie(TICKET_COOKIE))
            if key and key in nb.tickets:  # already in line (a reload): keep the place, take no other
                self.redirect(f"/spawn/wait/{key}")
                return
        try:
            nb.admission.admit(address, pool, key=given_key, key_cookie=self.get_cookie(key_cookie(ws.name)),
                               admitted_before=restore is not None, workshop_key=ws.key)
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        if ws.key and given_key:  # remembered, so the visitor's later links need no key
            self.set_visitor_cookie(key_cookie(ws.name), nb.admission.key_mark(ws.key), days=2)
        try:
            slot = await pool.take_spare(owner=address)
        except PoolError as error:
            self.refuse(error, self.request.uri)
            return
        if slot is not None:
            nb.log.info("handed out %s to %s", slot.cid, address)
            await self.arrive(slot, path, restore)
            return
        try:
            ticket = pool.enqueue(owner=address)
        except PoolError as error:
            self.refuse(error, self.request.uri)
            return
        key = secrets.token_urlsafe(12)
        nb.tickets[key] = WaitingVisitor(ticket, path, restore, prefix=ws.prefix)
        self.set_visitor_cookie(TICKET_COOKIE, key)
        self.redirect(f"/spawn/wait/{key}")


class WaitHandler(PageHandler):
    """The waiting page: shows the visitor's place in line, moves on by itself when their container is ready."""

    def waiting(self, key: str) -> WaitingVisitor | None:
        if self.nb.secret.verify(self.get_cookie(TICKET_COOKIE)) != key:
            return None  # someone else's ticket (or none): never hand its container to this visitor
        waiting = self.nb.tickets.get(key)
        if waiting is not None:
            waiting.last_seen = time.monotonic()
            # Its pages are its workshop's (title, links), though the line's URLs are the service's.
            self._workshop = self.workshops.get(waiting.prefix.removeprefix("/w/")) if waiting.prefix else \
                self.workshops.default
        return waiting

    async def get(self, key: str) -> None:
        waiting = self.waiting(key)
        if waiting is None:
            self.page("expired.html", status=410, fresh_url="/spawn?new=1")
            return
        future = waiting.ticket.future
        if future.done():
            del self.nb.tickets[key]
            self.clear_cookie(TICKET_COOKIE, path="/")
            if future.cancelled() or future.exception() is not None:
                error = future.exception() if not future.cancelled() else None
                if isinstance(error, PoolError):
                    self.refuse(error, f"{waiting.prefix}/spawn/{waiting.path}")
                else:
                    self.page("expired.html", status=410, fresh_url=f"{waiting.prefix}/spawn/{waiting.path}?new=1")
                return
            slot = future.result()
            self.nb.log.info("handed out %s to %s after waiting in line", slot.cid, self.request.remote_ip)
            await self.arrive(slot, waiting.path, waiting.restore)
            return
        self.page("waiting.html", position=waiting.ticket.position, key=key)


class QueueHandler(WaitHandler):
    """JSON for the waiting page's script: {"position": n, "ready": false} or {"ready": true, "url": ...}.

    ``?wait=S`` (at most LONG_POLL seconds) holds the answer until the
    container is ready or S seconds pass: the visitor moves on the moment it
    is ready, with one request instead of many.
    """

    LONG_POLL = 25.0

    async def get(self, key: str) -> None:
        waiting = self.waiting(key)
        if waiting is None:
            self.set_status(410)
            self.finish({"error": "This place in line has expired.", "ready": False})
            return
        try:
            wait = min(max(float(self.get_argument("wait", "0")), 0.0), self.LONG_POLL)
        except ValueError:
            wait = 0.0
        future = waiting.ticket.future
        if wait and not future.done():
            await asyncio.wait([future], timeout=wait)
            waiting.last_seen = time.monotonic()
        if waiting.ticket.future.done():
            self.finish({"ready": True, "url": f"/spawn/wait/{key}"})
        else:
            self.finish({"ready": False, "position": waiting.ticket.position})


class ClaimHandler(PageHandler):
    """Opens a container handed out by POST /api/spawn, once: sets the cookie and goes there.

    Any site can send a browser to a claim link, so one never silently
    replaces a live session: the visitor is asked first (a POST from this page).
    """

    def get(self, token: str) -> None:
        self.claim(token, confirmed=False)

    def post(self, token: str) -> None:
        if self.same_origin():
            self.claim(token, confirmed=True)

    def claim(self, token: str, confirmed: bool) -> None:
        nb = self.nb
        key = nb.secret.verify(token)
        claim = nb.claims.get(key) if key else None
        ws = self.workshops.of_cid(claim.slot.cid) if claim is not None else None
        if claim is None or claim.slot.state != ASSIGNED or ws is None:
            self.page("expired.html", status=410, fresh_url=f"{self.prefix}/spawn?new=1")
            return
        current = self.current_slot(ws)
        if current is not None and current is not claim.slot:
            if not confirmed:
                self.page("confirm.html", back_url=current.url(), action=self.request.uri)
                return
            ws.pool.release(current, "its visitor opened another notebook's link",
                            visitor_reason="You opened another notebook in its place.", kind="fresh")
        del nb.claims[key]
        claim.used = True
        self.set_session_cookie(claim.slot)
        self.redirect(claim.slot.url(claim.path))


class EndedHandler(PageHandler):
    """/user/<id>/... that no container route claims: culled, removed or never existed.

    To the visitor whose cookie names the session (and to nobody else) it
    offers the session's kept work back, or says it is being saved.
    """

    def prepare(self) -> None:
        cid, path = split_user_path(self.request.path)
        self.set_status(404)
        if self.wants_json():
            self.finish({"error": "This notebook session has ended.", "reason": self.nb.ended.reason(cid),
                         "fresh": fresh_url(path, self.prefix)})
            return
        self.finish(self.ended_page(cid, path))


class WorkshopSlashHandler(PageHandler):
    """/w/<name> -> /w/<name>/ (the workshop's landing page)."""

    def get(self) -> None:
        self.redirect(self.request.path + "/" + (f"?{self.request.query}" if self.request.query else ""))


def visitor_handlers() -> list:
    return [
        (r"/", LandingHandler),
        (r"/w/[^/]+", WorkshopSlashHandler),
        (r"/w/[^/]+/", LandingHandler),
        (r"/spawn/wait/([A-Za-z0-9_-]+)", WaitHandler),
        (r"/spawn/claim/([^/]+)", ClaimHandler),
        (r"(?:/w/[^/]+)?/spawn/?", SpawnHandler),
        (r"(?:/w/[^/]+)?/spawn/(.*)", SpawnHandler),
        (r"/api/queue/([A-Za-z0-9_-]+)", QueueHandler),
        (r"/user/.*", EndedHandler),
    ]

