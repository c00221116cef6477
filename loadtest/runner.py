"""A whole load test: attendees arriving on schedule, the pool sampled, a report at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient

from .attendee import Attendee, monotonic_clock
from .plot import html as plot_html
from .plot import svg as plot_svg
from .pool_stats import StatsSample, StatsSampler
from .progress import Progress, progress_line
from .record import LANDING, AttendeeRecord, Failure
from .report import Summary, document, summarize, table
from .settings import Settings, parse_arrival

log = logging.getLogger("loadtest")


@dataclass
class Report:
    """Everything a run produced. ``summary`` has the figures; ``ok`` is True when nobody failed."""

    settings: Settings
    started_at: str  # ISO 8601, UTC
    summary: Summary
    attendees: list[AttendeeRecord]
    pool_samples: list[StatsSample]
    service: dict  # image and version from /api/stats, and how many samples failed

    @property
    def ok(self) -> bool:
        return self.summary.failed == 0

    def table(self) -> str:
        """The per-phase table with p50/p95/p99/max and failure counts, as printed at the end."""
        return table(self.summary)

    def to_dict(self) -> dict:
        """The --json document."""
        return document(self.settings, self.started_at, self.summary, self.attendees,
                               self.pool_samples, self.service)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def write_plot(self, path: str | Path) -> None:
        """A self-contained timeline: ``.svg`` writes SVG, anything else an HTML page with inline SVG."""
        path = Path(path)
        text = plot_svg(self) if path.suffix.lower() == ".svg" else plot_html(self)
        path.write_text(text)


async def until_done_or_stopped(tasks: list[asyncio.Task], everyone: asyncio.Future,
                                stop: asyncio.Event | None) -> bool:
    """Wait for ``everyone`` (the gather of ``tasks``); when ``stop`` is set first, cancel the tasks and wait for
    them to end. True when the run was cut short."""
    if stop is None:
        await everyone
        return False
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({everyone, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if everyone.done():
        return False
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await everyone
    return True


async def run(url: str, users: int, *, arrival: str = "burst", progress: Progress | None = None,
              stop: asyncio.Event | None = None, **options) -> Report:
    """Simulate ``users`` attendees against the nbpool service at ``url``; returns the ``Report``.

    ``arrival`` is ``"burst"`` or ``"ramp:SECONDS"``; ``options`` are the other
    ``Settings`` fields (``session_seconds``, ``think``, ``notebook``,
    ``walk_away``, ``retries``, timeouts…). Attendee failures never raise:
    they are in ``report.summary.failed`` / ``report.summary.failures``. Bad
    settings raise ``SettingsError`` before anything is sent.
    """
    settings = Settings(url=url, users=users, ramp=parse_arrival(arrival), **options)
    return await run_settings(settings, progress=progress, stop=stop)


async def run_settings(settings: Settings, *, progress: Progress | None = None,
                       stop: asyncio.Event | None = None) -> Report:
    """``run`` with ready-made settings. Setting ``stop`` ends the run early (attendees are interrupted)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = monotonic_clock()
    # Its own client: the shared one runs only 10 requests at once, which would queue attendees
    # inside the load generator and show up as service latency.
    http = AsyncHTTPClient(force_instance=True, max_clients=settings.users * (6 if settings.assets else 1) + 10)
    sampler = StatsSampler(settings.url + settings.prefix, http, clock, settings.stats_interval)
    records = [AttendeeRecord(index=i, arrival=round(settings.arrival(i), 6)) for i in range(settings.users)]
    if progress is not None:
        progress.start(lambda: progress_line(clock(), records, sampler.latest))
    sampler.start()

    async def attend(record: AttendeeRecord) -> None:
        await asyncio.sleep(max(0.0, record.arrival - clock()))
        await Attendee(record, settings, http, clock).visit()

    tasks = [asyncio.create_task(attend(r)) for r in records]
    everyone = asyncio.gather(*tasks, return_exceptions=True)
    try:
        await until_done_or_stopped(tasks, everyone, stop)
    finally:
        end = clock()
        for record in records:
            if record.state == "waiting":  # interrupted before it arrived
                record.failure = Failure(LANDING, "interrupted", "the run was interrupted before it arrived", end)
        await sampler.stop()
        http.close()
        if progress is not None:
            await progress.stop(progress_line(end, records, sampler.latest))
    for record, outcome in zip(records, everyone.result(), strict=True):
        if isinstance(outcome, Exception):  # a bug in the tool, not the service: say so, keep the report
            log.error("attendee %d ended with %r", record.index, outcome)
    first = min((r.started for r in records if r.started is not None), default=0.0)
    summary = summarize(records, duration=end - first)
    service = {"image": sampler.image, "version": sampler.version, "stats_samples": len(sampler.samples),
               "stats_errors": sampler.errors, "stats_last_error": sampler.last_error}
    return Report(settings, started_at, summary, records, sampler.samples, service)
