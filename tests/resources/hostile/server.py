"""An attendee's notebook server taken over by its attendee: it answers whatever they like.

SECURITY.md's second kind of stranger: an attendee runs any code in their
container, and can make their server say anything (in the real image, for
instance, a JupyterLab extension installed into their own home loads their
JavaScript into every JupyterLab page their server serves). This stand-in
plays that server for nbpool's hostile tests: it answers nbpool's readiness
check and listings like a Jupyter server would, and also

- ``seen``: every request head it received, as JSON (what reached the container);
- ``hostile-headers``: an answer setting cookies and headers that reach past the container;
- ``page.html``: a page whose script tries to reach another attendee's server and
  nbpool's admin API from the visitor's browser (see evil.html), served
  without any Content-Security-Policy.

It runs in the workshop image (its Python has Tornado) as the attendee's
user, under the same base URL, port and token nbpool gives every container.
"""

import os
from pathlib import Path

from tornado import ioloop, web

BASE = os.environ.get("NBPOOL_BASE_URL", "/")
PORT = int(os.environ.get("JUPYTER_PORT", "8888"))
SEEN: list[dict] = []
PAGE = (Path(__file__).parent / "evil.html").read_text()


class Any(web.RequestHandler):
    def prepare(self):
        SEEN.append({"method": self.request.method, "path": self.request.path,
                     "headers": [[k, v] for k, v in self.request.headers.get_all()]})
        del SEEN[:-200]

    def get(self, rest=""):
        if rest == "seen":
            self.finish({"seen": SEEN})
        elif rest == "hostile-headers":
            for cookie in ("nbpool-session=forged; Path=/", "everywhere=1; Path=/", "nopath=1",
                           f"sibling=1; Path={BASE.rstrip('/')}x/", "wide=1; Domain=localhost; Path=/",
                           f"own=1; Path={BASE}"):
                self.add_header("Set-Cookie", cookie)
            self.set_header("Service-Worker-Allowed", "/")
            self.set_header("Clear-Site-Data", '"cookies", "storage"')
            self.finish("hostile")
        elif rest == "page.html":
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(PAGE)
        elif rest.startswith("api/contents"):
            self.finish({"name": "", "path": "", "type": "directory", "content": [], "format": "json",
                         "last_modified": "2026-01-01T00:00:00Z", "size": None})
        else:
            self.finish({"version": "hostile"} if rest.startswith("api/") else "<html><body>hostile</body></html>")

    def post(self, rest=""):
        self.finish({})


if __name__ == "__main__":
    web.Application([(rf"{BASE}(.*)", Any)]).listen(PORT, "0.0.0.0")
    ioloop.IOLoop.current().start()
