"""A visitor's place in the waiting line."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from .slot import Slot


class Ticket:
    """A visitor's place in the waiting line; ``future`` resolves to their assigned Slot."""

    def __init__(self, line: collections.deque, release: Callable[[Slot, str], None], owner: str = "",
                 embedded: bool = False):
        self.line = line  # the pool's waiting line, which holds this ticket until it is served
        self.release = release  # gives back a container nobody will use
        self.owner = owner  # the client address in line (counts toward its share of the pool)
        self.embedded = embedded  # for a web page's live code (Slot.embedded)
        self.future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self.enqueued = time.monotonic()

    @property
    def position(self) -> int:
        """1 for the front of the line; 0 once served (or gone)."""
        try:
            return self.line.index(self) + 1
        except ValueError:
            return 0

    def cancel(self) -> None:
        """Leave the line; a container already assigned to this ticket is removed (nobody used it)."""
        try:
            self.line.remove(self)
        except ValueError:
            pass
        if self.future.done() and not self.future.cancelled() and self.future.exception() is None:
            self.release(self.future.result(), "its visitor left the waiting page")
        elif not self.future.done():
            self.future.cancel()
