"""The build side of the BinderHub API: ``GET /build/<provider>/<spec>``, as an event stream.

Thebe (and MyST and Jupyter Book pages, through thebe-core) open an
``EventSource`` here and wait for ``{"phase": "ready", "url": …, "token": …}``;
then they talk to that server from their own origin, with the token. nbpool
builds nothing: the spec chooses the workshop (binder.SpecHandler), and the
page gets one of its containers as a visitor would (a spare at once, or a
place in line, with the same admission rules), handed to it *embedded*: the
container's proxy route accepts a credential made for this one hand-out, from
the origins the operator trusts (``WebApp.cors_origin``), and nothing else
about the route changes (proxy.bearer).

Messages are unnamed events (``data: <json>``), lower-case phases, as
BinderHub sends and Thebe reads: ``waiting`` (place in line), ``launching``,
then ``ready`` or ``failed`` (with a message a person can read), and the
stream ends.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from tornado.iostream import StreamClosedError

from ..content import Delivery, FetchError
from ..pool.errors import PoolError, PoolFull
from ..pool.slot import ASSIGNED, Slot
from ..secret import SESSION
from .access import embed_credential, session_cookie, session_value
from .admission import Refused
from .binder import PROVIDERS, SpecHandler
from .handler import PageHandler
from .origins import Origins

KEEPALIVE = 15.0  # seconds between comment lines while in line, so no proxy on the way closes the stream
POSITION_EVERY = 1.0  # seconds between checks of the place in line


def page_message(error: PoolError) -> str:
    """What a page's reader is told when no container can be had (the waiting page's words promise a retry
    the page will not make)."""
    if isinstance(error, PoolFull):
        return f"Every notebook server is in use right now. Please try again in {error.retry_after} s or later."
    return error.visitor_message


class BuildHandler(SpecHandler):
    """GET /build/<provider>/<spec>[?key=…]: a container for a page's live code, as BinderHub's event stream."""

    def initialize(self) -> None:
        self.gone = asyncio.Event()  # the page closed the stream

    def on_connection_close(self) -> None:
        self.gone.set()

    async def get(self, provider: str) -> None:
        nb = self.nb
        origin = self.request.headers.get("Origin")
        own = self.own_origin()
        if origin is not None and not nb.origins.trusts(origin, own):
            # No CORS headers either: the page's browser refuses to read even this.
            nb.log.info("build refused for a page on %r (not in WebApp.cors_origin)", origin[:100])
            self.record("refused", why="embedding origin", status=403)
            self.set_status(403)
            self.finish({"error": "This site's pages may not start notebook servers here (WebApp.cors_origin)."})
            return
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")  # a buffering balancer in front would hold the messages
        ws, name = self.spec_workshop(provider)
        if ws is None:
            names = ", ".join(sorted(self.workshops.active)) or "none"
            await self.failed(f"No workshop here is named {name!r} (the repository's name in the spec chooses "
                              f"the workshop). Workshops here: {names}.")
            return
        repo = self.allowed_repo(provider)
        if repo is not None:  # fetched before a container is taken: a failure takes nothing
            try:
                await nb.material.ensure(*repo)
            except FetchError as exc:
                await self.failed(f"The repository could not be fetched: {exc}")
                return
        slot = await self.take(ws)
        if slot is None:
            return
        # Its files at the root of the home folder, as Binder has them.
        if repo is not None and not await self.copy_repository(slot, Delivery(repo[0], repo[1], ""), fresh=True):
            await self.failed("The repository's files could not be copied into the notebook server.")
            return
        bearer = nb.access.bearer(slot)
        if slot.route is not None:  # (it has one while the proxy routes it)
            slot.route.bearer = bearer
        credential = bearer.token.decode()
        nb.log.info("handed out %s to a page on %s (embedded) for %s", slot.cid, origin or "this site",
                    self.request.remote_ip)
        self.record("embedded", cid=slot.cid, workshop=ws.name or None)
        sent = await self.event("ready", "Your notebook server is ready.", url=slot.url(origin=Origins(self).container(
                                slot.cid)), token=credential, image=ws.pool.backend.image)
        if not sent:
            ws.pool.release(slot, "the page that asked for it had gone")
            return
        self.finish()

    async def take(self, ws) -> Slot | None:
        """A container for this page (a spare, or through the line, telling the page its place), or None when
        it failed (the page told why) or the page left."""
        nb, pool = self.nb, ws.pool
        address = self.request.remote_ip
        try:
            nb.admission.admit(address, pool, key=self.get_argument("key", None), workshop_key=ws.key,
                               marks=self.ban_marks())
            slot = await pool.take_spare(owner=nb.admission.owner_of(address), embedded=True)
            if slot is not None:
                await self.event("launching", "Handing out a ready notebook server.")
                return slot
            ticket = pool.enqueue(owner=nb.admission.owner_of(address), embedded=True)
        except Refused as refusal:
            nb.log.info("build refused for %s: %s", address, refusal.log_message)
            self.record("refused", why=refusal.title.lower(), status=refusal.status)
            await self.failed(refusal.message)
            return None
        except PoolError as error:
            self.record("refused", why=type(error).__name__, status=error.status)
            await self.failed(page_message(error))
            return None
        try:
            return await self.wait_in_line(pool, ticket)
        finally:
            if not ticket.future.done():  # the page left, the wait ran out, or this task was cancelled
                ticket.cancel()

    async def wait_in_line(self, pool, ticket) -> Slot | None:
        """Tell the page its place in line until its container is ready; None when it failed or the page left."""
        deadline = time.monotonic() + pool.queue_timeout
        shown, spoke = -1, time.monotonic()
        future = ticket.future
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            while not future.done():
                if gone.done():
                    return None
                if time.monotonic() > deadline:
                    await self.failed(f"No notebook server came free within {pool.queue_timeout:.0f} s. "
                                      "Please try again in a moment.")
                    return None
                if ticket.position != shown:
                    shown = ticket.position
                    await self.event("waiting", f"Starting a notebook server: you are number {shown} in line."
                                     if shown else "Starting your notebook server.")
                    spoke = time.monotonic()
                elif time.monotonic() - spoke > KEEPALIVE:
                    await self.send(b": still starting\n\n")
                    spoke = time.monotonic()
                await asyncio.wait([future, gone], timeout=POSITION_EVERY, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if future.cancelled() or future.exception() is not None:
            error = None if future.cancelled() else future.exception()
            await self.failed(page_message(error) if isinstance(error, PoolError) else
                              "The notebook server could not be started. Please try again.")
            return None
        slot = future.result()
        if not await self.event("launching", "Your notebook server has started."):
            ticket.cancel()  # (the container goes back: nobody will use it)
            return None
        return slot

    async def event(self, phase: str, message: str, **fields) -> bool:
        """Send one message; False when the page has gone."""
        data = json.dumps({"phase": phase, "message": message + "\n", **fields})
        return await self.send(f"data: {data}\n\n".encode())

    async def send(self, chunk: bytes) -> bool:
        if self.gone.is_set():
            return False
        try:
            self.write(chunk)
            await self.flush()
        except StreamClosedError:
            self.gone.set()
            return False
        return True

    async def failed(self, message: str) -> None:
        """The last message: BinderHub's ``failed`` phase, which Thebe shows to the reader."""
        await self.event("failed", message)
        if not self.gone.is_set():
            self.finish()


