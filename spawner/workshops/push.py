"""Live updates from the instructor: files pushed into every running container of a workshop.

Through each notebook server's own API, with its token (as kept work is), so
it works on any engine. For each file and container:

- not there: written (a new file appears);
- there and still a version nbpool put there (the image's own, or an earlier
  push): replaced;
- there and changed by the attendee: left alone, and the new version written
  beside it as ``<name> (updated)<ext>``.

"A version nbpool put there" is told by the file's sha256, which the server
computes: the image's from the kept-work baselines or from a ready spare,
asked before anything is written; pushes' from their bytes. New spares get
every pushed file as they start (``Pool.on_spare``), and the pushed files are
stored under ``<data_dir>/pushed/<workshop>/`` so a restart keeps doing so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..content.merge import Outcome, beside_name, merge_files, write_files
from ..contents import ContentsError, NotebookFiles
from ..keep.store import BadPath, check_path
from ..pool.slot import ASSIGNED, SPARE, Slot

MAX_FILES = 200
MAX_BYTES = 50 * 2**20  # all files of one push together
CONTAINER_TIMEOUT = 60.0  # seconds for one container's whole update
AT_ONCE = 8  # containers updated at the same time


class PushError(ValueError):
    """The push itself is wrong (no files, too many, a bad name): nothing was copied."""


def _folders(folder: Path) -> None:
    """``folder`` and its parents, each readable by nbpool alone (as the rest of its data)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700)


def _write(target: Path, data: bytes) -> None:
    """Atomically, mode 0600."""
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def check_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files of one push, checked: plain relative names, within MAX_FILES and MAX_BYTES."""
    if not files:
        raise PushError("no files to push")
    if len(files) > MAX_FILES:
        raise PushError(f"{len(files)} files: at most {MAX_FILES} in one push")
    if sum(len(d) for d in files.values()) > MAX_BYTES:
        raise PushError(f"more than {MAX_BYTES // 2**20} MB in one push")
    for path in files:
        try:
            check_path(path)
        except BadPath:
            raise PushError(f"{path!r} is not a plain relative file name") from None
        if any(part.startswith(".") for part in path.split("/")):
            raise PushError(f"{path!r} is hidden (a dot-name): Jupyter would not show it")
    return files


def files_from_folder(folder: str) -> dict[str, bytes]:
    """Every visible file under ``folder`` (dot-names and __pycache__ left out), by relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise PushError(f"push folder {folder!r} is not a folder")
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            found[full.relative_to(root).as_posix()] = full.read_bytes()
            if len(found) > MAX_FILES:
                raise PushError(f"push folder {folder!r} has more than {MAX_FILES} files")
    return check_files(found)


@dataclass
class PushJob:
    id: str
    workshop: str
    paths: list[str]
    source: str  # 'upload' or the folder
    started: float
    finished: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def summary(self) -> dict:
        counts = {k: sum(1 for o in self.outcomes.values() if o.result == k) for k in ("pending", "done", "failed")}
        return {"id": self.id, "workshop": self.workshop, "files": self.paths, "source": self.source,
                "started": self.started, "finished": self.finished or None,
                "seconds": round((self.finished or time.time()) - self.started, 3), "containers": len(self.outcomes),
                **counts, "results": [o.__dict__ for o in self.outcomes.values()]}


