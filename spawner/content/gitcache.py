"""Git repositories fetched on nbpool's own machine, once for every container: one commit's files, in memory.

Each repository has a bare git repository of its own under the cache folder
(named by a hash of its URL without credentials), fetched shallowly (depth 1:
only the commit asked for). git runs as a subprocess, never asks for a
password (``GIT_TERMINAL_PROMPT=0``), speaks only the transports nbpool
allows (https, http, ssh, git, a local path), follows no redirect (an allowed
host cannot send the fetch elsewhere), and is stopped by a timeout, or as soon
as the repository's folder grows past the size cap while it runs.

Fetches of the same (repository, ref) at once are one fetch: a class opening
the same link together costs the git server one request. A failed fetch
leaves the last good commit in place; the caller keeps serving it.

Secrets: a token in a URL (``https://user:token@host/...``) is passed to git
and nowhere else; what nbpool logs or shows of a URL or of git's messages has
it replaced by ``***`` (``redact``). An ssh key is given to ssh by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
SKIP_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints", ".DS_Store"})
ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
CHECK_EVERY = 0.25  # seconds between two looks at the folder's size while git fetches


class FetchError(Exception):
    """A fetch failed or was refused; the message (credentials removed) says why."""


def redact(text: str, url: str = "") -> str:
    """``text`` with every URL's user and password replaced by ``***`` (and ``url``'s own, wherever it is)."""
    if url:
        userinfo = re.match(r"^[a-z+]+://([^/@]*)@", url)
        if userinfo and userinfo.group(1):
            text = text.replace(userinfo.group(1), "***")
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@", r"\1***@", text)


def fetch_url(url: str) -> str:
    """What git fetches from: a local path as a file:// URL (so a shallow fetch stays shallow)."""
    return f"file://{url}" if url.startswith("/") else url


@dataclass
class Snapshot:
    """One commit of a repository: its files (by path in the repository) and where they came from."""

    url: str  # as shown: credentials removed
    ref: str  # as asked ('' : the remote's default branch)
    commit: str
    files: dict[str, bytes]
    fetched: float  # time.time() of the fetch that brought it (or found it unchanged)

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    @functools.cached_property
    def digests(self) -> dict[str, str]:
        """Each file's sha256, computed once per commit (not once per container it is poured into)."""
        return {path: hashlib.sha256(data).hexdigest() for path, data in self.files.items()}


@dataclass
class Tried:
    """The last fetch of a (repository, ref): when, and its error ('' : it worked)."""

    at: float = 0.0
    error: str = ""
    seconds: float = 0.0


