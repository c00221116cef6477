"""Who may keep how many bytes: one session, one client network, the whole service.

Kept work is disk shared by every attendee, so no one of them may take what
the others need. Three limits apply to every file before it is stored:

- ``max_per_attendee``: one session's files (newest first);
- ``max_per_network``: every session handed to one client network (an IPv4
  address, an IPv6 /64: ``proxy.addresses.network_of``), so a visitor
  starting session after session (``?new=1``), or dropping their cookies, still
  keeps at most that much. The network is recorded only as a keyed digest
  (``Kept.owner``): the address itself never reaches the disk;
- ``max_total``: everything, on this machine.

The sums are kept up to date as files are added and dropped and sessions
deleted (every session and network at once, in O(1) per file), rather than
counted again for each file: with 2,000 files a session and hundreds of
sessions that was quadratic, on the event loop, at every checkpoint.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Protocol

from ..traits import format_memory
from .store import Kept

ROOM_AGAIN = 0.9  # a limit's problem is cleared once usage falls below this share of it


class Limits(Protocol):
    """The WorkKeeper's settings this reads (live: a reload applies to the next file)."""

    log: logging.Logger
    max_per_attendee: int
    max_per_network: int
    max_total: int


def size_of(kept: Kept, path: str) -> int:
    entry = kept.files.get(path)
    return entry["size"] if entry is not None else 0


class KeptSpace:
    """The bytes kept, in all and per network; the one place kept files are added to or dropped from a session."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.total = 0
        self.by_owner: dict[str, int] = defaultdict(int)  # Kept.owner -> bytes kept under it
        self._full = ""  # why files are refused for lack of space in all ('' while there is room)
        self._crowded: set[str] = set()  # owners at max_per_network

    # --- the sums ---------------------------------------------------------------------------------

    def count(self, kept: Kept) -> None:
        """Add a session found on disk (or begun) to the sums."""
        self._change(kept, kept.size)

    def forget(self, kept: Kept) -> None:
        """A session deleted (expired, by its owner or an operator, or replaced): its bytes are free again."""
        self._change(kept, -kept.size)

    def put(self, kept: Kept, path: str, entry: dict) -> dict | None:
        """Record ``entry`` ({size, modified, saved}) as ``kept``'s ``path``; returns what it replaced."""
        before = kept.files.get(path)
        kept.files[path] = entry
        self._change(kept, entry["size"] - (before["size"] if before else 0))
        return before

    def drop(self, kept: Kept, path: str) -> None:
        """``path`` is no longer kept (deleted by the attendee, or found to be the image's own)."""
        before = kept.files.pop(path, None)
        if before is not None:
            self._change(kept, -before["size"])

    def _change(self, kept: Kept, delta: int) -> None:
        if not delta:
            return
        self.total += delta
        if kept.owner:
            self.by_owner[kept.owner] += delta
            if self.by_owner[kept.owner] <= 0:
                del self.by_owner[kept.owner]
        if delta < 0:
            self._room_again()

    def _room_again(self) -> None:
        limits = self.limits
        if self._full and self.total < ROOM_AGAIN * limits.max_total:
            self._full = ""
            limits.log.info("kept work has room again (%s of %sB used)", format_memory(self.total),
                            format_memory(limits.max_total))
        if self._crowded:
            self._crowded = {o for o in self._crowded
                             if self.by_owner.get(o, 0) >= ROOM_AGAIN * limits.max_per_network}

    # --- the rule ----------------------------------------------------------------------------------

    def allowance(self, kept: Kept, path: str, room: int) -> int:
        """The most bytes ``path`` could take in ``kept`` now (what to read of it at most): ``room`` is what
        the session has left; the network's and the service's room count the file's older version as free."""
        limits = self.limits
        held = size_of(kept, path)
        most = min(limits.max_per_attendee, room, limits.max_total - self.total + held)
        if kept.owner and limits.max_per_network:
            most = min(most, limits.max_per_network - self.by_owner.get(kept.owner, 0) + held)
        return max(0, most)

    def refusal(self, kept: Kept, path: str, size: int, room: int, network: str = "") -> str:
        """Why ``size`` bytes cannot be kept as ``kept``'s ``path`` ('' when they can), in words for the
        attendee; the operator is told (log, ``problem``) when a network or the service is full.
        ``network``: the client network, for the log only (never stored)."""
        limits = self.limits
        if size > limits.max_per_attendee:
            return "too large"
        if size > room:
            return f"over the {format_memory(limits.max_per_attendee)}B each attendee may keep"
        held = size_of(kept, path)
        if kept.owner and limits.max_per_network and \
                self.by_owner.get(kept.owner, 0) - held + size > limits.max_per_network:
            if kept.owner not in self._crowded:
                self._crowded.add(kept.owner)
                limits.log.warning(
                    "kept work from network %s (key %s) reached WorkKeeper.max_per_network (%sB): its new files are "
                    "not kept. If a whole room shares one address, raise it (docs/workshop/kept-work.md).",
                    network or "(unknown)", kept.owner, format_memory(limits.max_per_network))
            return (f"over the {format_memory(limits.max_per_network)}B kept for one network: sessions started "
                    "from your network (everyone behind the same address) have used it")
        if self.total - held + size > limits.max_total:
            if not self._full:
                self._full = (f"kept work reached WorkKeeper.max_total ({format_memory(limits.max_total)}B): new "
                              "files are not kept")
                limits.log.error("%s", self._full)
            return "the service's space for kept work is full"
        return ""

    @property
    def problems(self) -> list[str]:
        """What operators should know about space ('' parts left out)."""
        parts = [self._full] if self._full else []
        if self._crowded:
            parts.append(f"{len(self._crowded)} client network(s) reached WorkKeeper.max_per_network "
                         f"({format_memory(self.limits.max_per_network)}B): their new files are not kept")
        return parts
