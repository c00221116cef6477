"""The pool's launches: how many containers to start, starting one, its readiness, and its failures.

A launch is admitted only after its server answered a real readiness check with
its token; failures are logged with the container's own output, removed, and
retried with exponential backoff until the circuit breaker opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..backoff import GaveUp, wait_for_http, warm_up
from ..engines.base import (
    CREATED_LABEL,
    IMAGE_LABEL,
    WORKSHOP_LABEL,
    BackendError,
    ContainerBackend,
    EngineUnavailable,
    NoRoom,
)
from ..secret import ServerSecret
from .errors import PoolUnavailable
from .gate import GateShare
from .routing import SlotRoutes
from .slot import LAUNCHING, SPARE, Slot, spare_name
from .state import PoolState

NO_ROOM_RETRY = 5.0  # seconds before launching again after the engine had no room


class LaunchSettings(Protocol):
    """What the launches read of the pool's settings (live: a reload applies at once)."""

    pool_name: str
    workshop: str
    start_timeout: float
    failure_backoff: float
    failure_backoff_max: float
    breaker_threshold: int
    breaker_probe_interval: float

    @property
    def target_warm(self) -> int: ...

    def room(self) -> int: ...

    def warmup_page(self) -> str: ...

    def share_scope(self) -> str: ...


