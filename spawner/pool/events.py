"""The pool told what happens, the moment it happens: container events, the engine going and coming back,
the engine's disk filling up.

The engine's event stream (``ContainerBackend.watch``) reports a container
dying, a process killed at its memory limit, a container removed; the pool
acts at once instead of at the next reconcile pass, which stays as the
safety net.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..engines.base import DIED, OOM, REMOVED, BackendError, ContainerBackend, ContainerEvent
from .slot import LAUNCHING, REMOVING, Slot
from .state import PoolState

OOM_RECENT = 10.0  # seconds: a container that dies this soon after an OOM kill died of it


class WatchSettings(Protocol):
    pool_name: str
    min_free_disk: int


class EngineWatch:
    """What the pool does on engine events (see ContainerBackend.watch) and on low disk; it owns what the pool
    knows of the engine's health."""

    def __init__(self, state: PoolState, *, settings: WatchSettings, backend: ContainerBackend,
                 release: Callable[..., None], end: Callable[..., Awaitable[None]],
                 reconcile: Callable[[], Awaitable[None]], serve_line: Callable[[], None],
                 engine_returned: Callable[[], None], wake: Callable[[], None], record: Callable[..., None],
                 clock: Callable[[], float], log: logging.Logger):
        self.state = state
        self.settings = settings
        self.backend = backend
        self.release = release  # Removals.release
        self.end = end  # Removals.end
        self.reconcile = reconcile  # Upkeep.reconcile
        self.serve_line = serve_line  # Handouts.serve_line_from_spares
        self.engine_returned = engine_returned  # Launches.engine_returned: no backoff for its absence
        self.wake = wake
        self.record = record
        self.clock = clock
        self.log = log
        self.engine_up = True  # the engine answers
        self.engine_down_since = 0.0
        self.disk_low = False  # below min_free_disk
        self.disk_free = 0
        self.watcher: asyncio.Task | None = None

    @property
    def can_launch(self) -> bool:
        return self.engine_up and not self.disk_low


    def start_watching(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(
            self.backend.watch(self.settings.pool_name, self.on_container_event, self.on_engine))

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()

    def slot_of(self, event: ContainerEvent) -> Slot | None:
        slot = self.state.slots.get(event.cid)
        return slot if slot is not None and slot.engine_id == event.engine_id else None

    def on_container_event(self, event: ContainerEvent) -> None:
        slot = self.slot_of(event)
        if slot is None or slot.state == REMOVING:
            return  # not ours, or going anyway (we are removing it)
        if event.kind == OOM:
            slot.oom_kills += 1
            slot.last_oom = self.clock()
            self.state.stats.oom_kills += 1
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
            self.state.stats.replaced += 1
            self.log.warning("container %s (%s): %s; replacing it", slot.name or slot.cid, slot.state, why)
            self.release(slot, why, visitor_reason=visitor, kind=kind)
        elif event.kind == REMOVED:
            self.state.stats.replaced += 1
            self.log.warning("container %s (%s) was removed behind the pool's back", slot.name or slot.cid,
                             slot.state)
            self.state.background_task(self.end(slot, "removed behind the pool's back", container=False,
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
            self.state.background_task(self._until_engine_answers())
            return
        self.log.info("the container engine answers again after %.1fs: reconciling, launches resume",
                      self.clock() - self.engine_down_since)
        self.engine_returned()  # starts that failed while it was away were not the image's fault
        self.state.background_task(self._after_engine_returned())

    async def _until_engine_answers(self) -> None:
        """Ask the engine, more and more patiently (at most every 2 s), until it answers or the pool stops.

        The event stream notices the engine's return too; whichever is first
        says so, the other finds it said.
        """
        delay = 0.2
        while not self.engine_up and not self.state.closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                await self.backend.ping()
            except BackendError:
                continue
            self.on_engine(True)

    async def _after_engine_returned(self) -> None:
        await self.reconcile()
        self.serve_line()
        self.wake()

    async def check_space(self) -> None:
        """Stop launching while the engine's disk has less than min_free_disk free; resume when it has."""
        if not self.settings.min_free_disk:
            return
        try:
            free = await self.backend.free_space()
        except BackendError:
            return
        if free is None:
            return
        low = free < self.settings.min_free_disk
        if low and not self.disk_low:
            self.log.error("only %s free on the engine's disk (Pool.min_free_disk %s): no new containers until "
                           "there is more", gib(free), gib(self.settings.min_free_disk))
        elif not low and self.disk_low:
            self.log.info("%s free on the engine's disk again: launches resume", gib(free))
        self.disk_low, self.disk_free = low, free
        if not low:
            self.wake()


def visitor_words(reason: str) -> str:
    """An engine's reason ('its machine (node-2) stopped answering') as a sentence for the ended page."""
    return f"{reason[0].upper()}{reason[1:]}." if reason else "Its server stopped unexpectedly."


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
