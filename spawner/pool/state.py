"""What the pool's parts share: its containers, the spares, the waiting line, what is in flight, the counts.

One small object, owned by ``Pool`` and handed to each part (launches, hand-outs, removals, upkeep, the
engine's events) in its constructor; whatever else a part keeps (the launches' backoff, the engine's health,
the upkeep's loops) is its own.
"""

from __future__ import annotations

import asyncio
import collections

from .slot import SPARE, Slot
from .stats import PoolStats
from .ticket import Ticket


class PoolState:
    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}  # every container of the pool, by its id, whatever its state
        self.spares: collections.deque[Slot] = collections.deque()  # oldest first (handed out first)
        self.queue: collections.deque[Ticket] = collections.deque()  # the waiting line
        self.in_flight: set[Slot] = set()  # launches under way (created or waiting for a start slot)
        self.launches: set[asyncio.Task] = set()  # their tasks
        self.background: set[asyncio.Task] = set()  # removals and recordings stop() waits for
        self.stats = PoolStats()
        self.generation = 0  # bumped by a drain: spares of older generations are replaced
        self.started = False
        self.closing = False
        self.retired = False  # its workshop was removed: no hand-outs, no launches; culled as usual until empty
        self.warm_floor = 0  # spares a scheduled window asks for (see Pool.target_warm)

    def count(self, state: str) -> int:
        return sum(1 for s in self.slots.values() if s.state == state)

    @property
    def available(self) -> int:
        """Ready spares."""
        return sum(1 for s in self.spares if s.state == SPARE)

    @property
    def launching(self) -> int:
        return len(self.in_flight)

    def background_task(self, coro) -> asyncio.Task:
        """Run ``coro`` as a task that stop() waits for (a removal, a recorded hand-out: never left half-done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task
