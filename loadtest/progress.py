"""Live progress in the terminal: one updating line on a TTY, plain periodic lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from .pool_stats import StatsSample
from .record import PHASES, AttendeeRecord


def progress_line(t: float, records: list[AttendeeRecord], pool: StatsSample | None) -> str:
    """``12.3s  arrived 40/50  active 30 (spawn 10, kernel 5, execute 15)  done 8  failed 2  pool: …``."""
    states = Counter(r.state for r in records)
    phases = Counter(r.current_phase for r in records if r.state == "active")
    arrived = len(records) - states["waiting"]
    detail = ", ".join(f"{name} {phases[name]}" for name in PHASES if phases[name])
    line = (f"{t:6.1f}s  arrived {arrived}/{len(records)}  active {states['active']}"
            + (f" ({detail})" if detail else "")
            + f"  done {states['ok']}  failed {states['failed']}")
    if pool is not None:
        line += (f"  | pool: {pool.available} spare, {pool.assigned} assigned, {pool.launching} launching,"
                 f" {pool.queue} in line")
    return line


class Progress:
    """Writes ``progress_line`` to ``stream`` while a run goes on.

    On a TTY the line is rewritten in place a few times a second; otherwise a
    plain line is written every ``plain_interval`` seconds (logs stay readable).
    """

    def __init__(self, stream: TextIO = sys.stdout, *, tty: bool | None = None, plain_interval: float = 5.0):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = 0.25 if self.tty else plain_interval
        self._task: asyncio.Task | None = None
        self._width = 0

    def write(self, line: str) -> None:
        if self.tty:
            # One terminal line at most: a wrapped line cannot be rewritten in place.
            line = line[: shutil.get_terminal_size().columns - 1]
            padded = line.ljust(self._width)
            self._width = len(line)
            self.stream.write("\r" + padded)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, source: Callable[[], str]) -> None:
        """Begin writing ``source()`` every interval (``source`` builds the line)."""

        async def loop() -> None:
            while True:
                self.write(source())
                await asyncio.sleep(self.interval)

        self._task = asyncio.create_task(loop())

    async def stop(self, final: str) -> None:
        """Write the final line and end the updating line."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.write(final)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
