"""Samples of the pool's state (``GET /api/stats``) taken while a load test runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

FIELDS = ("available", "assigned", "launching", "capacity", "queue")


@dataclass
class StatsSample:
    t: float  # seconds since the run started
    available: int = 0  # ready spares
    assigned: int = 0
    launching: int = 0
    capacity: int = 0
    queue: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class StatsSampler:
    """Polls ``<url>/api/stats`` every ``interval`` seconds until stopped.

    A sample that fails (no answer, not 200, not the expected JSON) is counted
    in ``errors`` and skipped; the service's stats are a view, not part of any
    attendee's outcome. ``image`` and ``version`` keep the last values seen.
    """

    def __init__(self, url: str, http: AsyncHTTPClient, clock: Callable[[], float], interval: float = 1.0):
        self.url = url.rstrip("/") + "/api/stats"
        self.http = http
        self.clock = clock
        self.interval = interval
        self.samples: list[StatsSample] = []
        self.errors = 0
        self.last_error: str | None = None
        self.image: str | None = None
        self.version: str | None = None
        self._task: asyncio.Task | None = None

    @property
    def latest(self) -> StatsSample | None:
        return self.samples[-1] if self.samples else None

    async def sample(self) -> StatsSample | None:
        """Take one sample now; returns it, or None when the service gave none."""
        t = self.clock()
        request = HTTPRequest(self.url, headers={"Accept": "application/json"}, follow_redirects=False,
                              request_timeout=max(self.interval * 2, 2.0))
        try:
            response = await self.http.fetch(request, raise_error=False)
            if response.code != 200:
                raise ValueError(f"answered {response.code}")
            data = json.loads(response.body)
            sample = StatsSample(round(t, 6), **{name: int(data.get(name) or 0) for name in FIELDS})
        except Exception as exc:  # a view only: count it, keep sampling
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        self.image, self.version = data.get("image"), data.get("version")
        self.samples.append(sample)
        return sample

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.sample()
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop polling, then take one last sample (the state the run left behind)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sample()

