"""Kept work on disk: one folder per session under ``<data_dir>/kept/``, readable by nbpool alone.

``<cid>/kept.json`` describes the session (whose it is, which files, when);
``<cid>/files/<path>`` holds each file's bytes as the attendee left them.
Folders are 0700, files 0600; every write goes to a temporary name first and
is renamed into place, so a crash leaves the previous version, never half a
file. Paths come from an attendee's server, so each is checked to stay inside
its session's folder before anything is written or read.

Blocking (plain file I/O): the keeper calls it from a thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

CID_OK = re.compile(r"^[0-9a-f]{1,32}$")
META = "kept.json"
BASELINES = "images.json"


class BadPath(ValueError):
    """A path that would leave the session's folder (or is no file name at all)."""


@dataclass
class Kept:
    """One session's kept work, as ``kept.json`` records it."""

    cid: str
    nonce: str  # the hand-out's nonce: the visitor's signed cookie carries "<cid>:<nonce>"
    image: str = ""
    workshop: str = ""  # the workshop it came from ('' without named workshops): a restore goes back there
    state: str = "live"  # 'live' while its container runs, 'ended' after
    started: float = 0.0  # wall clock: the first save
    updated: float = 0.0  # wall clock: the last save that worked
    ended_at: float = 0.0  # wall clock: when the session ended (expiry counts from here)
    reason: str = ""  # why the session ended, in words for its visitor
    path: str = ""  # where the visitor was (their landing page), for a restore
    files: dict[str, dict] = field(default_factory=dict)  # path -> {size, modified, saved}
    skipped: dict[str, dict] = field(default_factory=dict)  # path -> {size, why}: listed as not kept
    pristine: dict[str, list] = field(default_factory=dict)  # path -> [size, modified]: still the image's own
    error: str = ""  # why the last save failed ('' when it worked)
    restored_into: str = ""  # the container it was copied into, once restored (at most once)
    owner: str = ""  # a keyed digest of the client network it was handed to (WorkKeeper.owner_key): never the address

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())


KEPT_FIELDS = frozenset(f.name for f in fields(Kept))


def check_path(path: str) -> str:
    """``path`` if it is a plain relative path of names; BadPath otherwise."""
    parts = path.split("/")
    if not path or "\0" in path or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise BadPath(f"not a file path: {path!r}")
    return path


class KeptStore:
    """The ``kept`` folder: sessions' descriptions and files."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def _folder(self, cid: str) -> Path:
        if not CID_OK.match(cid):
            raise BadPath(f"not a container id: {cid!r}")
        return self.root / cid

    def _file(self, cid: str, path: str) -> Path:
        base = self._folder(cid) / "files"
        target = base / check_path(path)
        if base.resolve() not in target.resolve().parents:
            raise BadPath(f"outside the session's folder: {path!r}")
        return target

    def load_all(self) -> dict[str, Kept]:
        """Every session found on disk (an unreadable description is skipped: it names itself in the result)."""
        found = {}
        for folder in sorted(self.root.iterdir()) if self.root.exists() else []:
            meta = folder / META
            if not (CID_OK.match(folder.name) and meta.is_file()):
                continue
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
                # Fields this version does not know (written by a newer one) are left out; fields it added
                # since the record was written (owner) take their defaults: either way the work is offered.
                found[folder.name] = Kept(**{k: v for k, v in data.items() if k in KEPT_FIELDS})
            except (ValueError, TypeError, AttributeError, OSError):
                continue
        return found

    def load_baselines(self) -> dict[str, dict[str, list]]:
        """What each image's own files are (see image.ImageFiles); {} if never learnt."""
        try:
            data = json.loads((self.root / BASELINES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_baselines(self, baselines: dict[str, dict[str, list]]) -> None:
        self._atomic(self.root / BASELINES, json.dumps(baselines).encode())

    def save_meta(self, kept: Kept) -> None:
        folder = self._folder(kept.cid)
        self._make_folders(folder)
        self._atomic(folder / META, json.dumps(asdict(kept), indent=1).encode())

    def write_file(self, cid: str, path: str, data: bytes) -> None:
        target = self._file(cid, path)
        self._make_folders(target.parent)
        self._atomic(target, data)

    def read_file(self, cid: str, path: str) -> bytes:
        return self._file(cid, path).read_bytes()

    def drop_file(self, cid: str, path: str) -> None:
        try:
            self._file(cid, path).unlink()
        except FileNotFoundError:
            pass

    def delete(self, cid: str) -> None:
        shutil.rmtree(self._folder(cid), ignore_errors=True)

    def zip_entries(self, kept: Kept) -> list[tuple[Path, str]]:
        """The session's files as (file on disk, name in an archive), for archive.ZipStream."""
        return [(self._file(kept.cid, path), path) for path in sorted(kept.files)]

    def _make_folders(self, folder: Path) -> None:
        """``folder`` and any missing folders between it and the root, each 0700 (mkdir's parents=True
        would give the intermediate ones the umask's mode)."""
        here = self.root
        for part in folder.relative_to(self.root).parts:
            here = here / part
            here.mkdir(exist_ok=True, mode=0o700)

    @staticmethod
    def _atomic(target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
