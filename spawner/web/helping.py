"""Helping inside an attendee's notebook: the grant's API for the teaching team and the attendee, and its link.

- ``POST /api/class/<id>/watch`` and ``…/help`` (the teaching team: helper key,
  admin token, or the class view's sign-in) and ``POST /api/me/share`` (the
  attendee) make a grant (``classroom.helpers``) and answer its one-use link.
- ``GET /help/<token>``, the link, sets the helper's cookie for that one
  container and opens the attendee's notebook. In path mode every notebook
  shares nbpool's origin, so the browser that opens it gives up, first, every
  other credential of nbpool's it holds (notebook sessions, the class view's
  and the operator's sign-in, an earlier grant): the attendee's pages, which
  run in the helper's browser, then find nothing else there to act with. In
  subdomain mode the link is on the attendee's own origin and the cookie lives
  there only.
- ``DELETE /api/class/<id>/helpers`` (the teaching team) and
  ``DELETE /api/me/helpers[/<grant>]`` (the attendee) end access at once.
"""

from __future__ import annotations

from ..classroom.helpers import HELP, MODES, HelperAccess, clean_name
from .access import GRANT_COOKIE, session_cookie
from .api import JSONHandler
from .classview import AttendeeHandler, ClassHandler
from .handler import ADMIN_COOKIE, HELPER_COOKIE, PageHandler
from .origins import Origins


def link_for(handler, helpers: HelperAccess, grant) -> str:
    """The grant's one-use link: on the attendee's own origin in subdomain mode, else nbpool's."""
    return f"{Origins(handler).container(grant.cid)}/help/{helpers.link_token(grant)}"


def made(handler, helpers: HelperAccess, grant) -> dict:
    return {"url": link_for(handler, helpers, grant), "expires": grant.expires, "id": grant.id, "mode": grant.mode}


class GrantHandler(ClassHandler, JSONHandler):
    """POST /api/class/<id>/(watch|help) {"name": the helper's}: a link into that attendee's notebook."""

    def post(self, cid: str, mode: str) -> None:
        found = self.seat_in_scope(cid, young=True)
        if found is None:
            return
        seat, by = found
        data = self.json_object()
        if data is None:
            self.set_status(400)
            self.finish({"error": 'the body is a JSON object: {"name": "<your name>"} (or empty)'})
            return
        room = self.room
        grant = room.helpers.grant(seat.slot, mode, clean_name(data.get("name"), "Helper"), by, seat.record)
        if grant is None:
            self.set_status(429)
            self.finish({"error": "this attendee has the most helper links at once already; end one first"})
            return
        self.finish(made(self, room.helpers, grant))


class EndGrantsHandler(GrantHandler):
    """DELETE /api/class/<id>/helpers: every helper's access to that attendee ends now."""

    def delete(self, cid: str) -> None:
        if self.seat_in_scope(cid, young=True) is None:
            return
        ended = self.room.helpers.end(cid, None, "ended by the teaching team")
        self.finish({"ended": len(ended)})


class MyHelpersHandler(AttendeeHandler, JSONHandler):
    """DELETE /api/me/helpers[/<grant>]: the attendee ends a helper's access (or all), at once."""

    def delete(self, gid: str | None = None) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        self.room.helpers.end(slot.cid, gid, "ended by the attendee")
        self.finish(self.room.me(self.room.seat(slot)))


class ShareHandler(AttendeeHandler, JSONHandler):
    """POST /api/me/share {"mode": "help"|"watch", "name": optional}: the attendee's link for a helper."""

    def post(self) -> None:
        slot = self.acting_slot()
        if slot is None:
            return
        data = self.json_object()
        mode = data.get("mode", HELP) if data is not None else None
        if mode not in MODES:
            self.bad('the body is {"mode": "help"} or {"mode": "watch"}')
            return
        room = self.room
        grant = room.helpers.grant(slot, mode, clean_name(data.get("name"), "Helper"), "attendee",
                                   room.seat(slot).record)
        if grant is None:
            self.set_status(429)
            self.finish({"error": "you have the most helper links at once already; end one first"})
            return
        self.finish(made(self, room.helpers, grant))


class RenewHandler(AttendeeHandler, JSONHandler):
    """POST /api/me/renew: a helper keeps their access another ClassView.help_minutes (from their own page)."""

    def post(self) -> None:
        if not self.same_origin():
            return
        room = self.room
        grant = room.helpers.holder(self.get_cookie(GRANT_COOKIE))
        host = Origins(self).on_container_host()
        if grant is None or (host and host != grant.cid):
            self.error_answer(403, "No helper access here", "This browser helps in no notebook here.",
                              "no helper access in this browser")
            return
        room.helpers.renew(grant.cid, grant.id)
        self.finish({"id": grant.id, "expires": grant.expires, "mode": grant.mode})


class HelpLinkHandler(PageHandler):
    """GET /help/<token>: a helper's one-use link; their browser gets the grant's cookie and the notebook."""

    def get(self, token: str) -> None:
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        room = self.settings["classroom"]
        helpers: HelperAccess = room.helpers
        origins = Origins(self)
        grant, why = helpers.open_link(token) if not origins.sub or origins.on_container_host() else (None, "")
        if grant is not None and origins.sub and origins.on_container_host() != grant.cid:
            helpers.end(grant.cid, grant.id, "link opened at another address")
            grant, why = None, "This helper link belongs to another address."
        if grant is None:
            self.page("error.html", status=403, reason="This helper link does not work",
                      message=why or "Open the helper link you were given.")
            return
        if not origins.sub:
            # One origin holds one notebook's credential: this browser's others go (see the module's doc).
            for name in self.own_cookies():
                if name.startswith(session_cookie("")) or name in (HELPER_COOKIE, ADMIN_COOKIE):
                    self.clear_cookie(name, path="/")
        # A browser-session cookie: the grant's own time (renewable) is kept here, and checked on every request.
        self.set_cookie(GRANT_COOKIE, helpers.cookie(grant), path="/", httponly=True, samesite="Lax",
                        secure=self.request.protocol == "https")
        seat = room.seats.get(grant.cid)
        notebook = seat.notebook if seat is not None and seat.notebook else ""
        where = f"lab/tree/{notebook}" if notebook else "lab"
        self.redirect(f"/user/{grant.cid}/{where}")


def helping_handlers() -> list:
    return [
        (r"/api/class/([0-9a-f]+)/(watch|help)", GrantHandler),
        (r"/api/class/([0-9a-f]+)/helpers", EndGrantsHandler),
        (r"/api/me/helpers", MyHelpersHandler),
        (r"/api/me/helpers/([0-9a-f]+)", MyHelpersHandler),
        (r"/api/me/share", ShareHandler),
        (r"/api/me/renew", RenewHandler),
        (r"/help/([A-Za-z0-9:._-]+)", HelpLinkHandler),
    ]

