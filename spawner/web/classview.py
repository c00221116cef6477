"""The class view's pages and API: the teaching team's side (``/class``, ``/api/class``) and the attendee's.

Who may look: a helper with the helper key (``WebApp.helper_key`` for every
workshop, a workshop's own for that one), or the operator (admin token, or the
status page's sign-in). The key is taken once from ``/class?key=…`` and
remembered in a signed, script-proof cookie bound to the key (a new key ends
every sign-in made with the old one); the address then drops it. A helper
sees the view and nothing else: the cookie is no admin credential. In path
mode the helper's cookie, like the operator's, is never honoured beside a
notebook of the same browser: that notebook's pages share the origin and
would read the whole class with it.

The attendee's side (``/api/me``, ``/api/hand``, and the ``/hand`` page for
images without nbpool's notebook extension) acts only for the session cookie's
own container, from nbpool's own origin (or, in subdomain mode, the
container's own).
"""

from __future__ import annotations

import hmac
import json

from ..classroom.room import HAND_CHARS, NAME_CHARS, ClassView
from ..pool.slot import ASSIGNED
from ..secret import HELPER
from .access import GRANT_COOKIE
from .api import JSONHandler, admin_refusal
from .events import stream_changes
from .handler import HELPER_COOKIE, PageHandler
from .origins import Origins

HELPER_HOURS = 24
STREAM_GAP = 0.25  # seconds between two snapshots on a stream, at least (a busy class changes many times a second)


class ClassHandler(PageHandler):
    """What the class view's handlers share: who is asking, and which workshops they may see."""

    @property
    def room(self) -> ClassView:
        return self.settings["classroom"]

    def _key_digest(self, key: str) -> str:
        return self.nb.secret.derive("helper-cookie", key)[:16]

    def scope_of_key(self, given: str) -> set[str] | bool | None:
        """Workshops a key shows (None: all), or False when it is no key of ours."""
        if not given or not given.isascii():
            return False
        if hmac.compare_digest(given.encode(), self.nb.helper_key_for(None).encode()):
            return None
        for ws in self.workshops.all():
            if ws.name and hmac.compare_digest(given.encode(), ws.helper_key.encode()):
                return {ws.name}
        return False

    def operator(self, given: str = "") -> bool:
        """The admin token given (or the status page's sign-in), where admin endpoints answer."""
        if admin_refusal(self) is not None:
            return False
        if given:
            return given.isascii() and hmac.compare_digest(given.encode(), self.nb.admin_token.encode())
        return self.admin_cookie_ok()

    def scope(self) -> set[str] | bool | None:
        """Which workshops this request may see (None: all), or False: none (not the teaching team)."""
        header = self.request.headers.get("Authorization", "")
        given = header.removeprefix("token ").removeprefix("Bearer ").strip()
        if given:
            scope = self.scope_of_key(given)
            return None if scope is False and self.operator(given) else scope
        if self.single_origin_holdings() or self.holds_grant():  # path mode: a notebook shares the origin
            return False
        value = self.nb.secret.verify(self.get_cookie(HELPER_COOKIE), HELPER) or ""
        name, _, digest = value.rpartition(":")
        if name and digest:
            key = self.nb.helper_key_for(None) if name == "*" else (
                ws.helper_key if (ws := self.workshops.get(name)) is not None and name else "")
            if key and hmac.compare_digest(digest, self._key_digest(key)):
                return None if name == "*" else {name}
        return None if self.operator() else False

    def chosen(self, scope: set[str] | None, workshop: str | None) -> set[str] | bool | None:
        """``scope`` narrowed to ``workshop`` (a page's, or ?workshop=); False when it may not see it."""
        if workshop is None:
            return scope
        if self.workshops.get(workshop) is None or (scope is not None and workshop not in scope):
            return False
        return {workshop}

    def requested_scope(self) -> set[str] | bool | None:
        """scope(), narrowed to ?workshop=; False (answered 403) when this request may see none of it."""
        scope = self.chosen(self.scope(), self.get_argument("workshop", None))
        if scope is False:
            self.forbidden()
        return scope

    def seat_in_scope(self, cid: str, *, young: bool = False):
        """(the attendee's seat, who asks: 'operator' or 'helper key') when the caller is the teaching team for
        it; else None, answered (403, or 404). An action with the cookie must come from nbpool's own page.
        ``young``: a session the class view has not looked at yet (younger than its last tick) counts too."""
        scope = self.scope()
        header = self.request.headers.get("Authorization", "")
        if scope is False:
            self.forbidden()
            return None
        if not header and not self.same_origin():
            return None
        seat = self.room.seats.get(cid)
        if seat is None and young:
            ws = self.workshops.of_cid(cid)
            slot = ws.pool.slots.get(cid) if ws is not None else None
            if slot is not None and slot.state == ASSIGNED and slot.nonce:
                seat = self.room.seat(slot, ws.pool)
        if seat is None or seat.slot is None or (scope is not None and seat.workshop not in scope):
            self.set_status(404)
            self.finish({"error": "no such attendee session"})
            return None
        given = header.partition(" ")[2].strip()
        return seat, "operator" if given and self.operator(given) else "helper key"

    def forbidden(self) -> None:
        self.error_answer(403, "For the teaching team",
                          "This page is for the workshop's teaching team. Open the helper link you were given.",
                          "the class view needs the helper key: 'Authorization: token <helper key>'")


