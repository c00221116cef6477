"""What every page handler of the web app shares: the workshop a request is for, its pool, the visitor's
cookies (session, kept work, workshop key), the origin check, refusals, the ended page, the arrival in a
container. The handlers themselves live in ``visitor``, ``kept``, ``api``, ``binder`` and ``workshops_api``.
"""

from __future__ import annotations

import hmac
import time

from tornado.web import RequestHandler

from proxy.http import MESSAGES, wants_json
from proxy.origin import OriginPolicy, own_origin
from proxy.server import Proxy

from ..content import Delivery, FetchError
from ..content.gitcache import redact
from ..contents import ContentsError
from ..engines.base import BackendError
from ..keep import Kept, WorkKeeper
from ..keep.keeper import AlreadyRestored
from ..pool.errors import PoolError
from ..pool.pool import Pool
from ..pool.slot import ASSIGNED, Slot
from ..secret import ADMIN, BAN, INSTRUCTOR, KEPT, SESSION
from ..workshops import Workshop, Workshops
from .access import (
    BROWSER_COOKIE,
    GRANT_COOKIE,
    HOST_PREFIX,
    SESSION_COOKIE,
    read_session,
    session_cookie,
    session_value,
)
from .admission import KEY_COOKIE, BanMarks, Refused
from .app import WebApp
from .origins import Origins, entry_url
from .pages import fresh_url

TICKET_COOKIE = "nbpool-ticket"
ADMIN_COOKIE = "nbpool-admin"  # the status page's sign-in
ADMIN_COOKIE_HOURS = 12
HELPER_COOKIE = "nbpool-helper"  # the class view's sign-in of a helper (web.classview)
# The previous session's cookie value, kept when a new session begins, so its kept work stays reachable.
KEPT_COOKIE = "nbpool-kept"
BAN_COOKIE = "nbpool-ban"  # a browser the abuse guard banned (its ban's id, signed)
_UNSET = object()


def kept_cookie(workshop: str) -> str:
    return f"{KEPT_COOKIE}-{workshop}" if workshop else KEPT_COOKIE


def key_cookie(workshop: str) -> str:
    return f"{KEY_COOKIE}-{workshop}" if workshop else KEY_COOKIE


INSTRUCTOR_COOKIE = "nbpool-instructor"  # this browser came with the instructor key (its digest: a new key ends it)