class Updates:
    """A workshop's pushed files: into its running containers on request, into each new spare as it starts."""

    def __init__(self, workshop: str, folder: Path | None, secret, keeper, log):
        self.workshop = workshop
        self.folder = folder  # where pushed files are stored (None: memory only)
        self.secret = secret
        self.keeper = keeper
        self.log = log
        self.files: dict[str, bytes] = {}  # the latest pushed version of each path
        self.versions: dict[str, set[str]] = {}  # path -> sha256 of every version pushed
        self.last: PushJob | None = None
        self.task: asyncio.Task | None = None
        self._load()

    # --- what was pushed, on disk -----------------------------------------------------------------

    def _load(self) -> None:
        if self.folder is None or not (self.folder / "pushed.json").exists():
            return
        try:
            meta = json.loads((self.folder / "pushed.json").read_text())
            for path, digests in meta["versions"].items():
                check_path(path)
                self.versions[path] = set(digests)
                self.files[path] = (self.folder / "files" / path).read_bytes()
                for digest in digests:
                    self._not_the_attendees(path, digest)
        except (OSError, ValueError, KeyError, TypeError, BadPath) as exc:
            self.log.error("workshop %s: the pushed files under %s could not be read (%s): new spares get "
                           "the image's files only", self.workshop, self.folder, exc)

    def _store(self) -> None:
        if self.folder is None:
            return
        files = self.folder / "files"
        for path, data in self.files.items():
            target = files / path
            _folders(target.parent)
            _write(target, data)
        _write(self.folder / "pushed.json",
               json.dumps({"versions": {p: sorted(v) for p, v in self.versions.items()}}).encode())

    def _not_the_attendees(self, path: str, digest: str) -> None:
        """Tell the keeper: this version, at its path or beside an edited file, is the instructor's."""
        if self.keeper is not None:
            self.keeper.add_pristine(self.workshop, path, digest)
            self.keeper.add_pristine(self.workshop, beside_name(path), digest)

    # --- pushing -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def push(self, pool, files: dict[str, bytes], source: str) -> PushJob:
        """Start pushing ``files`` into every container of ``pool`` (in the background); returns the job."""
        check_files(files)
        if self.running:
            raise PushError("a push is still under way for this workshop; wait for it to finish")
        slots = [s for s in pool.slots.values() if s.state in (SPARE, ASSIGNED) and s.endpoint is not None]
        job = PushJob(id=secrets.token_hex(4), workshop=self.workshop, paths=sorted(files), source=source,
                      started=time.time(), outcomes={s.cid: Outcome(s.cid, s.state) for s in slots})
        self.last = job
        self.task = asyncio.get_running_loop().create_task(self._run(job, pool, files, slots))
        return job

    async def _run(self, job: PushJob, pool, files: dict[str, bytes], slots: list[Slot]) -> None:
        try:
            known = await self._known_versions(pool, files, slots)
            # From now on new spares get these files as they start.
            for path, data in files.items():
                digest = hashlib.sha256(data).hexdigest()
                self.files[path] = data
                self.versions.setdefault(path, set()).add(digest)
                self._not_the_attendees(path, digest)
            try:
                await asyncio.to_thread(self._store)
            except OSError as exc:
                self.log.error("workshop %s: could not store the pushed files (%s): a restart forgets them",
                               self.workshop, exc)
            gate = asyncio.Semaphore(AT_ONCE)

            async def one(slot: Slot) -> None:
                async with gate:
                    await self._into(slot, files, known, job.outcomes[slot.cid])

            await asyncio.gather(*(one(s) for s in slots))
        finally:
            job.finished = time.time()
        s = job.summary()
        self.log.info("workshop %s: push %s of %d file(s) to %d containers in %.1fs: %d done, %d failed",
                      self.workshop, job.id, len(files), s["containers"], s["seconds"], s["done"], s["failed"])

    async def _known_versions(self, pool, files: dict[str, bytes], slots: list[Slot]) -> dict[str, set[str]]:
        """For each path, the sha256 of versions nbpool put there: pushed ones, the image's (from the kept-work
        baselines, else asked of a spare before anything is written to it)."""
        known = {path: set(self.versions.get(path, ())) for path in files}
        spare = next((s for s in slots if s.state == SPARE), None)
        for path in files:
            for image in {s.image for s in slots} | {pool.backend.image}:
                digest = self.keeper.image_hash(image, path) if self.keeper is not None else ""
                if digest:
                    known[path].add(digest)
            if spare is not None:
                with contextlib.suppress(ContentsError):
                    digest = await self._files(spare).fingerprint(path)
                    if digest:
                        known[path].add(digest)
        return known

    def _files(self, slot: Slot) -> NotebookFiles:
        return NotebookFiles(slot.url("", slot.endpoint.url), self.secret.token_for(slot.cid), timeout=20.0)

    async def _into(self, slot: Slot, files: dict[str, bytes], known: dict[str, set[str]], out: Outcome) -> None:
        if slot.route is not None:
            slot.route.fill_ok = False  # written to outside the proxy: no longer the image's files alone
        try:
            async with asyncio.timeout(CONTAINER_TIMEOUT):
                await merge_files(self._files(slot), files, known, out)
            out.result = "done"
        except (ContentsError, TimeoutError, OSError) as exc:
            out.result, out.error = "failed", str(exc) or type(exc).__name__
            self.log.warning("workshop %s: push into %s failed: %s", self.workshop, slot.cid, out.error)

    async def into_spare(self, slot: Slot) -> None:
        """A new container, nobody's yet: every pushed file, as pushed (Pool.on_spare)."""
        if not self.files:
            return
        await write_files(self._files(slot), self.files)

    def status(self) -> dict | None:
        return self.last.summary() if self.last is not None else None