class ClassPageHandler(ClassHandler):
    """GET /class and /w/<name>/class: the live view (signing a helper in from ?key=…, once)."""

    def get(self, name: str | None = None) -> None:
        workshop = name if name is not None else None
        if name is not None and self.workshops.get(name) is None:
            self.no_workshop()
            return
        key = self.get_argument("key", "")
        if key:
            scope = self.scope_of_key(key)
            if scope is False or self.chosen(scope, workshop) is False:
                self.forbidden()
                return
            label = "*" if scope is None else next(iter(scope))
            if self.holds_grant():  # path mode: one credential at a time (the helper link's notebook goes)
                self.clear_cookie(GRANT_COOKIE, path="/")
            self.set_cookie(HELPER_COOKIE, self.nb.secret.sign(f"{label}:{self._key_digest(key)}", HELPER), path="/",
                            httponly=True, samesite="Strict", secure=self.request.protocol == "https",
                            expires_days=HELPER_HOURS / 24)
            self.set_header("Referrer-Policy", "no-referrer")
            self.redirect(self.request.path)  # the key leaves the address bar (and history) at once
            return
        scope = self.chosen(self.scope(), workshop)
        if scope is False:
            self.forbidden()
            return
        query = f"?workshop={workshop}" if workshop is not None else ""
        ws = self.workshops.get(workshop) if workshop is not None else None
        title = f"Class — {ws.display_name}" if ws is not None else f"Class — {self.nb.workshop_name}"
        self.finish(self.render_page("class.html", title=title, events_url=f"/api/class/events{query}",
                                     api_url=f"/api/class{query}", hand_url="/api/class/hand/",
                                     hand_page=f"{self.own_origin().decode('latin-1')}/hand",
                                     help_base="/api/class/", path_mode=not self.proxy.subdomain_host,
                                     follow_page=f"{ws.prefix if ws is not None else ''}/follow"))


class ClassAPIHandler(ClassHandler, JSONHandler):
    """GET /api/class: every attendee session the caller may see, as JSON."""

    def get(self) -> None:
        scope = self.requested_scope()
        if scope is not False:
            self.finish(self.room.snapshot(scope))


class ClassEventsHandler(ClassHandler, JSONHandler):
    """GET /api/class/events: the same snapshot as a stream of server-sent events, on every change."""

    async def get(self) -> None:
        scope = self.requested_scope()
        if scope is False:
            return
        room = self.room
        await stream_changes(self, lambda: room.version,
                             lambda: json.dumps(room.snapshot(scope), separators=(",", ":")), room.wait_change,
                             STREAM_GAP)


class LowerHandHandler(ClassHandler, JSONHandler):
    """DELETE /api/class/hand/<id>: a helper lowers an attendee's hand (they came over)."""

    def delete(self, cid: str) -> None:
        if self.seat_in_scope(cid) is None:
            return
        self.room.lower_hand(cid, "helper")
        self.finish({"id": cid, "hand": None})


class AttendeeHandler(PageHandler):
    """What the attendee's own page may ask of their seat: their session cookie's container only."""

    @property
    def room(self) -> ClassView:
        return self.settings["classroom"]

    def own_slot(self):
        """The session this browser holds here: on a container's own host, that container's; on the main host,
        the one named by ?id= among this browser's, else its latest."""
        origins = Origins(self)
        host_cid = origins.on_container_host()
        slots = self.live_slots()
        if host_cid:
            slots = [s for s in slots if s.cid == host_cid]
        wanted = self.get_argument("id", None)
        if wanted is not None:
            slots = [s for s in slots if s.cid == wanted]
        return max(slots, key=lambda s: s.assigned_at or 0, default=None)

    def acting_slot(self, changes: bool = True):
        """own_slot(), or None with the request answered: 403 from another site (``changes``: a POST or
        DELETE, which may act only from the page's own origin) or without a session here."""
        if changes and not self.same_origin():
            return None
        slot = self.own_slot()
        if slot is None:
            self.error_answer(403, "No notebook here", "This browser has no notebook of this workshop open. Open "
                              "the workshop's link first.", "no notebook session in this browser")
        return slot

    def bad(self, message: str) -> None:
        self.set_status(400)
        self.finish({"error": message})