def instructor_cookie(workshop: str) -> str:
    return f"{INSTRUCTOR_COOKIE}-{workshop}" if workshop else INSTRUCTOR_COOKIE


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
        # A Referer with nbpool's origin only: in path mode a container shares it, and a page's address may
        # carry a workshop key or a token on the way into one. (Not no-referrer: with it, browsers send
        # 'Origin: null' on the pages' own form posts, which the origin check must refuse.)
        self.set_header("Referrer-Policy", "strict-origin")

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

    def own_origin(self) -> bytes:
        """nbpool's origin as the browser sees it ('http://host:port'): the proxy sets X-Forwarded-Proto and
        -Host (from a trusted balancer, or from what it saw)."""
        host = self.request.headers.get("X-Forwarded-Host") or self.request.host or ""
        return own_origin(self.request.protocol.encode("latin-1", "replace"), host.encode("latin-1", "replace"))

    def same_origin(self, policy: OriginPolicy | None = None) -> bool:
        """Whether this request may act for the visitor (or operator): from nbpool's own origin.

        For state-changing requests; answers 403 itself when not. Safe
        methods always pass. The proxy sets X-Forwarded-Proto/-Host (from a
        trusted balancer, or from what it saw), so this is the browser's view.
        """
        request = self.request
        own = self.own_origin()
        headers = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                   for k, v in request.headers.get_all() if k.lower() in ("origin", "sec-fetch-site")]
        why = (policy or self.nb.origins).refusal(request.method.encode(), False, headers, own)
        if why is None:
            return True
        self.nb.log.info("refused %s %s from %s: %s", request.method, request.path, request.remote_ip, why)
        self.error_answer(403, "Request from another site", "This request came from another site, so nothing was "
                          "done. Open this site's own page and try again from there.",
                          "This request came from another site.")
        return False

    def error_answer(self, status: int, reason: str, message: str, json_error: str) -> None:
        """An error for the visitor: ``{"error": json_error}`` to a client that wants JSON, else the error page."""
        self.set_status(status)
        if self.wants_json():
            self.finish({"error": json_error})
        else:
            self.finish(self.render_page("error.html", status=status, reason=reason, message=message))

    def refuse_visitor(self, refusal: Refused) -> None:
        """A Refused from admission: its page (or JSON), status and Retry-After."""
        self.nb.log.info("spawn refused for %s: %s", self.request.remote_ip, refusal.log_message)
        self.record("refused", why=refusal.title.lower(), status=refusal.status)
        if refusal.ban is not None:  # the browser keeps the ban whatever session cookies it holds next
            self.set_visitor_cookie(BAN_COOKIE, refusal.ban.id, BAN,
                                    days=max(refusal.ban.until - time.time(), 60) / 86400)
        if refusal.retry_after:
            self.set_header("Retry-After", str(refusal.retry_after))
        self.set_status(refusal.status)
        if self.wants_json():
            self.finish({"error": refusal.message, "retry_after": refusal.retry_after})
        else:
            self.finish(self.render_page(refusal.page, status=refusal.status, reason=refusal.title,
                                       message=refusal.message))

    def ban_marks(self) -> BanMarks:
        """What this browser holds that a ban may name: every session and kept-work cookie's container (any
        workshop's), and its ban cookie."""
        containers = set()
        for name, morsel in self.request.cookies.items():
            bare = name.removeprefix(HOST_PREFIX)
            purpose = SESSION if bare.startswith(SESSION_COOKIE) else KEPT if bare.startswith(KEPT_COOKIE) else None
            value = self.nb.secret.verify(morsel.value, purpose) if purpose else None
            if value and ":" in value:
                containers.add(value.partition(":")[0])
        ban = self.nb.secret.verify(self.get_cookie(BAN_COOKIE), BAN)
        return BanMarks(containers, {ban} if ban else set())

    def _own_cookie(self, name: str, domain: str | None = None) -> str:
        """``name`` as it is stored: with HOST_PREFIX for nbpool's host-only cookies over HTTPS."""
        if (name.startswith("nbpool-") and name != BROWSER_COOKIE and domain is None
                and self.request.protocol == "https"):
            return HOST_PREFIX + name
        return name

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        return super().get_cookie(self._own_cookie(name), default)

    def set_cookie(self, name: str, value, domain: str | None = None, **kwargs) -> None:
        stored = self._own_cookie(name, domain)
        if stored != name:
            kwargs["secure"], kwargs["path"] = True, "/"
        super().set_cookie(stored, value, domain=domain, **kwargs)

    def clear_cookie(self, name: str, **kwargs) -> None:
        stored = self._own_cookie(name, kwargs.get("domain"))
        if stored != name:
            kwargs["secure"], kwargs["path"] = True, "/"
        super().clear_cookie(stored, **kwargs)

    def set_visitor_cookie(self, name: str, value: str, purpose: str, *, days: float | None = None) -> None:
        """One of nbpool's cookies, signed for ``purpose`` (secret.SESSION, …): script-proof, sent on
        top-level visits from elsewhere only (Lax), Secure over HTTPS (as the browser reached us, through
        trusted forwarding)."""
        self.set_cookie(name, self.nb.secret.sign(value, purpose), path="/", httponly=True, samesite="Lax",
                        secure=self.request.protocol == "https", expires_days=days)

    def session_days(self, slot: Slot) -> float | None:
        """How long ``slot``'s session cookie lasts: while work is kept, it outlives the browser's session, as
        long as the session may last plus keep_hours (a laptop restarted after lunch still finds its work)."""
        keeper = self.keeper
        if keeper is None:
            return None
        ws = self.workshops.of_cid(slot.cid)
        longest = (ws.pool.cull_max_age if ws is not None else 0) or UNBOUNDED_SESSION
        return (longest + keeper.keep_hours * 3600) / 86400

    def set_session_cookie(self, slot: Slot) -> None:
        """The visitor's key to ``slot`` (see session_days); the session it replaces, whose work is kept or
        being saved, stays reachable through KEPT_COOKIE. In path mode the browser's sign-in to nbpool's
        admin pages ends here: one origin never holds a container's credential and an operator's at once."""
        keeper = self.keeper
        name = session_cookie(slot.workshop)
        days = self.session_days(slot)
        for signed_in in (ADMIN_COOKIE, HELPER_COOKIE, GRANT_COOKIE) if not self.proxy.subdomain_host else ():
            if self.get_cookie(signed_in) is not None:
                self.clear_cookie(signed_in, path="/")
        previous = read_session(self.nb.secret, self.get_cookie(name)) if keeper is not None else None
        if previous and previous[0] != slot.cid and (previous[0] in keeper.sessions
                                                     or self.workshops.of_cid(previous[0]) is not None):
            self.set_visitor_cookie(kept_cookie(slot.workshop), ":".join(previous), KEPT, days=days)
        self.set_visitor_cookie(name, session_value(slot), SESSION, days=days)

    def kept(self, cid: str) -> Kept | None:
        """``cid``'s kept work, if this visitor's cookies say it is theirs."""
        keeper = self.keeper
        if keeper is None:
            return None
        held = keeper.sessions.get(cid)
        workshop = held.workshop if held is not None else ""
        return keeper.owned(cid, session=self.get_cookie(session_cookie(workshop)),
                            kept=self.get_cookie(kept_cookie(workshop)))

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

    def to_main_host(self) -> bool:
        """In subdomain mode, send a visitor who came by another name (an address, 'localhost') to the main
        host, whose cookies the containers' entry links need; True when redirected."""
        origins = Origins(self)
        if not origins.sub or origins.name == origins.sub:
            return False
        self.redirect(origins.main + self.request.uri)
        return True

    def live_slots(self) -> list[Slot]:
        """Every container this browser holds now, in any workshop (its session cookies that are still live)."""
        found = (self.current_slot(ws) for ws in self.workshops.all())
        return [slot for slot in found if slot is not None]

    def single_origin_holdings(self, keep: Slot | None = None) -> list[Slot]:
        """In path mode, the containers this browser holds besides ``keep``: one origin holds one notebook's
        credential at a time, so each of these must end (asked first) before the browser gets another.
        Always empty in subdomain mode, where each container has an origin of its own."""
        if self.proxy.subdomain_host:
            return []
        return [slot for slot in self.live_slots() if slot is not keep]

    def holds_grant(self) -> bool:
        """In path mode, whether this browser holds a helper's grant to someone's notebook (whose pages share
        this origin): then it is never also signed in to the class view or the status page."""
        return not self.proxy.subdomain_host and self.get_cookie(GRANT_COOKIE) is not None

    def let_go(self, slots: list[Slot], visitor_reason: str) -> None:
        """End ``slots`` (their work is kept): the visitor chose another notebook."""
        for slot in slots:
            self.workshops.of_cid(slot.cid).pool.release(slot, "its visitor opened another notebook",
                                                         visitor_reason=visitor_reason, kind="fresh")

    def admin_cookie_ok(self) -> bool:
        """The status page's login cookie: signed by us, and younger than ADMIN_COOKIE_HOURS; in path mode,
        never beside a notebook of this browser's (whose pages share this origin, so its scripts would act
        with the operator's cookie)."""
        if self.single_origin_holdings() or self.holds_grant():
            return False
        value = self.nb.secret.verify(self.get_cookie(ADMIN_COOKIE), ADMIN) or ""
        kind, _, stamp = value.partition(":")
        if kind != "admin" or not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            return False
        age = time.time() - int(stamp)
        return -60 < age < ADMIN_COOKIE_HOURS * 3600  # (a minute of clock step allowed; never a future stamp)

    def own_cookies(self) -> list[str]:
        """The names of nbpool's cookies this browser sent (as named here, without the HTTPS prefix)."""
        names = (name.removeprefix(HOST_PREFIX) for name in self.request.cookies)
        return [name for name in names if name.startswith("nbpool-")]

    def forget_this_browser(self) -> None:
        """Clear every cookie of nbpool's this browser holds: its sessions, kept work, key, sign-in."""
        for name in self.own_cookies():
            self.clear_cookie(name, path="/")

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

    async def copy_repository(self, slot: Slot, deliver: Delivery, fresh: bool) -> bool:
        """A link's repository into ``slot`` (``fresh``: just handed out, nobody's work in it yet; else the
        visitor's own, merged); False (logged, a fresh ``slot`` released) if it failed: the caller says so."""
        ws = self.workshops.of_cid(slot.cid)
        try:
            out = await self.nb.material.deliver(slot, deliver, fresh=fresh,
                                                 backend=ws.pool.backend if ws is not None else None)
        except (ContentsError, FetchError, BackendError, OSError) as exc:
            self.nb.log.error("could not copy %s into %s: %s", redact(deliver.repo), slot.cid, exc)
            if fresh and ws is not None:
                ws.pool.release(slot, "copying a repository into it failed")
            return False
        if out.new or out.replaced or out.beside:
            self.nb.log.info("%s into %s: %d new, %d updated, %d kept (new version beside)", redact(deliver.repo),
                             slot.cid, len(out.new), len(out.replaced), len(out.beside))
        return True

    async def deliver_into(self, slot: Slot, deliver: Delivery, fresh: bool = True) -> bool:
        """copy_repository for a visitor's page: False when it failed, the page saying so."""
        if await self.copy_repository(slot, deliver, fresh):
            return True
        self.page("error.html", status=502, reason="The workshop material could not be copied",
                  message="The files this link names could not be copied into your notebook server. Please "
                          "try the link again in a moment.")
        return False

    async def arrive(self, slot: Slot, path: str, restore: Kept | None, deliver: Delivery | None = None) -> None:
        """Send the visitor into ``slot`` at ``path``, their kept work copied in first if they asked (and a
        link's repository merged in, if it names one)."""
        if restore is not None:
            try:
                count = await self.keeper.restore(restore, slot)
            except AlreadyRestored:  # another request continued it first (two clicks): its page says where
                self.workshops.of_cid(slot.cid).pool.release(slot, "its kept work was restored elsewhere")
                self.redirect(f"/kept/{restore.cid}")
                return
            except (ContentsError, OSError) as exc:
                self.nb.log.error("could not restore the kept work of %s into %s: %s", restore.cid, slot.cid, exc)
                self.workshops.of_cid(slot.cid).pool.release(slot, "restoring kept work into it failed")
                self.page("error.html", status=500, reason="Your work could not be copied",
                          message="Your kept work could not be copied into a fresh notebook; it is still kept. "
                                  "Please try again, or download it.")
                return
            self.nb.log.info("handed %s to %s with %d kept files", slot.cid, self.request.remote_ip, count)
        if deliver is not None and not await self.deliver_into(slot, deliver, fresh=restore is None):
            return
        # Path mode: /spawn asked before ending the browser's other notebooks, but one may have begun in
        # another tab while this one waited in line; one origin still holds one notebook's credential.
        self.let_go(self.single_origin_holdings(slot), "You opened another notebook in this browser.")
        if self.is_instructor(slot.workshop):
            await self.workshops.of_cid(slot.cid).pool.mark_instructor(slot)
        self.set_session_cookie(slot)
        self.redirect(entry_url(self, slot, path))

    def instructor_mark(self, key: str) -> str:
        return self.nb.secret.derive("instructor-cookie", key)[:16]

    def is_instructor(self, workshop: str) -> bool:
        """Whether this browser came with ``workshop``'s instructor key (this request, or remembered)."""
        if getattr(self, "_instructor", None) == workshop:
            return True
        ws = self.workshops.get(workshop) if workshop else self.workshops.default
        mark = self.nb.secret.verify(self.get_cookie(instructor_cookie(workshop)), INSTRUCTOR)
        return ws is not None and mark is not None and hmac.compare_digest(
            mark, f"{workshop}:{self.instructor_mark(ws.instructor_key)}")

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
