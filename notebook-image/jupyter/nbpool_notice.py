"""nbpool's notices to the attendee, in their own JupyterLab or Notebook (issue 25).

nbpool tells an attendee something about their session while it runs (its CPU budget nearly used):
it writes the notice, as the attendee's own user, to NOTICE_FILE in their container. This server
extension serves that file at ``<base_url>nbpool/notice``, and the frontend extension beside it
(labextension/nbpool-notice, plain JavaScript: no build step) asks for it every few seconds and shows a
new notice as a JupyterLab notification. The file is the attendee's own: changing it changes only what
they see.

Loaded by jupyter_server_config.py (``c.ServerApp.jpserver_extensions``).
"""

from __future__ import annotations

import json

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

NOTICE_FILE = "/tmp/nbpool-notice.json"
MAX_BYTES = 4096


class NoticeHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        try:
            with open(NOTICE_FILE, "rb") as f:
                notice = json.loads(f.read(MAX_BYTES))
        except (OSError, ValueError):
            notice = {}
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(notice if isinstance(notice, dict) else {}))


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "nbpool_notice"}]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.web_app.add_handlers(".*$", [(url_path_join(serverapp.base_url, "nbpool/notice"), NoticeHandler)])
