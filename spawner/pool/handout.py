"""The pool's hand-out: a ready spare to a visitor in constant time, the waiting line for one started on
demand, and the engine's record of each hand-out (the container's name) that a restart reads back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from ..engines.base import BackendError, ContainerBackend, EngineUnavailable
from .errors import PoolClosed, PoolFull, PoolUnavailable, QueueTimeout
from .slot import ASSIGNED, SPARE, Slot, assigned_name
from .state import PoolState
from .ticket import Ticket

# Seconds a visitor told "full" should wait before trying again: places free up
# as containers are culled, and a short hint keeps a waiting page polling gently.
FULL_RETRY_AFTER = 15


class HandoutSettings(Protocol):
    """What the hand-outs read of the pool's settings (live: a reload applies at once)."""

    pool_name: str
    max_containers: int
    queue_size: int
    queue_timeout: float
    breaker_probe_interval: float

    def room(self) -> int: ...


class Handouts:
    """Handing containers out: spares at once, the waiting line for the rest."""

    def __init__(self, state: PoolState, *, settings: HandoutSettings, backend: ContainerBackend,
                 release: Callable[..., None], wake: Callable[[], None], record: Callable[..., None],
                 clock: Callable[[], float], wallclock: Callable[[], float], log: logging.Logger,
                 engine_up: Callable[[], bool], engine_lost: Callable[[], None],
                 breaker: Callable[[], int]):
        self.state = state
        self.settings = settings
        self.backend = backend
        self.release = release  # give a container up (Removals.release)
        self.wake = wake  # the launches look again at what is needed
        self.record = record
        self.clock = clock
        self.wallclock = wallclock
        self.log = log
        self.engine_up = engine_up
        self.engine_lost = engine_lost  # the engine did not answer: the pool waits for it (EngineWatch)
        self.breaker = breaker  # () -> failed starts in a row while the circuit breaker is open, else 0

    async def take_spare(self, owner: str = "", embedded: bool = False) -> Slot | None:
        """A ready spare, now assigned to ``owner`` and recorded with the engine, or None.

        Finding it is constant time; recording it is one engine call (a
        rename), awaited so the hand-out survives a crash of nbpool before the
        visitor is sent there. None while the engine does not answer (the
        visitor waits in line instead). Raises PoolUnavailable if the engine
        cannot record it.
        """
        if not self.engine_up() or self.state.retired:
            return None
        spares = self.state.spares
        while spares:
            slot = spares.popleft()
            if slot.state == SPARE:
                began = time.monotonic()
                self.assign(slot, owner, embedded)
                self.wake()
                if not await self.record_assignment(slot):
                    return None
                self.record("handout", cid=slot.cid, source="spare", wait=round(time.monotonic() - began, 4))
                return slot
        return None

    def turn_away(self, error) -> None:
        """Tell everyone in line they will not be served: ``error()`` makes each one's exception."""
        while self.state.queue:
            ticket = self.state.queue.popleft()
            if not ticket.future.done():
                ticket.future.set_exception(error())

    def holdings(self, owner: str | None = None) -> int:
        """Containers ``owner`` holds or waits for: assigned to it, plus its tickets in line (everyone's when
        ``owner`` is None)."""
        held = sum(1 for s in self.state.slots.values() if s.state == ASSIGNED and (owner is None or s.owner == owner))
        return held + sum(1 for t in self.state.queue if not t.future.done() and (owner is None or t.owner == owner))

    def enqueue(self, owner: str = "", embedded: bool = False) -> Ticket:
        """Join the waiting line for a container started on demand.

        Raises PoolFull at the cap (or a full line), PoolUnavailable while the
        circuit breaker is open, PoolClosed while stopping.
        """
        if self.state.closing or self.state.retired:
            raise PoolClosed("pool is stopping" if self.state.closing else "its workshop was removed")
        failures = self.breaker()
        if failures and not self.state.in_flight:
            raise PoolUnavailable(f"circuit breaker open after {failures} failed starts",
                                  retry_after=int(self.settings.breaker_probe_interval))
        if len(self.state.queue) >= self.settings.queue_size:
            raise PoolFull(f"waiting line full ({self.settings.queue_size})")
        unclaimed = self.state.launching - len(self.state.queue)
        room = self.settings.room()
        if unclaimed <= 0 and room <= 0:
            raise PoolFull(f"all {self.settings.max_containers} containers in use", retry_after=FULL_RETRY_AFTER)
        ticket = Ticket(self.state.queue, self.release, owner, embedded)
        self.state.queue.append(ticket)
        self.state.stats.queued_total += 1
        self.wake()
        return ticket

    async def acquire(self, timeout: float | None = None, owner: str = "") -> Slot:
        """A container for one visitor: a spare at once, else one started on demand (waiting in line)."""
        slot = await self.take_spare(owner)
        if slot is not None:
            return slot
        ticket = self.enqueue(owner)
        wait = self.settings.queue_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.future), wait)
        except TimeoutError:
            ticket.cancel()
            raise QueueTimeout(f"no container within {wait:.0f}s", retry_after=5) from None
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    def assign(self, slot: Slot, owner: str, embedded: bool = False) -> None:
        slot.state = ASSIGNED
        slot.embedded = embedded
        slot.assigned_at = self.wallclock()
        slot.nonce = secrets.token_hex(8)
        slot.owner = owner
        slot.kernel_seen = self.clock()  # the embedded cull counts from the hand-out until a kernel runs
        if slot.route is not None:
            slot.route.last_activity = self.clock()  # time as a spare is not idleness
            slot.handout_requests = slot.route.requests
        self.state.stats.handed_out += 1

    async def record_assignment(self, slot: Slot) -> bool:
        """Rename the container to its assigned form: True once the engine has it.

        A used container must never be adopted as a spare after a restart, so
        one whose hand-out the engine did not take is not handed out at all:
        nobody was sent to it, so while the engine is away it is a spare again
        (untouched) and this returns False (its visitor waits in line until the
        engine is back); after any other failure it is removed and
        PoolUnavailable raised.
        """
        name = assigned_name(self.settings.pool_name, slot)
        try:
            await asyncio.shield(self.backend.rename(slot.engine_id, name))
        except EngineUnavailable:
            self.log.warning("could not record the hand-out of %s (the engine does not answer): it stays a "
                             "spare", slot.cid)
            self.unassign(slot)
            self.engine_lost()
            return False
        except BackendError as exc:
            self.log.error("could not record the hand-out of %s with the engine, removing it: %s", slot.cid, exc)
            self.release(slot, "its hand-out could not be recorded")
            raise PoolUnavailable(f"rename failed: {exc}", retry_after=5) from None
        slot.name = name
        return True

    async def mark_instructor(self, slot: Slot) -> None:
        """``slot`` is the instructor's session: attendees follow its notebook. Kept in the container's name, as
        every hand-out is, so a restart still knows; the workshop's earlier instructor sessions stop being so."""
        for other in self.state.slots.values():
            if other.instructor and other is not slot:
                other.instructor = False
        if slot.instructor or slot.state != ASSIGNED:
            return
        slot.instructor = True
        name = assigned_name(self.settings.pool_name, slot)
        try:
            await self.backend.rename(slot.engine_id, name)
            slot.name = name
        except BackendError as exc:  # (it is the instructor's until a restart: only the name is missing)
            self.log.warning("could not record %s as the instructor's session: %s", slot.cid, exc)
        self.record("instructor", cid=slot.cid)

    def unassign(self, slot: Slot) -> None:
        """Undo a hand-out nobody was sent to: a spare again, first in line."""
        slot.state = SPARE
        slot.nonce, slot.owner, slot.assigned_at, slot.embedded, slot.instructor = "", "", None, False, False
        self.state.stats.handed_out -= 1
        self.state.spares.appendleft(slot)

    async def serve_ticket(self, slot: Slot, ticket: Ticket) -> None:
        """Record ``slot``'s hand-out to the visitor in line, then let them go to it."""
        try:
            recorded = await self.record_assignment(slot)
        except PoolUnavailable as error:
            if not ticket.future.done():
                ticket.future.set_exception(error)
            return
        if not recorded:  # the engine went away: back to the front of the line, served when it returns
            if not ticket.future.done():
                self.state.queue.appendleft(ticket)
            return
        if ticket.future.done():  # they left the line while it was recorded: nobody used it
            self.release(slot, "its visitor left the waiting page")
        else:
            self.record("handout", cid=slot.cid, source="queue", wait=round(time.monotonic() - ticket.enqueued, 3))
            ticket.future.set_result(slot)

    def give_to_next_waiter(self, slot: Slot) -> bool:
        """Assign ``slot`` to the first visitor still in line (tickets given up are dropped); False if none."""
        while self.state.queue:
            ticket = self.state.queue.popleft()
            if not ticket.future.done():
                self.assign(slot, ticket.owner, ticket.embedded)
                self.state.background_task(self.serve_ticket(slot, ticket))
                return True
        return False

    def serve_line_from_spares(self) -> None:
        """Give ready spares to visitors already in line (they queued while none could be handed out)."""
        while self.state.queue and self.state.spares:
            slot = self.state.spares.popleft()
            if slot.state == SPARE and not self.give_to_next_waiter(slot):
                self.state.spares.appendleft(slot)  # nobody was still waiting after all
