"""The pool's removals: giving a container up, in order (its route, its attendee's work, the container),
an operator's removal, and a hand-out nobody opened given up.

A container handed out is never handed out again, whatever happened to it:
its visitor's browser, a page's script, a restore of kept work or a script
that never followed the redirect may all have written to it (or run code in
it) without a single request through the proxy, so "nothing went through the
proxy" proves nothing. Only a spare is clean by construction.

A mixin of ``Pool`` (as ``launch`` and ``upkeep`` are): it reads the pool's
slots and settings, so accounting stays in one place (pool.py).
"""

from __future__ import annotations

from ..engines.base import BackendError
from .slot import ASSIGNED, LAUNCHING, REMOVING, Slot

# How a session ended, when its container is gone already (nothing left to save from it).
DEAD_ENDINGS = frozenset({"died", "oom", "lost", "removed"})


class PoolRemovals:
    """Removing containers for the pool (see Pool.keeper for the attendee's work saved first)."""

    def release(self, slot: Slot, reason: str, visitor_reason: str = "", kind: str = "other") -> None:
        """Give a container up (remove it in the background); the pool refills."""
        self._background_task(self._remove(slot, reason, visitor_reason=visitor_reason, kind=kind))

    async def _remove(self, slot: Slot, reason: str, *, container: bool = True, visitor_reason: str = "",
                      kind: str = "other") -> None:
        """Route first, then (its attendee's work saved) the container; then refill. Idempotent.

        ``visitor_reason`` is what the ended page tells an assigned container's
        visitor; ``kind`` names the ending for the record (idle, max_age,
        operator, disk, fresh, stopping; abuse, whose work is not kept; died, oom, lost, removed when the
        container is gone already, so only its last checkpoint can be kept).
        """
        if slot.state == REMOVING:
            return
        was = slot.state
        slot.state = REMOVING
        if was == ASSIGNED and visitor_reason:
            self.ended.record(slot.cid, visitor_reason)
        if self.routes is not None and slot.route is not None and self.routes.get(slot.prefix) is slot.route:
            self.routes.remove(slot.prefix)  # first: nothing changes in it while its files are saved
        self.log.info("removing %s container %s: %s", was, slot.name or slot.cid, reason)
        if was == ASSIGNED:
            self.record("end", cid=slot.cid, kind=kind, reason=reason,
                        assigned_seconds=round(self.wallclock() - slot.assigned_at, 1) if slot.assigned_at else None)
            try:
                if self.keeper is not None and slot.opened and kind != "abuse":
                    await self.keeper.session_ended(slot, visitor_reason or reason,
                                                    alive=container and kind not in DEAD_ENDINGS)
                elif self.keeper is not None and kind != "abuse":  # (restored work that ran a miner stays used)
                    await self.keeper.never_opened(slot.cid)
            except Exception:  # never let a failed save keep a container: it is logged and shown
                self.log.exception("kept work of %s: saving failed", slot.cid)
        try:
            if container and slot.engine_id:
                await self.backend.remove(slot.engine_id)
        except BackendError as exc:
            self.log.warning("could not remove %s (reconcile will retry): %s", slot.name or slot.cid, exc)
        finally:
            if self.slots.get(slot.cid) is slot:
                del self.slots[slot.cid]
            self._schedule()
            if self.on_freed is not None:
                self.on_freed(self)

    async def remove(self, cid: str, reason: str = "removed by an operator") -> bool:
        """Remove one container by id; False if the pool has none by that id."""
        slot = self.slots.get(cid)
        if slot is None or slot.state in (LAUNCHING, REMOVING):
            return False
        await self._remove(slot, reason, visitor_reason="An operator of this workshop stopped it.", kind="operator")
        return True

    async def give_up_unopened(self, slot: Slot) -> None:
        """Remove a container handed out whose visitor never opened it (its place goes to a fresh spare).

        Never back to the spares: see the module's notes.
        """
        if slot.state != ASSIGNED:
            return
        await self._remove(slot, f"handed out but never opened within unopened_timeout ({self.unopened_timeout:g}s)",
                           visitor_reason="It was never opened, so it was stopped to make room for others.",
                           kind="unopened")

    async def end_for_abuse(self, slot: Slot, reason: str, visitor_reason: str) -> None:
        """End a session the abuse guard caught (spawner.guard): its work is not kept (a miner's files,
        restored, would run again)."""
        if slot.state != ASSIGNED:
            return
        self.stats.abuse += 1
        await self._remove(slot, f"abuse: {reason}", visitor_reason=visitor_reason, kind="abuse")