class Launches:
    """Starting containers (see Pool.warm, spawn_concurrency, start_timeout, failure_backoff); ``schedule`` is
    the pool's one "look again at what is needed" that every other part is given."""

    def __init__(self, state: PoolState, *, settings: LaunchSettings, backend: ContainerBackend,
                 secret: ServerSecret, gate: Callable[[], GateShare], routes: SlotRoutes,
                 give_to_next_waiter: Callable[[Slot], bool], turn_away: Callable[[Callable], None],
                 release: Callable[..., None], remove_quietly: Callable[[str], Awaitable[None]],
                 keeper: Callable[[], Any], on_spare: Callable[[], Callable | None],
                 can_launch: Callable[[], bool], engine_lost: Callable[[], None],
                 record: Callable[..., None], clock: Callable[[], float], wallclock: Callable[[], float],
                 log: logging.Logger):
        self.state = state
        self.settings = settings
        self.backend = backend
        self.secret = secret
        self.gate = gate  # () -> this pool's share of the starts in flight (one limit per machine)
        self.routes = routes
        self.give_to_next_waiter = give_to_next_waiter
        self.turn_away = turn_away
        self.release = release
        self.remove_quietly = remove_quietly
        self.keeper = keeper  # () -> the WorkKeeper, or None
        self.on_spare = on_spare  # () -> async on_spare(slot), or None (Pool.on_spare)
        self.can_launch = can_launch  # the engine answers and its disk has room (EngineWatch)
        self.engine_lost = engine_lost
        self.record = record
        self.clock = clock
        self.wallclock = wallclock
        self.log = log
        self.consecutive_failures = 0
        self.hold_until = 0.0  # no launches before this (backoff after failures)
        self.no_room = ""  # why the engine could not take the last launch ('' once one succeeds)
        self.wakeup: asyncio.TimerHandle | None = None

    @property
    def breaker_open(self) -> bool:
        return self.consecutive_failures >= self.settings.breaker_threshold

    def engine_returned(self) -> None:
        """Starts that failed while the engine was away were not the image's fault: no backoff, no breaker."""
        self.consecutive_failures = 0
        self.hold_until = 0.0

    def stop(self) -> None:
        if self.wakeup is not None:
            self.wakeup.cancel()


    def schedule(self) -> None:
        """Start as many launches as spares and waiters need, within the cap, backoff and breaker."""
        state = self.state
        if state.closing or state.retired or (not state.started and not state.queue) or not self.can_launch():
            return  # (the engine's return, or room on its disk, schedules again)
        now = self.clock()
        if now < self.hold_until:
            if self.wakeup is None:
                self.wakeup = asyncio.get_running_loop().call_later(self.hold_until - now, self._wake)
            return
        need = max(0, self.settings.target_warm - self.state.available) + len(self.state.queue) - self.state.launching
        room = self.settings.room()
        n = min(need, room)
        if self.breaker_open:
            # Open breaker: a single probe at a time, every breaker_probe_interval.
            n = min(n, 0 if self.state.in_flight else 1)
            if n:
                self.hold_until = now + self.settings.breaker_probe_interval
        for _ in range(max(0, n)):
            self._start_launch()

    def _wake(self) -> None:
        self.wakeup = None
        self.schedule()

    def _start_launch(self) -> None:
        slot = Slot(cid=secrets.token_hex(6), state=LAUNCHING, generation=self.state.generation,
                    created=self.wallclock(), launch_started=self.clock(), workshop=self.settings.workshop)
        while slot.cid in self.state.slots:  # 48 random bits: a clash is astronomically unlikely, still checked
            slot.cid = secrets.token_hex(6)
        self.state.slots[slot.cid] = slot
        self.state.in_flight.add(slot)
        task = asyncio.get_running_loop().create_task(self._launch(slot))
        self.state.launches.add(task)
        task.add_done_callback(self.state.launches.discard)

    async def _launch(self, slot: Slot) -> None:
        try:
            ready = await self._bring_up(slot)
        finally:
            # Counted as launching until here, so a refill scheduled from now on sees the truth.
            self.state.in_flight.discard(slot)
        if ready:
            self._ready(slot)
        else:
            self.schedule()

    async def _bring_up(self, slot: Slot) -> bool:
        """Start ``slot``'s container and wait for its server; False (logged, removed) if it failed."""
        token = self.secret.token_for(slot.cid)
        try:
            async with self.gate():
                if self.state.closing:
                    raise asyncio.CancelledError
                info = await self._start_container(slot, token)
                auth = {"Authorization": f"token {token}"}
                await wait_for_http(slot.url("api/status", info.endpoint.url), headers=auth,
                                    timeout=self.settings.start_timeout,
                                    give_up=lambda: "its container exited while starting" if slot.exited else None)
                await self.backend.promote(info.engine_id)
                warmup = self.settings.warmup_page()
                if warmup and not self.state.queue:
                    # Only for a spare: a visitor waiting in line renders the page themselves, sooner.
                    await warm_up(slot.url(warmup, info.endpoint.url), auth)
                keeper = self.keeper()
                if keeper is not None:
                    # Before any container of this image is anyone's: what its own files are.
                    await keeper.learn_image(slot, self.settings.share_scope())
                on_spare = self.on_spare()
                if on_spare is not None:
                    await on_spare(slot)
        except asyncio.CancelledError:
            await self._drop_launch(slot)
            raise
        except NoRoom as exc:
            # Every machine is full, paused or without the image: not a failed start. Try again
            # shortly (containers end, nodes join); visitors in line keep their place.
            if str(exc) != self.no_room:
                self.log.warning("no room for another container: %s", exc)
            self.no_room = str(exc)
            await self._drop_launch(slot)
            self.hold_until = max(self.hold_until, self.clock() + NO_ROOM_RETRY)
            return False
        except EngineUnavailable as exc:
            # Not the image's fault: no failed start counted; launches resume when the engine answers.
            self.log.warning("start of %s interrupted: %s", slot.cid, exc)
            await self._drop_launch(slot)
            self.engine_lost()
            return False
        except (BackendError, TimeoutError, OSError, GaveUp) as exc:
            if slot.lost:
                # Its machine went away while it started: not the image's fault, no failed start.
                self.log.warning("start of %s given up: %s", slot.cid, slot.lost)
                await self._drop_launch(slot)
                return False
            await self._launch_failed(slot, exc)
            return False
        except Exception as exc:  # a task boundary: whatever went wrong, account for it and go on
            self.log.exception("unexpected error starting %s", slot.cid)
            await self._launch_failed(slot, exc)
            return False
        if self.consecutive_failures:
            self.log.info("container start succeeded after %d failures%s", self.consecutive_failures,
                          "; circuit breaker closed" if self.breaker_open else "")
        self.consecutive_failures = 0
        self.hold_until = 0.0
        self.no_room = ""
        self.state.stats.launched += 1
        self.state.stats.record_spawn(self.clock() - slot.launch_started)
        self.state.stats.launch_intervals.append((slot.launch_started, self.clock()))
        self.record("launch", cid=slot.cid, seconds=round(self.clock() - slot.launch_started, 3))
        return True

    async def _start_container(self, slot: Slot, token: str):
        """backend.start, made safe to cancel: the engine call runs on in its thread, so a
        cancelled launch waits for it and removes what it made instead of leaving it behind."""
        slot.image = self.backend.image
        labels = {CREATED_LABEL: str(int(slot.created)), IMAGE_LABEL: self.backend.image}
        if self.settings.workshop:
            labels[WORKSHOP_LABEL] = self.settings.workshop
        start = asyncio.ensure_future(self.backend.start(
            self.settings.pool_name, slot.cid, name=spare_name(self.settings.pool_name, slot.cid), token=token,
            base_url=slot.base_url, labels=labels))
        try:
            info = await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                made = await start
                await self.remove_quietly(made.engine_id)
            raise
        slot.engine_id, slot.name, slot.endpoint, slot.node = info.engine_id, info.name, info.endpoint, info.node
        return info

    async def _drop_launch(self, slot: Slot) -> None:
        """Forget a launch that did not fail by its own fault, and remove what it made (nothing is counted)."""
        self.state.slots.pop(slot.cid, None)
        if slot.engine_id:
            await self.remove_quietly(slot.engine_id)

    async def _launch_failed(self, slot: Slot, exc: BaseException) -> None:
        # Accounted at once (counters, backoff, breaker), before the slow cleanup: whoever sees the
        # failure counted also sees its backoff, and no launch slips in meanwhile.
        self.state.stats.failed_starts += 1
        self.record("failed", what="start", reason=str(exc)[:300])
        self.consecutive_failures += 1
        settings = self.settings
        delay = min(settings.failure_backoff * 2 ** (self.consecutive_failures - 1), settings.failure_backoff_max)
        self.hold_until = max(self.hold_until, self.clock() + delay)
        if self.breaker_open:
            self.hold_until = max(self.hold_until, self.clock() + self.settings.breaker_probe_interval)
            # Visitors in line would wait for nothing: tell them now.
            self.turn_away(lambda: PoolUnavailable("circuit breaker open"))
        failures = self.consecutive_failures
        try:
            logs = await self.backend.logs(slot.engine_id) if slot.engine_id else ""
            self.log.error("container %s failed to start (%d in a row): %s%s", slot.name or slot.cid,
                           failures, exc, f"\n--- its last output ---\n{logs}" if logs else "")
        finally:
            # Even when stop() cancels us while the logs are fetched, the container goes.
            self.state.slots.pop(slot.cid, None)
            if slot.engine_id:
                await self.remove_quietly(slot.engine_id)
        if failures >= self.settings.breaker_threshold:
            self.log.error("circuit breaker open after %d failed starts: probing every %.0fs",
                           failures, self.settings.breaker_probe_interval)

    def _ready(self, slot: Slot) -> None:
        """A launched container answered: route it, then give it to the first waiter or keep it spare."""
        if self.state.closing or slot.generation != self.state.generation:
            self.release(slot, "launched before a drain")
            return
        self.routes.add(slot)
        if self.give_to_next_waiter(slot):
            self.schedule()
            return
        if self.state.available >= self.settings.target_warm:
            self.release(slot, "more spares than warm")
            return
        slot.state = SPARE
        self.state.spares.append(slot)
        self.schedule()
