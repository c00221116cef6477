"""A limit on work in flight that reads its limit live, so a reloaded setting applies at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Gate:
    """``async with gate:`` lets at most ``limit()`` holders in at once.

    Unlike a Semaphore sized once, the limit is asked on every entry: raising
    it lets waiters in at once, lowering it lets the current holders finish.
    """

    def __init__(self, limit: Callable[[], int]):
        self.limit = limit
        self.holders = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.holders < self.limit())
            self.holders += 1

    async def __aexit__(self, *exc) -> None:
        async with self._changed:
            self.holders -= 1
            self._changed.notify_all()

    async def limit_changed(self) -> None:
        """Wake waiters to look at the limit again."""
        async with self._changed:
            self._changed.notify_all()
