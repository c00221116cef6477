"""A version number that streams wait on: bumped at every change, awaited until it moves."""

from __future__ import annotations

import asyncio


class Changes:
    __slots__ = ("_event", "version")

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, version: int, timeout: float) -> None:
        """Returns once ``version`` is out of date, or after ``timeout`` seconds."""
        if self.version != version:
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
