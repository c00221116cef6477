"""Keep-alive connections to routes' targets, per target: ``TargetPool.send(ex)`` carries an Exchange on
an idle connection to its route's target or opens one (``target.TargetConnection``), answering the
visitor 502/503/504 when it cannot; ``sweep`` closes idle ones past their time and times out slow heads.
"""

from __future__ import annotations

import asyncio
import logging

from .exchange import PAUSE_TARGET, Exchange, logged_path
from .state import Limits, Stats
from .target import TargetConnection, now

log = logging.getLogger("nbpool.proxy")


class TargetPool:
    """Keep-alive connections per target, and the opening of new ones."""

    def __init__(self, limits: Limits, stats: Stats):
        self.limits = limits
        self.stats = stats
        self.idle: dict[str, list[TargetConnection]] = {}
        self.busy: set[TargetConnection] = set()
        self.connecting: set[asyncio.Task] = set()

    def send(self, ex: Exchange) -> None:
        """Carry ``ex`` on an idle connection to its target, or open one."""
        target = ex.route.target
        idle = self.idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                conn.start(ex)
                return
        task = asyncio.get_running_loop().create_task(self._connect(ex))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, ex: Exchange) -> None:
        target = ex.route.target
        loop = asyncio.get_running_loop()
        factory = lambda: TargetConnection(self, target.key)  # noqa: E731
        try:
            if target.unix_path:
                coro = loop.create_unix_connection(factory, target.unix_path)
            else:
                coro = loop.create_connection(factory, target.host, target.port)
            _, conn = await asyncio.wait_for(coro, self.limits.connect_timeout)
        except TimeoutError:
            self._failed(ex, 504, "connect timed out")
            return
        except ConnectionRefusedError:
            self._failed(ex, 503, "connection refused")
            return
        except OSError as exc:
            self._failed(ex, 502, str(exc))
            return
        client = ex.client
        if client.closed or client.cur is not ex:
            self.put(conn)  # the visitor left while we connected: keep it for the next one
            return
        conn.start(ex)

    def _failed(self, ex: Exchange, status: int, why: str) -> None:
        client = ex.client
        log.info("target %s unreachable for %s: %s", ex.route.target.url, logged_path(ex), why)
        if client.closed or client.cur is not ex:
            return
        client.resume(PAUSE_TARGET)
        client.error_reply(ex, status)

    def put(self, conn: TargetConnection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= self.limits.backend_max_idle:
            conn.transport.close()
            return
        conn.idle_since = now()
        idle.append(conn)

    def carrying(self, conn: TargetConnection) -> None:
        self.busy.add(conn)

    def let_go(self, conn: TargetConnection) -> None:
        self.busy.discard(conn)

    def lost(self, conn: TargetConnection) -> None:
        self.busy.discard(conn)
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def sweep(self, t: float) -> None:
        """Close idle connections past their time, and time out slow response heads."""
        cutoff = t - self.limits.backend_idle_timeout
        for idle in self.idle.values():
            while idle and idle[0].idle_since < cutoff:
                idle.pop(0).transport.close()
        head_cutoff = t - self.limits.response_timeout
        for conn in [c for c in self.busy if not c.head_sent and c.sent_at < head_cutoff and c.ex is not None]:
            ex = conn.detach()
            ex.client.error_reply(ex, 504)

    def close(self) -> None:
        for task in list(self.connecting):
            task.cancel()
        for idle in self.idle.values():
            for conn in idle:
                conn.transport.close()
        self.idle.clear()
        for conn in list(self.busy):
            conn.transport.close()
