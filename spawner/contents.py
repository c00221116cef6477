"""An attendee's files, through their notebook server's own API: list, read, write.

Engine-independent by design: the same endpoint, base URL and token the
proxy uses, so it works wherever the container runs (this machine, another
node of a cluster). Jupyter's contents API hides dot-files (``.local``,
``.ipynb_checkpoints``, ``.cache``) from every listing, so those are never seen.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import HTTPInputError

# Characters a notebook path keeps as they are in the API's URLs.
PATH_SAFE = "/~!$&'()*+,;=:@"


class ContentsError(Exception):
    """A call to a notebook server's files failed; the message says which and why."""


class Missing(ContentsError):
    """The server has no file at that path (HTTP 404)."""


class TooLarge(ContentsError):
    """A file is larger than the caller would take."""


@dataclass(frozen=True)
class Listed:
    """One file as the server lists it: enough to tell whether it changed since the last look."""

    path: str
    size: int
    modified: str  # the server's last_modified, as it wrote it

    @property
    def mark(self) -> tuple[int, str]:
        return self.size, self.modified


# What one folder's listing may weigh: a few hundred bytes a file (a name, a path, sizes and times), a whole
# listing of ``max_files`` entries at most, never less than the floor. The server is its attendee's: a folder
# of 250,000 files (or a listing that never ends) is cut off here, before it is held or parsed.
ENTRY_BYTES = 512
LISTING_FLOOR = 256 * 1024
MAX_ANSWER = 64 * 1024  # any other answer nbpool reads (a file's model, a hash): small, by the API's design
PARSE_INLINE = 64 * 1024  # listings up to this many bytes are parsed on the event loop (well under a millisecond)
MAX_PATH = 4096  # no real path is longer (Linux's PATH_MAX): a longer one is a lie, and is never kept
MAX_NOTES = 20  # folders named as not (fully) looked at, at most: the rest are counted


def listing_cap(max_files: int) -> int:
    """Most bytes read of one folder's listing when at most ``max_files`` files are looked at."""
    return max(LISTING_FLOOR, ENTRY_BYTES * max_files)


class _Cutoff(HTTPInputError):
    """Raised from the body's streaming callback past its limit: tornado then closes the connection (an
    HTTPInputError is the one exception it takes from a callback without logging it as a crash)."""


