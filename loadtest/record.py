"""What one simulated attendee did, and when: the data every report and plot is made from.

All times are seconds since the run started (one monotonic clock for the
whole run), so attendees can be compared and drawn on one timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The phases of a visit, in order. A failure belongs to exactly one of them.
LANDING = "landing"  # GET / (the public link's page; takes no container)
SPAWN = "spawn"  # GET /spawn[/…] through redirects and the waiting line, to a /user/<id>/ URL
PAGE = "page"  # the notebook page (and, with a notebook, its contents through the API)
KERNEL = "kernel"  # POST api/kernels, open the kernel WebSocket, kernel_info answered
EXECUTE = "execute"  # run cells with think time until the session is over
LEAVE = "leave"  # shut the kernel down (best effort; never a failure)
PHASES = (LANDING, SPAWN, PAGE, KERNEL, EXECUTE, LEAVE)

# How an attendee got its container.
FROM_SPARE = "spare"  # /spawn redirected straight to /user/<id>/
FROM_QUEUE = "queue"  # /spawn sent it to /spawn/wait/<ticket> first


@dataclass
class PhaseTiming:
    start: float
    end: float | None = None
    ok: bool | None = None  # None while the phase runs

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class Failure:
    """Why an attendee failed: the phase, a short kind to count by, and a message for people."""

    phase: str
    kind: str  # e.g. "full", "rate-limited", "timeout", "connection", "http 500", "cell-error"
    message: str
    at: float


@dataclass
class AttendeeRecord:
    """One attendee's visit. ``phases`` holds only the phases it entered."""

    index: int
    arrival: float  # scheduled arrival (seconds into the run)
    phases: dict[str, PhaseTiming] = field(default_factory=dict)
    failure: Failure | None = None
    container: str | None = None  # the <id> of /user/<id>/
    served: str | None = None  # FROM_SPARE or FROM_QUEUE
    queued_at: float | None = None  # when /spawn sent it to the waiting line
    queue_position: int | None = None  # first position reported by /api/queue
    queue_polls: int = 0
    retries: int = 0  # /spawn retried after a 503 full / 429 answer
    kernel_name: str | None = None
    cell_results: list[float] = field(default_factory=list)  # when each cell's result arrived
    cell_durations: list[float] = field(default_factory=list)  # seconds from request to result, per cell
    walked_away: bool = False  # left without shutting its kernel down
    asset_bytes: int = 0  # static files' bytes as received (compressed, when the service compresses)
    asset_requests: int = 0
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, phase, "GET /spawn -> 302")

    @property
    def state(self) -> str:
        """``waiting`` (not arrived), ``active``, ``ok`` or ``failed``."""
        if self.failure is not None:
            return "failed"
        if not self.phases:
            return "waiting"
        last = self.phases[list(self.phases)[-1]]
        if last.end is not None and list(self.phases)[-1] == LEAVE:
            return "ok"
        return "active"

    @property
    def current_phase(self) -> str | None:
        return next(reversed(self.phases), None) if self.state == "active" else None

    @property
    def started(self) -> float | None:
        """When the attendee clicked the link (the landing page request)."""
        first = self.phases.get(LANDING)
        return None if first is None else first.start

    @property
    def time_to_page(self) -> float | None:
        """Seconds from clicking the link to having the notebook page (landing + spawn + page)."""
        page = self.phases.get(PAGE)
        if page is None or not page.ok:
            return None
        return page.end - self.started

    @property
    def time_to_first_result(self) -> float | None:
        """Seconds from clicking the link to the first cell's result."""
        return self.cell_results[0] - self.started if self.cell_results else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["state"] = self.state
        data["time_to_page"] = self.time_to_page
        data["time_to_first_result"] = self.time_to_first_result
        for name, timing in self.phases.items():
            data["phases"][name]["duration"] = timing.duration
        data["events"] = [list(e) for e in self.events]
        return data
