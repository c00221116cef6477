"""A whole rehearsal: the admin API checked, attendees arriving on schedule, their containers sampled."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tornado.httpclient import AsyncHTTPClient

from ..attendee import monotonic_clock
from ..progress import Progress
from ..record import AttendeeRecord
from ..runner import until_done_or_stopped
from ..settings import Settings, SettingsError
from .attendee import RehearsalAttendee, Rehearsed
from .material import Notebook
from .report import Rehearsal, progress_line
from .usage import UsageError, UsageSampler
from .verdict import Limits

log = logging.getLogger("loadtest")


@dataclass
class RehearsalSettings:
    """What a rehearsal adds to a load test's settings (``python -m loadtest --help`` says what each means)."""

    admin_token: str
    attendees_for: int | None = None  # the workshop's size the verdict is for (default: the simulated attendees)
    cell_timeout: float = 300.0  # a cell still running after this is a problem ("timeout")
    max_output: int = 2 * 2**20  # a cell printing more than this many bytes is a problem
    sample_interval: float = 1.0  # between samples of the attendees' containers
    keep_containers: bool = False  # True: leave the attendees' containers to the idle cull, as real ones are
    material: list[str] = field(default_factory=list)  # the files and folders named, for the report

    def __post_init__(self) -> None:
        if not self.admin_token:
            raise SettingsError("a rehearsal measures each attendee's container through the admin API: give "
                                "--admin-token (or NBPOOL_ADMIN_TOKEN, or --admin-token-file)")
        checks = [("attendees_for", self.attendees_for, self.attendees_for is None or self.attendees_for >= 1),
                  ("cell_timeout", self.cell_timeout, self.cell_timeout > 0),
                  ("max_output", self.max_output, self.max_output > 0),
                  ("sample_interval", self.sample_interval, self.sample_interval > 0)]
        for name, value, ok in checks:
            if not ok:
                raise SettingsError(f"{name} must be positive, not {value!r}")


async def rehearse(settings: Settings, options: RehearsalSettings, notebooks: list[Notebook], *,
                   progress: Progress | None = None, stop: asyncio.Event | None = None) -> Rehearsal:
    """Run ``notebooks`` as ``settings.users`` attendees; raises ``UsageError`` before any attendee arrives
    when the admin API cannot be used (so nobody takes a container for a rehearsal that cannot measure)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = monotonic_clock()
    http = AsyncHTTPClient(force_instance=True, max_clients=settings.users + 10)
    usage = UsageSampler(settings.url, options.admin_token, http, options.sample_interval, settings.workshop)
    try:
        limits = await usage.check()
    except UsageError:
        http.close()
        raise
    people = [Rehearsed(AttendeeRecord(index=i, arrival=round(settings.arrival(i), 6))) for i in range(settings.users)]
    if progress is not None:
        progress.start(lambda: progress_line(clock(), people))
    usage.start()

    async def attend(person: Rehearsed) -> None:
        await asyncio.sleep(max(0.0, person.record.arrival - clock()))
        await RehearsalAttendee(person, settings, http, clock, notebooks, usage, cell_timeout=options.cell_timeout,
                                max_output=options.max_output, end_containers=not options.keep_containers).visit()

    tasks = [asyncio.create_task(attend(p)) for p in people]
    everyone = asyncio.gather(*tasks, return_exceptions=True)
    interrupted = False
    try:
        interrupted = await until_done_or_stopped(tasks, everyone, stop)
    finally:
        await usage.stop()
        http.close()
        if progress is not None:
            await progress.stop(progress_line(clock(), people))
    for person, outcome in zip(people, everyone.result(), strict=True):
        if isinstance(outcome, Exception):  # a bug in the tool, not the service: say so, keep the report
            log.error("rehearsal attendee %d ended with %r", person.record.index, outcome)
    return Rehearsal(settings, options, notebooks, people, Limits.of(usage.limits or limits), started_at,
                     duration=clock(), interrupted=interrupted, usage_errors=usage.errors,
                     usage_last_error=usage.last_error)