class OpenEmbeddedHandler(PageHandler):
    """/embedded/<id>?token=…&path=…: a person opens a page's server in a tab (MyST's "Open in Jupyter":
    '{url}lab/tree/x?token=…', sent here by the proxy).

    The token in the address proves only that whoever made the link holds that server, and anyone can take
    one (GET /build needs no Origin) and send the link to someone else. So it never becomes a browser's way
    in by itself: GET asks the person first ("a web page started this server"), and only the POST from that
    page opens it. In subdomain mode the server has an origin of its own, and only that host name gets the
    cookie (the browser's own notebook stays as it is); in path mode one origin holds one notebook's
    credential, so opening this one ends the browser's other notebooks (their work is kept), and the page
    says so first. The address they land on carries no token.
    """

    def get(self, cid: str) -> None:
        slot, path = self.checked(cid)
        if slot is None:
            return
        if self.current_slot(self.workshops.of_cid(cid)) is slot:  # already theirs here: go on
            self.redirect(slot.url(path))
            return
        single_origin = not self.proxy.subdomain_host
        self.page("embedded.html", action=self.request.uri, closes=self.single_origin_holdings(slot),
                  forgets=single_origin and bool(self.own_cookies()))

    def post(self, cid: str) -> None:
        if not self.same_origin():
            return
        slot, path = self.checked(cid)
        if slot is None:
            return
        if not self.proxy.subdomain_host:
            # Path mode: this server's pages will run in this browser on nbpool's one origin, so the browser
            # keeps nothing else of nbpool's: its notebooks end, and its kept work's, key's and sign-in's
            # cookies go (the page said so first).
            self.let_go(self.single_origin_holdings(slot), "You opened another notebook server in this browser.")
            self.forget_this_browser()
        self.set_visitor_cookie(session_cookie(slot.workshop), session_value(slot), SESSION,
                                days=self.session_days(slot))
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect(slot.url(path))

    def checked(self, cid: str) -> tuple[Slot | None, str]:
        """(the page's server, the path asked for) when the request carries its credential on its own host;
        else (None, '') with the answer sent."""
        origins = Origins(self)
        if origins.sub and origins.on_container_host() != cid:  # its own origin only, never the main host's
            self.error_answer(404, "Not here", "This link works only at the notebook server's own address.",
                              "not at this host")
            return None, ""
        ws = self.workshops.of_cid(cid)
        slot = ws.pool.slots.get(cid) if ws is not None else None
        given = self.get_argument("token", "")
        if (slot is None or not slot.embedded or slot.state != ASSIGNED or not given.isascii()
                or not hmac.compare_digest(given.encode(), embed_credential(self.nb.secret, slot).encode())):
            self.page("expired.html", status=410, fresh_url=f"{self.prefix}/spawn?new=1")
            return None, ""
        try:
            self.nb.admission.check_ban(self.request.remote_ip, self.ban_marks())
            return slot, self.nb.admission.spawn_path(self.get_argument("path", ""), "")
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return None, ""


def build_handlers() -> list:
    return [(r"/build/({})/.+".format("|".join(PROVIDERS)), BuildHandler),
            (r"/embedded/([0-9a-f]+)", OpenEmbeddedHandler)]