class MeHandler(AttendeeHandler, JSONHandler):
    """GET /api/me: the attendee's name, hand, "done", who helps them now, and where the instructor's notebook is;
    in a helper's browser, whose notebook they are in and how. POST {"name": …, "done": …} changes them."""

    def get(self) -> None:
        if self.own_slot() is None:
            helping = self.helper_view()
            if helping is not None:
                self.finish(helping)
                return
        slot = self.acting_slot(changes=False)
        if slot is not None:
            self.finish(self.me(slot))

    def me(self, slot) -> dict:
        ws = self.workshops.of_cid(slot.cid)
        return {**self.room.me(self.room.seat(slot)), "follow_url": f"{ws.prefix if ws else ''}/api/follow"}

    def helper_view(self) -> dict | None:
        """What /api/me says in a helper's browser (no notebook of its own here, a grant's cookie)."""
        grant = self.room.helpers.holder(self.get_cookie(GRANT_COOKIE))
        host = Origins(self).on_container_host()
        if grant is None or (host and host != grant.cid):
            return None
        seat = self.room.seats.get(grant.cid)
        return {"viewer": "helper", "mode": grant.mode, "name": grant.name, "id": grant.cid,
                "attendee": seat.display_name if seat is not None else "", "expires": grant.expires}

    def post(self) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        data = self.json_object()
        if data is None:
            self.bad('the body must be a JSON object: {"name": "…"} or {"done": true}')
            return
        name, done = data.get("name"), data.get("done")
        if name is not None and (not isinstance(name, str) or len(name) > NAME_CHARS or not name.isprintable()):
            self.bad(f"a name is at most {NAME_CHARS} printable characters")
            return
        if done is not None and not isinstance(done, bool):
            self.bad('"done" is true or false')
            return
        if name is not None:
            self.room.set_name(slot, name)
        if done is not None:
            self.room.set_done(slot, done)
        self.finish(self.me(slot))


class HandHandler(AttendeeHandler, JSONHandler):
    """POST /api/hand {"text": …} raises the attendee's hand; DELETE /api/hand lowers it."""

    def post(self) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        data = self.json_object()
        text = data.get("text", "") if data is not None else None
        if not isinstance(text, str) or len(text) > HAND_CHARS:
            self.bad(f'the body is {{"text": "…"}}, at most {HAND_CHARS} characters (or empty)')
            return
        self.finish(self.room.me(self.room.raise_hand(slot, text if text.isprintable() else "")))

    def delete(self) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        self.room.lower_hand(slot.cid, "attendee")
        self.finish(self.room.me(self.room.seat(slot)))


class HandPageHandler(AttendeeHandler):
    """GET /hand: raise a hand, name oneself, say "done", from an nbpool page (any workshop image)."""

    def get(self) -> None:
        slot = self.acting_slot(changes=False)
        if slot is None:
            return
        self.finish(self.render_page("hand.html", me=self.room.me(self.room.seat(slot)), cid=slot.cid,
                                     name_chars=NAME_CHARS, hand_chars=HAND_CHARS))

    def post(self) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        action = self.get_body_argument("action", "")
        if action == "raise":
            self.room.raise_hand(slot, self.get_body_argument("text", "")[:HAND_CHARS])
        elif action == "lower":
            self.room.lower_hand(slot.cid, "attendee")
        elif action == "name":
            name = self.get_body_argument("name", "")
            self.room.set_name(slot, name[:NAME_CHARS] if name.isprintable() else "")
        elif action in ("done", "not-done"):
            self.room.set_done(slot, action == "done")
        self.redirect(f"/hand?id={slot.cid}")


def class_handlers() -> list:
    return [
        (r"/class/?", ClassPageHandler),
        (r"/w/([^/]+)/class/?", ClassPageHandler),
        (r"/api/class/?", ClassAPIHandler),
        (r"/api/class/events", ClassEventsHandler),
        (r"/api/class/hand/([0-9a-f]+)", LowerHandHandler),
        (r"/api/me", MeHandler),
        (r"/api/hand", HandHandler),
        (r"/hand", HandPageHandler),
    ]
