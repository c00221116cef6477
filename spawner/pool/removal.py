"""The pool's removals: giving a container up, in order (its route, its attendee's work, the container),
an operator's removal, and a hand-out nobody opened taken back.

A mixin of ``Pool`` (as ``launch`` and ``upkeep`` are): it reads the pool's
slots and settings, so accounting stays in one place (pool.py).
"""

from __future__ import annotations

from ..engines.base import BackendError
from .slot import ASSIGNED, LAUNCHING, REMOVING, SPARE, Slot, spare_name

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
        operator, disk, fresh, stopping; died, oom, lost, removed when the
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
            if self.keeper is not None and slot.opened:
                try:
                    await self.keeper.session_ended(slot, visitor_reason or reason,
                                                    alive=container and kind not in DEAD_ENDINGS)
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

    async def return_unopened(self, slot: Slot) -> None:
        """Take back a container whose visitor never opened it: a spare again (untouched), or removed.

        The rename back to a spare's name is awaited before it can be handed
        out again, so the engine never holds a stale record of who has it.
        """
        if slot.state != ASSIGNED:
            return
        slot.state = LAUNCHING  # neither anyone's nor a spare until the engine agrees
        slot.nonce, slot.owner, slot.assigned_at = "", "", None
        try:
            await self.backend.rename(slot.engine_id, spare_name(self.pool_name, slot.cid))
        except BackendError as exc:
            self.log.warning("could not turn %s back into a spare: %s", slot.cid, exc)
            slot.state = SPARE
            self.release(slot, "could not be turned back into a spare")
            return
        slot.name = spare_name(self.pool_name, slot.cid)
        slot.state = SPARE
        if self.closing or slot.generation != self.generation or self.available >= self.target_warm:
            self.release(slot, "handed out, never opened, not needed as a spare")
            return
        self.log.info("container %s was handed out but never opened: a spare again", slot.cid)
        self._spares.appendleft(slot)  # the oldest spare goes first
        self._schedule()
