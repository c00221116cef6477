"""Following the instructor: ``/follow`` (the page), ``/api/follow`` (JSON), ``/api/follow/events`` (a stream).

Per workshop under ``/w/<name>/``. Public, like the workshop's link: a
follower needs no container (on a phone, or waiting in line). What they get
is classroom.follow's text-only view of the instructor's current notebook.
"""

from __future__ import annotations

from ..classroom.follow import WAITING, Follow
from .api import JSONHandler
from .events import stream_changes
from .handler import PageHandler

STREAM_GAP = 0.2  # seconds between two updates on a stream, at least


class FollowHandler(PageHandler):
    @property
    def follow(self) -> Follow:
        return self.settings["classroom"].follow

    def workshop_name_or_404(self) -> str | None:
        ws = self.workshop
        if ws is None:
            self.no_workshop()
            return None
        return ws.name


class FollowPageHandler(FollowHandler):
    """GET /follow: the instructor's notebook, live."""

    def get(self, name: str | None = None) -> None:
        if self.workshop_name_or_404() is None:
            return
        self.finish(self.render_page("follow.html", title=f"Following the instructor — {self.workshop.display_name}",
                                     api_url=f"{self.prefix}/api/follow",
                                     events_url=f"{self.prefix}/api/follow/events"))


class FollowAPIHandler(FollowHandler, JSONHandler):
    """GET /api/follow: {"notebook", "cells": [{"cell_type", "source", "outputs_text", …}], "current", "updated"};
    404 while no instructor session exists."""

    async def get(self, name: str | None = None) -> None:
        workshop = self.workshop_name_or_404()
        if workshop is None:
            return
        view = await self.follow.first_view(workshop)
        self.set_header("Cache-Control", "no-store")
        if view is None:
            self.set_status(404)
            self.finish({"error": WAITING})
            return
        self.finish(view)


class FollowEventsHandler(FollowHandler, JSONHandler):
    """GET /api/follow/events: the same as server-sent events, on every change ({"waiting": true, …} before)."""

    async def get(self, name: str | None = None) -> None:
        workshop = self.workshop_name_or_404()
        if workshop is None:
            return
        follow = self.follow
        got = follow.state(workshop)
        got.streams += 1  # (followed while it is open)
        try:
            await follow.first_view(workshop)
            await stream_changes(self, lambda: got.changes.version, lambda: follow.event_data(workshop),
                                 lambda version, timeout: follow.wait(workshop, version, timeout), STREAM_GAP)
        finally:
            got.streams -= 1


def follow_handlers() -> list:
    return [
        (r"/follow/?", FollowPageHandler),
        (r"/w/([^/]+)/follow/?", FollowPageHandler),
        (r"/api/follow", FollowAPIHandler),
        (r"/w/([^/]+)/api/follow", FollowAPIHandler),
        (r"/api/follow/events", FollowEventsHandler),
        (r"/w/([^/]+)/api/follow/events", FollowEventsHandler),
    ]
