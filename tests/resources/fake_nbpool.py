"""A tiny stand-in for an nbpool service, to test the load generator against; it fails on purpose.

It speaks the service's HTTP contract (no Docker, no Jupyter): the landing
page, ``/spawn`` handing out a "container" from spares or putting the visitor
in line (``/spawn/wait/<ticket>``, ``/api/queue/<ticket>``), the signed-cookie
check on ``/user/<id>/…``, the notebook page, the contents API, the kernels
REST API and a kernel WebSocket speaking the legacy JSON message protocol,
plus ``/api/stats``. A ``Behaviour`` says what to break: a status per
endpoint, "full" or rate-limited answers, a queue that never moves, a
session cookie scoped to the wrong path, and kernels that close their
WebSocket, raise, print the wrong thing, or never answer.

    python tests/resources/fake_nbpool.py --port 8000     # the well-behaved variant

``State`` records what visitors did (paths requested, kernels started and
deleted, code executed) for tests to check.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from dataclasses import dataclass, field

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

if __package__:
    from ._runner import Running, run_main
else:  # run as a script
    from _runner import Running, run_main

SESSION_COOKIE = "nbpool-session"
TICKET_COOKIE = "nbpool-ticket"


@dataclass
class Behaviour:
    """What the fake does; the defaults are a healthy service with plenty of spares."""

    landing_status: int = 200
    spares: int = 1_000_000  # /spawn answers from a spare this many times, then visitors wait in line
    queue_polls: int = 2  # polls (API or waiting page) before a waiting visitor's container is ready
    never_ready: bool = False  # the line never moves
    queue_api: bool = True  # False: /api/queue answers 404 (a client must poll the waiting page)
    full: int = 0  # the first N /spawn requests answer 503 "full"
    rate_limited: int = 0  # the first N /spawn requests answer 429
    retry_after: int = 0  # the Retry-After of those answers, in seconds
    spawn_status: int | None = None  # /spawn answers this status instead of redirecting
    session_cookie_path: str | None = None  # None: /user/<id>/ (a browser then sends it there)
    page_status: int = 200
    contents_status: int = 200
    kernels_status: int = 201
    ws_status: int | None = None  # refuse the kernel WebSocket upgrade with this status
    kernel: str = "ok"  # "ok", "close" (on execute), "error", "wrong" (prints 41), "mute", "silent"
    kernelspec: str = "workshop-python"  # what the served notebook's metadata names


NOTEBOOK_CELLS = ["x = 20\n", "print(x + 1)", "   "]  # the blank cell must be skipped


@dataclass
class State:
    spawn_requests: int = 0
    spawn_paths: list[str] = field(default_factory=list)
    page_paths: list[str] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # container id -> cookie value
    tickets: dict[str, int] = field(default_factory=dict)  # ticket -> polls so far
    served: dict[str, str] = field(default_factory=dict)  # ticket -> container id, once ready
    kernel_names: list[str] = field(default_factory=list)
    kernels_deleted: int = 0
    websockets: int = 0
    executed: list[str] = field(default_factory=list)
    executed_by: dict[str, list[str]] = field(default_factory=dict)  # container id -> code, in order
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def waiting(self) -> int:
        return sum(1 for t in self.tickets if t not in self.served)


class Base(RequestHandler):
    def initialize(self, behaviour: Behaviour, state: State) -> None:
        self.behaviour, self.state = behaviour, state

    def check_xsrf_cookie(self) -> None:
        pass  # the real proxy injects a token, so a visitor sends no XSRF token either

    def give_container(self, path: str) -> None:
        cid = f"c{next(self.state.ids)}"
        value = secrets.token_hex(8)
        self.state.sessions[cid] = value
        self.set_cookie(SESSION_COOKIE, value, path=self.behaviour.session_cookie_path or f"/user/{cid}/",
                        httponly=True)
        self.redirect(f"/user/{cid}/{path or 'tree'}")

    def owns(self, cid: str) -> bool:
        return cid in self.state.sessions and self.get_cookie(SESSION_COOKIE) == self.state.sessions[cid]


class Landing(Base):
    def get(self) -> None:
        self.set_status(self.behaviour.landing_status)
        self.finish('<html><body><a href="/spawn">Start my notebook</a></body></html>')


class Spawn(Base):
    def get(self, path: str | None) -> None:
        b, s = self.behaviour, self.state
        s.spawn_requests += 1
        s.spawn_paths.append(self.request.path)
        if s.spawn_requests <= b.full or s.spawn_requests <= b.rate_limited:
            self.set_status(503 if s.spawn_requests <= b.full else 429)
            self.set_header("Retry-After", str(b.retry_after))
            self.finish("<html><body>We are full: please try again in a moment.</body></html>")
        elif b.spawn_status is not None:
            self.send_error(b.spawn_status)
        elif len(s.sessions) < b.spares:
            self.give_container(path or "")
        else:
            ticket = uuid.uuid4().hex[:12]
            s.tickets[ticket] = 0
            self.set_cookie(TICKET_COOKIE, f"{ticket}:{path or ''}", path="/", httponly=True)
            self.redirect(f"/spawn/wait/{ticket}")


class Line(Base):
    def ticket_ok(self, ticket: str) -> bool:
        cookie = self.get_cookie(TICKET_COOKIE) or ""
        return ticket in self.state.tickets and cookie.partition(":")[0] == ticket

    def ready(self, ticket: str) -> bool:
        self.state.tickets[ticket] += 1
        return not self.behaviour.never_ready and self.state.tickets[ticket] > self.behaviour.queue_polls

    def position(self, ticket: str) -> int:
        waiting = [t for t in self.state.tickets if t not in self.state.served]
        return waiting.index(ticket) + 1 if ticket in waiting else 0


class Wait(Line):
    def get(self, ticket: str) -> None:
        if not self.ticket_ok(ticket):
            raise_status(self, 403)
        elif ticket in self.state.served or self.ready(ticket):
            self.state.served.setdefault(ticket, "handed")
            path = self.get_cookie(TICKET_COOKIE).partition(":")[2]
            self.clear_cookie(TICKET_COOKIE, path="/")
            self.give_container(path)
        else:
            self.finish('<html><head><meta http-equiv="refresh" content="2"></head>'
                        f"<body>You are number {self.position(ticket)} in line.</body></html>")


class Queue(Line):
    def get(self, ticket: str) -> None:
        if not self.behaviour.queue_api:
            raise_status(self, 404)
        elif not self.ticket_ok(ticket):
            raise_status(self, 403)
        elif self.ready(ticket):
            self.finish({"ready": True, "url": f"/spawn/wait/{ticket}"})
        else:
            self.finish({"position": self.position(ticket), "ready": False})


class Stats(Base):
    def get(self) -> None:
        s = self.state
        self.finish({"available": min(10, max(0, self.behaviour.spares - len(s.sessions))),
                     "assigned": len(s.sessions), "launching": min(s.waiting, 2), "capacity": 60,
                     "queue": s.waiting, "image": "fake-notebook:latest", "version": "0.0-fake"})


def raise_status(handler: RequestHandler, status: int) -> None:
    handler.set_status(status)
    handler.finish(f"<html><body>{status}</body></html>")


class Page(Base):
    def get(self, cid: str, path: str) -> None:
        self.state.page_paths.append(self.request.path)
        if not self.owns(cid):
            raise_status(self, 403)
        elif self.behaviour.page_status != 200:
            raise_status(self, self.behaviour.page_status)
        else:
            self.finish(f"<html><body>Notebook 7: {path}</body></html>")


class Contents(Base):
    def get(self, cid: str, path: str) -> None:
        if not self.owns(cid):
            return raise_status(self, 403)
        if self.behaviour.contents_status != 200:
            return raise_status(self, self.behaviour.contents_status)
        cells = [{"cell_type": "markdown", "source": "# Welcome", "metadata": {}}]
        cells += [{"cell_type": "code", "source": src.splitlines(keepends=True), "metadata": {}, "outputs": []}
                  for src in NOTEBOOK_CELLS]
        self.finish({"name": path.rsplit("/", 1)[-1], "path": path, "type": "notebook", "content": {
            "cells": cells, "metadata": {"kernelspec": {"name": self.behaviour.kernelspec}},
            "nbformat": 4, "nbformat_minor": 5}})


class Kernels(Base):
    def post(self, cid: str) -> None:
        if not self.owns(cid):
            return raise_status(self, 403)
        if self.behaviour.kernels_status != 201:
            return raise_status(self, self.behaviour.kernels_status)
        name = json.loads(self.request.body or b"{}").get("name")
        self.state.kernel_names.append(name)
        self.set_status(201)
        self.finish({"id": uuid.uuid4().hex, "name": name})


class Kernel(Base):
    def delete(self, cid: str, kernel_id: str) -> None:
        if not self.owns(cid):
            return raise_status(self, 403)
        self.state.kernels_deleted += 1
        self.set_status(204)
        self.finish()


class Channels(WebSocketHandler):
    """A kernel that answers kernel_info and execute requests in the legacy JSON protocol."""

    def initialize(self, behaviour: Behaviour, state: State, sockets: set) -> None:
        self.behaviour, self.state, self.sockets = behaviour, state, sockets

    async def get(self, cid: str, kernel_id: str) -> None:
        if self.get_cookie(SESSION_COOKIE) != self.state.sessions.get(cid):
            return raise_status(self, 403)
        if self.behaviour.ws_status is not None:
            return raise_status(self, self.behaviour.ws_status)
        await super().get(cid, kernel_id)

    def open(self, cid: str, kernel_id: str) -> None:
        self.set_nodelay(True)  # several small messages per request: no Nagle/delayed-ACK stalls
        self.sockets.add(self)
        self.cid = cid
        self.state.websockets += 1

    def on_close(self) -> None:
        self.sockets.discard(self)

    def send(self, parent: dict, channel: str, msg_type: str, content: dict) -> None:
        self.write_message(json.dumps({
            "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "fake", "version": "5.3"},
            "parent_header": parent["header"], "metadata": {}, "content": content, "channel": channel,
            "msg_type": msg_type}))

    def on_message(self, message: str | bytes) -> None:
        msg = json.loads(message)
        kind, mode = msg["header"]["msg_type"], self.behaviour.kernel
        if mode == "mute" or (mode == "silent" and kind == "execute_request"):
            return  # never answers
        if kind == "execute_request":
            code = msg["content"]["code"]
            self.state.executed.append(code)
            self.state.executed_by.setdefault(self.cid, []).append(code)
            if mode == "close":
                self.close()
                return
            self.send(msg, "iopub", "status", {"execution_state": "busy"})
            if mode == "error":
                self.send(msg, "iopub", "error", {"ename": "NameError", "evalue": "name 'x' is not defined",
                                                  "traceback": []})
                self.send(msg, "shell", "execute_reply", {"status": "error", "ename": "NameError",
                                                          "evalue": "name 'x' is not defined"})
            else:
                text = "41\n" if mode == "wrong" else ("42\n" if code == "print(6*7)" else "ran\n")
                self.send(msg, "iopub", "stream", {"name": "stdout", "text": text})
                self.send(msg, "shell", "execute_reply", {"status": "ok", "execution_count": 1})
        else:
            self.send(msg, "iopub", "status", {"execution_state": "busy"})
            self.send(msg, "shell", kind.replace("_request", "_reply"), {"status": "ok"})
        self.send(msg, "iopub", "status", {"execution_state": "idle"})


@dataclass
class RunningFake(Running):
    behaviour: Behaviour | None = None
    state: State | None = None


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None,
                behaviour: Behaviour | None = None) -> RunningFake:
    """Start the fake service on ``host:port`` (0: a free port); TCP only."""
    if unix:
        raise ValueError("the fake nbpool listens on TCP only")
    behaviour = behaviour or Behaviour()
    state = State()
    sockets: set = set()
    ctx = {"behaviour": behaviour, "state": state}
    user = r"/user/(?P<cid>[^/]+)"
    app = Application([
        (r"/", Landing, ctx),
        (r"/spawn/wait/([^/]+)", Wait, ctx),
        (r"/spawn(?:/(.*))?", Spawn, ctx),
        (r"/api/queue/([^/]+)", Queue, ctx),
        (r"/api/stats", Stats, ctx),
        (user + r"/api/kernels", Kernels, ctx),
        (user + r"/api/kernels/(?P<kernel_id>[^/]+)/channels", Channels, {**ctx, "sockets": sockets}),
        (user + r"/api/kernels/(?P<kernel_id>[^/]+)", Kernel, ctx),
        (user + r"/api/contents/(?P<path>.*)", Contents, ctx),
        (user + r"/(?P<path>.*)", Page, ctx),
    ])
    server = HTTPServer(app)
    listeners = bind_sockets(port, host, backlog=1024)
    server.add_sockets(listeners)

    async def stop() -> None:
        server.stop()
        for handler in list(sockets):
            handler.close()
        await server.close_all_connections()

    return RunningFake(host, listeners[0].getsockname()[1], None, stop, behaviour, state)


if __name__ == "__main__":
    run_main("fake_nbpool", start)
