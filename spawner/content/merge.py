"""Files written into one container without losing an attendee's work: the edit-safe merge.

Through the notebook server's own API (any engine). For each file:

- not there: written (a new file appears);
- there and a version nbpool put there (``known``: the image's own, an earlier push or commit): replaced;
- there and changed by the attendee: left alone, and the new version written beside it as
  ``<name> (updated)<ext>``.

Used by the instructor's push (workshops.push) and by material from git (content.library).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..contents import ContentsError, NotebookFiles


def beside_name(path: str) -> str:
    """'exercises/ex1.ipynb' -> 'exercises/ex1 (updated).ipynb'."""
    p = PurePosixPath(path)
    return str(p.with_name(f"{p.stem} (updated){p.suffix}"))


@dataclass
class Outcome:
    """One container's part in an update."""

    cid: str
    state: str  # spare or assigned, when the update began
    result: str = "pending"  # pending, done, failed
    new: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    beside: list[str] = field(default_factory=list)  # the attendee changed it: the new version is beside it
    current: list[str] = field(default_factory=list)  # already this version
    error: str = ""


async def make_folders(api: NotebookFiles, path: str, made: set[str] | None = None) -> None:
    """The folders ``path`` lies in (``made``: those this update already made, not asked for again)."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        folder = "/".join(parts[:i])
        if made is not None and folder in made:
            continue
        with contextlib.suppress(ContentsError):  # there already
            await api.make_folder(folder)
        if made is not None:
            made.add(folder)


async def merge_files(api: NotebookFiles, files: dict[str, bytes], known: dict[str, set[str]], out: Outcome,
                      digests: dict[str, str] | None = None) -> None:
    """``files`` into the container behind ``api``, by the rule above (``digests``: their sha256s, when
    known already); ContentsError propagates."""
    made: set[str] = set()
    for path, data in sorted(files.items()):
        digest = digests[path] if digests is not None else hashlib.sha256(data).hexdigest()
        there = await api.fingerprint(path)
        if there == digest:
            out.current.append(path)
            continue
        await make_folders(api, path, made)
        if there is None:
            await api.write(path, data)
            out.new.append(path)
        elif there in known.get(path, ()):
            await api.write(path, data)
            out.replaced.append(path)
        else:
            await api.write(beside_name(path), data)
            out.beside.append(path)


async def write_files(api: NotebookFiles, files: dict[str, bytes]) -> None:
    """``files`` into a container nobody has had yet (a new spare): as they are."""
    made: set[str] = set()
    for path, data in sorted(files.items()):
        await make_folders(api, path, made)
        await api.write(path, data)
