"""Helpers inside an attendee's notebook: grants to one container, to watch (read-only) or to help (edit, run).

A grant is made by the teaching team (the class view, the helper key or the
admin token) or by the attendee ("share with a helper"). It is for one
container and one hand-out of it (its nonce: a later occupant of the id is
never reachable with it), for ``minutes`` (renewable), and revocable: by the
attendee, by the teaching team, and with the session. The attendee's page
lists every grant live (``/api/me``), so nobody is in their notebook unseen.

The grant reaches the helper's browser as a one-use link (``link``): opening
it sets the helper's cookie (``cookie``), the only credential a helper ever
holds: never the attendee's own. The proxy checks that cookie on every request
to the container (``check``, from the route's authorize callback); ending the
grant refuses the next request and closes its WebSockets at once
(``close_tunnels``: the proxy's). Nothing here survives a restart: every grant
ends with nbpool's process, and its holder asks again.

Every join and every end goes to the workshop's record (``help``: who, which
session, which mode, by whom, when, and at the end how long) and the log.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..secret import GRANT, GRANT_LINK, ServerSecret

WATCH, HELP = "watch", "help"
MODES = (WATCH, HELP)
LINK_MINUTES = 10.0  # a link not opened within this time is void (it is a credential until then)
PER_SESSION = 8  # grants one attendee's container may have at once
NAME_CHARS = 40  # characters of a person's name, at most (an attendee's display name, a helper's)


@dataclass
class Grant:
    id: str
    cid: str
    nonce: str
    workshop: str
    mode: str
    name: str  # the helper's, as they gave it
    by: str  # who made it: 'helper key', 'operator' or 'attendee'
    created: float  # wall-clock
    expires: float
    joined: float | None = None  # when its link was opened (None: not yet)
    identity: bytes = field(default=b"", repr=False)  # the X-Nbpool-User value the notebook server is given

    def view(self) -> dict:
        return {"id": self.id, "name": self.name, "mode": self.mode, "since": self.joined or self.created,
                "expires": self.expires, "joined": self.joined is not None, "by": self.by}


def identity(name: str, role: str, mode: str = "") -> bytes:
    """The X-Nbpool-User header's value: who a request is, for the notebook server (named collaborators)."""
    value = {"name": name, "role": role}
    if mode:
        value["mode"] = mode
    return json.dumps(value).encode()  # (ASCII: non-ASCII names are escaped)


def clean_name(name: object, default: str) -> str:
    if not isinstance(name, str):
        return default
    name = " ".join(name.split())[:NAME_CHARS]
    return name if name and name.isprintable() else default


