"""Nothing an attendee made is lost: their files saved before their container goes, and every few minutes.

What is kept: the files in the home directory that the attendee created or
changed, found through their notebook server's own API (``contents``), so it
works on any engine. A file is the image's own (and not kept) while its size
and time are those a fresh spare of the same image listed, or its bytes hash
to what that spare's server reported (a notebook opened and saved unchanged).
Dot-files and folders are hidden by Jupyter and never seen; ``skip_names``
leaves out caches such as ``__pycache__``.

When: at the end of a session nbpool controls (idle cull, maximum age, an
operator's removal, the disk watchdog, a visitor starting afresh), after the
route is gone (nothing changes while it is copied) and before the container
is removed, within ``save_timeout``; and every ``keep_interval`` for each
attendee active since their last checkpoint, copying only what changed. A
container that dies without warning keeps its last checkpoint.

Kept work belongs to the visitor whose signed cookie names the session, lives
for ``keep_hours`` after the session ended, survives restarts (``store``), and
is continued in a fresh notebook at most once.

The keeper is the façade; its parts own their state: ``contents`` (an
attendee's server, every answer bounded), ``image`` (the image's own files),
``space`` (who may keep how many bytes), ``settled`` (a file read whole, never
mid-save), ``archive`` (the zip download) and ``store`` (the disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time

from traitlets import Bool, Callable, Float, Instance, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from proxy.addresses import network_of

from ..backoff import every
from ..contents import ContentsError, NotebookFiles, TooLarge
from ..pool.slot import ASSIGNED, Slot
from ..secret import KEPT, SESSION, ServerSecret
from ..traits import MemorySize, format_memory, require
from .archive import Downloads
from .image import ImageFiles
from .settled import StillSaving, read_settled
from .space import KeptSpace
from .store import BadPath, Kept, KeptStore, check_path

HOME_FOLDER = "(your home folder)"  # how a note about the home folder itself is listed


class AlreadyRestored(Exception):
    """The kept work was continued in a fresh notebook already (``Kept.restored_into``): once only."""


class WorkKeeper(LoggingConfigurable):
    """Saves attendees' files before their containers go, checkpoints them, gives them back."""

    enabled = Bool(True, config=True,
                   help="Keep attendees' work after their session ends (see docs/workshop/kept-work.md). Off: "
                        "nothing is saved and the ended page says the work is gone.")
    keep_interval = Float(300.0, config=True,
                          help="Seconds between checkpoints: each attendee active since their last one has what "
                               "changed copied, so a container that dies without warning loses at most this "
                               "much. 0: no checkpoints (work is saved only when nbpool ends a session).")
    keep_hours = Float(24.0, config=True,
                       help="Hours kept work stays after its session ended; then it is deleted.")
    max_per_attendee = MemorySize("50M", config=True,
                                  help="Most bytes kept for one attendee. Newest files first; a file that does "
                                       "not fit is listed on their page as not kept.")
    max_per_network = MemorySize("500M", config=True,
                                 help="Most bytes (e.g. 500M, 1G) kept for the sessions of one client network "
                                      "together (an IPv4 address, an IPv6 /64), however many sessions it starts, "
                                      "so one visitor cannot fill max_total and leave the others' work unkept. "
                                      "Past it, that network's new files are listed on their page as not kept, "
                                      "with the reason, and the status page says so. The default (500M, a quarter "
                                      "of max_total) fits hundreds of typical attendees (a few MB each). A whole "
                                      "room behind one NAT address shares it: raise it for such a room, or set 0 "
                                      "for no limit per network (max_total still applies).")
    max_total = MemorySize("2G", config=True,
                           help="Most bytes of kept work on this machine, all attendees together (under "
                                "<data_dir>/kept). Past it, files are not kept and the status page says so.")
    save_timeout = Float(5.0, config=True,
                         help="Seconds a save at the end of a session may take before the container is removed "
                              "anyway (what was copied by then, and the last checkpoint, are kept).")
    save_concurrency = Integer(8, config=True, help="Attendees' files copied at once (saves and checkpoints).")
    max_files = Integer(2000, config=True,
                        help="Most files looked at in one attendee's home directory; also the most folders listed "
                             "(a request each), and what one folder's listing may weigh: 512 bytes a file (at "
                             "least 256 KB; 1000 KB by default). A folder whose listing is larger is not looked "
                             "at and is listed on the attendee's page as not kept (too many files in one folder).")
    skip_names = List(Unicode(), ["__pycache__", "node_modules"], config=True,
                      help="File and folder names never kept (dot-files are never seen: Jupyter hides them).")

    secret = Instance(ServerSecret, help="Notebook tokens, and the visitors' signed cookies.")
    record = Callable(lambda event, /, **fields: None, help="record(event, **fields): the workshop's record.")
    wallclock = Callable(time.time, help="Wall clock (seconds since the epoch): ages that survive restarts.")
    store = Instance(KeptStore, allow_none=True,
                     help="Where kept work lives (<data_dir>/kept); None only in a copy that checks settings.")

    @validate("keep_interval")
    def _validate_interval(self, proposal):
        return require(proposal, proposal.value == 0 or proposal.value >= 10, "0 (off) or at least 10 seconds")

    @validate("keep_hours", "save_timeout")
    def _validate_positive(self, proposal):
        return require(proposal, proposal.value > 0, "a positive number")

    @validate("save_concurrency", "max_files")
    def _validate_counts(self, proposal):
        return require(proposal, proposal.value >= 1, "at least 1")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sessions: dict[str, Kept] = {}
        self.space = KeptSpace(self)  # the bytes kept, in all and per network
        self.image = ImageFiles(self.store, self.log) if self.store is not None else None
        self.downloads = Downloads()  # zip downloads under way
        self.checked: dict[str, float] = {}  # cid -> pool clock at its last checkpoint
        self._failed: dict[str, str] = {}  # cid -> why its last save failed (live sessions)
        self._locks: dict[str, asyncio.Lock] = {}
        self._gate: asyncio.Semaphore | None = None
        self._ending: set[str] = set()  # sessions whose last save is under way
        self._tasks: list[asyncio.Task] = []
        self.pools = lambda: []  # () -> every pool (one per workshop) whose containers' work is kept

    # --- life -----------------------------------------------------------------------------------

    async def start(self, pools) -> None:
        """Load what earlier runs kept; sessions whose container is gone now have ended; start the loops.

        ``pools``: () -> every pool whose attendees' work is kept (one per workshop).
        """
        self.pools = pools
        self._gate = asyncio.Semaphore(self.save_concurrency)
        self.sessions = await asyncio.to_thread(self.store.load_all)
        for kept in self.sessions.values():
            self.space.count(kept)
        await self.image.load()
        # A copy: ending a session that kept nothing removes it from self.sessions.
        for kept in list(self.sessions.values()):
            slot = self._slot(kept.cid)
            if kept.state == "live" and not (slot is not None and slot.state == ASSIGNED and slot.nonce == kept.nonce):
                try:
                    await self._end(kept, "Its server was gone when the service restarted; this is its last "
                                          "checkpoint.")
                except OSError as exc:  # one unwritable record must not stop the service: it stays 'live'
                    self.log.error("kept work of %s: could not record its end: %s", kept.cid, exc)
        await self.expire()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(every(lambda: self.keep_interval or 60.0, self.checkpoint_all, self.log,
                                              "kept work: a checkpoint pass")),
                       loop.create_task(every(lambda: 300.0, self.expire, self.log, "kept work: expiry"))]
        self.log.info("kept work: %d sessions (%s) under %s; kept %g hours, checkpoints every %s",
                      len(self.sessions), format_memory(self.space.total) + "B", self.store.root,
                      self.keep_hours, f"{self.keep_interval:.0f}s" if self.keep_interval else "never")

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    # --- the image's own files (see image.ImageFiles) ---------------------------------------------------

    async def learn_image(self, slot: Slot, scope: str) -> None:
        """Learn the image's own files from ``slot``, a container nobody has used yet, once per drain scope
        (ImageFiles.learn: launches of the scope wait for the listing)."""
        if self.enabled:
            await self.image.learn(self._files(slot), self._image(slot), scope, self.max_files, slot.cid)

    def add_pristine(self, workshop: str, path: str, digest: str) -> None:
        """A version of ``path`` an instructor pushed into ``workshop``'s containers: not the attendee's work."""
        self.image.add_pristine(workshop, path, digest)

    def image_hash(self, image: str, path: str) -> str:
        """The sha256 of ``path`` as ``image`` ships it ('' when unknown)."""
        return self.image.image_hash(image, path)

    # --- saving ---------------------------------------------------------------------------------

    def _files(self, slot: Slot, timeout: float = 10.0) -> NotebookFiles:
        return NotebookFiles(slot.url("", slot.endpoint.url), self.secret.token_for(slot.cid), timeout=timeout,
                             skip_names=self.skip_names)

    def _image(self, slot: Slot) -> str:
        """The image ``slot`` runs (the pool's, for one adopted without the label that says)."""
        if slot.image:
            return slot.image
        pool = self._pool_of(slot.cid)
        return pool.backend.image if pool is not None else ""

    def _pool_of(self, cid: str):
        return next((p for p in self.pools() if cid in p.slots), None)

    def _slot(self, cid: str) -> Slot | None:
        pool = self._pool_of(cid)
        return pool.slots.get(cid) if pool is not None else None

    def owner_key(self, address: str) -> str:
        """What a session records of the client it was handed to: a keyed digest of its network, so sessions
        from one network count together (max_per_network) and the address never reaches the disk. '' when
        unknown (a container adopted after a restart): such a session counts against max_total only."""
        return self.secret.derive("kept-owner", network_of(address))[:16] if address else ""

    async def _session(self, slot: Slot) -> Kept:
        kept = self.sessions.get(slot.cid)
        if kept is not None and kept.nonce != slot.nonce:
            # The id's earlier session (a container handed back unopened keeps its id): never mix the two.
            self.sessions.pop(slot.cid)
            self.space.forget(kept)
            await asyncio.to_thread(self.store.delete, slot.cid)
            kept = None
        if kept is None:
            kept = Kept(cid=slot.cid, nonce=slot.nonce, image=self._image(slot), started=self.wallclock(),
                        workshop=slot.workshop, owner=self.owner_key(slot.owner))
            self.sessions[slot.cid] = kept
        return kept

    async def save(self, slot: Slot, *, final: bool, timeout: float | None = None) -> Kept | None:
        """Copy what changed in ``slot``'s home since the last save; None when keeping is off."""
        if not self.enabled or slot.endpoint is None or not slot.nonce:
            return None
        lock = self._locks.setdefault(slot.cid, asyncio.Lock())
        async with self._gate, lock:
            # The time allowed counts from here: waiting for a turn among save_concurrency is not this
            # save's fault (twenty culled at once take turns; each then has its full save_timeout).
            started = time.monotonic()
            deadline = started + ((timeout or self.save_timeout) if final else 600.0)
            kept = await self._session(slot)
            fetched, moved = 0, 0
            try:
                fetched, moved = await self._copy(slot, kept, deadline)
                kept.error = ""
                kept.updated = self.wallclock()
                self._failed.pop(slot.cid, None)
            except (ContentsError, OSError, TimeoutError) as exc:
                kept.error = f"{'saving' if final else 'a checkpoint'} failed: {exc}"
                self._failed[slot.cid] = kept.error
                self.log.error("kept work of %s: %s (its last checkpoint is kept)", slot.cid, kept.error)
            await asyncio.to_thread(self.store.save_meta, kept)
            pool = self._pool_of(slot.cid)
            self.checked[slot.cid] = pool.clock() if pool is not None else time.monotonic()
            self.record("kept", cid=slot.cid, files=moved, bytes=fetched, final=final, error=kept.error,
                        seconds=round(time.monotonic() - started, 3))
            return kept

    async def _copy(self, slot: Slot, kept: Kept, deadline: float) -> tuple[int, int]:
        """The copy itself: list, compare, fetch what changed; (bytes fetched, files stored)."""
        files = self._files(slot, timeout=max(1.0, deadline - time.monotonic()))
        tree = await files.tree(self.max_files, deadline=deadline)
        present = {item.path for item in tree.files}
        if tree.complete:  # (a folder not looked at proves nothing: what was kept of it stays kept)
            for path in [p for p in kept.files if p not in present]:  # deleted by the attendee since
                self.space.drop(kept, path)
                await asyncio.to_thread(self.store.drop_file, kept.cid, path)
            kept.pristine = {p: m for p, m in kept.pristine.items() if p in present}
        # This save says again what it could not keep (a folder: its path and '/').
        kept.skipped = {f"{folder}/" if folder else HOME_FOLDER: {"size": 0, "why": why, "folder": True}
                        for folder, why in tree.refused.items()}
        changed = []
        for item in tree.files:
            try:
                check_path(item.path)
            except BadPath:  # a name no file of ours may have: listed, never fetched nor written
                kept.skipped[item.path] = {"size": item.size, "why": "not a plain file name"}
                continue
            if not self.image.unchanged(kept, item):
                changed.append(item)
        again = {item.path for item in changed}
        # Every kept file not being replaced counts, seen this time or not.
        room = self.max_per_attendee - sum(f["size"] for p, f in kept.files.items() if p not in again)
        network = network_of(slot.owner) if slot.owner else ""
        fetched = stored = 0
        for item in sorted(changed, key=lambda i: i.modified, reverse=True):  # newest work first
            # The listed size is the server's word: it picks what is tried, and the bytes read are capped
            # at what could be kept (a file listed small that is not is cut off there, never held whole).
            why = self.space.refusal(kept, item.path, item.size, room, network)
            if why:
                kept.skipped[item.path] = {"size": item.size, "why": why}
                continue
            limit = self.space.allowance(kept, item.path, room)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"ran out of time with {item.path} and others left to copy")
            try:
                data = await read_settled(lambda left, path=item.path, cap=limit: files.read(path, cap, timeout=left),
                                          item.path, item.size, deadline)
            except StillSaving:  # (read mid-save each time: the version kept before stays, next time again)
                kept.skipped[item.path] = {"size": item.size, "why": "it was being saved each time it was read; "
                                           "its last kept version stays and the next checkpoint tries again"}
                continue
            except TooLarge:
                why = self.space.refusal(kept, item.path, limit + 1, room, network) or "too large"
                kept.skipped[item.path] = {"size": item.size, "why": why}
                continue
            except ContentsError as exc:  # this one file (a broken link, a name the server refuses): the rest go on
                kept.skipped[item.path] = {"size": item.size, "why": f"it could not be read ({exc})"}
                continue
            fetched += len(data)
            if self.image.is_own(kept, item.path, hashlib.sha256(data).hexdigest()):
                kept.pristine[item.path] = list(item.mark)  # saved unchanged: still the image's own
                self.space.drop(kept, item.path)
                continue
            # Checked again as it is put (other saves went on while it was read), and counted before the
            # write, so no other save can take the same room meanwhile.
            why = self.space.refusal(kept, item.path, len(data), room, network)
            if why:
                kept.skipped[item.path] = {"size": len(data), "why": why}
                continue
            before = self.space.put(kept, item.path, {"size": len(data), "modified": item.modified,
                                                      "saved": self.wallclock()})
            try:
                await asyncio.to_thread(self.store.write_file, kept.cid, item.path, data)
            except OSError:
                if before is None:
                    self.space.drop(kept, item.path)
                else:
                    self.space.put(kept, item.path, before)
                raise
            kept.skipped.pop(item.path, None)
            room -= len(data)  # (an older version of it was not counted in the room)
            stored += 1
        return fetched, stored

    # --- sessions ending ----------------------------------------------------------------------------

    async def session_ended(self, slot: Slot, reason: str, *, alive: bool) -> None:
        """``slot``'s session ends: copy its files one last time (if its container still runs), then keep."""
        if not self.enabled or not slot.nonce:
            return
        self._ending.add(slot.cid)
        try:
            await self._last_save(slot, reason, alive)
        finally:
            self._ending.discard(slot.cid)

    def is_saving(self, cid: str) -> bool:
        """Whether ``cid``'s session has ended and its files are being saved right now."""
        return cid in self._ending

    async def _last_save(self, slot: Slot, reason: str, alive: bool) -> None:
        if alive:  # bounded by its own deadline: every call it makes is given only the time left
            await self.save(slot, final=True)
        kept = self.sessions.get(slot.cid)
        if kept is not None and kept.nonce == slot.nonce:
            await self._end(kept, reason)
        self.checked.pop(slot.cid, None)
        self._locks.pop(slot.cid, None)
        self._failed.pop(slot.cid, None)

    async def _end(self, kept: Kept, reason: str) -> None:
        if not kept.files and not kept.skipped and not kept.error:
            self.sessions.pop(kept.cid, None)  # nothing was made: nothing to offer
            self.space.forget(kept)
            await asyncio.to_thread(self.store.delete, kept.cid)
            return
        kept.state, kept.ended_at, kept.reason = "ended", self.wallclock(), reason
        await asyncio.to_thread(self.store.save_meta, kept)

    async def checkpoint_all(self) -> int:
        """Checkpoint every attendee active since their last checkpoint; returns how many."""
        if not self.enabled or not self.keep_interval:
            return 0
        due = [s for pool in self.pools() for s in list(pool.slots.values())
               if s.state == ASSIGNED and s.opened and s.route is not None
               and s.route.last_activity > self.checked.get(s.cid, float("-inf"))]
        began, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(self.save(s, final=False) for s in due))
        if due:
            # The pass's own cost, for operators sizing keep_interval (the benchmark reads it too).
            self.record("checkpoint", count=len(due), seconds=round(time.monotonic() - began, 3),
                        cpu=round(time.process_time() - cpu, 4))
        return len(due)

    # --- giving it back ---------------------------------------------------------------------------------

    def owned(self, cid: str, *, session: str | None, kept: str | None) -> Kept | None:
        """The kept work of ``cid`` if the visitor's signed session cookie, or their cookie for the session
        before it (``kept``), names it (``"<cid>:<nonce>"``, each signed for its own purpose)."""
        work = self.sessions.get(cid)
        if work is None:
            return None
        want = f"{work.cid}:{work.nonce}"
        if self.secret.verify(session, SESSION) == want or self.secret.verify(kept, KEPT) == want:
            return work
        return None

    async def restore(self, kept: Kept, slot: Slot) -> int:
        """Copy ``kept``'s files into ``slot``'s fresh home; returns how many.

        Once only: the work is marked as continued in ``slot`` before the first
        await, so of two restores racing (two clicks, two tabs) one copies and
        the other gets AlreadyRestored. A failed copy (ContentsError, OSError)
        clears the mark: the work is still kept, and may be restored again.
        """
        if kept.restored_into and kept.restored_into != slot.cid:
            raise AlreadyRestored(kept.restored_into)
        kept.restored_into = slot.cid
        try:
            count = await self._copy_into(kept, slot)
        except BaseException:
            kept.restored_into = ""
            raise
        await asyncio.to_thread(self.store.save_meta, kept)
        self.log.info("kept work of %s (%d files) restored into %s", kept.cid, count, slot.cid)
        return count

    async def never_opened(self, cid: str) -> None:
        """The container some kept work was restored into ended before its visitor opened it: nothing was
        continued there (its visitor never came), so that work may be continued again."""
        for kept in [k for k in self.sessions.values() if k.restored_into == cid]:
            kept.restored_into = ""
            await asyncio.to_thread(self.store.save_meta, kept)
            self.log.info("kept work of %s may be continued again: %s was never opened", kept.cid, cid)

    async def _copy_into(self, kept: Kept, slot: Slot) -> int:
        if slot.route is not None:
            slot.route.fill_ok = False  # written to outside the proxy: its files are no longer the image's
        files = self._files(slot, timeout=30.0)
        made: set[str] = set()
        paths = sorted(kept.files)
        for path in paths:
            folder = path.rpartition("/")[0]
            parts = folder.split("/") if folder else []
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in made:
                    with contextlib.suppress(ContentsError):  # already there (the image's own folder)
                        await files.make_folder(sub)
                    made.add(sub)
            data = await asyncio.to_thread(self.store.read_file, kept.cid, path)
            await files.write(path, data)
        return len(paths)

    async def delete(self, cid: str, why: str) -> bool:
        kept = self.sessions.pop(cid, None)
        if kept is None:
            return False
        self.space.forget(kept)
        await asyncio.to_thread(self.store.delete, cid)
        self.log.info("kept work of %s deleted: %s", cid, why)
        return True

    def expires_at(self, kept: Kept) -> float:
        """When ``kept`` is deleted (wall clock): keep_hours after its session ended."""
        return kept.ended_at + self.keep_hours * 3600

    async def expire(self) -> int:
        """Delete kept work older than keep_hours after its session ended; returns how many."""
        now = self.wallclock()
        old = [k.cid for k in self.sessions.values() if k.state == "ended" and self.expires_at(k) < now]
        for cid in old:
            await self.delete(cid, f"older than keep_hours ({self.keep_hours:g})")
        return len(old)

    @property
    def problem(self) -> str:
        """What operators should know (the status page shows it): '' when saving works."""
        parts = self.space.problems
        if self._failed:
            parts.append(f"the last save of {len(self._failed)} attendee(s) failed, e.g. "
                         f"{next(iter(self._failed.values()))}")
        return "; ".join(parts)

    def summary(self) -> dict:
        ended = [k for k in self.sessions.values() if k.state == "ended"]
        return {"enabled": self.enabled, "sessions": len(self.sessions), "ended": len(ended),
                "bytes": self.space.total, "max_total": self.max_total, "max_per_network": self.max_per_network,
                "problem": self.problem}
