"""Each simulated attendee's container, measured through nbpool's admin API while the rehearsal runs.

One ``GET /api/admin/usage?cid=…&cid=…`` per sample for every attendee still
running; when an attendee is done, one more with ``disk=1`` for its
container's disk. Peak memory is the highest working set sampled (page cache
left out, as ``docker stats`` shows it; the engine's own peak, cache included,
is kept beside it); CPU is counted from the first
sample after the hand-out, so a spare's own start is not charged to the
material (the container's whole CPU is kept too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

log = logging.getLogger("loadtest")


class UsageError(Exception):
    """The admin API could not be used (wrong token, not allowed from here, an old nbpool)."""


@dataclass
class ContainerUse:
    cid: str
    peak_memory_bytes: int = 0  # the highest working set sampled
    engine_peak_bytes: int = 0  # the engine's peak, page cache included (cgroup v1's max_usage)
    first_cpu: float | None = None  # CPU seconds at the first sample (the container's start before)
    last_cpu: float | None = None
    disk_bytes: int | None = None
    oom_kills: int = 0
    samples: int = 0
    ended: bool = False  # the service no longer has it (culled, or it died)

    @property
    def cpu_seconds(self) -> float | None:
        """CPU seconds the attendee's own work took (from the first sample to the last)."""
        if self.first_cpu is None or self.last_cpu is None:
            return None
        return round(self.last_cpu - self.first_cpu, 3)

    def add(self, row: dict) -> None:
        if row.get("ended"):
            self.ended = True
            return
        self.samples += 1
        self.oom_kills = max(self.oom_kills, int(row.get("oom_kills") or 0))
        # The working set (page cache left out, as the kernel reclaims it before it kills anything) is what
        # sizes mem_limit; the engine's own peak counts the cache too, and is kept beside it.
        self.peak_memory_bytes = max(self.peak_memory_bytes, int(row.get("memory_bytes") or 0))
        self.engine_peak_bytes = max(self.engine_peak_bytes, int(row.get("memory_peak_bytes") or 0))
        if row.get("cpu_seconds") is not None:
            cpu = float(row["cpu_seconds"])
            self.first_cpu = cpu if self.first_cpu is None else self.first_cpu
            self.last_cpu = cpu
        if row.get("disk_bytes") is not None:
            self.disk_bytes = int(row["disk_bytes"])


class UsageSampler:
    """Samples the containers it is told about every ``interval`` seconds until ``stop``."""

    def __init__(self, url: str, token: str, http: AsyncHTTPClient, interval: float = 1.0,
                 workshop: str | None = None):
        self.url = url.rstrip("/") + "/api/admin/usage"
        self.token = token
        self.http = http
        self.interval = interval
        self.workshop = workshop
        self.uses: dict[str, ContainerUse] = {}
        self.running: set[str] = set()
        self.limits: dict | None = None  # the workshop's settings and machines, from the last answer
        self.errors = 0
        self.last_error = ""
        self._task: asyncio.Task | None = None

    async def check(self) -> dict:
        """One request with no container: the workshop's limits, or ``UsageError`` saying why not."""
        answer = await self._get([])
        return answer["workshop"]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def track(self, cid: str) -> ContainerUse:
        self.running.add(cid)
        return self.uses.setdefault(cid, ContainerUse(cid))

    async def sample_now(self, cid: str) -> None:
        """A sample of one container at once (the start of an attendee's own work)."""
        with contextlib.suppress(UsageError):
            await self._sample([cid])

    async def finish(self, cid: str) -> ContainerUse:
        """The last sample of an attendee's container, its disk included; it is sampled no more."""
        with contextlib.suppress(UsageError):
            await self._sample([cid], disk=True)
        self.running.discard(cid)
        return self.uses[cid]

    async def end(self, cid: str) -> bool:
        """End the attendee's container through the admin API, as an operator would after a rehearsal, so
        the simulated class does not hold a live service's capacity until the idle cull."""
        parts = urlsplit(self.url)
        request = HTTPRequest(f"{self.url.removesuffix('/usage')}/containers/{cid}", method="DELETE",
                              headers={"Authorization": f"token {self.token}",
                                       "Origin": f"{parts.scheme}://{parts.netloc}"}, request_timeout=60)
        response = await self.http.fetch(request, raise_error=False)
        return response.code in (204, 404)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.running:
                try:
                    await self._sample(sorted(self.running))
                except UsageError:
                    pass  # counted; the next sample tries again
                except Exception:  # a bug here must not stop the rehearsal's measurements for good
                    log.exception("usage sample")

    async def _sample(self, cids: list[str], disk: bool = False) -> None:
        answer = await self._get(cids, disk)
        for cid, row in (answer.get("containers") or {}).items():
            if cid in self.uses:
                self.uses[cid].add(row)

    async def _get(self, cids: list[str], disk: bool = False) -> dict:
        query = [("cid", c) for c in cids] + ([("disk", "1")] if disk else []) + (
            [("workshop", self.workshop)] if self.workshop and not cids else [])
        request = HTTPRequest(f"{self.url}?{urlencode(query)}", headers={"Authorization": f"token {self.token}"},
                              request_timeout=30)
        response = await self.http.fetch(request, raise_error=False)
        if response.code != 200:
            self.errors += 1
            try:
                why = json.loads(response.body)["error"]
            except (ValueError, KeyError, TypeError):
                why = response.reason if response.code != 599 else str(response.error)
            self.last_error = f"{self.url} answered {response.code}: {why}"
            raise UsageError(self.last_error)
        answer = json.loads(response.body)
        self.limits = answer.get("workshop") or self.limits
        return answer