class GitCache:
    """Fetches repositories into ``folder``; keeps the last good snapshot of each (url, ref) in memory."""

    def __init__(self, folder: Path, *, timeout: float = 120.0, max_bytes: int = 200 * 2**20, ssh_key: str = "",
                 log=None):
        self.folder = folder
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.ssh_key = ssh_key
        self.log = log
        self.snapshots: dict[tuple[str, str], Snapshot] = {}
        self.tried: dict[tuple[str, str], Tried] = {}
        self.fetches = 0  # fetches that reached a git server (for the status page and the benchmark)
        self._flights: dict[tuple[str, str], asyncio.Future] = {}

    # --- the public side -------------------------------------------------------------------------

    def last(self, url: str, ref: str) -> Snapshot | None:
        return self.snapshots.get((url, ref))

    def fetching(self, url: str, ref: str) -> bool:
        return (url, ref) in self._flights

    async def fetch(self, url: str, ref: str) -> Snapshot:
        """The newest commit of ``ref`` ('' : the default branch; a tag; a 40-hex commit). Concurrent calls for
        the same (url, ref) share one fetch. FetchError if it fails (the last good snapshot stays)."""
        key = (url, ref)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fetch(url, ref))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def load(self, url: str, ref: str) -> Snapshot | None:
        """The snapshot fetched before a restart, read from the cache without the network (None: none)."""
        repo = self.repo_dir(url)
        if not (repo / "HEAD").exists():
            return None
        try:
            commit = (await self._git(repo, "rev-parse", "--verify", "-q", self._ref_name(ref) + "^{commit}",
                                      url=url)).strip()
            snap = Snapshot(redact(url), ref, commit, await self._files(repo, commit, url), os.path.getmtime(repo))
        except FetchError:
            return None
        self.snapshots[(url, ref)] = snap
        return snap

    # --- fetching --------------------------------------------------------------------------------

    def repo_dir(self, url: str) -> Path:
        return self.folder / hashlib.sha256(redact(url).encode()).hexdigest()[:24]

    @staticmethod
    def _ref_name(ref: str) -> str:
        return "refs/nbpool/" + hashlib.sha256(ref.encode()).hexdigest()[:16]

    async def _fetch(self, url: str, ref: str) -> Snapshot:
        key, started = (url, ref), time.monotonic()
        tried = self.tried.setdefault(key, Tried())
        tried.at = time.time()
        try:
            snap = await self._fetch_files(url, ref)
        except FetchError as exc:
            tried.error, tried.seconds = str(exc), time.monotonic() - started
            raise
        tried.error, tried.seconds = "", time.monotonic() - started
        before = self.snapshots.get(key)
        self.snapshots[key] = snap
        if before is not None and before.commit != snap.commit:
            await self._tidy(self.repo_dir(url), url)
        return snap

    async def _tidy(self, repo: Path, url: str) -> None:
        """Drop the objects no ref names any more (the commits this cache served before): the folder holds the
        latest commit of each ref, not every one ever fetched. Its digests are remembered elsewhere."""
        try:
            await self._git(repo, "gc", "--prune=now", "--quiet", url=url)
        except FetchError as exc:
            if self.log is not None:
                self.log.warning("content cache: tidying %s failed: %s", redact(url), exc)

    async def _fetch_files(self, url: str, ref: str) -> Snapshot:
        repo = self.repo_dir(url)
        if not (repo / "HEAD").exists():
            repo.mkdir(parents=True, mode=0o700, exist_ok=True)
            await self._git(repo, "init", "--bare", "-q", url=url)
        target = self._ref_name(ref)
        if SHA_RE.match(ref):
            wanted = ref
            known = await self._has(repo, ref, url)
            if not known:
                await self._git_fetch(repo, url, [ref])
            await self._git(repo, "update-ref", target, ref, url=url)
        else:
            await self._git_fetch(repo, url, [f"+{ref or 'HEAD'}:{target}"])
            wanted = (await self._git(repo, "rev-parse", "--verify", "-q", target + "^{commit}", url=url)).strip()
        previous = self.snapshots.get((url, ref))
        if previous is not None and previous.commit == wanted:
            previous.fetched = time.time()
            return previous
        return Snapshot(redact(url), ref, wanted, await self._files(repo, wanted, url), time.time())

    async def _has(self, repo: Path, sha: str, url: str) -> bool:
        try:
            await self._git(repo, "cat-file", "-e", sha + "^{commit}", url=url)
            return True
        except FetchError:
            return False

    async def _git_fetch(self, repo: Path, url: str, refspecs: list[str]) -> None:
        self.fetches += 1
        await self._git(repo, "-c", "http.followRedirects=false", "fetch", "-q", "--depth", "1", "--no-tags",
                        "--no-recurse-submodules", "--", fetch_url(url), *refspecs, url=url, watch=True)

    async def _files(self, repo: Path, commit: str, url: str) -> dict[str, bytes]:
        """Every visible regular file of ``commit`` (no dot-names, no caches, no submodules or links)."""
        listing = await self._git(repo, "ls-tree", "-r", "-l", "-z", commit, url=url, text=False)
        wanted: list[tuple[str, str]] = []
        total = 0
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, _, name = entry.partition(b"\t")
            mode, kind, sha, size = meta.split()
            path = name.decode("utf-8", "replace")
            parts = path.split("/")
            # (no dot-names: '..' included, whatever a hostile server's tree holds; no links, no submodules)
            if kind != b"blob" or mode == b"120000" or any(p.startswith(".") or p in SKIP_NAMES or not p
                                                           for p in parts):
                continue
            total += int(size)
            if total > self.max_bytes:
                raise FetchError(f"the files of {commit[:10]} are larger than {mb(self.max_bytes)} "
                                 "(NbpoolApp.content_max_bytes)")
            wanted.append((path, sha.decode()))
        if not wanted:
            return {}
        blobs = await self._git(repo, "cat-file", "--batch", url=url, text=False,
                                stdin="".join(f"{sha}\n" for _, sha in wanted).encode())
        files, at = {}, 0
        for path, _sha in wanted:
            header_end = blobs.index(b"\n", at)
            size = int(blobs[at:header_end].split()[2])
            files[path] = blobs[header_end + 1:header_end + 1 + size]
            at = header_end + 1 + size + 1
        return files

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
               "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false", "LC_ALL": "C"}
        if self.ssh_key:
            known = shlex.quote(str(self.folder / "known_hosts"))
            env["GIT_SSH_COMMAND"] = (f"ssh -i {shlex.quote(self.ssh_key)} -o IdentitiesOnly=yes -o BatchMode=yes "
                                      f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known}")
        else:
            env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        return env

    async def _git(self, repo: Path, *args: str, url: str, text: bool = True, stdin: bytes | None = None,
                   watch: bool = False):
        """Run git in ``repo``: its output; FetchError (credentials removed) if it fails, times out, or (``watch``)
        lets the folder grow past the size cap."""
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(repo), *args, env=self._env(), stdin=asyncio.subprocess.PIPE if stdin else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        communicate = asyncio.ensure_future(proc.communicate(stdin))
        start_size = folder_size(repo) if watch else 0
        deadline = time.monotonic() + self.timeout
        too_big = False
        try:
            while not communicate.done():
                await asyncio.wait([communicate], timeout=CHECK_EVERY if watch else max(0.0, deadline -
                                                                                          time.monotonic()))
                if communicate.done():
                    break
                if time.monotonic() > deadline:
                    raise FetchError(f"git {args[0] if args[0] != '-c' else 'fetch'} took longer than "
                                     f"{self.timeout:g}s (NbpoolApp.content_timeout)")
                if watch and folder_size(repo) - start_size > self.max_bytes:
                    too_big = True
                    raise FetchError(f"the repository is larger than {mb(self.max_bytes)} "
                                     "(NbpoolApp.content_max_bytes): fetch stopped")
        finally:
            if not communicate.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await communicate
                if too_big:
                    await asyncio.to_thread(_drop_objects, repo)
        out, err = communicate.result()
        if proc.returncode != 0:
            message = err.decode("utf-8", "replace").strip().splitlines()
            raise FetchError(redact(" ".join(message[-3:]) or f"git exited with {proc.returncode}", url))
        return out.decode("utf-8", "replace") if text else out


def mb(size: int) -> str:
    return f"{size / 2**20:.3g} MB"


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _drop_objects(repo: Path) -> None:
    """What a stopped fetch left behind (its temporary pack), so the cache does not keep it."""
    pack = repo / "objects" / "pack"
    if pack.is_dir():
        for item in pack.iterdir():
            if item.name.startswith("tmp_"):
                with contextlib.suppress(OSError):
                    item.unlink()
