"""A session's kept files as one zip archive, made while it is sent: no copy on disk, a bounded piece in memory.

Why streamed rather than one stored zip per kept version: a stored copy
doubles the disk each session takes (and would have to count against the
space limits, or escape them), must be rebuilt after every checkpoint that
changes a file, and needs its own expiry; a stream costs only the CPU of
compressing while sending (the kept files are at most ``max_per_attendee``
each session, and downloads of one session run at most ``PER_SESSION`` at once).

``zipfile`` writes to a stream it cannot seek (each entry's sizes then follow
its data in a data descriptor), so the archive is produced a piece at a time:
``ZipStream.step`` reads and compresses about ``CHUNK`` bytes of the files and
returns what the archive gained. Each step runs on a thread, for a few
milliseconds, and the next one only once the client has taken the last piece
(the handler awaits its flush): a client that stops reading holds a
coroutine and about one piece of memory, never a thread nor a file on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import zipfile
from collections import Counter
from pathlib import Path

CHUNK = 64 * 1024  # bytes of the files read per step (a stalled download holds about 2 of them, and zlib state)
PER_SESSION = 2  # downloads of one session's archive at once (a third waits for one of them to end)
MOST = 64  # downloads at once, of all sessions (a stalled one holds an open file and about 0.6 MiB, proxy included)
STEPS = 2  # threads compressing at once, of the executor's few (others' to_thread calls are never starved)


class Busy(Exception):
    """Too many downloads under way (of this session, or in all): try again in a moment."""


class _Pieces:
    """The unseekable stream zipfile writes to: it only collects what was written since the last take."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.pending.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.pending)
        self.pending, self.size = [], 0
        return out


class ZipStream:
    """The zip archive of ``files`` ([(file on disk, name in the archive)]), a piece at a time.

    Blocking (file I/O, compression): call ``step`` from a thread, one call at
    a time. A file gone by the time its turn comes (deleted by a checkpoint
    meanwhile) is left out; one replaced meanwhile goes in as it was when
    opened (each entry is read from one open file).
    """

    def __init__(self, files: list[tuple[Path, str]], chunk: int = CHUNK):
        self.files = list(files)
        self.chunk = chunk
        self._out = _Pieces()
        self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self._out, "w", compression=zipfile.ZIP_DEFLATED)
        self._source = None  # the file being read
        self._entry = None  # and its entry in the archive
        self.done = False

    def step(self) -> bytes:
        """The archive's next piece (b'' once it is complete)."""
        while not self.done and self._out.size < self.chunk:
            if self._source is None:
                if not self._next_file():
                    self._zip.close()  # the central directory
                    self._zip, self.done = None, True
                continue
            data = self._source.read(self.chunk)
            if data:
                self._entry.write(data)
            else:
                self._close_entry()
        return self._out.take()

    def _next_file(self) -> bool:
        """Open the next file that is still there and start its entry; False when none is left."""
        while self.files:
            path, name = self.files.pop(0)
            try:
                source = open(path, "rb")  # closed in _close_entry, or by close()
            except OSError:  # gone since (a checkpoint dropped it): left out
                continue
            info = self._info(source, name)
            self._source, self._entry = source, self._zip.open(info, "w")
            return True
        return False

    @staticmethod
    def _info(source, name: str) -> zipfile.ZipInfo:
        """The entry for the open file ``source``: its time, size and mode as opened."""
        st = os.fstat(source.fileno())
        info = zipfile.ZipInfo(name, date_time=max(time.localtime(st.st_mtime)[:6], (1980, 1, 1, 0, 0, 0)))
        info.file_size = st.st_size  # (zipfile chooses zip64 by it; the data descriptor has the size read)
        info.external_attr = (st.st_mode & 0xFFFF) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    def _close_entry(self) -> None:
        self._entry.close()  # its data descriptor (CRC, sizes)
        self._source.close()
        self._source = self._entry = None

    def close(self) -> None:
        """Let go of the open file (a download that ended early); the archive is left unfinished."""
        if self._source is not None:
            self._source.close()
            self._source = None
        self._entry = self._zip = None
        self.done = True


class Downloads:
    """Downloads of kept work under way: at most PER_SESSION of one session and MOST in all, and at most
    STEPS of them compressing at once."""

    def __init__(self, per_session: int = PER_SESSION, most: int = MOST, steps: int = STEPS):
        self.per_session = per_session
        self.most = most
        self.under_way: Counter[str] = Counter()  # session -> its downloads under way
        self.total = 0
        self._steps = asyncio.Semaphore(steps)

    @contextlib.contextmanager
    def one(self, cid: str):
        """A download of ``cid``'s archive, for the ``with`` block; Busy when there are too many."""
        if self.under_way[cid] >= self.per_session or self.total >= self.most:
            raise Busy(cid)
        self.under_way[cid] += 1
        self.total += 1
        try:
            yield
        finally:
            self.under_way[cid] -= 1
            self.total -= 1
            if not self.under_way[cid]:
                del self.under_way[cid]

    async def step(self, stream: ZipStream) -> bytes:
        """``stream``'s next piece, made on a thread (at most STEPS at once)."""
        async with self._steps:
            return await asyncio.to_thread(stream.step)
