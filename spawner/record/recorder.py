"""The workshop's record: what happened, as JSON lines in the data directory, for the report afterwards.

One object per line, each with ``t`` (wall-clock seconds since the epoch)
and ``e`` (what happened). ``spawner.report`` reads them; these are the kinds:

========== =====================================================================
``e``      fields (besides ``t``)
========== =====================================================================
config     pool, image, warm, max_containers, mem_limit (bytes, 0: none),
           cpu_limit (cores, 0: none), host_memory (bytes: the engine's machines
           together), host_cores, backend, version. At start and after a reload.
sample     assigned, available, launching, queue, capacity, warm: the pool's
           counts, every ``Recorder.sample_interval``.
handout    cid, source ('spare' or 'queue'), wait (seconds from the visitor's
           request to their container being theirs).
launch     cid, seconds (created to ready).
failed     what ('start'), reason: a container that did not start.
refused    why ('full', 'unavailable', 'timeout', ...): a visitor turned away.
end        cid, kind ('idle', 'max_age', 'operator', 'disk', 'fresh', 'died',
           'oom', 'lost', 'removed', 'stopping', 'unopened', 'abuse', 'other'), reason
           (the log's words), assigned_seconds.
abuse      cid, rule ('banned_command', 'cpu_budget', 'destinations'), reason, ban (its
           id, or null): a session the abuse guard ended.
guard_warning cid, rule ('cpu_budget'), cpu_seconds: a session warned of its CPU budget.
oom        cid: a process killed at its container's memory limit.
usage      cid, state ('assigned' or 'spare'), mem (bytes now), mem_peak (bytes,
           the highest so far where the engine tells), cpu (CPU seconds used
           since it started): sampled from the engine every sample_interval.
kept       cid, files, bytes, seconds, final (bool), error ('' when saved).
checkpoint count, seconds, cpu (this process's CPU seconds): one checkpoint pass.
cull       count, seconds: one cull pass that ended containers (their saves included).
hand       cid, action ('raised' or 'lowered'), by (who lowered it: 'attendee', 'helper', or
           'ended': the session ended), seconds (on 'lowered' only: how long the hand was up),
           notebook (the path of the notebook the attendee was in, or ''), section (the
           heading of the notebook section they were at, or '').
stuck      cid, notebook, section, cell (its index, or null), rule ('errors': the attendee's
           cells failed N times in a row, or 'no_success': no successful cell for M minutes
           while active), error (the exception's name, or null), seconds (how long the stuck
           period lasted): written when the period ends, or its session does.
class      cid, notebook, furthest (index of the furthest cell run, or null), cells_run,
           errors, hands, done (bool: the attendee said "I'm done"): once, when a session ends.
========== =====================================================================

The file is bounded: past ``max_bytes`` it is rotated once (``events.jsonl``
-> ``events.1.jsonl``), so the record holds between one and two files' worth
of the most recent events. Lines are written as they come, by the event loop,
into a line-buffered file: a few hundred bytes at a time, well under a
millisecond, and nothing is lost at a crash but what the OS has not flushed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

EVENTS = "events.jsonl"
ROTATED = "events.1.jsonl"


class Recorder:
    """Appends events to ``<folder>/events.jsonl``; ``None`` folder: records nothing."""

    def __init__(self, folder: str | os.PathLike | None, *, max_bytes: int = 64 * 2**20,
                 clock: Callable[[], float] = time.time):
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = max_bytes
        self.clock = clock
        self._file = None
        self._size = 0
        self.failed = ""  # why the last write failed (shown to operators), '' when writing works
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._open()

    def _open(self) -> None:
        path = self.folder / EVENTS
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        self._size = path.stat().st_size

    def __call__(self, event: str, /, **fields) -> None:
        """Record one event now."""
        if self._file is None:
            return
        line = json.dumps({"t": round(self.clock(), 3), "e": event, **fields}, separators=(",", ":")) + "\n"
        try:
            if self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
            self.failed = ""
        except OSError as exc:  # a full disk must not stop the service: say so, keep serving
            self.failed = str(exc)

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.folder / EVENTS, self.folder / ROTATED)
        self._open()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(folder: str | os.PathLike) -> Iterator[dict]:
    """Every recorded event in ``folder``, oldest first (a torn last line is skipped)."""
    for name in (ROTATED, EVENTS):
        path = Path(folder) / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "t" in event and "e" in event:
                    yield event
