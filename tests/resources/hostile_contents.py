"""A notebook server's contents API as an attendee's own code could make it answer: for kept work's tests.

Tornado. Serves any number of homes at ``/user/<cid>/`` (``api/contents``
GET and PUT, ``files`` GET), each checking its own token (``Authorization:
token <token>``), from files held in memory. Beside honest answers, a home
can be told to lie, the way a container whose owner runs any code can:

- ``endless``: folders whose listing never ends (entries written and flushed
  until the client hangs up, or ``SERVER_CAP`` bytes);
- ``folders``: a folder's listing holds that many (empty) subfolders;
- ``odd``: raw entries added to the home folder's listing (not dicts, sizes
  that are no numbers, paths climbing out or longer than any real one);
- ``bottomless``: files whose bytes never end, whatever size they are listed at.

``Home.sent`` counts the bytes it wrote in lying answers, and
``Home.requests`` the listings asked for, so a test can see how much a
client took before it stopped.

    .venv/bin/python tests/resources/hostile_contents.py --port 0    # an empty home 'abc' with token 'token'
"""

from __future__ import annotations

import base64
import hashlib
import json

from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

from tests.resources._runner import Running, run_main, serve_tornado

SERVER_CAP = 256 * 2**20  # the most a lying answer sends, should a client never hang up
PIECE = 64 * 1024


class Home:
    """An attendee's home directory as their server lists it: path -> (bytes, last_modified)."""

    def __init__(self, token: str, files: dict[str, tuple[bytes, str]] | None = None):
        self.token = token
        self.files = dict(files or {})
        self.endless: set[str] = set()
        self.folders: dict[str, int] = {}
        self.odd: list = []
        self.bottomless: dict[str, int] = {}  # path -> the size it is listed at
        self.sent = 0
        self.requests = 0
        self.reads: list[str] = []

    def listing(self, folder: str) -> list:
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for path, (data, modified) in self.files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                folders.add(prefix + rest.split("/")[0])
            else:
                entries.append(file_entry(path, len(data), modified))
        for path, size in self.bottomless.items():
            if path.rpartition("/")[0] == folder:
                entries.append(file_entry(path, size, "2026-05-01T10:00:00Z"))
        folders |= {f for f in self.endless | set(self.folders) if f.rpartition("/")[0] == folder}
        entries += [folder_entry(f) for f in sorted(folders)]
        entries += [folder_entry(f"{prefix}sub{i:06d}") for i in range(self.folders.get(folder, 0))]
        return entries + (self.odd if not folder else [])


def file_entry(path: str, size: int, modified: str) -> dict:
    return {"name": path.rsplit("/", 1)[-1], "path": path, "type": "file", "size": size, "last_modified": modified,
            "created": modified, "content": None, "format": None, "mimetype": None, "writable": True}


def folder_entry(path: str) -> dict:
    return {"name": path.rsplit("/", 1)[-1], "path": path, "type": "directory", "size": None,
            "last_modified": "2026-05-01T10:00:00Z", "created": "2026-05-01T10:00:00Z", "content": None,
            "format": None, "mimetype": None, "writable": True}


def contents_app(homes: dict[str, Home]) -> Application:
    class Base(RequestHandler):
        def prepare(self):
            home = homes.get(self.path_args[0])
            if home is None or self.request.headers.get("Authorization") != f"token {home.token}":
                self.send_error(403)
                return
            self.home = home

        async def lie(self, head: bytes, piece: bytes) -> None:
            """``head``, then ``piece`` again and again, flushed, until the client hangs up."""
            try:
                self.write(head)
                self.home.sent += len(head)
                while self.home.sent < SERVER_CAP:
                    self.write(piece)
                    self.home.sent += len(piece)
                    await self.flush()
            except StreamClosedError:
                return

    class Contents(Base):
        async def get(self, cid, path):
            home, path = self.home, path.strip("/")
            if self.get_argument("hash", None):
                data, modified = home.files[path]
                self.finish({"hash": hashlib.sha256(data).hexdigest(), "size": len(data),
                             "last_modified": modified})
                return
            home.requests += 1
            if path in home.endless:
                one = json.dumps(file_entry(f"{path}/x" + "y" * 80, 0, "2026-05-01T10:00:00Z")).encode() + b","
                self.set_header("Content-Type", "application/json")
                await self.lie(b'{"type": "directory", "content": [', one * (PIECE // len(one)))
                return
            self.finish({"type": "directory", "content": home.listing(path)})

        def put(self, cid, path):
            model = json.loads(self.request.body)
            if model.get("type") == "file":
                self.home.files[path.strip("/")] = (base64.b64decode(model["content"]), "2026-05-02T00:00:00Z")
            self.set_status(201)
            self.finish({"path": path, "type": model.get("type")})

    class Files(Base):
        async def get(self, cid, path):
            home = self.home
            home.reads.append(path)
            if path in home.bottomless:
                await self.lie(b"", b"\0" * PIECE)
                return
            self.finish(home.files[path][0])

    return Application([(r"/user/([0-9a-f]+)/api/contents/?(.*)", Contents),
                        (r"/user/([0-9a-f]+)/files/(.*)", Files)])


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None,
                homes: dict[str, Home] | None = None) -> Running:
    return serve_tornado(contents_app(homes if homes is not None else {"abc": Home("token")}), host, port, unix)


if __name__ == "__main__":
    run_main("hostile_contents", start)
