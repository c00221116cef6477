"""What a workshop's recording says, and how to size the next workshop from it.

Everything here is a pure function of the events as
:func:`spawner.record.recorder.read_events` yields them (oldest first), so a
test can recompute every number from the same list, and the report can show
exactly which recorded numbers each piece of advice used.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

MIB = 2**20
GIB = 2**30
LIMIT_STEP = 64 * MIB  # Docker takes any size; round sizes read better in a config file
MIN_LIMIT = 256 * MIB  # below this a notebook server with one kernel barely starts
HEADROOM = 1.3  # over the p95 peak: next time's notebooks are not exactly this time's
OVER_LARGEST = 1.1  # the largest peak seen must still fit, with a little room
OOM_FACTOR = 1.5  # over a limit attendees hit: their real peak is unknown, the kernel cut it off
DEFAULT_START = 10.0  # seconds a container start is assumed to take when none was recorded
HOST_SHARE = 0.9  # of the host's memory for containers: the rest is for the OS, the engine and nbpool
SOURCES = ("spare", "queue")
COMMON_ERRORS = 3  # exception names quoted per section: the top few say what went wrong, a long tail does not


def percentile(values: Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks; None for no values.

    numpy's default definition (and ``statistics.quantiles(method="inclusive")``):
    rank ``p/100 * (n-1)`` in the sorted values, interpolated, so p0 is the
    smallest value, p100 the largest, and small samples give no surprises.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p!r}")
    rank = p / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def format_bytes(size: float) -> str:
    """``1.0 GiB``, ``437.5 MiB``: how the report quotes memory."""
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


def format_seconds(seconds: float) -> str:
    """``0.35 s``, ``83.4 s``: two decimals where they matter."""
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def of_workshop(events: Iterable[dict], workshop: str | None) -> list[dict]:
    """The events of one workshop of a service with several (``workshop``: its name), or of the service as a
    whole (None: each workshop's own samples left out, their total kept)."""
    if workshop is None:
        return [e for e in events if not (e["e"] == "sample" and "workshop" in e)]
    return [e for e in events if e.get("workshop") == workshop]


def of_kind(events: Iterable[dict], kind: str) -> list[dict]:
    """The events of one kind (``e``), in recorded order."""
    return [event for event in events if event["e"] == kind]


def number(event: dict, key: str) -> float | None:
    """``event[key]`` if it is a number: a field missing from an older recorder is skipped, not a crash."""
    value = event.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def numbers(events: Iterable[dict], kind: str, key: str) -> list[float]:
    """The numeric ``key`` of every ``kind`` event that has one."""
    found = (number(event, key) for event in of_kind(events, kind))
    return [value for value in found if value is not None]


def last_config(events: Iterable[dict]) -> dict:
    """The configuration in force at the end: the last ``config`` event, or {} when none was recorded."""
    configs = of_kind(events, "config")
    return configs[-1] if configs else {}


def tally(events: Iterable[dict], kind: str, key: str) -> Counter[str]:
    """How many ``kind`` events there were per value of ``key`` (e.g. ends per cull kind)."""
    return Counter(str(event.get(key, "?")) for event in of_kind(events, kind))


def served(events: Iterable[dict]) -> int:
    """Attendees served: distinct containers handed out."""
    return len({event.get("cid") for event in of_kind(events, "handout")})


def peak_attendees(events: Iterable[dict]) -> int:
    """The most containers assigned at once over the samples; without samples, the attendees served.

    Served is an upper bound of the peak, the closest figure a recording
    without samples has.
    """
    events = list(events)
    assigned = numbers(events, "sample", "assigned")
    return int(max(assigned)) if assigned else served(events)


def waits(events: Iterable[dict]) -> dict[str, list[float]]:
    """Hand-out waits (seconds) by source, always with 'spare' and 'queue'."""
    found: dict[str, list[float]] = {source: [] for source in SOURCES}
    for event in of_kind(events, "handout"):
        wait = number(event, "wait")
        if wait is not None:
            found.setdefault(str(event.get("source")), []).append(wait)
    return found


def peak_memory(events: Iterable[dict]) -> dict[str, float]:
    """Each attendee's peak memory (bytes): per cid, the largest ``mem_peak`` (else ``mem``) while assigned.

    Spares are left out: their idle memory says nothing about what attendees need.
    """
    peaks: dict[str, float] = {}
    for event in of_kind(events, "usage"):
        value = number(event, "mem_peak") or number(event, "mem")
        if event.get("state") == "assigned" and value and event.get("cid"):
            peaks[event["cid"]] = max(value, peaks.get(event["cid"], 0))
    return peaks


def cpu_seconds(events: Iterable[dict]) -> dict[str, float]:
    """Each attendee's CPU seconds: per cid, the last ``cpu`` sampled while assigned (it only grows)."""
    used: dict[str, float] = {}
    for event in of_kind(events, "usage"):
        cpu = number(event, "cpu")
        if event.get("state") == "assigned" and cpu is not None and event.get("cid"):
            used[event["cid"]] = cpu
    return used


def oom_attendees(events: Iterable[dict]) -> set[str]:
    """Containers that hit their memory limit: an ``oom`` kill, or a session that ended of it."""
    events = list(events)
    ended = (event for event in of_kind(events, "end") if event.get("kind") == "oom")
    return {str(event.get("cid")) for event in [*of_kind(events, "oom"), *ended]}


def busiest(times: Iterable[float], window: float) -> int:
    """The most ``times`` within any ``window`` seconds (both ends included)."""
    ordered = sorted(times)
    best = first = 0
    for last, t in enumerate(ordered):
        while t - ordered[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


def place(event: dict) -> tuple[str, str]:
    """Where an attendee was: (notebook path, section heading), '' for either when not known.

    null and '' are the same here (no notebook open, or above the first heading), so they group together.
    """
    return str(event.get("notebook") or ""), str(event.get("section") or "")


@dataclass(frozen=True)
class StuckSpot:
    """One notebook section where attendees got stuck (``stuck`` events), for the teacher's next run."""

    notebook: str
    section: str  # '' before the notebook's first heading
    periods: int
    attendees: int  # distinct sessions: one attendee stuck three times counts once
    median_minutes: float | None  # None: no period there recorded how long it lasted
    longest_minutes: float | None
    total_minutes: float
    errors: tuple[tuple[str, int], ...]  # (exception name, periods), the most common first


def stuck_spots(events: Iterable[dict]) -> list[StuckSpot]:
    """Every section attendees got stuck in: the most attendees first, then the most time stuck in total."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for event in of_kind(events, "stuck"):
        groups.setdefault(place(event), []).append(event)
    spots = [_stuck_spot(notebook, section, group) for (notebook, section), group in groups.items()]
    # notebook and section last: ties come out in the same order every time the report is built
    return sorted(spots, key=lambda s: (-s.attendees, -s.total_minutes, s.notebook, s.section))


def _stuck_spot(notebook: str, section: str, group: list[dict]) -> StuckSpot:
    minutes = [seconds / 60 for seconds in numbers(group, "stuck", "seconds")]
    # null error: the 'no_success' rule, or a failure without a name; neither says what went wrong
    errors = Counter(str(event["error"]) for event in group if event.get("error"))
    return StuckSpot(notebook, section, periods=len(group), attendees=len({event.get("cid") for event in group}),
                     median_minutes=percentile(minutes, 50), longest_minutes=max(minutes, default=None),
                     total_minutes=sum(minutes), errors=tuple(errors.most_common(COMMON_ERRORS)))


@dataclass(frozen=True)
class Hands:
    """Raised hands (``hand`` events): how many, how long they stayed up, and who lowered them."""

    raised: int
    lowered_by: Counter[str]  # 'helper', 'attendee' or 'ended' (the session ended with the hand up)
    median_minutes: float | None  # of the lowered hands' time up; None: none was lowered
    longest_minutes: float | None


def hand_stats(events: Iterable[dict]) -> Hands:
    """The raised hands of ``events``; pass one section's events for that section's."""
    hands = of_kind(events, "hand")
    lowered = [event for event in hands if event.get("action") == "lowered"]
    up = [seconds / 60 for seconds in numbers(lowered, "hand", "seconds")]
    return Hands(raised=sum(1 for event in hands if event.get("action") == "raised"),
                 lowered_by=tally(lowered, "hand", "by"), median_minutes=percentile(up, 50),
                 longest_minutes=max(up, default=None))


@dataclass(frozen=True)
class ClassSummary:
    """What the sessions' own summaries (``class`` events) say of the class as a whole."""

    attendees: int  # sessions that wrote a summary; 0: none did
    done: int  # said "I'm done"
    median_cells: float | None  # cells run per attendee; None: no summary had the count
    with_errors: int  # at least one cell failed


def class_summary(events: Iterable[dict]) -> ClassSummary:
    """The class as its sessions summed themselves up when they ended."""
    # One summary per session is written; should one be there twice (a replayed record), it counts once.
    last = {event.get("cid"): event for event in of_kind(events, "class")}.values()
    return ClassSummary(attendees=len(last), done=sum(1 for event in last if event.get("done") is True),
                        median_cells=percentile(numbers(last, "class", "cells_run"), 50),
                        with_errors=sum(1 for event in last if (number(event, "errors") or 0) > 0))


def round_up(size: float, step: int) -> int:
    # round() first: 6.0000000001 steps from float arithmetic must stay 6, not become 7.
    return math.ceil(round(size / step, 6)) * step


@dataclass(frozen=True)
class Advice:
    """Settings for the next workshop of ``attendees``, with the reasoning behind each (by setting name)."""

    attendees: int
    warm: int
    max_containers: int
    mem_limit: int  # bytes, a multiple of 64 MiB
    fits: int | None  # containers of mem_limit in 90% of the host's memory; None: host memory not recorded
    reasons: dict[str, str]

    @property
    def machine_too_small(self) -> bool:
        """Whether the recorded host cannot hold ``max_containers`` containers of ``mem_limit``."""
        return self.fits is not None and self.fits < self.max_containers

    def config_snippet(self) -> str:
        """The advice as lines for the operator's config file."""
        return (f"c.Pool.warm = {self.warm}\n"
                f"c.Pool.max_containers = {self.max_containers}\n"
                f'c.DockerBackend.mem_limit = "{self.mem_limit // MIB}M"\n')


def advise(events: Iterable[dict], attendees: int | None = None) -> Advice:
    """Sizing for ``attendees`` (default: the recorded peak, at least 1) computed from the recording alone."""
    if attendees is not None and attendees < 1:
        raise ValueError(f"attendees must be at least 1, not {attendees!r}")
    events = list(events)
    peak = peak_attendees(events)
    n = attendees or max(peak, 1)
    mem_limit, mem_why = _advise_mem_limit(events)
    warm, warm_why = _advise_warm(events, n, peak)
    max_containers = n + warm
    fits, memory_why = _check_memory(last_config(events), max_containers, mem_limit, n)
    reasons = {
        "attendees": _attendees_reason(events, attendees, peak),
        "mem_limit": mem_why,
        "warm": warm_why,
        "max_containers": f"{n} attendees + {warm} warm spares = {max_containers}: spares count against the cap.",
        "memory": memory_why,
    }
    return Advice(n, warm, max_containers, mem_limit, fits, reasons)


def _attendees_reason(events: list[dict], asked: int | None, peak: int) -> str:
    sampled = "the most containers assigned at once in the samples" if of_kind(events, "sample") else (
        "no pool sample was recorded, so the attendees served stand for it")
    if asked:
        return f"Sized for {asked} attendees, as asked; the recorded peak was {peak} ({sampled})."
    if peak:
        return f"Sized for {peak} attendees: the recorded peak ({sampled})."
    return "No attendee was recorded, so the advice is for 1."


def _advise_mem_limit(events: list[dict]) -> tuple[int, str]:
    configured = number(last_config(events), "mem_limit") or 0
    peaks = list(peak_memory(events).values())
    if peaks:
        p95, largest = percentile(peaks, 95), max(peaks)
        wanted = max(p95 * HEADROOM, largest * OVER_LARGEST)
        why = (f"The 95th percentile of the {len(peaks)} attendees' peak memory is {format_bytes(p95)}, "
               f"× {HEADROOM} headroom = {format_bytes(p95 * HEADROOM)}; the largest peak seen, "
               f"{format_bytes(largest)}, × {OVER_LARGEST} = {format_bytes(largest * OVER_LARGEST)}; "
               "the larger counts.")
    else:
        wanted = configured
        why = "No attendee's memory use was recorded" + (
            f", so the configured mem_limit {format_bytes(configured)} stays." if configured else ".")
    wanted, oom_why = _after_oom(events, wanted, configured)
    limit = max(MIN_LIMIT, round_up(wanted, LIMIT_STEP))
    return limit, f"{why}{oom_why} Rounded up to a multiple of 64 MiB, at least 256 MiB: {limit // MIB} MiB."


def _after_oom(events: list[dict], wanted: float, configured: float) -> tuple[float, str]:
    """The wanted limit raised for OOM kills at the configured limit, and why ('' without any)."""
    hit = oom_attendees(events)
    if not hit:
        return wanted, ""
    kills, ended = len(of_kind(events, "oom")), tally(events, "end", "kind")["oom"]
    counted = f"{len(hit)} attendees hit the memory limit ({kills} OOM kills, {ended} sessions ended by OOM)"
    if not configured:
        return wanted, f" {counted} with no mem_limit configured: the machine itself ran out of memory."
    raised = max(wanted, configured * OOM_FACTOR)
    return raised, (f" {counted}, so their real peak is unknown: at least {OOM_FACTOR} × the configured "
                    f"{format_bytes(configured)} = {format_bytes(configured * OOM_FACTOR)}, whichever is larger.")


def _advise_warm(events: list[dict], n: int, peak: int) -> tuple[int, str]:
    starts = numbers(events, "launch", "seconds")
    window = percentile(starts, 95) if starts else DEFAULT_START
    handouts = numbers(events, "handout", "t")
    burst = busiest(handouts, window)
    scaled = -(-burst * n // peak) if peak else burst  # integer ceiling: no float rounding at the edge
    warm = min(max(scaled, 1), n)
    started = (f"the 95th percentile of the {len(starts)} container starts recorded" if starts
               else f"no container start was recorded, so {DEFAULT_START:g} s is assumed")
    why = (f"A new spare takes {format_seconds(window)} to start ({started}); the busiest "
           f"{format_seconds(window)} of the workshop saw {burst} hand-outs.")
    if peak:
        why += (f" Scaled from the recorded peak of {peak} attendees to {n}: {burst} × {n} / {peak}, "
                f"rounded up: {scaled}.")
    if warm != scaled:
        why += f" Kept between 1 and {n}: {warm}."
    queued = waits(events)["queue"]
    if queued:
        why += (f" {len(queued)} of the {len(handouts)} hand-outs waited in the queue, "
                f"p95 wait {format_seconds(percentile(queued, 95))}.")
    else:
        why += f" None of the {len(handouts)} hand-outs waited in the queue."
    return warm, why


def _check_memory(config: dict, max_containers: int, mem_limit: int, n: int) -> tuple[int | None, str]:
    """How many containers fit in 90% of the host's memory (None: not recorded), and what that means for ``n``."""
    host = number(config, "host_memory") or 0
    need = max_containers * mem_limit
    total = f"{max_containers} containers × {mem_limit // MIB} MiB = {format_bytes(need)}"
    if not host:
        return None, f"The host's memory was not recorded, so whether {total} fits could not be checked."
    budget = host * HOST_SHARE
    fits = int(budget // mem_limit)
    against = f"90% of the host's recorded {format_bytes(host)} ({format_bytes(budget)})"
    if need <= budget:
        return fits, f"{total} is within {against}: up to {fits} containers fit."
    return fits, (f"{total} is more than {against}: only {fits} containers fit, so this machine is too small "
                  f"for {n} attendees; it would need {format_bytes(need / HOST_SHARE)} of memory.")
