"""A stand-in for one container's notebook server, as far as its static files go (Tornado).

Serves what a Jupyter server serves under its base URL ``/user/<id>/``:

- ``static/<file>``: Tornado's own ``StaticFileHandler`` over a folder of
  files (ranges, ``If-Modified-Since``, ``HEAD``), with Jupyter's policy:
  ``?v=`` versioned URLs get ``public, max-age=31536000, immutable``, others
  ``no-cache``. The files are made by ``make_files`` and are the same for
  every server started on the same folder (one image); ``name`` can also
  change them (``site_static``) to play a container whose visitor rewrote
  its server.
- ``static/cookie.js`` sets a cookie, ``static/vary.js`` varies on Cookie,
  ``static/gz.js`` is already gzip-encoded, ``static/chunked.js`` streams in
  pieces with no length: the cases the cache or the coder must leave alone.
- ``api/who`` and ``files/who.txt``: per-server answers (``{"server": name}``),
  which must never be shared between two servers.
- ``counts``: how many requests each path got, as JSON (to see what reached it).

    python tests/resources/static_site.py --port 8082
"""

from __future__ import annotations

import collections
import gzip
import json
import tempfile
from pathlib import Path

from tornado.web import Application, RequestHandler, StaticFileHandler

if __package__:
    from ._runner import Running, run_main, serve_tornado
else:  # run as a script
    from _runner import Running, run_main, serve_tornado

# A JavaScript-like text of a realistic ratio (~4:1 with gzip).
APP_JS = "".join(f"export function f{i}(a, b) {{ return a * {i} + b - {i % 7}; }} // helper {i}\n"
                 for i in range(600))


def make_files(folder: str | Path, variant: str = "") -> Path:
    """Write the static files into ``folder`` (``variant`` makes a different image's, or a tampered one)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.js").write_text(f"/* {variant} */\n" + APP_JS)
    (root / "style.css").write_text(f"/* {variant} */\n" + "".join(f".c{i} {{ margin: {i}px; }}\n"
                                                                     for i in range(400)))
    (root / "tiny.css").write_text("b{}")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    return root


class JupyterLikeStatic(StaticFileHandler):
    def prepare(self) -> None:
        self.application.settings["counts"][self.request.path.split("/", 3)[-1]] += 1

    def set_extra_headers(self, path: str) -> None:
        if "v" in self.request.arguments:
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")

    def get_cache_time(self, path, modified, mime_type):
        return 0  # the header above says it


class Special(RequestHandler):
    """The static-path responses a shared cache must not keep, and one it must stream."""

    async def get(self, what: str) -> None:
        self.application.settings["counts"]["static/" + what] += 1
        self.set_header("Content-Type", "application/javascript")
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        if what == "cookie.js":
            self.set_cookie("seen", self.application.settings["name"])
            self.write(APP_JS)
        elif what == "vary.js":
            self.set_header("Vary", "Cookie")
            self.write(APP_JS)
        elif what == "gz.js":
            self.set_header("Content-Encoding", "gzip")
            self.write(gzip.compress(APP_JS.encode()))
        elif what == "chunked.js":
            for i in range(5):
                self.write(APP_JS[i * 1000:(i + 1) * 1000])
                await self.flush()  # no Content-Length: Tornado sends it chunked
        else:
            self.set_status(404)


class Who(RequestHandler):
    def get(self, _: str) -> None:
        self.application.settings["counts"][self.request.path.split("/", 3)[-1]] += 1
        name = self.application.settings["name"]
        if self.request.path.endswith(".txt"):
            self.set_header("Content-Type", "text/plain")
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
            self.write(f"server {name}\n" * 200)
        else:
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
            self.write({"server": name, "pad": "x" * 2000})


class Counts(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.application.settings["counts"]))


def application(name: str, folder: str | Path) -> Application:
    return Application([
        (r"/user/[^/]+/static/(cookie\.js|vary\.js|gz\.js|chunked\.js)", Special),
        (r"/user/[^/]+/static/(.*)", JupyterLikeStatic, {"path": str(folder)}),
        (r"/user/[^/]+/(api/who|files/who\.txt)", Who),
        (r"/counts", Counts),
    ], name=name, counts=collections.Counter())


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None, name: str = "s",
                folder: str | Path | None = None) -> Running:
    """Start a server named ``name`` over ``folder`` (made with ``make_files`` in a new temporary folder when None,
    which is left behind: tests pass their own ``tmp_path``)."""
    folder = folder or make_files(tempfile.mkdtemp(prefix="static-site-"))
    return serve_tornado(application(name, folder), host, port, unix)


if __name__ == "__main__":
    run_main("static_site", start)
