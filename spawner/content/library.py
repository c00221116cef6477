"""Workshop material from git: fetched once on nbpool's machine, poured into warm containers.

- A workshop's **sources** (``content``) are fetched at start (the last good commit is read back from the
  cache first, so spares have it without the network), every ``interval`` seconds, and on an operator's
  pull. Every new spare gets their files before it is anyone's (``into_spare``); a new commit is poured
  into every running container of the workshop by the edit-safe merge (content.merge): a file the attendee
  changed is kept, the new version lands beside it.
- A **link** (nbgitpuller's git-pull, a Binder spec) names a repository the operator allowed: it is fetched
  on first use (one fetch, however many attendees follow the link at once), and ``deliver`` merges it into
  the visitor's own container, the same way, before they land in it. A later use of the link is served
  from the cache and refreshes it in the background once it is ``refresh`` seconds old.

Every version poured is remembered by its sha256 (``digests.json`` in the cache, so a restart still knows
which files are nbpool's), and told to the kept-work keeper: the material is not the attendee's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..backoff import every
from ..contents import ContentsError, NotebookFiles
from ..engines.base import BackendError
from ..pool.slot import ASSIGNED, SPARE, Slot
from .gitcache import FetchError, GitCache, Snapshot, Tried
from .merge import Outcome, beside_name, merge_files, write_files
from .sources import Allowed, Source, same_repo

AT_ONCE = 8  # containers poured into at the same time
CONTAINER_TIMEOUT = 120.0  # seconds for one container's whole update
MAX_VERSIONS = 20  # digests remembered per file
MAX_POURED = 5000  # containers whose poured commits are remembered (the rest are forgotten, oldest first)


@dataclass(frozen=True)
class Delivery:
    """A repository a link asks for, and the folder it lands in ('' : the home folder)."""

    repo: str
    ref: str
    target: str


def placed(files: dict, folder: str) -> dict:
    return {f"{folder}/{path}" if folder else path: data for path, data in files.items()}


class Material:
    """Every workshop's sources and every link's repository: what is fetched, and where it was poured."""

    def __init__(self, cache: GitCache, *, allowed: Allowed, secret, keeper, log, interval: float = 300.0,
                 refresh: float = 60.0):
        self.cache = cache
        self.allowed = allowed
        self.secret = secret
        self.keeper = keeper
        self.log = log
        self.interval = interval
        self.refresh = refresh
        self.sources: dict[str, list[Source]] = {}  # workshop -> its sources
        self.pools: Callable[[], dict] = dict  # workshop name -> its pool (set by start)
        self.versions: dict[str, dict[str, set[str]]] = {}  # same_repo(url) -> path in the repo -> sha256s
        self.poured: dict[str, dict[tuple[str, str, str], str]] = {}  # cid -> (repo, ref, target) -> commit
        self.pouring: dict[str, asyncio.Task] = {}  # workshop -> its pour under way
        self.last_pour: dict[str, dict] = {}  # workshop -> the last pour's summary
        self._task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._learned: set[tuple[str, str, str, str]] = set()
        self._load_versions()

    # --- configuration -------------------------------------------------------------------------

    def configure(self, workshop: str, sources: list[Source]) -> bool:
        """The workshop's sources (at start and on a reload); True when they changed."""
        changed = self.sources.get(workshop, []) != sources
        if sources:
            self.sources[workshop] = list(sources)
        else:
            self.sources.pop(workshop, None)
        return changed

    def reload(self, allowed: Allowed, own: list[Source]) -> None:
        """A reload's content settings: the links' allow list, and the sources of the workshop at /."""
        if allowed.patterns != self.allowed.patterns:
            self.allowed = allowed
            self.log.info("applied NbpoolApp: allowed_content=%r", allowed.patterns)
        if self.configure("", own):
            self.log.info("applied NbpoolApp: content is now %s", "; ".join(s.describe() for s in own) or "none")
            if own:
                asyncio.get_running_loop().create_task(self.pull(""))

    def all_sources(self) -> list[Source]:
        return [s for sources in self.sources.values() for s in sources]

    def allows(self, url: str) -> bool:
        return self.allowed.allows(url, self.all_sources())

    def resolve(self, url: str) -> str:
        """The URL to fetch for a link's ``url``: a configured source's own (with its credential), if it is one."""
        wanted = same_repo(url)
        return next((s.repo for s in self.all_sources() if same_repo(s.repo) == wanted), url)

    def workshop_of(self, url: str) -> str | None:
        """The workshop whose sources include ``url`` (for a link at '/' of a service with several)."""
        wanted = same_repo(url)
        return next((name for name, sources in self.sources.items()
                     if any(same_repo(s.repo) == wanted for s in sources)), None)

    # --- running -----------------------------------------------------------------------------------

    async def start(self, pools: Callable[[], dict]) -> None:
        """Read every source's last good commit from the cache (no network), then fetch in the background."""
        self.pools = pools
        for name, sources in self.sources.items():
            for source in sources:
                snap = await self.cache.load(source.repo, source.ref)
                if snap is not None:
                    self._learn(name, source.repo, source.path, snap)
        self._task = asyncio.get_running_loop().create_task(self._every())

    async def stop(self) -> None:
        for task in [self._task, *self.pouring.values(), *self._background]:
            if task is not None:
                task.cancel()

    async def _every(self) -> None:
        """The first fetch at once, then (``interval`` > 0) one every ``interval`` seconds."""
        try:
            await self.pull()
        except Exception:  # a task boundary: say so; the schedule fetches again
            self.log.exception("material: the first fetch failed")
        if self.interval > 0:
            await every(lambda: self.interval, self.pull, self.log, "material: a scheduled fetch")

    async def pull(self, workshop: str | None = None) -> list[dict]:
        """Fetch the sources (of ``workshop``, or all) now; a new commit is poured into running containers.
        A failed fetch keeps the last good commit, and says why (logged, and in the status)."""
        names = [workshop] if workshop is not None else list(self.sources)
        self.forget({cid for pool in self.pools().values() for cid in pool.slots})
        results = []
        for name in names:
            fresh = False
            for source in self.sources.get(name, []):
                before = self.cache.last(source.repo, source.ref)
                try:
                    snap = await self.cache.fetch(source.repo, source.ref)
                except FetchError as exc:
                    self.log.warning("workshop %s: fetching %s failed (%s)%s", name or "(default)", source.describe(),
                                     exc, f"; still serving {before.commit[:10]}" if before else "")
                    results.append(self.source_status(name, source))
                    continue
                if before is None or before.commit != snap.commit:
                    self._learn(name, source.repo, source.path, snap)
                    self.log.info("workshop %s: %s is at %s (%d files, %d bytes)", name or "(default)",
                                  source.describe(), snap.commit[:10], len(snap.files), snap.size)
                    fresh = True
                results.append(self.source_status(name, source))
            if fresh:
                self._pour_later(name)
        return results

    def _pour_later(self, workshop: str) -> None:
        running = self.pouring.get(workshop)
        if running is not None and not running.done():
            running.cancel()  # the newer commit replaces it; merges already made stay made
        self.pouring[workshop] = asyncio.get_running_loop().create_task(self._pour(workshop))

    async def _pour(self, workshop: str) -> None:
        """The workshop's current commits into every running container (spares and attendees')."""
        pool = self.pools().get(workshop)
        if pool is None:
            return
        slots = [s for s in pool.slots.values() if s.state in (SPARE, ASSIGNED) and s.endpoint is not None]
        started, gate = time.monotonic(), asyncio.Semaphore(AT_ONCE)
        outcomes: list[Outcome] = []

        async def one(slot: Slot) -> None:
            async with gate:
                for source in self.sources.get(workshop, []):
                    snap = self.cache.last(source.repo, source.ref)
                    if snap is None:
                        continue
                    delivery = Delivery(source.repo, source.ref, source.path)
                    if slot.state == SPARE:  # nobody's yet: in one go (an attendee's container is merged into)
                        outcomes.append(await self._spare(slot, pool.backend, delivery, snap))
                    else:
                        outcomes.append(await self._merge(slot, delivery, snap))

        await asyncio.gather(*(one(s) for s in slots))
        counts = {k: sum(1 for o in outcomes if o.result == k) for k in ("done", "failed")}
        beside = sorted({p for o in outcomes for p in o.beside})
        self.last_pour[workshop] = {"at": time.time(), "seconds": round(time.monotonic() - started, 3),
                                    "containers": len(slots), **counts, "kept_beside": beside[:50]}
        self.log.info("workshop %s: new material poured into %d containers in %.1fs: %d done, %d failed%s",
                      workshop or "(default)", len(slots), time.monotonic() - started, counts["done"],
                      counts["failed"], f"; edited by attendees, new version beside: {', '.join(beside[:5])}"
                      if beside else "")

    # --- into containers -------------------------------------------------------------------------

    def _files(self, slot: Slot) -> NotebookFiles:
        return NotebookFiles(slot.url("", slot.endpoint.url), self.secret.token_for(slot.cid), timeout=30.0)

    async def _write_fresh(self, slot: Slot, backend, folder: str, files: dict[str, bytes]) -> None:
        """``files`` into a container nobody has touched: through the engine in one go when it can, else
        through the notebook server's contents API."""
        try:
            done = backend is not None and await backend.put_files(slot.engine_id, folder, files)
        except BackendError as exc:
            self.log.warning("copying files into %s through the engine failed (%s): through its server instead",
                             slot.cid, exc)
            done = False
        if not done:
            await write_files(self._files(slot), placed(files, folder))

    async def into_spare(self, workshop: str, slot: Slot, backend=None) -> None:
        """A new container of ``workshop``, nobody's yet: every source's current files (Pool.on_spare)."""
        for source in self.sources.get(workshop, []):
            snap = self.cache.last(source.repo, source.ref)
            if snap is None and self.cache.fetching(source.repo, source.ref):
                with contextlib.suppress(FetchError):  # the first fetch under way: this spare waits for it
                    snap = await self.cache.fetch(source.repo, source.ref)
            if snap is None or not snap.files:
                continue
            await self._write_fresh(slot, backend, source.path, snap.files)
            self._remember(slot.cid, Delivery(source.repo, source.ref, source.path), snap.commit)

    async def ensure(self, repo: str, ref: str) -> Snapshot:
        """A link's repository: the cached commit (refreshed in the background once ``refresh`` old), or the
        first fetch (shared by everyone asking at once). FetchError when there is none to serve."""
        url = self.resolve(repo)
        snap = self.cache.last(url, ref)
        if snap is None:
            return await self.cache.fetch(url, ref)
        if time.time() - snap.fetched > self.refresh and not self.cache.fetching(url, ref):
            task = asyncio.get_running_loop().create_task(self._refresh(url, ref))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return snap

    async def _refresh(self, url: str, ref: str) -> None:
        with contextlib.suppress(FetchError):
            await self.cache.fetch(url, ref)

    async def deliver(self, slot: Slot, delivery: Delivery, *, fresh: bool = False, backend=None) -> Outcome:
        """A link's repository into ``slot`` (the visitor's, new or their own again): merged, so what they
        changed stays; nothing is written when it already has this commit. ``fresh``: a container just handed
        out, nobody's work in it yet: written in one go (through ``backend`` when it can). ContentsError,
        FetchError and BackendError propagate."""
        url = self.resolve(delivery.repo)
        delivery = Delivery(url, delivery.ref, delivery.target)
        snap = await self.ensure(url, delivery.ref)
        self._learn(slot.workshop, url, delivery.target, snap)
        if fresh and self._poured(slot.cid, delivery) is None:
            if slot.route is not None:
                slot.route.fill_ok = False  # written to outside the proxy: no longer the image's files alone
            await self._write_fresh(slot, backend, delivery.target, snap.files)
            self._remember(slot.cid, delivery, snap.commit)
            return Outcome(slot.cid, slot.state, result="done", new=sorted(placed(snap.files, delivery.target)))
        out = await self._merge(slot, delivery, snap)
        if out.result == "failed":
            raise ContentsError(out.error)
        return out

    async def _spare(self, slot: Slot, backend, delivery: Delivery, snap: Snapshot) -> Outcome:
        """A new commit into a spare, nobody's yet: in one go."""
        return await self._pour_into(slot, delivery, snap, "spare ",
                                     lambda out: self._write_fresh(slot, backend, delivery.target, snap.files))

    async def _merge(self, slot: Slot, delivery: Delivery, snap: Snapshot) -> Outcome:
        """A commit into a container someone may have worked in: by the edit-safe merge."""
        known = placed(self.versions.get(same_repo(delivery.repo), {}), delivery.target)

        async def write(out: Outcome) -> None:
            if slot.route is not None:
                slot.route.fill_ok = False  # written to outside the proxy: no longer the image's files alone
            await merge_files(self._files(slot), placed(snap.files, delivery.target), known, out,
                              digests=placed(snap.digests, delivery.target))

        return await self._pour_into(slot, delivery, snap, "", write)

    async def _pour_into(self, slot: Slot, delivery: Delivery, snap: Snapshot, kind: str, write) -> Outcome:
        """``write(out)`` into ``slot`` unless it has this commit already, under CONTAINER_TIMEOUT; a failure
        is logged and told in the outcome, never raised."""
        out = Outcome(slot.cid, slot.state)
        if self._poured(slot.cid, delivery) == snap.commit:
            out.result = "done"
            return out
        try:
            async with asyncio.timeout(CONTAINER_TIMEOUT):
                await write(out)
            out.result = "done"
            self._remember(slot.cid, delivery, snap.commit)
        except (ContentsError, TimeoutError, OSError) as exc:
            out.result, out.error = "failed", str(exc) or type(exc).__name__
            self.log.warning("material from %s into %s%s failed: %s", snap.url, kind, slot.cid, out.error)
        return out

    @staticmethod
    def _key(delivery: Delivery) -> tuple[str, str, str]:
        return same_repo(delivery.repo), delivery.ref, delivery.target

    def _poured(self, cid: str, delivery: Delivery) -> str | None:
        """The commit of ``delivery`` last poured into ``cid`` (None: none yet)."""
        return self.poured.get(cid, {}).get(self._key(delivery))

    def _remember(self, cid: str, delivery: Delivery, commit: str) -> None:
        if cid not in self.poured and len(self.poured) >= MAX_POURED:
            self.poured.pop(next(iter(self.poured)))
        self.poured.setdefault(cid, {})[self._key(delivery)] = commit

    def forget(self, live: set[str]) -> None:
        """Drop what was poured into containers that are gone (``live``: the cids still running)."""
        for cid in [c for c in self.poured if c not in live]:
            del self.poured[cid]

    # --- which versions are nbpool's --------------------------------------------------------------

    def _learn(self, workshop: str, url: str, target: str, snap: Snapshot) -> None:
        """Remember each file's version as nbpool's (for later merges and for the kept-work keeper); once per
        (workshop, repository, folder, commit)."""
        learned = (workshop, same_repo(url), target, snap.commit)
        if learned in self._learned:
            return
        self._learned.add(learned)
        versions = self.versions.setdefault(same_repo(url), {})
        changed = False
        for path, digest in snap.digests.items():
            seen = versions.setdefault(path, set())
            if digest not in seen:
                if len(seen) >= MAX_VERSIONS:
                    seen.pop()
                seen.add(digest)
                changed = True
            if self.keeper is not None:
                full = f"{target}/{path}" if target else path
                self.keeper.add_pristine(workshop, full, digest)
                self.keeper.add_pristine(workshop, beside_name(full), digest)
        if changed:
            self._save_versions()

    def _versions_file(self):
        return self.cache.folder / "digests.json"

    def _load_versions(self) -> None:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            raw = json.loads(self._versions_file().read_text())
            self.versions = {repo: {path: set(digests) for path, digests in paths.items()}
                             for repo, paths in raw.items()}

    def _save_versions(self) -> None:
        try:
            self.cache.folder.mkdir(parents=True, mode=0o700, exist_ok=True)
            tmp = self._versions_file().with_suffix(".tmp")
            tmp.write_text(json.dumps({r: {p: sorted(d) for p, d in paths.items()}
                                       for r, paths in self.versions.items()}))
            os.replace(tmp, self._versions_file())
        except OSError as exc:
            self.log.warning("material: could not store the versions poured (%s): after a restart, files of "
                             "earlier commits count as the attendees'", exc)

    # --- what the status page and the API show -----------------------------------------------------

    def source_status(self, workshop: str, source: Source) -> dict:
        snap = self.cache.last(source.repo, source.ref)
        tried = self.cache.tried.get(source.key)
        return {"workshop": workshop, "repo": source.shown, "ref": source.ref or "(default branch)",
                "path": source.path or ".", "commit": snap.commit if snap else None,
                "fetched": snap.fetched if snap else None, "files": len(snap.files) if snap else 0,
                "bytes": snap.size if snap else 0, "error": tried.error if tried else "",
                "tried": tried.at if tried else None}

    def status(self) -> dict:
        configured = {(s.repo, s.ref) for s in self.all_sources()}
        links = [{"repo": snap.url, "ref": ref or "(default branch)", "commit": snap.commit, "fetched": snap.fetched,
                  "files": len(snap.files), "bytes": snap.size,
                  "error": self.cache.tried.get((url, ref), Tried()).error}
                 for (url, ref), snap in self.cache.snapshots.items() if (url, ref) not in configured]
        return {"sources": [self.source_status(name, s) for name, sources in self.sources.items() for s in sources],
                "links": links, "fetches": self.cache.fetches, "interval": self.interval,
                "pours": self.last_pour}
