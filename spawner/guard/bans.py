"""Who may not take a notebook for a while: bans, kept in a file so that a restart keeps them (issue 25).

A session ended for abuse bans its browser and its network for AbuseGuard.ban_hours:

- the **browser** by what it holds: the session cookie that named the ended container (the pool's id
  for it), and from its first refused request on, a signed ban cookie of its own (so another workshop's
  link, with another session cookie, is refused too);
- the **network** (an IPv4 address, an IPv6 /64: as the proxy and admission count them), unless it is
  one of WebApp.address_share_exempt (a classroom's NAT, this machine): those are banned by browser only,
  so the abuser's neighbours stay served.

The file (``bans.json`` in the data directory) is rewritten whole, atomically, at each change; expired
bans are dropped as they are met. Operators list and lift bans through /api/admin/bans; addresses banned
for good are in AbuseGuard.banned_addresses (the config file), never in this file.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_BANS = 10000  # the oldest go first beyond this (a flood of abusers must not grow the file unbounded)


@dataclass
class Ban:
    id: str
    reason: str  # what the session did, in words for the operator and the banned visitor
    rule: str  # the guard's rule: banned_command, cpu_budget, destinations, operator
    created: float  # wall-clock seconds
    until: float  # wall-clock seconds
    network: str = ""  # '' when the address was exempt (banned by browser only)
    containers: list[str] = field(default_factory=list)  # the pool ids its session cookies name
    workshop: str = ""

    def public(self) -> dict:
        """What the admin API shows (everything: only operators see it)."""
        return {**asdict(self), "until_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.until))}


class Bans:
    """The ban list, in memory and in its file."""

    def __init__(self, path: Path | None, log: logging.Logger, clock: Callable[[], float] = time.time):
        self.path = path
        self.log = log
        self.clock = clock
        self._bans: dict[str, Ban] = {}
        self.load()

    # --- the file ------------------------------------------------------------------------------

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            rows = json.loads(self.path.read_text())["bans"]
            bans = [Ban(**row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Never start without the service over a damaged file: say so, keep it aside, start empty.
            aside = self.path.with_suffix(".damaged")
            self.log.error("bans: cannot read %s (%s): moved to %s, starting with no bans", self.path, exc, aside)
            os.replace(self.path, aside)
            return
        now = self.clock()
        self._bans = {ban.id: ban for ban in bans if ban.until > now}
        if self._bans:
            self.log.info("bans: %d in force (from %s)", len(self._bans), self.path)

    def save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"bans": [asdict(b) for b in self._bans.values()]}, indent=1))
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    # --- the list ------------------------------------------------------------------------------

    def add(self, *, reason: str, rule: str, hours: float, network: str, containers: list[str],
            workshop: str = "") -> Ban:
        now = self.clock()
        ban = Ban(id=secrets.token_hex(8), reason=reason, rule=rule, created=now, until=now + hours * 3600,
                  network=network, containers=list(containers), workshop=workshop)
        self._bans[ban.id] = ban
        while len(self._bans) > MAX_BANS:
            del self._bans[next(iter(self._bans))]
        self.save()
        return ban

    def lift(self, ban_id: str) -> Ban | None:
        ban = self._bans.pop(ban_id, None)
        if ban is not None:
            self.save()
        return ban

    def current(self) -> list[Ban]:
        """Bans in force, the newest first."""
        self._expire()
        return sorted(self._bans.values(), key=lambda b: b.created, reverse=True)

    def get(self, ban_id: str) -> Ban | None:
        self._expire()
        return self._bans.get(ban_id)

    def find(self, *, network: str, containers: set[str], ban_ids: set[str]) -> Ban | None:
        """The ban that applies to a request from ``network`` holding cookies naming ``containers`` (pool
        ids) and ``ban_ids`` (its ban cookie), or None."""
        if not self._bans:
            return None
        self._expire()
        for ban in self._bans.values():
            if ban.id in ban_ids or (ban.network and ban.network == network) or containers.intersection(
                    ban.containers):
                return ban
        return None

    def _expire(self) -> None:
        now = self.clock()
        gone = [i for i, b in self._bans.items() if b.until <= now]
        for ban_id in gone:
            del self._bans[ban_id]
        if gone:
            self.save()

    def __len__(self) -> int:
        self._expire()
        return len(self._bans)
