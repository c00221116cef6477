"""The Tornado application behind the proxy's default route: the handlers, given what they serve.

Built last, from parts that already exist (``WebApp``, the pool, the proxy),
so nothing is patched afterwards; the handlers read them from the
application's settings (``nb``, ``pool``, ``proxy``).
"""

from __future__ import annotations

from tornado.web import Application

from proxy.server import Proxy

from ..classroom.room import ClassView
from ..record import WorkshopRecord
from ..workshops import Workshops
from .access import SESSION_COOKIE
from .api import api_handlers
from .app import WebApp, redact
from .binder import binder_handlers
from .build import build_handlers
from .classview import class_handlers
from .entry import entry_handlers
from .follow import follow_handlers
from .gitpull import gitpull_handlers
from .guard_api import guard_handlers
from .helping import helping_handlers
from .kept import kept_handlers
from .pages import STATIC
from .usage_api import usage_handlers
from .visitor import visitor_handlers
from .workshops_api import workshops_handlers


def make_application(web: WebApp, workshops: Workshops, proxy: Proxy, classroom: ClassView,
                     record: WorkshopRecord | None = None) -> Application:
    def log_request(handler) -> None:
        # Server errors matter to operators; the rest of the page traffic is noise at info level
        # (503 is the pool saying "full" or "restarting", already logged with its reason).
        status = handler.get_status()
        level = web.log.error if status >= 500 and status != 503 else web.log.debug
        level("%d %s %s (%s) %.1fms", status, handler.request.method, redact(handler.request.uri),
              handler.request.remote_ip, 1000 * handler.request.request_time())

    return Application(
        visitor_handlers() + kept_handlers() + api_handlers() + workshops_handlers() + binder_handlers()
        + build_handlers() + entry_handlers() + guard_handlers() + class_handlers() + helping_handlers()
        + follow_handlers() + gitpull_handlers() + usage_handlers(),
        nb=web,
        workshops=workshops,
        proxy=proxy,
        classroom=classroom,
        record=record or (lambda event, /, **fields: None),
        template_loader=web.pages.loader,
        static_path=str(STATIC),
        static_url_prefix="/static/",
        xsrf_cookies=False,  # nbpool's few forms check the request's Origin instead (see PageHandler.same_origin)
        compress_response=True,
        cookie_name=SESSION_COOKIE,
        log_function=log_request,
    )
