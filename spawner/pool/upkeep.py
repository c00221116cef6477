"""The pool's upkeep: culling idle or old containers, the disk watchdog, and reconciling with the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..backoff import every, wait_for_http
from ..engines.base import CREATED_LABEL, IMAGE_LABEL, RUNNING, BackendError, ContainerBackend, ContainerInfo
from ..secret import ServerSecret
from ..traits import format_memory
from .events import visitor_words
from .removal import Removals
from .routing import SlotRoutes
from .slot import ASSIGNED, ASSIGNED_NAME, LAUNCHING, REMOVING, SPARE, Slot
from .state import PoolState


def minutes(seconds: float) -> str:
    """'10 minutes', '4 hours': a duration as a visitor reads it."""
    if seconds >= 7200:
        return f"{seconds / 3600:.0f} hours"
    count = max(1, round(seconds / 60))
    return f"{count} minute" + ("s" if count != 1 else "")


class UpkeepSettings(Protocol):
    pool_name: str
    workshop: str
    cull_interval: float
    reconcile_interval: float
    disk_check_interval: float
    cull_idle: float
    cull_embedded_idle: float
    cull_max_age: float
    unopened_timeout: float


class Upkeep:
    """Culling, the disk watchdog and reconciliation, each on its own loop (see Pool.cull_* and
    Pool.reconcile_interval); it owns what it last learnt of the engine's machines."""

    def __init__(self, state: PoolState, *, settings: UpkeepSettings, backend: ContainerBackend,
                 secret: ServerSecret, removals: Removals, routes: SlotRoutes, engine_up: Callable[[], bool],
                 check_space: Callable[[], Awaitable[None]], trim_spares: Callable[[], None],
                 wake: Callable[[], None], record: Callable[..., None], clock: Callable[[], float],
                 wallclock: Callable[[], float], log: logging.Logger):
        self.state = state
        self.settings = settings
        self.backend = backend
        self.secret = secret
        self.removals = removals
        self.routes = routes
        self.engine_up = engine_up
        self.check_space = check_space  # EngineWatch.check_space
        self.trim_spares = trim_spares  # Pool's: spares beyond warm and the cap go
        self.wake = wake
        self.record = record
        self.clock = clock
        self.wallclock = wallclock
        self.log = log
        self.node_info: list = []  # the engine's machines (NodeInfo), as of the last reconcile
        self.reconcile_lock = asyncio.Lock()
        self.loops: list[asyncio.Task] = []


    def start(self) -> None:
        loop, settings = asyncio.get_running_loop(), self.settings
        self.loops = [
            loop.create_task(every(lambda: settings.cull_interval, self.cull_once, self.log, "pool cull")),
            loop.create_task(every(lambda: settings.reconcile_interval, self.reconcile, self.log, "pool reconcile")),
            loop.create_task(every(lambda: settings.disk_check_interval, self._disk_pass, self.log,
                                   "pool disk check")),
        ]

    def stop(self) -> None:
        for task in self.loops:
            task.cancel()
        self.loops = []

    def nodes(self) -> list[dict]:
        """The engine's machines with this pool's containers on each (from the last reconcile and the slots)."""
        mine: dict[str, dict[str, int]] = {}
        for slot in self.state.slots.values():
            counts = mine.setdefault(slot.node, {})
            counts[slot.state] = counts.get(slot.state, 0) + 1
        rows = []
        for node in self.node_info:
            counts = mine.pop(node.name, None) or (mine.pop("", {}) if len(self.node_info) == 1 else {})
            rows.append({"name": node.name, "address": node.address, "state": node.state,
                         "availability": node.availability, "role": node.role, "image": node.image,
                         "agent": node.agent,
                         "memory_bytes": node.memory, "memory_reserved_bytes": node.reserved_memory,
                         "cores": node.cores, "containers": node.containers, "spare": counts.get(SPARE, 0),
                         "assigned": counts.get(ASSIGNED, 0), "launching": counts.get(LAUNCHING, 0)})
        return rows

    # --- culling ------------------------------------------------------------------------------------

    def cull_candidates(self) -> list[tuple[Slot, str, str, str]]:
        """Assigned containers due for removal: (slot, reason for the log, reason for its visitor, kind)."""
        now, wall, settings = self.clock(), self.wallclock(), self.settings
        due = []
        for slot in self.state.slots.values():
            if slot.state != ASSIGNED:
                continue  # spares are never culled for idleness
            if slot.embedded and settings.cull_embedded_idle and not slot.busy_kernels:
                quiet = now - slot.kernel_seen
                if quiet > settings.cull_embedded_idle:
                    due.append((slot, f"a page's server with no kernel run for {quiet:.0f}s (cull_embedded_idle "
                                      f"{settings.cull_embedded_idle:.0f}s)",
                                f"No code ran in it for {minutes(settings.cull_embedded_idle)}; the page gets a fresh "
                                "server when it runs code again.", "idle"))
                    continue
            if settings.cull_idle and slot.route is not None:
                idle = now - slot.route.last_activity
                if idle > settings.cull_idle:
                    due.append((slot, f"idle for {idle:.0f}s (cull_idle {settings.cull_idle:.0f}s)",
                                f"Nothing happened in it for {minutes(settings.cull_idle)}, so it was stopped to make "
                                "room for others.", "idle"))
                    continue
            if settings.cull_max_age and slot.assigned_at is not None:
                age = wall - slot.assigned_at
                if age > settings.cull_max_age:
                    due.append((slot, f"assigned {age:.0f}s ago (cull_max_age {settings.cull_max_age:.0f}s)",
                                f"Sessions last at most {minutes(settings.cull_max_age)}, and this one reached that.",
                                "max_age"))
        return due

    def unopened(self) -> list[Slot]:
        """Assigned containers their visitor never opened within unopened_timeout."""
        if not self.settings.unopened_timeout:
            return []
        cutoff = self.wallclock() - self.settings.unopened_timeout
        return [s for s in self.state.slots.values()
                if s.state == ASSIGNED and s.assigned_at is not None and s.assigned_at < cutoff and not s.opened]

    async def _disk_pass(self) -> None:
        await self.check_space()
        await self.check_disk()

    async def cull_once(self) -> int:
        """Remove the containers ``cull_candidates`` names (route first), and hand-outs nobody opened;
        returns how many were culled. Nothing is culled while the engine does not answer: a container
        whose removal cannot be done would come back, adopted, when it does."""
        if not self.engine_up():
            return 0
        for slot in self.unopened():
            await self.removals.give_up_unopened(slot)
        due = self.cull_candidates()
        if not due:
            return 0
        began = time.monotonic()
        self.state.stats.culled += len(due)
        # Together (each saves its attendee's work first, the keeper bounds how many at once): 20 due
        # at once take about as long as the slowest few, not the sum of them all.
        await asyncio.gather(*(self.removals.end(slot, f"culled: {reason}", visitor_reason=visitor_reason, kind=kind)
                               for slot, reason, visitor_reason, kind in due))
        took = time.monotonic() - began
        self.record("cull", count=len(due), seconds=round(took, 3))
        self.log.info("cull pass: %d containers ended in %.1fs (their attendees' work saved first)", len(due), took)
        return len(due)

    # --- disk ---------------------------------------------------------------------------------------

    async def check_disk(self) -> int:
        """End assigned containers whose own files outgrew the backend's disk_limit; returns how many.

        The watchdog for engines without a per-container disk quota: it
        measures each container's writable layer through the backend.
        """
        limit = self.backend.disk_limit
        if not limit or self.backend.disk_quota or not self.engine_up():
            return 0
        try:
            usage = await self.backend.disk_usage(self.settings.pool_name)
        except BackendError as exc:
            self.log.warning("disk check: cannot measure containers: %s", exc)
            return 0
        over = [(slot, usage[slot.engine_id]) for slot in list(self.state.slots.values())
                if slot.state == ASSIGNED and usage.get(slot.engine_id, 0) > limit]
        for slot, used in over:
            self.state.stats.over_disk += 1
            await self.removals.end(slot, f"its files take {used / 2**20:.0f} MiB, over the disk limit "
                                          f"{limit / 2**20:.0f} MiB",
                                    visitor_reason=f"It stored more than the {format_memory(limit)}B of files this "
                                                   "workshop allows per attendee.", kind="disk")
        return len(over)

    # --- reconciliation -------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the pool agree with the engine (one pass at a time).

        Exited or dead containers are removed with their routes (and replaced);
        running containers of this pool that the pool does not know (after a
        restart) are adopted with their routes; anything else unknown is
        removed; spares are topped up to ``warm`` and trimmed above it.
        """
        async with self.reconcile_lock:
            try:
                found = await self.backend.list(self.settings.pool_name)
            except BackendError as exc:
                self.log.warning("reconcile: cannot list containers: %s", exc)
                return
            by_cid: dict[str, ContainerInfo] = {}
            for info in found:
                if info.cid and info.cid not in by_cid:
                    by_cid[info.cid] = info
                else:  # labelled for this pool but without a usable id: not ours to keep
                    await self.removals.quietly(info.engine_id)

            for cid, slot in list(self.state.slots.items()):
                if slot.state in (LAUNCHING, REMOVING):
                    continue
                info = by_cid.get(cid)
                if info is not None and info.engine_id == slot.engine_id and info.state == RUNNING:
                    if slot.state == SPARE and not info.node_active:
                        # Its node is paused or drained for maintenance: a spare moves, attendees stay.
                        self.removals.release(slot, f"its node {info.node} takes no new containers")
                    continue
                what = "vanished" if info is None else f"is {info.state}"
                if info is not None and info.reason:
                    why, visitor, kind = info.reason, visitor_words(info.reason), "lost"
                else:
                    why, visitor, kind = f"it {what}", "Its server stopped unexpectedly.", "died"
                self.log.warning("container %s (%s): %s, behind the pool's back: replacing it",
                                 slot.name or cid, slot.state, why)
                self.state.stats.replaced += 1
                await self.removals.end(slot, why, container=info is not None, visitor_reason=visitor, kind=kind)

            for cid, info in by_cid.items():
                if cid in self.state.slots:
                    continue
                if info.state == RUNNING and info.endpoint is not None:
                    await self._adopt(info)
                else:
                    self.log.info("removing container %s found %s", info.name, info.state)
                    await self.removals.quietly(info.engine_id)

            try:
                self.node_info = await self.backend.nodes()
            except BackendError as exc:
                self.log.debug("reconcile: no node list: %s", exc)
            self.trim_spares()
            self.wake()
            self.log.debug("reconciled: %d containers, %d assigned", len(self.state.slots), self.state.count(ASSIGNED))

    async def _adopt(self, info: ContainerInfo) -> None:
        """Take over a running container found on the engine (after a restart)."""
        match = ASSIGNED_NAME.search(info.name)
        if match is None and (info.labels.get(IMAGE_LABEL) != self.backend.image or self.state.closing
                                  or self.state.retired):
            # A spare of an older image (or found while stopping): replace, never hand out.
            await self.removals.quietly(info.engine_id)
            return
        created = 0.0
        with contextlib.suppress(ValueError):
            created = float(info.labels.get(CREATED_LABEL, "0"))
        slot = Slot(cid=info.cid, state=SPARE, generation=self.state.generation, created=created,
                    engine_id=info.engine_id, name=info.name, endpoint=info.endpoint, node=info.node,
                    image=info.labels.get(IMAGE_LABEL, ""), workshop=self.settings.workshop)
        try:
            await wait_for_http(slot.url("api/status", info.endpoint.url),
                                headers={"Authorization": f"token {self.secret.token_for(info.cid)}"}, timeout=10)
        except TimeoutError as exc:
            self.log.warning("not adopting %s: its server does not answer (%s)", info.name, exc)
            await self.removals.quietly(info.engine_id)
            return
        if match is not None:
            slot.state = ASSIGNED
            slot.embedded = match.group(1) == "e"
            slot.instructor = match.group(1) == "i"
            slot.assigned_at = float(match.group(2))
            slot.nonce = match.group(3)
            slot.handout_requests = -1  # whether it was opened before the restart is unknown: assume so
            slot.kernel_seen = self.clock()  # its kernels' last run before the restart is unknown: from now
        if info.cid in self.state.slots:  # a launch picked the same id meanwhile (never in practice)
            await self.removals.quietly(info.engine_id)
            return
        self.state.slots[info.cid] = slot
        self.routes.add(slot)
        if slot.state == SPARE:
            self.state.spares.append(slot)
        self.state.stats.adopted += 1
        self.log.info("adopted %s container %s", slot.state, info.name)
