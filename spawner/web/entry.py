"""GET /enter/<id>: the entry link of subdomain mode (see ``origins``), on the container's own host."""

from __future__ import annotations

import time

from ..pool.slot import ASSIGNED
from ..secret import BROWSER, ENTRY, SESSION
from .access import BROWSER_COOKIE, session_cookie, session_value
from .handler import PageHandler
from .origins import Origins, entry_digest


class EnterHandler(PageHandler):
    """GET /enter/<id>?t=…&path=… on the container's own host: its session cookie there, then its page."""

    def get(self, cid: str) -> None:
        origins = Origins(self)
        ws = self.workshops.of_cid(cid)
        slot = ws.pool.slots.get(cid) if ws is not None else None
        if origins.on_container_host() != cid or slot is None or slot.state != ASSIGNED:
            self.refuse_entry("This link does not open a notebook server any more.")
            return
        path = self.get_argument("path", "")
        if ".." in path.split("/"):
            self.refuse_entry("That address points outside the notebook server.")
            return
        if self.current_slot(ws) is slot:  # already theirs here (a reload of the link): go on
            self.go(slot, path)
            return
        value = self.nb.secret.verify(self.get_argument("t", ""), ENTRY) or ""
        parts = value.split(":")
        mark = self.nb.secret.verify(self.get_cookie(BROWSER_COOKIE), BROWSER)
        if (len(parts) != 4 or parts[0] != cid or parts[1] != slot.nonce or not parts[2].isdigit()
                or int(parts[2]) < time.time() or mark is None or parts[3] != entry_digest(mark)):
            self.nb.log.info("entry to %s refused for %s: a link made for another browser, or expired", cid,
                             self.request.remote_ip)
            self.refuse_entry("This link opens a notebook only in the browser it was made for, within a minute. "
                              "Open the workshop's link instead.")
            return
        self.set_visitor_cookie(session_cookie(slot.workshop), session_value(slot), SESSION,
                                days=self.session_days(slot))
        self.go(slot, path)

    def go(self, slot, path: str) -> None:
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect(slot.url(path))

    def refuse_entry(self, message: str) -> None:
        self.set_status(403)
        self.finish(self.render_page("error.html", status=403, reason="This link is not for this browser",
                                     message=message))


def entry_handlers() -> list:
    return [(r"/enter/([0-9a-f]+)", EnterHandler)]