class HelperAccess:
    """Every live grant, by container; made, opened, checked and ended here."""

    def __init__(self, secret: ServerSecret, close_tunnels: Callable[[str, object], int], log,
                 minutes: Callable[[], float]):
        self.secret = secret
        self.close_tunnels = close_tunnels  # (route prefix, tag) -> WebSockets closed
        self.log = log
        self.minutes = minutes  # how long a grant lasts (ClassView.help_minutes)
        self.grants: dict[str, dict[str, Grant]] = {}  # cid -> grant id -> grant
        self.records: dict[str, Callable[..., None]] = {}  # cid -> its workshop's record
        self.on_change: Callable[[], None] = lambda: None
        self.joins = 0  # for /metrics

    # --- making and opening ----------------------------------------------------------------------------

    def grant(self, slot, mode: str, name: str, by: str, record: Callable[..., None]) -> Grant | None:
        """A new grant to ``slot`` (None: it has PER_SESSION already)."""
        mine = self.grants.setdefault(slot.cid, {})
        if len(mine) >= PER_SESSION:
            return None
        now = time.time()
        grant = Grant(secrets.token_hex(8), slot.cid, slot.nonce, slot.workshop, mode, name, by, now,
                      now + self.minutes() * 60)
        grant.identity = identity(name, "helper", mode)
        mine[grant.id] = grant
        self.records[slot.cid] = record
        self.log.info("helper access to %s made by %s: %s, %s", slot.cid, by, name, mode)
        self.on_change()
        return grant

    def link_token(self, grant: Grant) -> str:
        """The one-use link's token: the grant, until LINK_MINUTES from now."""
        until = int(min(grant.expires, time.time() + LINK_MINUTES * 60))
        return self.secret.sign(f"{grant.cid}:{grant.nonce}:{grant.id}:{until}", GRANT_LINK)

    def open_link(self, token: str | None) -> tuple[Grant | None, str]:
        """The grant a link names, now joined (its cookie may be set); or (None, why not, in words)."""
        value = self.secret.verify(token, GRANT_LINK) if token and token.isascii() else None
        parts = value.split(":") if value else []
        if len(parts) != 4 or not parts[3].isdigit():
            return None, "This helper link is not valid."
        cid, nonce, gid, until = parts
        grant = self.grants.get(cid, {}).get(gid)
        now = time.time()
        if grant is None or grant.nonce != nonce or now >= grant.expires:
            return None, "This helper link has ended: the attendee or the teaching team ended it, or it expired."
        if grant.joined is not None:
            return None, "This helper link was already used. Ask for a new one."
        if now >= int(until):
            self.end(cid, gid, "link expired")
            return None, "This helper link expired before it was opened. Ask for a new one."
        grant.joined = now
        self.joins += 1
        self.records.get(cid, _nothing)("help", cid=cid, action="joined", helper=grant.name, mode=grant.mode,
                                        by=grant.by)
        self.log.info("helper %r joined %s to %s", grant.name, cid, grant.mode)
        self.on_change()
        return grant, ""

    def cookie(self, grant: Grant) -> str:
        return self.secret.sign(f"{grant.cid}:{grant.nonce}:{grant.id}", GRANT)

    # --- checking (the proxy's authorize callback: every request) ------------------------------------------

    def check(self, slot, cookie: str | None) -> Grant | None:
        """The live, joined grant a helper's cookie names for ``slot`` (this hand-out of it), or None."""
        if slot.cid not in self.grants:
            return None  # (the common case: nobody helps here; no signature to check)
        grant = self.holder(cookie)
        return grant if grant is not None and grant.cid == slot.cid and grant.nonce == slot.nonce else None

    def holder(self, cookie: str | None) -> Grant | None:
        """The live, joined grant a helper's cookie names, wherever it is (an expired one ends here)."""
        value = self.secret.verify(cookie, GRANT) if cookie and cookie.isascii() else None
        parts = value.split(":") if value else []
        if len(parts) != 3:
            return None
        grant = self.grants.get(parts[0], {}).get(parts[2])
        if grant is None or grant.nonce != parts[1] or grant.joined is None:
            return None
        if time.time() >= grant.expires:
            self.end(grant.cid, grant.id, "expired")
            return None
        return grant

    # --- living and ending ---------------------------------------------------------------------------

    def of(self, cid: str) -> list[Grant]:
        return sorted(self.grants.get(cid, {}).values(), key=lambda g: g.created)

    def renew(self, cid: str, gid: str) -> Grant | None:
        grant = self.grants.get(cid, {}).get(gid)
        if grant is not None:
            grant.expires = time.time() + self.minutes() * 60
            self.on_change()
        return grant

    def end(self, cid: str, gid: str | None, why: str) -> list[Grant]:
        """End one grant (``gid``) or all of ``cid``'s: refused from the next request, WebSockets closed now."""
        mine = self.grants.get(cid, {})
        ended = [mine.pop(gid)] if gid is not None and gid in mine else (
            list(mine.values()) if gid is None else [])
        if gid is None:
            mine.clear()
        if not mine:
            self.grants.pop(cid, None)
        now = time.time()
        record = self.records.get(cid, _nothing) if ended else _nothing
        for grant in ended:
            closed = self.close_tunnels(f"/user/{cid}", grant.id)
            if grant.joined is not None:
                record("help", cid=cid, action="ended", helper=grant.name, mode=grant.mode, why=why,
                       seconds=round(now - grant.joined, 1))
            self.log.info("helper access of %r to %s ended (%s); %d WebSockets closed", grant.name, cid, why, closed)
        if cid not in self.grants:
            self.records.pop(cid, None)
        if ended:
            self.on_change()
        return ended

    def sweep(self, live: set[str], now: float) -> None:
        """End grants past their time, and every grant of a session that ended."""
        for cid in list(self.grants):
            if cid not in live:
                self.end(cid, None, "session ended")
                continue
            for grant in list(self.grants.get(cid, {}).values()):
                if now >= grant.expires:
                    self.end(cid, grant.id, "expired")


def _nothing(event: str, /, **fields) -> None:
    pass
