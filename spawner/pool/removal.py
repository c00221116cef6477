"""The pool's removals: giving a container up, in order (its route, its attendee's work, the container),
an operator's removal, and a hand-out nobody opened given up.

A container handed out is never handed out again, whatever happened to it:
its visitor's browser, a page's script, a restore of kept work or a script
that never followed the redirect may all have written to it (or run code in
it) without a single request through the proxy, so "nothing went through the
proxy" proves nothing. Only a spare is clean by construction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..engines.base import BackendError, ContainerBackend
from .ended import EndedSessions
from .routing import SlotRoutes
from .slot import ASSIGNED, LAUNCHING, REMOVING, Slot
from .state import PoolState

# How a session ended, when its container is gone already (nothing left to save from it).
DEAD_ENDINGS = frozenset({"died", "oom", "lost", "removed"})


class Removals:
    """Removing containers (see Pool.keeper for the attendee's work saved first)."""

    def __init__(self, state: PoolState, *, backend: ContainerBackend, routes: SlotRoutes, ended: EndedSessions,
                 keeper: Callable[[], Any], record: Callable[..., None], wallclock: Callable[[], float],
                 log: logging.Logger, wake: Callable[[], None], freed: Callable[[], None],
                 unopened_timeout: Callable[[], float]):
        self.state = state
        self.backend = backend
        self.routes = routes
        self.ended = ended
        self.keeper = keeper  # () -> the WorkKeeper, or None (nothing kept)
        self.record = record
        self.wallclock = wallclock
        self.log = log
        self.wake = wake  # the launches look again at what is needed (a place was freed)
        self.freed = freed  # other pools under the same service-wide cap may start one
        self.unopened_timeout = unopened_timeout

    def release(self, slot: Slot, reason: str, visitor_reason: str = "", kind: str = "other") -> None:
        """Give a container up (remove it in the background); the pool refills."""
        self.state.background_task(self.end(slot, reason, visitor_reason=visitor_reason, kind=kind))

    async def end(self, slot: Slot, reason: str, *, container: bool = True, visitor_reason: str = "",
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
        self.routes.remove(slot)  # first: nothing changes in it while its files are saved
        self.log.info("removing %s container %s: %s", was, slot.name or slot.cid, reason)
        if was == ASSIGNED:
            self.record("end", cid=slot.cid, kind=kind, reason=reason,
                        assigned_seconds=round(self.wallclock() - slot.assigned_at, 1) if slot.assigned_at else None)
            keeper = self.keeper()
            try:
                if keeper is not None and slot.opened and kind != "abuse":
                    await keeper.session_ended(slot, visitor_reason or reason,
                                               alive=container and kind not in DEAD_ENDINGS)
                elif keeper is not None and kind != "abuse":  # (restored work that ran a miner stays used)
                    await keeper.never_opened(slot.cid)
            except Exception:  # never let a failed save keep a container: it is logged and shown
                self.log.exception("kept work of %s: saving failed", slot.cid)
        try:
            if container and slot.engine_id:
                await self.backend.remove(slot.engine_id)
        except BackendError as exc:
            self.log.warning("could not remove %s (reconcile will retry): %s", slot.name or slot.cid, exc)
        finally:
            if self.state.slots.get(slot.cid) is slot:
                del self.state.slots[slot.cid]
            self.wake()
            self.freed()

    async def remove(self, cid: str, reason: str = "removed by an operator") -> bool:
        """Remove one container by id; False if the pool has none by that id."""
        slot = self.state.slots.get(cid)
        if slot is None or slot.state in (LAUNCHING, REMOVING):
            return False
        await self.end(slot, reason, visitor_reason="An operator of this workshop stopped it.", kind="operator")
        return True

    async def give_up_unopened(self, slot: Slot) -> None:
        """Remove a container handed out whose visitor never opened it (its place goes to a fresh spare).

        Never back to the spares: see the module's notes.
        """
        if slot.state != ASSIGNED:
            return
        await self.end(slot, f"handed out but never opened within unopened_timeout ({self.unopened_timeout():g}s)",
                       visitor_reason="It was never opened, so it was stopped to make room for others.",
                       kind="unopened")

    async def end_for_abuse(self, slot: Slot, reason: str, visitor_reason: str) -> None:
        """End a session the abuse guard caught (spawner.guard): its work is not kept (a miner's files,
        restored, would run again)."""
        if slot.state != ASSIGNED:
            return
        self.state.stats.abuse += 1
        await self.end(slot, f"abuse: {reason}", visitor_reason=visitor_reason, kind="abuse")

    async def quietly(self, engine_id: str) -> None:
        """Remove a container no slot stands for, logging failure. The removal is a tracked task that a
        cancelled caller does not abandon half-way: stop() waits for it, so nothing is left mid-removal."""
        await asyncio.shield(self.state.background_task(self._remove_engine(engine_id)))

    async def _remove_engine(self, engine_id: str) -> None:
        try:
            await self.backend.remove(engine_id)
        except BackendError as exc:
            self.log.warning("could not remove container %s (reconcile will retry): %s", engine_id[:12], exc)
