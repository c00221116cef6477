"""An attendee's files, through their notebook server's own API: list, read, write.

Engine-independent by design: the same endpoint, base URL and token the
proxy uses, so it works wherever the container runs (this machine, another
node of a cluster). Jupyter's contents API hides dot-files (``.local``,
``.ipynb_checkpoints``, ``.cache``) from every listing, so those are never seen.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

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


class NotebookFiles:
    """One notebook server's files: ``url`` is its base (endpoint + /user/<id>/), ``token`` its token."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0,
                 skip_names: Iterable[str] = ("__pycache__",)):
        self.url = url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}"}
        self.timeout = timeout
        self.skip_names = frozenset(skip_names)
        self.client = AsyncHTTPClient()

    async def _call(self, method: str, path: str, body: bytes | None = None, *, timeout: float | None = None,
                    streaming_callback=None, max_body: int | None = None) -> bytes:
        kwargs = {"streaming_callback": streaming_callback} if streaming_callback else {}
        request = HTTPRequest(self.url + path, method=method, headers=self.headers, body=body,
                              request_timeout=timeout or self.timeout, connect_timeout=min(5.0, self.timeout),
                              follow_redirects=False, **kwargs)
        try:
            resp = await self.client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise ContentsError(f"{method} {path.split('?')[0]}: {exc}") from None
        if resp.code == 404:
            raise Missing(f"{method} {path.split('?')[0]}: HTTP 404")
        if resp.code >= 400:
            raise ContentsError(f"{method} {path.split('?')[0]}: HTTP {resp.code}")
        return resp.body or b""

    async def tree(self, max_files: int = 2000, max_depth: int = 12, deadline: float | None = None) -> list[Listed]:
        """Every visible file under the home directory (folders walked breadth first, at most ``max_files``).

        ``deadline`` (time.monotonic()): raises TimeoutError once it has passed.
        """
        found: list[Listed] = []
        folders = [("", 0)]
        while folders and len(found) < max_files:
            folder, depth = folders.pop(0)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("ran out of time listing the files")
            body = await self._call("GET", f"api/contents/{quote(folder, safe=PATH_SAFE)}?content=1",
                                    timeout=None if left is None else max(0.5, left))
            try:
                entries = json.loads(body)["content"]
            except (ValueError, KeyError, TypeError):
                raise ContentsError(f"listing {folder or 'the home folder'}: not a contents model") from None
            for entry in entries:
                name, path, kind = entry.get("name", ""), entry.get("path", ""), entry.get("type")
                if name in self.skip_names or not path:
                    continue
                if kind == "directory":
                    if depth < max_depth:
                        folders.append((path, depth + 1))
                elif len(found) < max_files:
                    found.append(Listed(path, int(entry.get("size") or 0), str(entry.get("last_modified", ""))))
        return found

    async def read(self, path: str, limit: int, timeout: float | None = None) -> bytes:
        """A file's bytes, exactly as stored (raises TooLarge past ``limit`` bytes)."""
        chunks: list[bytes] = []
        got = [0]

        def take(chunk: bytes) -> None:
            # Bytes past the limit are dropped as they come (the size was checked in the listing
            # already: this guards a file that grew since), never held.
            got[0] += len(chunk)
            if got[0] <= limit:
                chunks.append(chunk)

        await self._call("GET", f"files/{quote(path, safe=PATH_SAFE)}", timeout=timeout, streaming_callback=take)
        if got[0] > limit:
            raise TooLarge(f"{path} is larger than {limit} bytes")
        return b"".join(chunks)

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
                    out[item.path] = model["hash"] or ""
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
