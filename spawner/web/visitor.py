"""The visitor's path: landing page, /spawn, the waiting line, claims, ended sessions.

(robots.txt is static/robots.txt: Tornado serves it from the static folder.)
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from urllib.parse import quote

from ..content import Delivery
from ..keep import Kept
from ..pool.errors import PoolError
from ..pool.slot import ASSIGNED, split_user_path
from ..secret import CLAIM, INSTRUCTOR, TICKET, WORKSHOP_KEY
from .admission import Refused
from .app import Arrival, WaitingVisitor
from .handler import TICKET_COOKIE, PageHandler, instructor_cookie, key_cookie
from .origins import Origins, entry_url
from .pages import NOT_ANSWERING, NOT_ANSWERING_RETRY, fresh_url


class LandingHandler(PageHandler):
    """The public link. It takes no container itself: its script (or button) goes on to /spawn."""

    def get(self) -> None:
        if self.to_main_host():
            return
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
        if self.to_main_host():
            return
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

    async def spawn(self, path: str, confirmed: bool, restore: Kept | None = None,
                    deliver: Delivery | None = None) -> None:
        """A container for this visitor (``restore``: with that kept work copied in first; ``deliver``: with a
        link's repository merged in, into their own container too when they come back with the link)."""
        nb, pool, ws = self.nb, self.pool, self.workshop
        if ws is None:  # kept work of a workshop removed since: it can be downloaded, not continued
            self.page("error.html", status=410, reason="This workshop has ended",
                      message="The workshop this work came from is no longer offered here. Your kept work can "
                              "still be downloaded from its page.")
            return
        address = self.request.remote_ip
        given_key = self.get_argument("key", None)
        if self.get_argument("instructor", None) is not None:
            if not self.instructor_arrives(ws):
                return
            given_key = ws.key or given_key  # (the instructor's key opens a keyed workshop too)
        try:
            path = nb.admission.spawn_path(path, ws.landing_path)
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        current = self.current_slot()
        fresh = self.get_argument("new", None) or restore is not None
        others = [s for s in self.single_origin_holdings() if s is not current]
        if others and not (current is not None and not fresh):
            # Path mode: this browser holds a notebook of another workshop. One origin, one notebook's
            # credential: that one ends first, and only when the visitor says so (a POST from this page).
            if not confirmed:
                held = self.workshops.of_cid(others[0].cid)
                self.page("confirm.html", back_url=entry_url(self, others[0], ""), action=self.request.uri,
                          elsewhere=held.display_name if held is not None else "another workshop")
                return
            self.let_go(others, "You opened another workshop's notebook in this browser.")
        if current is None and not fresh:
            waiting = self.waiting_work()
            if waiting is not None:  # their session ended, its work is kept: offer it before anything else
                self.redirect(f"/kept/{waiting.cid}?path={quote(path, safe='')}")
                return
        if current is not None:
            if not fresh:
                # A returning visitor whose container is alive goes back to it.
                if self.is_instructor(ws.name):
                    await pool.mark_instructor(current)
                if deliver is not None and not await self.deliver_into(current, deliver, fresh=False):
                    return
                self.redirect(entry_url(self, current, path))
                return
            if not confirmed:
                self.page("confirm.html", back_url=entry_url(self, current, path), action=self.request.uri)
                return
            pool.release(current, "its visitor started a fresh notebook",  # (its work is kept)
                         visitor_reason="You started a fresh notebook in its place.", kind="fresh")
        elif not self.get_argument("new", None):
            key = nb.secret.verify(self.get_cookie(TICKET_COOKIE), TICKET)
            if key and key in nb.tickets:  # already in line (a reload): keep the place, take no other
                self.redirect(f"/spawn/wait/{key}")
                return
        try:
            nb.admission.admit(address, pool, key=given_key, key_cookie=self.get_cookie(key_cookie(ws.name)),
                               workshop_key=ws.key, marks=self.ban_marks())
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        if ws.key and given_key:  # remembered, so the visitor's later links need no key
            self.set_visitor_cookie(key_cookie(ws.name), nb.admission.key_mark(ws.key), WORKSHOP_KEY, days=2)
        try:
            slot = await pool.take_spare(owner=nb.admission.owner_of(address))
        except PoolError as error:
            self.refuse(error, self.request.uri)
            return
        if slot is not None:
            nb.log.info("handed out %s to %s", slot.cid, address)
            await self.arrive(slot, path, restore, deliver)
            return
        try:
            ticket = pool.enqueue(owner=nb.admission.owner_of(address))
        except PoolError as error:
            self.refuse(error, self.request.uri)
            return
        key = secrets.token_urlsafe(12)
        nb.tickets[key] = WaitingVisitor(ticket, path, restore, prefix=ws.prefix, deliver=deliver)
        self.set_visitor_cookie(TICKET_COOKIE, key, TICKET)
        self.redirect(f"/spawn/wait/{key}")


    def instructor_arrives(self, ws) -> bool:
        """?instructor=<key>: the session this browser gets (or has) becomes the instructor's, and the browser
        remembers it; False (answered 403) for a wrong key."""
        given = self.get_argument("instructor", "")
        if not (given.isascii() and hmac.compare_digest(given.encode(), ws.instructor_key.encode())):
            self.nb.log.info("a wrong instructor key for %s from %s", ws.name or "the workshop", self.request.remote_ip)
            self.page("error.html", status=403, reason="This instructor link does not work",
                      message="The instructor key in this link is not this workshop's. Attendees use the "
                              "workshop's own link.")
            return False
        self._instructor = ws.name
        self.set_visitor_cookie(instructor_cookie(ws.name), f"{ws.name}:{self.instructor_mark(ws.instructor_key)}",
                                INSTRUCTOR, days=2)
        return True


class WaitHandler(PageHandler):
    """The waiting page: shows the visitor's place in line, moves on by itself when their container is ready."""

    def waiting(self, key: str) -> WaitingVisitor | None:
        if not self.holds_ticket(key):
            return None  # someone else's ticket (or none): never hand its container to this visitor
        waiting = self.nb.tickets.get(key)
        if waiting is not None:
            waiting.last_seen = time.monotonic()
            self.pages_of(waiting.prefix)
        return waiting

    def holds_ticket(self, key: str) -> bool:
        return self.nb.secret.verify(self.get_cookie(TICKET_COOKIE), TICKET) == key

    def pages_of(self, prefix: str) -> None:
        """This request's pages are those of the workshop at ``prefix`` (title, links), though the line's URLs
        are the service's."""
        self._workshop = self.workshops.get(prefix.removeprefix("/w/")) if prefix else self.workshops.default

    def holds(self, key: str, arrival: Arrival) -> bool:
        """Whether this browser is the one that waited for ``arrival``: it holds the place's ticket (a request
        sent before the first answer cleared it), or already the session that answer gave it."""
        if self.holds_ticket(key):
            return True
        ws = self.workshops.of_cid(arrival.slot.cid)
        return ws is not None and self.current_slot(ws) is arrival.slot

    async def get(self, key: str) -> None:
        arrival = self.nb.arrivals.get(key)
        if arrival is not None:
            await self.follow(key, arrival)
            return
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
            arrival = self.nb.arrivals[key] = Arrival(slot, waiting.path, waiting.prefix)
            try:
                await self.arrive(slot, waiting.path, waiting.restore, waiting.deliver)
            finally:
                arrival.done.set()
            return
        self.page("waiting.html", position=waiting.ticket.position, key=key)

    async def follow(self, key: str, arrival: Arrival) -> None:
        """Another request for a place in line already served: into the same container, for the same browser
        only (anyone else who learnt the link finds it expired, as before it was served)."""
        self.pages_of(arrival.prefix)
        if not self.holds(key, arrival):
            self.page("expired.html", status=410, fresh_url="/spawn?new=1")
            return
        try:  # the first request may still be copying the visitor's kept work in
            await asyncio.wait_for(arrival.done.wait(), timeout=QueueHandler.LONG_POLL)
        except TimeoutError:
            self.page("waiting.html", position=0, key=key)  # its script asks again
            return
        slot = arrival.slot
        if slot.state != ASSIGNED or slot.route is None:  # the first request's arrival failed and said why
            self.page("expired.html", status=410, fresh_url=f"{arrival.prefix}/spawn/{arrival.path}?new=1")
            return
        self.set_session_cookie(slot)
        self.clear_cookie(TICKET_COOKIE, path="/")
        self.redirect(entry_url(self, slot, arrival.path))


class QueueHandler(WaitHandler):
    """JSON for the waiting page's script: {"position": n, "ready": false} or {"ready": true, "url": ...}.

    ``?wait=S`` (at most LONG_POLL seconds) holds the answer until the
    container is ready or S seconds pass: the visitor moves on the moment it
    is ready, with one request instead of many.
    """

    LONG_POLL = 25.0

    async def get(self, key: str) -> None:
        arrival = self.nb.arrivals.get(key)
        if arrival is not None and self.holds(key, arrival):  # served to another of this browser's requests
            self.finish({"ready": True, "url": f"/spawn/wait/{key}"})
            return
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
        if not self.to_main_host():  # (subdomain mode: its entry link needs the main host's cookies)
            self.claim(token, confirmed=False)

    def post(self, token: str) -> None:
        if self.same_origin():
            self.claim(token, confirmed=True)

    def claim(self, token: str, confirmed: bool) -> None:
        nb = self.nb
        key = nb.secret.verify(token, CLAIM)
        claim = nb.claims.get(key) if key else None
        ws = self.workshops.of_cid(claim.slot.cid) if claim is not None else None
        if claim is not None and claim.used:  # opened already: a reload of it (or a second click) goes back in
            if ws is not None and self.current_slot(ws) is claim.slot:
                self.redirect(entry_url(self, claim.slot, claim.path))
                return
            claim = None  # one use: anyone else finds it expired
        if claim is None or claim.slot.state != ASSIGNED or ws is None:
            self.page("expired.html", status=410, fresh_url=f"{self.prefix}/spawn?new=1")
            return
        try:
            nb.admission.check_ban(self.request.remote_ip, self.ban_marks())
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        current = self.current_slot(ws)
        replaced = [s for s in [current, *self.single_origin_holdings(current)]
                    if s is not None and s is not claim.slot]
        if replaced:
            if not confirmed:
                self.page("confirm.html", back_url=entry_url(self, replaced[0], ""), action=self.request.uri)
                return
            self.let_go(replaced, "You opened another notebook in its place.")
        claim.used = True  # (kept until claim_timeout, for the same browser's second request)
        self.set_session_cookie(claim.slot)
        self.redirect(entry_url(self, claim.slot, claim.path))


class EndedHandler(PageHandler):
    """/user/<id>/... that no container route claims: culled, removed or never existed.

    To the visitor whose cookie names the session (and to nobody else) it
    offers the session's kept work back, or says it is being saved.
    """

    def prepare(self) -> None:
        cid, path = split_user_path(self.request.path)
        if self.nb.starting:  # its container may be one the restart has not adopted yet: not ended, not yet
            self.set_status(503)
            self.set_header("Retry-After", NOT_ANSWERING_RETRY)
            self.set_header("Cache-Control", "no-store")
            if self.wants_json():
                self.finish({"error": NOT_ANSWERING})
            else:
                self.finish(self.render_page("unreachable.html"))
            return
        origins = Origins(self)
        if origins.sub:
            if origins.on_container_host():  # its route has gone: the ended page is nbpool's, on the main host
                self.redirect(origins.main + self.request.uri)
                return
            # Subdomain mode, the main host: a container's address as a path (an old link, a bookmark).
            # Its owner goes on to its own origin; anyone else learns nothing more than before.
            ws = self.workshops.of_cid(cid)
            slot = self.current_slot(ws) if ws is not None else None
            if slot is not None and slot.cid == cid and self.request.method in ("GET", "HEAD"):
                self.redirect(entry_url(self, slot, path))
                return
            live = ws.pool.slots.get(cid) if ws is not None else None
            if live is not None and live.state == ASSIGNED:
                self.set_status(403)
                self.finish(self.render_page("forbidden.html", fresh_url=fresh_url(path, self.prefix)))
                return
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

