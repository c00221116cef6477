"""The pool told what happens, the moment it happens: container events, the engine going and coming back,
the engine's disk filling up.

A mixin of ``Pool`` (as ``launch`` and ``upkeep`` are). The engine's event
stream (``ContainerBackend.watch``) reports a container dying, a process
killed at its memory limit, a container removed; the pool acts at once
instead of at the next reconcile pass, which stays as the safety net.
"""

from __future__ import annotations

import asyncio

from ..engines.base import DIED, OOM, REMOVED, BackendError, ContainerEvent
from .slot import LAUNCHING, REMOVING, SPARE, Slot

OOM_RECENT = 10.0  # seconds: a container that dies this soon after an OOM kill died of it


class PoolEvents:
    """What the pool does on engine events (see ContainerBackend.watch) and on low disk."""

    def start_watching(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(
            self.backend.watch(self.pool_name, self.on_container_event, self.on_engine))

    def stop_watching(self) -> None:
        watcher = getattr(self, "_watcher", None)
        if watcher is not None:
            watcher.cancel()

    def slot_of(self, event: ContainerEvent) -> Slot | None:
        slot = self.slots.get(event.cid)
        return slot if slot is not None and slot.engine_id == event.engine_id else None

    def on_container_event(self, event: ContainerEvent) -> None:
        slot = self.slot_of(event)
        if slot is None or slot.state == REMOVING:
            return  # not ours, or going anyway (we are removing it)
        if event.kind == OOM:
            slot.oom_kills += 1
            slot.last_oom = self.clock()
            self.stats.oom_kills += 1
            self.record("oom", cid=slot.cid)
            self.log.warning("container %s (%s): a process was killed at its memory limit (%d so far); Jupyter "
                             "restarts a killed kernel, and its attendee sees that", slot.name or slot.cid,
                             slot.state, slot.oom_kills)
            return
        if slot.state == LAUNCHING:
            slot.exited = True  # its readiness wait gives up at once (see launch._bring_up)
            slot.lost = event.reason
            return
        if event.kind == DIED:
            if event.reason:  # the engine knows more than an exit code (its machine went away)
                why, visitor, kind = event.reason, visitor_words(event.reason), "lost"
            elif slot.last_oom and self.clock() - slot.last_oom < OOM_RECENT:
                why, visitor = "it ran out of memory", "It ran out of memory: it used all the memory each attendee has."
                kind = "oom"
            else:
                why = f"it stopped (exit code {event.exit_code})" if event.exit_code is not None else "it stopped"
                visitor, kind = "Its server stopped unexpectedly.", "died"
            self.stats.replaced += 1
            self.log.warning("container %s (%s): %s; replacing it", slot.name or slot.cid, slot.state, why)
            self.release(slot, why, visitor_reason=visitor, kind=kind)
        elif event.kind == REMOVED:
            self.stats.replaced += 1
            self.log.warning("container %s (%s) was removed behind the pool's back", slot.name or slot.cid,
                             slot.state)
            self._background_task(self._remove(slot, "removed behind the pool's back", container=False,
                                               visitor_reason="It was removed by an operator.", kind="removed"))

    def on_engine(self, up: bool) -> None:
        """The engine stopped answering, or answers again."""
        if up == self.engine_up:
            return
        self.engine_up = up
        if not up:
            self.engine_down_since = self.clock()
            self.log.warning("the container engine does not answer: running notebooks keep working, new "
                             "containers wait until it is back")
            self._background_task(self._until_engine_answers())
            return
        self.log.info("the container engine answers again after %.1fs: reconciling, launches resume",
                      self.clock() - self.engine_down_since)
        self.consecutive_failures = 0  # starts that failed while it was away were not the image's fault
        self._hold_until = 0.0
        self._background_task(self._after_engine_returned())

    async def _until_engine_answers(self) -> None:
        """Ask the engine, more and more patiently (at most every 2 s), until it answers or the pool stops.

        The event stream notices the engine's return too; whichever is first
        says so, the other finds it said.
        """
        delay = 0.2
        while not self.engine_up and not self.closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                await self.backend.ping()
            except BackendError:
                continue
            self.on_engine(True)

    async def _after_engine_returned(self) -> None:
        await self.reconcile()
        self.serve_line_from_spares()
        self._schedule()

    def serve_line_from_spares(self) -> None:
        """Give ready spares to visitors already in line (they queued while none could be handed out)."""
        while self._queue and self._spares:
            slot = self._spares.popleft()
            if slot.state == SPARE and not self._give_to_next_waiter(slot):
                self._spares.appendleft(slot)  # nobody was still waiting after all

    async def check_space(self) -> None:
        """Stop launching while the engine's disk has less than min_free_disk free; resume when it has."""
        if not self.min_free_disk:
            return
        try:
            free = await self.backend.free_space()
        except BackendError:
            return
        if free is None:
            return
        low = free < self.min_free_disk
        if low and not self.disk_low:
            self.log.error("only %s free on the engine's disk (Pool.min_free_disk %s): no new containers until "
                           "there is more", gib(free), gib(self.min_free_disk))
        elif not low and self.disk_low:
            self.log.info("%s free on the engine's disk again: launches resume", gib(free))
        self.disk_low, self.disk_free = low, free
        if not low:
            self._schedule()

    def problems(self) -> list[str]:
        """What keeps the pool from serving fully, in words for /healthz and the status page."""
        out = []
        if not self.engine_up:
            out.append(f"the container engine does not answer (for {self.clock() - self.engine_down_since:.0f}s)")
        if self.breaker_open:
            out.append(f"circuit breaker open after {self.consecutive_failures} failed starts")
        if self.no_room:
            out.append(self.no_room)
        if self.disk_low:
            out.append(f"only {gib(self.disk_free)} free on the engine's disk "
                       f"(min_free_disk {gib(self.min_free_disk)}): no new containers")
        return out

    @property
    def can_launch(self) -> bool:
        return self.engine_up and not self.disk_low


def visitor_words(reason: str) -> str:
    """An engine's reason ('its machine (node-2) stopped answering') as a sentence for the ended page."""
    return f"{reason[0].upper()}{reason[1:]}." if reason else "Its server stopped unexpectedly."


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