class _Body:
    """A response body collected up to ``limit`` bytes. Past it the connection is dropped there: nothing
    past the limit is read, let alone held, and ``over`` says why the answer ended."""

    def __init__(self, limit: int):
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.over = False

    def __call__(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.over = True
            self.chunks = []
            raise _Cutoff(f"the answer is over the {self.limit} bytes nbpool reads of it")
        self.chunks.append(chunk)

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def _size(value) -> int:
    """A listed size as a number of bytes (whatever else a server wrote there counts as 0: only the bytes
    actually read are ever counted against a limit)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass
class Tree:
    """What a walk of the home folder found.

    ``files``: the files listed (at most max_files). ``refused``: folders not
    (fully) looked at, and why, in words for the attendee (at most MAX_NOTES;
    the last names how many more). ``complete``: every folder was listed whole,
    so a file not in ``files`` is gone; otherwise absence proves nothing.
    """

    files: list[Listed] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    complete: bool = True

    def refuse(self, folder: str, why: str) -> None:
        self.complete = False
        if len(self.refused) < MAX_NOTES:
            self.refused[folder] = why


class NotebookFiles:
    """One notebook server's files: ``url`` is its base (endpoint + /user/<id>/), ``token`` its token.

    Every answer is attacker-controlled (the server runs its attendee's code):
    each is read only up to a limit (a listing: ``listing_cap``; a file: what
    the caller may keep; anything else: MAX_ANSWER) and parsed defensively.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 10.0,
                 skip_names: Iterable[str] = ("__pycache__",)):
        self.url = url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout = timeout
        self.skip_names = frozenset(skip_names)
        self.client = AsyncHTTPClient()

    async def _call(self, method: str, path: str, body: bytes | None = None, *, timeout: float | None = None,
                    max_body: int = MAX_ANSWER) -> bytes:
        """The answer's body (at most ``max_body`` bytes: TooLarge past it); ContentsError for a failure."""
        what = f"{method} {path.split('?')[0]}"
        collected = _Body(max_body)
        request = HTTPRequest(self.url + path, method=method, headers=self.headers, body=body,
                              request_timeout=timeout or self.timeout, connect_timeout=min(5.0, self.timeout),
                              follow_redirects=False, streaming_callback=collected)
        try:
            resp = await self.client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            if collected.over:
                raise TooLarge(f"{what} is larger than {max_body} bytes") from None
            raise ContentsError(f"{what}: {exc}") from None
        if collected.over:  # (however the client reported the connection it dropped)
            raise TooLarge(f"{what} is larger than {max_body} bytes")
        if resp.code == 404:
            raise Missing(f"{what}: HTTP 404")
        if resp.code >= 400:
            raise ContentsError(f"{what}: HTTP {resp.code}")
        return collected.bytes()

    async def _listing(self, folder: str, cap: int, timeout: float | None) -> list:
        """One folder's entries, as the server lists them (TooLarge past ``cap`` bytes)."""
        body = await self._call("GET", f"api/contents/{quote(folder, safe=PATH_SAFE)}?content=1", timeout=timeout,
                                max_body=cap)
        try:
            # A big listing is parsed on a thread, so that the event loop's other work can interleave with
            # what remains of it (the C parser holds the GIL while it runs: the cap is what bounds it).
            model = json.loads(body) if len(body) <= PARSE_INLINE else await asyncio.to_thread(json.loads, body)
            entries = model["content"]
        except (ValueError, KeyError, TypeError):
            raise ContentsError(f"listing {folder or 'the home folder'}: not a contents model") from None
        if not isinstance(entries, list):
            raise ContentsError(f"listing {folder or 'the home folder'}: not a folder")
        return entries

    async def tree(self, max_files: int = 2000, max_depth: int = 12, deadline: float | None = None) -> Tree:
        """Every visible file under the home directory, folders walked breadth first.

        Stops as soon as ``max_files`` files are found, or ``max_files``
        folders were listed (each costs a request). A folder whose listing is
        over ``listing_cap(max_files)`` bytes is not looked at (noted in
        ``refused``); the walk goes on with the others. ``deadline``
        (time.monotonic()): raises TimeoutError once it has passed.
        """
        tree = Tree()
        cap = listing_cap(max_files)
        queue: deque[tuple[str, int]] = deque([("", 0)])
        seen: set[str] = {""}  # folders queued, and files found: a server may list one twice, or loop
        left_out: list[str] = []  # the first folder the walk had no room for (it is named), and
        not_listed = 0  # how many there were
        listed = 0
        while queue and len(tree.files) < max_files:
            folder, depth = queue.popleft()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("ran out of time listing the files")
            listed += 1
            try:
                entries = await self._listing(folder, cap, None if left is None else max(0.5, left))
            except TooLarge:
                tree.refuse(folder, f"its list of files is over {cap // 1024} KB (too many files in one folder)")
                continue
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                name, path, kind = entry.get("name"), entry.get("path"), entry.get("type")
                if not (isinstance(name, str) and isinstance(path, str)) or not path or name in self.skip_names:
                    continue
                if len(path) > MAX_PATH or path in seen:
                    continue
                if kind == "directory":
                    seen.add(path)
                    if depth >= max_depth:
                        tree.refuse(path, f"not looked at: more than {max_depth} folders deep")
                    elif listed + len(queue) < max_files:  # each folder costs a request: max_files at most
                        queue.append((path, depth + 1))
                    else:
                        left_out[:] = left_out or [path]
                        not_listed += 1
                elif len(tree.files) < max_files:
                    seen.add(path)
                    modified = entry.get("last_modified", "")
                    tree.files.append(Listed(path, _size(entry.get("size")), str(modified)[:64]))
                else:
                    tree.refuse(folder, f"only partly looked at: kept work looks at {max_files} files at most")
                    break
        if queue:  # the walk stopped with max_files found
            left_out[:] = left_out or [queue[0][0]]
            not_listed += len(queue)
        if not_listed:
            more = f", nor {not_listed - 1} other folder(s)" if not_listed > 1 else ""
            tree.refuse(left_out[0], f"not looked at{more}: kept work looks at {max_files} files at most")
        return tree

    async def get_json(self, api_path: str, limit: int = MAX_ANSWER, timeout: float | None = None):
        """A JSON answer of the server's API (``api/sessions``, ...), read up to ``limit`` bytes; ContentsError
        when it is not JSON."""
        body = await self._call("GET", api_path, timeout=timeout, max_body=limit)
        try:
            return json.loads(body) if len(body) <= PARSE_INLINE else await asyncio.to_thread(json.loads, body)
        except ValueError:
            raise ContentsError(f"GET {api_path.split('?')[0]}: not JSON") from None

    async def read(self, path: str, limit: int, timeout: float | None = None) -> bytes:
        """A file's bytes, exactly as stored (TooLarge as soon as more than ``limit`` bytes arrive: the listed
        size is the server's word, never trusted)."""
        return await self._call("GET", f"files/{quote(path, safe=PATH_SAFE)}", timeout=timeout, max_body=limit)

    async def hashes(self, listed: Iterable[Listed]) -> dict[str, str]:
        """sha256 of each listed file, computed by the server (no content sent): a pristine image's fingerprint.

        A file whose size or time is no longer what ``listed`` says (changed
        since) gets '' (unknown), as does one the server cannot hash: a copy
        of it then counts as changed (kept), never as the image's own.
        """
        out = {}
        for item in listed:
            out[item.path] = ""
            try:
                body = await self._call("GET", f"api/contents/{quote(item.path, safe=PATH_SAFE)}?content=0&hash=1")
                model = json.loads(body)
                if (int(model.get("size") or 0), str(model.get("last_modified", ""))) == item.mark:
                    out[item.path] = str(model["hash"] or "")[:128]
            except (ContentsError, ValueError, KeyError, TypeError):
                continue
        return out

    async def fingerprint(self, path: str) -> str | None:
        """The sha256 the server computes for the file at ``path`` (no content sent); None when there is none."""
        try:
            body = await self._call("GET", f"api/contents/{quote(path, safe=PATH_SAFE)}?content=0&hash=1")
        except Missing:
            return None
        try:
            model = json.loads(body)
            return str(model["hash"] or "") if model.get("type") != "directory" else "(a folder)"
        except (ValueError, KeyError, TypeError):
            raise ContentsError(f"{path}: not a contents model") from None

    async def write(self, path: str, data: bytes, timeout: float | None = None) -> None:
        """Store ``data`` at ``path`` byte for byte (a notebook too: written as a file, not re-serialised)."""
        body = json.dumps({"type": "file", "format": "base64", "content": base64.b64encode(data).decode()})
        await self._call("PUT", f"api/contents/{quote(path, safe=PATH_SAFE)}", body.encode(), timeout=timeout)

    async def make_folder(self, path: str) -> None:
        await self._call("PUT", f"api/contents/{quote(path, safe=PATH_SAFE)}", b'{"type": "directory"}')
