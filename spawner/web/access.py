"""Who may reach a container: the visitor's signed cookie, checked by the proxy on every request.

At hand-out the visitor gets ``nbpool-session = sign("<cid>:<nonce>")``. The
route of each container carries an authorize callback that lets a request
through only with that exact cookie; anything else gets a 403 page offering a
fresh notebook. The nonce changes with every hand-out, so a cookie for an
earlier occupant of a container id never works again.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable

from proxy.bearer import Bearer
from proxy.http import Response, error_response
from proxy.origin import OriginPolicy
from proxy.routes import RequestHead

from ..classroom.helpers import identity
from ..pool.slot import ASSIGNED, Slot
from ..secret import SESSION, ServerSecret

SESSION_COOKIE = "nbpool-session"
# Over HTTPS nbpool's own host-only cookies carry this prefix (PageHandler.set_cookie): the browser then takes
# them only from that very host, Secure and for Path=/, so no sibling host (another attendee's origin, in
# subdomain mode) can set or shadow them by script.
HOST_PREFIX = "__Host-"
# Subdomain mode: the one cookie of nbpool's set for the wildcard domain (which browsers forbid a __Host- name):
# which browser a container's entry link was made for (web.origins).
BROWSER_COOKIE = "nbpool-browser"


def session_cookie(workshop: str) -> str:
    """The session cookie's name for ``workshop``: one session per workshop, so a visitor of two tracks
    keeps both ('' : the service without named workshops)."""
    return f"{SESSION_COOKIE}-{workshop}" if workshop else SESSION_COOKIE


def session_value(slot: Slot) -> str:
    return f"{slot.cid}:{slot.nonce}"


def read_session(secret: ServerSecret, cookie: str | None) -> tuple[str, str] | None:
    """(cid, nonce) from a signed session cookie, or None if absent or forged."""
    value = secret.verify(cookie, SESSION)
    if not value or ":" not in value:
        return None
    cid, _, nonce = value.partition(":")
    return cid, nonce


def embed_credential(secret: ServerSecret, slot: Slot) -> str:
    """The credential of ``slot``'s hand-out to a web page's live code (web.build): bound to its container
    and nonce (a later occupant of the id never shares it), derived for this purpose only, never the
    server's secret or the notebook's token."""
    return secret.derive("embedded-server", f"{slot.cid}:{slot.nonce}")


class RouteAccess:
    """Builds each container route's authorize callback (given to the pool as route_options)."""

    def __init__(self, secret: ServerSecret, denied_page: Callable[[RequestHead, Slot], Response],
                 ended_page: Callable[[int, RequestHead], Response | None], origins: OriginPolicy,
                 classroom=None):
        self.secret = secret
        self.denied_page = denied_page
        self.ended_page = ended_page
        self.origins = origins  # the cookie is the credential, so other origins may not act with it
        self.classroom = classroom  # its helpers' grants (a second way in) and attendees' names, when there is one

    def route_options(self, slot: Slot) -> dict:
        secret = self.secret
        denied_page = self.denied_page
        passed = [""]  # the last cookie that verified: later requests compare, not re-sign
        name = session_cookie(slot.workshop)
        secure_name = HOST_PREFIX + name
        classroom = self.classroom
        helpers = classroom.helpers if classroom is not None else None
        me = [b"", b""]  # the owner's name, and their identity for the notebook server, as last made

        def owner_identity() -> list[tuple[bytes, bytes]]:
            seat = classroom.seats.get(slot.cid) if classroom is not None else None
            shown = seat.display_name if seat is not None else "Attendee"
            if shown.encode() != me[0]:
                me[0] = shown.encode()
                me[1] = identity(shown, "instructor" if slot.instructor else "attendee")
            return [(IDENTITY, me[1])]

        def authorize(head: RequestHead) -> Response | None:
            cookie = head.cookie(secure_name) or head.cookie(name)
            if slot.state == ASSIGNED and cookie and cookie.isascii():
                if (passed[0] and hmac.compare_digest(cookie, passed[0])) or (
                        read_session(secret, cookie) == (slot.cid, slot.nonce)):
                    passed[0] = cookie
                    head.inject = owner_identity()
                    return None
            if helpers is not None and slot.state == ASSIGNED:
                grant = helpers.check(slot, head.cookie(HOST_PREFIX + GRANT_COOKIE) or head.cookie(GRANT_COOKIE))
                if grant is not None:
                    return let_helper_in(head, grant, slot)
            return denied_page(head, slot)

        return {"authorize": authorize, "error_page": self.ended_page, "origin_policy": self.origins, "untrusted": True,
                "headers": {"X-Nbpool-User": identity("Attendee", "attendee").decode()},
                "bearer": self.bearer(slot) if slot.embedded else None}  # (adopted after a restart)

    def bearer(self, slot: Slot) -> Bearer:
        """The second way into a container handed to a page: its credential, from the trusted origins."""
        return Bearer(embed_credential(self.secret, slot), self.origins, opener=f"/embedded/{slot.cid}")


# --- helpers inside an attendee's notebook (classroom.helpers) ---------------------------------------------------

GRANT_COOKIE = "nbpool-grant"  # a helper's key to one container (classroom.helpers: the one credential they hold)
IDENTITY = b"X-Nbpool-User"  # who a request is, for the notebook server (named collaborators); the route's own
WATCH_REFUSED = ("You are watching this notebook: read-only. Running code, saving, editing files and terminals "
                 "are for the attendee (and helpers they let help).")
# What a watcher may still do besides reading (GET and HEAD): join the live document of a notebook (its room is
# found with a PUT that writes nothing of the attendee's), whose WebSocket then only reads (proxy.ws_readonly).
COLLAB_SESSION = re.compile(rb"/api/collaboration/session/")
COLLAB_ROOM = re.compile(rb"/api/collaboration/room/[^/]+$")
READ_ONLY_SOCKETS = re.compile(rb"/api/events/subscribe$")


def watch_refusal(head: RequestHead, prefix: bytes) -> bool:
    """Whether a watcher's request must be refused: anything that could write, run or open a terminal."""
    rest = head.path[len(prefix):]
    if head.upgrade:
        if COLLAB_ROOM.match(rest):
            head.read_only = True
            return False
        return READ_ONLY_SOCKETS.match(rest) is None  # kernels' channels, terminals, anything else
    if head.method in (b"GET", b"HEAD"):
        return False
    return not (head.method == b"PUT" and COLLAB_SESSION.match(rest))


def let_helper_in(head: RequestHead, grant, slot: Slot) -> Response | None:
    """A helper's request under ``grant``: marked with it (ending it closes its WebSockets), named as the helper,
    and, for a watcher, refused unless it only reads."""
    if grant.mode == "watch" and watch_refusal(head, slot.prefix.encode()):
        return error_response(403, head.wants_json(), message=WATCH_REFUSED)
    head.tag = grant.id
    head.inject = [(IDENTITY, grant.identity)]
    return None
