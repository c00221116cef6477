"""A limit on work in flight that reads its limit live, so a reloaded setting applies at once, shared fairly
when several pools (workshops) use it; one pool alone is served first come, first served."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable


class FairGate:
    """At most ``limit()`` holders at once (the limit is asked on every change: raising it lets waiters in at
    once, lowering it lets the current holders finish). Shared by several pools (workshops), the next place
    goes to the pool with the fewest holders (ties: whose waiter came first), so two workshops starting
    containers at once each get half, rather than the first to ask getting all.

    Each pool enters through its own ``share(key)``, which is used as ``async with``, like a Gate.
    """

    def __init__(self, limit: Callable[[], int]):
        self.limit = limit
        self.holders: collections.Counter = collections.Counter()
        self.waiting: dict[object, collections.deque] = {}
        self._seq = itertools.count()

    def share(self, key: object) -> GateShare:
        return GateShare(self, key)

    @property
    def total(self) -> int:
        return sum(self.holders.values())

    async def acquire(self, key: object) -> None:
        future = asyncio.get_running_loop().create_future()
        entry = (next(self._seq), future)
        self.waiting.setdefault(key, collections.deque()).append(entry)
        self.wake()  # (room now: in at once, if it is this key's turn)
        if future.done():
            return
        try:
            await future  # (whoever let us in counted us already)
        except asyncio.CancelledError:
            if future.cancelled():
                self.waiting[key].remove(entry)
            else:
                self.release(key)  # let in just as we were cancelled: give the place on
            raise

    def release(self, key: object) -> None:
        self.holders[key] -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiters in while there is room, fewest holders first."""
        while self.total < self.limit():
            queues = {k: q for k, q in self.waiting.items() if q}
            if not queues:
                return
            key = min(queues, key=lambda k: (self.holders[k], queues[k][0][0]))
            _, future = queues[key].popleft()
            if not future.done():
                self.holders[key] += 1
                future.set_result(None)


class GateShare:
    """One pool's way through a FairGate (``async with``)."""

    def __init__(self, gate: FairGate, key: object):
        self.gate = gate
        self.key = key

    async def __aenter__(self) -> None:
        await self.gate.acquire(self.key)

    async def __aexit__(self, *exc) -> None:
        self.gate.release(self.key)

    async def limit_changed(self) -> None:
        self.gate.wake()
