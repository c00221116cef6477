"""The command line shared by the backend servers in this folder.

Each server module defines ``async def start(host, port, *, unix=None) ->
Running``; ``run_main`` turns that into ``python <module>.py --port P`` (or
``--unix PATH``), prints one line saying where it listens (so a harness
started with ``--port 0`` can learn the port) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class Running:
    """A started server: where it listens, and how to stop it."""

    host: str
    port: int  # 0 when listening on a unix socket
    unix: str | None
    _stop: Callable[[], Awaitable[None]]

    @property
    def url(self) -> str:
        """``http://host:port`` (the base URL for a TCP listener)."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Close the listener and every open connection (and remove the socket file)."""
        await self._stop()
        if self.unix and os.path.exists(self.unix):
            os.unlink(self.unix)


def serve_tornado(app, host: str, port: int, unix: str | None,
                  before_close: Callable[[], None] | None = None) -> Running:
    """Serve a Tornado ``app`` on host:port (0 picks a free one) or a unix socket, with a deep backlog
    so a burst of simultaneous connections is not dropped. ``before_close`` runs at stop, before the
    server's own connections are closed (for upgraded ones, which have left its books)."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets, bind_unix_socket

    server = HTTPServer(app)
    sockets = [bind_unix_socket(unix, backlog=1024)] if unix else bind_sockets(port, host, backlog=1024)
    server.add_sockets(sockets)
    bound_port = 0 if unix else sockets[0].getsockname()[1]

    async def stop() -> None:
        server.stop()
        if before_close is not None:
            before_close()
        await server.close_all_connections()

    return Running(host, bound_port, unix, stop)


def run_main(name: str, start: Callable[..., Awaitable[Running]], argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=name)
    parser.add_argument("--host", default="127.0.0.1")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="TCP port (0 picks a free one)")
    where.add_argument("--unix", metavar="PATH", help="unix socket path")
    args = parser.parse_args(argv)

    async def serve() -> None:
        running = await start(args.host, args.port or 0, unix=args.unix)
        where = args.unix or f"{running.host}:{running.port}"
        print(f"{name}: listening on {where}", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        try:
            await stopped.wait()
        finally:
            await running.stop()

    asyncio.run(serve())
    sys.exit(0)
