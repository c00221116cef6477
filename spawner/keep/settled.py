"""A file read whole, never in the middle of a save.

Jupyter writes a file in place: ``atomic_writing`` (jupyter_server) copies
the file aside to ``.~name``, opens the file itself for writing, which
empties it, serialises the notebook (its validation can take a while for a
big one) and writes it. A read in that moment gets an empty or cut-off
file: the contents API answers "Unreadable Notebook" for a notebook, while
``/files/`` (which kept work reads, to keep bytes as they are) gives the
empty bytes without a word. With collaboration on, a notebook someone types
in is saved every second or so, so a checkpoint reads one mid-save now and
then; kept as it was read, it would replace the last good version, and an
attendee whose container then dies would get an empty notebook back.

So a read is taken as the file only when it looks whole: a notebook parses
as JSON (a cut-off JSON document never does; one over PARSE_AT_MOST must
instead have its listed size and end with a brace), any other file has the
size the listing gave. Otherwise it is read again after a pause; the same
bytes twice are the file as it is (a broken notebook of the attendee's own,
or a file changed since the listing), unless they are an empty notebook. A
file that never settles raises ``StillSaving``: the caller keeps its last
version and tries again at the next checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import time

PAUSE = 0.5  # seconds between reads of a file found mid-save (a notebook's save takes milliseconds to about 1 s)
TRIES = 4  # reads after the first (about 2 seconds in all) before the file is left for the next checkpoint
# Notebooks up to this size are parsed to tell whether they are whole; a larger one (a parse would hold several
# times its size, for each of save_concurrency saves) is whole when it has its listed size and ends with "}".
PARSE_AT_MOST = 8 << 20


class StillSaving(Exception):
    """The file was being written at every read: its last kept version stays."""


def whole(path: str, size: int, data: bytes) -> bool:
    """Whether ``data`` looks like the whole file the listing showed."""
    if not is_notebook(path):
        return len(data) == size
    if len(data) > PARSE_AT_MOST:  # (a big one: its end and its listed size, not a parse of megabytes)
        return len(data) == size and data[-64:].rstrip().endswith(b"}")
    try:
        json.loads(data)
    except ValueError:  # (UnicodeDecodeError too)
        return False
    return True


def is_notebook(path: str) -> bool:
    return path.lower().endswith(".ipynb")


async def _whole(path: str, size: int, data: bytes) -> bool:
    if is_notebook(path):  # (parsing a notebook of megabytes takes a while: not on the event loop)
        return await asyncio.to_thread(whole, path, size, data)
    return whole(path, size, data)


async def read_settled(read, path: str, size: int, deadline: float, pause: float = PAUSE,
                       tries: int = TRIES) -> bytes:
    """The file at ``path`` (``size`` as listed) by ``await read(timeout)``, once whole or the same twice.

    Raises StillSaving when it never is before ``tries`` more reads or ``deadline`` (time.monotonic()).
    """
    data = await read(max(0.1, deadline - time.monotonic()))
    for attempt in range(tries + 1):  # (each read looked at once: a notebook's parse is not repeated)
        if attempt:
            await asyncio.sleep(pause)
            again = await read(max(0.1, deadline - time.monotonic()))
            if again == data and (data or not is_notebook(path)):
                return data  # the same twice: the file as it is, not a save under way
            data = again
        if await _whole(path, size, data):
            return data
        if deadline - time.monotonic() <= pause:
            break
    raise StillSaving(f"{path} was being saved each time it was read")
