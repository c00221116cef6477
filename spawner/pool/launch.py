"""The pool's launches: how many containers to start, starting one, its readiness, and its failures.

A mixin of ``Pool`` (as ``upkeep.PoolUpkeep`` is): it reads the pool's slots
and settings, so accounting stays in one place (pool.py). A launch is
admitted only after its server answered a real readiness check with its
token; failures are logged with the container's own output, removed, and
retried with exponential backoff until the circuit breaker opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from ..backoff import GaveUp, wait_for_http, warm_up
from ..engines.base import CREATED_LABEL, IMAGE_LABEL, WORKSHOP_LABEL, BackendError, EngineUnavailable, NoRoom
from .errors import PoolUnavailable
from .slot import ASSIGNED, LAUNCHING, SPARE, Slot, spare_name

NO_ROOM_RETRY = 5.0  # seconds before launching again after the engine had no room


class PoolLaunches:
    """Starting containers for the pool (see Pool.warm, spawn_concurrency, start_timeout, failure_backoff)."""

    def _schedule(self) -> None:
        """Start as many launches as spares and waiters need, within the cap, backoff and breaker."""
        if self.closing or self.retired or (not self.started and not self._queue) or not self.can_launch:
            return  # (the engine's return, or room on its disk, schedules again)
        now = self.clock()
        if now < self._hold_until:
            if self._wakeup is None:
                self._wakeup = asyncio.get_running_loop().call_later(self._hold_until - now, self._wake)
            return
        need = max(0, self.target_warm - self.available) + len(self._queue) - self.launching
        room = self.room()
        n = min(need, room)
        if self.breaker_open:
            # Open breaker: a single probe at a time, every breaker_probe_interval.
            n = min(n, 0 if self._in_flight else 1)
            if n:
                self._hold_until = now + self.breaker_probe_interval
        for _ in range(max(0, n)):
            self._start_launch()

    def _wake(self) -> None:
        self._wakeup = None
        self._schedule()

    def _start_launch(self) -> None:
        slot = Slot(cid=secrets.token_hex(6), state=LAUNCHING, generation=self.generation,
                    created=self.wallclock(), launch_started=self.clock(), workshop=self.workshop)
        while slot.cid in self.slots:  # 48 random bits: a clash is astronomically unlikely, still checked
            slot.cid = secrets.token_hex(6)
        self.slots[slot.cid] = slot
        self._in_flight.add(slot)
        task = asyncio.get_running_loop().create_task(self._launch(slot))
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    async def _launch(self, slot: Slot) -> None:
        try:
            ready = await self._bring_up(slot)
        finally:
            # Counted as launching until here, so a refill scheduled from now on sees the truth.
            self._in_flight.discard(slot)
        if ready:
            self._ready(slot)
        else:
            self._schedule()

    async def _bring_up(self, slot: Slot) -> bool:
        """Start ``slot``'s container and wait for its server; False (logged, removed) if it failed."""
        token = self.secret.token_for(slot.cid)
        try:
            async with self.spawn_gate:
                if self.closing:
                    raise asyncio.CancelledError
                info = await self._start_container(slot, token)
                auth = {"Authorization": f"token {token}"}
                await wait_for_http(slot.url("api/status", info.endpoint.url), headers=auth,
                                    timeout=self.start_timeout,
                                    give_up=lambda: "its container exited while starting" if slot.exited else None)
                await self.backend.promote(info.engine_id)
                warmup = self.warmup_page()
                if warmup and not self._queue:
                    # Only for a spare: a visitor waiting in line renders the page themselves, sooner.
                    await warm_up(slot.url(warmup, info.endpoint.url), auth)
                if self.keeper is not None:
                    # Before any container of this image is anyone's: what its own files are.
                    await self.keeper.learn_image(slot, self.share_scope())
                if self.on_spare is not None:
                    await self.on_spare(slot)
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
            self._hold_until = max(self._hold_until, self.clock() + NO_ROOM_RETRY)
            return False
        except EngineUnavailable as exc:
            # Not the image's fault: no failed start counted; launches resume when the engine answers.
            self.log.warning("start of %s interrupted: %s", slot.cid, exc)
            await self._drop_launch(slot)
            self.on_engine(False)
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
        self._hold_until = 0.0
        self.no_room = ""
        self.stats.launched += 1
        self.stats.record_spawn(self.clock() - slot.launch_started)
        self.stats.launch_intervals.append((slot.launch_started, self.clock()))
        self.record("launch", cid=slot.cid, seconds=round(self.clock() - slot.launch_started, 3))
        return True

    async def _start_container(self, slot: Slot, token: str):
        """backend.start, made safe to cancel: the engine call runs on in its thread, so a
        cancelled launch waits for it and removes what it made instead of leaving it behind."""
        slot.image = self.backend.image
        labels = {CREATED_LABEL: str(int(slot.created)), IMAGE_LABEL: self.backend.image}
        if self.workshop:
            labels[WORKSHOP_LABEL] = self.workshop
        start = asyncio.ensure_future(self.backend.start(
            self.pool_name, slot.cid, name=spare_name(self.pool_name, slot.cid), token=token,
            base_url=slot.base_url, labels=labels))
        try:
            info = await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                made = await start
                await self._quiet_remove(made.engine_id)
            raise
        slot.engine_id, slot.name, slot.endpoint, slot.node = info.engine_id, info.name, info.endpoint, info.node
        return info

    async def _drop_launch(self, slot: Slot) -> None:
        """Forget a launch that did not fail by its own fault, and remove what it made (nothing is counted)."""
        self.slots.pop(slot.cid, None)
        if slot.engine_id:
            await self._quiet_remove(slot.engine_id)

    async def _launch_failed(self, slot: Slot, exc: BaseException) -> None:
        # Accounted at once (counters, backoff, breaker), before the slow cleanup: whoever sees the
        # failure counted also sees its backoff, and no launch slips in meanwhile.
        self.stats.failed_starts += 1
        self.record("failed", what="start", reason=str(exc)[:300])
        self.consecutive_failures += 1
        delay = min(self.failure_backoff * 2 ** (self.consecutive_failures - 1), self.failure_backoff_max)
        self._hold_until = max(self._hold_until, self.clock() + delay)
        if self.breaker_open:
            self._hold_until = max(self._hold_until, self.clock() + self.breaker_probe_interval)
            # Visitors in line would wait for nothing: tell them now.
            self.turn_away(lambda: PoolUnavailable("circuit breaker open"))
        failures = self.consecutive_failures
        try:
            logs = await self.backend.logs(slot.engine_id) if slot.engine_id else ""
            self.log.error("container %s failed to start (%d in a row): %s%s", slot.name or slot.cid,
                           failures, exc, f"\n--- its last output ---\n{logs}" if logs else "")
        finally:
            # Even when stop() cancels us while the logs are fetched, the container goes.
            self.slots.pop(slot.cid, None)
            if slot.engine_id:
                await self._quiet_remove(slot.engine_id)
        if failures >= self.breaker_threshold:
            self.log.error("circuit breaker open after %d failed starts: probing every %.0fs",
                           failures, self.breaker_probe_interval)

    async def _quiet_remove(self, engine_id: str) -> None:
        """Remove a container, logging failure. The removal is a tracked task that a cancelled
        caller does not abandon half-way: stop() waits for it, so nothing is left mid-removal."""
        await asyncio.shield(self._background_task(self._remove_engine(engine_id)))

    async def _remove_engine(self, engine_id: str) -> None:
        try:
            await self.backend.remove(engine_id)
        except BackendError as exc:
            self.log.warning("could not remove container %s (reconcile will retry): %s", engine_id[:12], exc)

    def _ready(self, slot: Slot) -> None:
        """A launched container answered: route it, then give it to the first waiter or keep it spare."""
        if self.closing or slot.generation != self.generation:
            self.release(slot, "launched before a drain")
            return
        self._route(slot)
        if self._give_to_next_waiter(slot):
            self._schedule()
            return
        if self.available >= self.target_warm:
            self.release(slot, "more spares than warm")
            return
        slot.state = SPARE
        self._spares.append(slot)
        self._schedule()

    def _give_to_next_waiter(self, slot: Slot) -> bool:
        """Assign ``slot`` to the first visitor still in line (tickets given up are dropped); False if none."""
        while self._queue:
            ticket = self._queue.popleft()
            if not ticket.future.done():
                self._assign(slot, ticket.owner, ticket.embedded)
                self._background_task(self._serve_ticket(slot, ticket))
                return True
        return False

    def _route(self, slot: Slot) -> None:
        if self.routes is None:
            return
        options = dict(self.route_options(slot)) if self.route_options else {}
        headers = {"Authorization": f"token {self.secret.token_for(slot.cid)}", **options.pop("headers", {})}
        # A container that has run no visitor's code may serve the shared static cache its
        # image's files: a new one may (the proxy ends that at its first request that can
        # run code); one adopted after a restart with a visitor may not (its past is unknown).
        slot.route = self.routes.add(slot.prefix, slot.endpoint.url, headers=headers,
                                     data=slot, share=self.share_scope(), fill_ok=slot.state != ASSIGNED,
                                     **options)
