"""Which files are the workshop's own, not its attendee's: what each image ships, and what instructors pushed.

A file is the image's own (and not kept) while its size and time are those
a fresh spare of the same image listed, or its bytes hash to what that
spare's server reported (a notebook opened and saved unchanged), or to a
version an instructor pushed into the workshop's containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..contents import ContentsError, Listed, NotebookFiles
from .store import Kept, KeptStore


class ImageFiles:
    """Each image's own files (``baselines``, learnt once per drain scope and stored), and pushed versions."""

    def __init__(self, store: KeptStore, log: logging.Logger):
        self.store = store
        self.log = log
        self.baselines: dict[str, dict[str, list]] = {}  # image -> path -> [size, modified, sha256]
        self.pushed: dict[str, dict[str, set[str]]] = {}  # workshop -> path -> sha256 of versions pushed into it
        self.hashing: asyncio.Task | None = None  # the image's files' hashes, being asked for
        self._learnt: dict[str, asyncio.Future] = {}  # drain scope -> whether its image's files are known

    async def load(self) -> None:
        self.baselines = await asyncio.to_thread(self.store.load_baselines)

    async def learn(self, files: NotebookFiles, image: str, scope: str, max_files: int, where: str) -> None:
        """Learn ``image``'s own files from ``files``, a server nobody has used yet (``where``: which, for the
        log), once per drain scope.

        Launches of the same scope wait for the first one's listing (one request,
        once), so no container of it is handed out before nbpool knows which
        files are the workshop's rather than the attendee's. Their hashes (one
        request a file) follow in the background: until they are known, a file
        saved back unchanged counts as changed. A failure is logged and the next
        launch tries again; meanwhile every file counts as the attendee's (too
        much kept, never too little).
        """
        learnt = self._learnt.get(scope)
        if learnt is not None and (not learnt.done() or learnt.result()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(learnt), 10)
            return
        learnt = asyncio.get_running_loop().create_future()
        self._learnt[scope] = learnt
        ok = False
        try:
            listed = (await files.tree(max_files)).files
            own = {item.path: [item.size, item.modified, ""] for item in listed}
            self.baselines[image] = own
            ok = True
            self.log.info("kept work: image %s has %d files of its own (kept only once changed)", image, len(listed))
        except (ContentsError, TimeoutError) as exc:
            self.log.warning("kept work: could not list the image's own files from %s: %s", where, exc)
        finally:
            learnt.set_result(ok)
        if ok:
            self.hashing = asyncio.get_running_loop().create_task(self._learn_hashes(files, listed, own))

    async def _learn_hashes(self, files: NotebookFiles, listed: list[Listed], own: dict[str, list]) -> None:
        """The image's files' sha256 (asked of the same server: only those still as listed count), then the
        whole record to disk."""
        hashes = await files.hashes(listed)
        for path, digest in hashes.items():
            own[path][2] = digest
        try:
            await asyncio.to_thread(self.store.save_baselines, self.baselines)
        except OSError as exc:
            self.log.warning("kept work: could not store the image's own files in %s: %s", self.store.root, exc)

    def add_pristine(self, workshop: str, path: str, digest: str) -> None:
        """A version of ``path`` an instructor pushed into ``workshop``'s containers: not the attendee's work."""
        self.pushed.setdefault(workshop, {}).setdefault(path, set()).add(digest)

    def image_hash(self, image: str, path: str) -> str:
        """The sha256 of ``path`` as ``image`` ships it ('' when unknown)."""
        base = self.baselines.get(image, {}).get(path)
        return base[2] if base else ""

    def unchanged(self, kept: Kept, item: Listed) -> bool:
        """Whether ``item`` is as it was at ``kept``'s last save, or still its image's own file (by size and
        time: nothing fetched)."""
        have = kept.files.get(item.path)
        if have is not None:
            return (have["size"], have["modified"]) == item.mark
        if kept.pristine.get(item.path) == list(item.mark):
            return True
        base = self.baselines.get(kept.image, {}).get(item.path)
        return base is not None and (base[0], base[1]) == item.mark

    def is_own(self, kept: Kept, path: str, digest: str) -> bool:
        """Whether bytes hashing to ``digest`` at ``path`` are the image's or a pushed version (not kept)."""
        return bool(digest) and (self.image_hash(kept.image, path) == digest
                                 or digest in self.pushed.get(kept.workshop, {}).get(path, ()))
