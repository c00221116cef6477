"""Where a container is, as the browser sees it; and subdomain mode's way into one: an entry link,
made for one browser, to the container's own origin.

With ``Proxy.subdomain_host`` set, a container answers only at
``<id>.<subdomain_host>`` (proxy.hosts), and the browser's cookies for nbpool's
pages (the main host) are not sent there. So the hand-out (on the main host)
sends the visitor to ``https://<id>.<host>/enter/<id>?t=…&path=…``: the entry
link, whose ``t`` is signed for this purpose only and holds the container,
its hand-out's nonce, an expiry a minute away, and a digest of the browser's
own mark (``nbpool-browser``, a cookie for the wildcard domain that only
nbpool sets, and the proxy never forwards to a container). ``/enter`` checks
all four and sets the container host's own session cookie.

Why the browser mark: without it, anyone could take a container, keep its
entry link and send it to someone else, whose browser would then silently
land in a notebook the sender controls. A link made for one browser does
nothing in another: no link attaches a browser to a notebook it did not ask for.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlencode

from ..secret import BROWSER, ENTRY
from .access import BROWSER_COOKIE

ENTRY_SECONDS = 60  # how long an entry link works (the hand-out's redirect follows it at once)


def host_port(host: str) -> str:
    """':8000' of 'name:8000' or '[::1]:8000' ('' without a port)."""
    if host.startswith("["):
        rest = host[host.find("]") + 1:]
        return rest if rest.startswith(":") and rest[1:].isdigit() else ""
    _, colon, port = host.rpartition(":")
    return f":{port}" if colon and port.isdigit() else ""


class Origins:
    """Where a container and nbpool's pages are, as the browser sees them, in either mode."""

    def __init__(self, handler):
        self.handler = handler
        self.sub = handler.proxy.subdomain_host
        request = handler.request
        self.scheme = request.protocol
        self.host = (request.headers.get("X-Forwarded-Host") or request.host or "").split(",")[0].strip().lower()
        self.port = host_port(self.host)
        self.name = self.host[: -len(self.port)] if self.port else self.host

    @property
    def main(self) -> str:
        """nbpool's own origin (the main host)."""
        return f"{self.scheme}://{self.sub}{self.port}" if self.sub else f"{self.scheme}://{self.host}"

    def container(self, cid: str) -> str:
        """``cid``'s origin: its own host name in subdomain mode, else nbpool's."""
        return f"{self.scheme}://{cid}.{self.sub}{self.port}" if self.sub else self.main

    def on_container_host(self) -> str:
        """The container id whose host this request came to ('' for the main host or any other name)."""
        if not self.sub:
            return ""
        label, dot, rest = self.name.partition(".")
        return label if dot and rest == self.sub else ""


def browser_mark(handler) -> str:
    """This browser's mark (made and set for the wildcard domain if it has none yet)."""
    mark = handler.nb.secret.verify(handler.get_cookie(BROWSER_COOKIE), BROWSER)
    if mark:
        return mark
    mark = getattr(handler, "_browser_mark", None)
    if mark is None:
        mark = handler._browser_mark = secrets.token_hex(16)
        # The wildcard domain, so /enter on a container's host can read it (no __Host- prefix is possible
        # with a Domain); never forwarded to a container (the proxy strips nbpool's cookies).
        handler.set_cookie(BROWSER_COOKIE, handler.nb.secret.sign(mark, BROWSER), domain=handler.proxy.subdomain_host,
                           path="/", httponly=True, samesite="Lax", secure=handler.request.protocol == "https",
                           expires_days=30)
    return mark


def entry_digest(mark: str) -> str:
    return hashlib.sha256(mark.encode()).hexdigest()[:24]


def entry_url(handler, slot, path: str) -> str:
    """The link that opens ``slot`` at ``path`` in this browser: on its own origin through /enter (subdomain
    mode), else its path on nbpool's origin."""
    origins = Origins(handler)
    if not origins.sub:
        return slot.url(path)
    expires = int(time.time()) + ENTRY_SECONDS
    ticket = handler.nb.secret.sign(f"{slot.cid}:{slot.nonce}:{expires}:{entry_digest(browser_mark(handler))}", ENTRY)
    return f"{origins.container(slot.cid)}/enter/{slot.cid}?{urlencode({'t': ticket, 'path': path})}"
