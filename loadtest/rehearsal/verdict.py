"""From a rehearsal's measurements to a verdict and the settings a workshop of N attendees needs.

Pure functions of the numbers (a test changes them and sees the advice
change), with the reasoning in words beside each setting. The memory rule is
the post-workshop report's (``spawner.report.analysis``): the p95 of the
attendees' peaks with headroom, or the largest peak with a little, rounded up
to 64 MiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spawner.report.analysis import (
    DEFAULT_START,
    HEADROOM,
    HOST_SHARE,
    LIMIT_STEP,
    MIB,
    MIN_LIMIT,
    OOM_FACTOR,
    OVER_LARGEST,
    format_bytes,
    format_seconds,
    percentile,
    round_up,
)

FITS, DOES_NOT_FIT = "fits", "does not fit"
BUSY_SHARE = 0.7  # of the cores for attendees' kernels: the rest for bursts, the engine and nbpool


@dataclass(frozen=True)
class AttendeeUse:
    peak_memory_bytes: int
    cpu_seconds: float
    active_seconds: float  # how long it worked through the material
    oom_kills: int = 0
    start_cpu_seconds: float | None = None  # CPU its container used before it was handed out (its start)


@dataclass(frozen=True)
class Limits:
    """The service's settings for the workshop, and its machines (from /api/admin/usage)."""

    warm: int
    max_containers: int
    mem_limit_bytes: int  # 0: none
    start_seconds_p95: float | None
    nodes: tuple[tuple[float, int], ...]  # (cores, memory bytes) per machine
    spawn_concurrency: int = 4  # containers it starts at once (Pool.spawn_concurrency)
    start_seconds_p50: float | None = None

    @classmethod
    def of(cls, answer: dict) -> Limits:
        return cls(int(answer.get("warm") or 0), int(answer.get("max_containers") or 0),
                   int(answer.get("mem_limit_bytes") or 0), answer.get("start_seconds_p95"),
                   tuple((float(n.get("cores") or 0), int(n.get("memory_bytes") or 0))
                         for n in answer.get("nodes") or ()), int(answer.get("spawn_concurrency") or 4),
                   answer.get("start_seconds_p50"))

    @property
    def cores(self) -> float:
        return sum(cores for cores, _ in self.nodes)

    @property
    def memory(self) -> int:
        return sum(memory for _, memory in self.nodes)


@dataclass
class Verdict:
    verdict: str  # FITS or DOES_NOT_FIT
    attendees: int  # the workshop's size the advice is for
    advice: dict  # mem_limit_bytes, warm, max_containers, cores, nodes
    reasons: dict[str, str]  # the reasoning behind each setting, by name
    problems: list[str] = field(default_factory=list)  # why it does not fit (empty when it fits)

    def config_snippet(self) -> str:
        return (f"c.Pool.warm = {self.advice['warm']}\n"
                f"c.Pool.max_containers = {self.advice['max_containers']}\n"
                f'c.DockerBackend.mem_limit = "{self.advice["mem_limit_bytes"] // MIB}M"\n')

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "attendees": self.attendees, "advice": self.advice,
                "reasons": self.reasons, "problems": self.problems}


def judge(uses: list[AttendeeUse], limits: Limits, attendees: int, *, arrival_window: float,
          failed_attendees: int = 0, failing_cells: int = 0) -> Verdict:
    """The verdict for a workshop of ``attendees`` arriving over ``arrival_window`` seconds (0: at once)."""
    if attendees < 1:
        raise ValueError(f"attendees must be at least 1, not {attendees!r}")
    mem_limit, mem_why = _mem_limit(uses, limits.mem_limit_bytes)
    warm, warm_why = _warm(attendees, arrival_window, limits, uses)
    cores, cores_why = _cores(uses, attendees)
    max_containers = attendees + warm
    nodes, nodes_why = _nodes(limits, cores, max_containers * mem_limit)
    advice = {"mem_limit_bytes": mem_limit, "warm": warm, "max_containers": max_containers, "cores": cores,
              "nodes": nodes}
    reasons = {"mem_limit": mem_why, "warm": warm_why,
               "max_containers": f"{attendees} attendees + {warm} warm spares = {max_containers}: spares count "
                                 "against the cap.",
               "cores": cores_why, "nodes": nodes_why}
    problems = _problems(limits, advice, attendees, failed_attendees, failing_cells, uses)
    return Verdict(DOES_NOT_FIT if problems else FITS, attendees, advice, reasons, problems)


def _mem_limit(uses: list[AttendeeUse], configured: int) -> tuple[int, str]:
    peaks = [u.peak_memory_bytes for u in uses if u.peak_memory_bytes]
    if not peaks:
        limit = max(MIN_LIMIT, configured)
        return limit, f"No attendee's memory was measured, so {format_bytes(limit)} (configured, or the minimum)."
    p95, largest = percentile(peaks, 95), max(peaks)
    wanted = max(p95 * HEADROOM, largest * OVER_LARGEST)
    why = (f"The p95 of the {len(peaks)} attendees' peak memory (working set, sampled) is {format_bytes(p95)}, "
           f"× {HEADROOM} headroom = {format_bytes(p95 * HEADROOM)}; the largest peak, {format_bytes(largest)}, "
           f"× {OVER_LARGEST} = {format_bytes(largest * OVER_LARGEST)}; the larger counts.")
    hit = sum(1 for u in uses if u.oom_kills)
    if hit and configured:
        wanted = max(wanted, configured * OOM_FACTOR)
        why += (f" {hit} attendees' kernels were killed at the configured {format_bytes(configured)}, so their "
                f"real peak is unknown: at least {OOM_FACTOR} × that.")
    limit = max(MIN_LIMIT, round_up(wanted, LIMIT_STEP))
    return limit, f"{why} Rounded up to a multiple of 64 MiB, at least 256 MiB: {limit // MIB} MiB."


def _warm(attendees: int, window: float, limits: Limits, uses: list[AttendeeUse]) -> tuple[int, str]:
    start = limits.start_seconds_p95
    start_why = (f"a container starts in {format_seconds(start)} here (p95 of this service's starts)" if start
                 else f"no start was measured here, so {DEFAULT_START:g} s is assumed")
    start = start or DEFAULT_START
    if window <= 0:
        return attendees, f"Everyone arrives at once, so every attendee needs a spare waiting: {attendees}."
    during = attendees * min(1.0, start / window)
    why = (f"{attendees} attendees arriving over {format_seconds(window)}; {start_why}, so "
           f"{attendees} × {format_seconds(start)} / {format_seconds(window)} = {during:.1f} arrive while one starts.")
    # The pool refills spawn_concurrency containers per (typical) start time at most, and no faster than the
    # cores can pay for each start's CPU: past that rate arrivals pile up, and only spares keep them from waiting.
    typical = limits.start_seconds_p50 or start
    refill = limits.spawn_concurrency / typical
    starts_cpu = [u.start_cpu_seconds for u in uses if u.start_cpu_seconds]
    if starts_cpu and limits.cores:
        per_start = percentile(starts_cpu, 50)
        refill = min(refill, limits.cores / per_start)
        why += (f" It refills {limits.spawn_concurrency} per {format_seconds(typical)} (the median start) at "
                f"most, and a start takes {per_start:.2f} CPU-seconds (measured) on {limits.cores:g} cores: "
                f"{refill:.2f} containers a second.")
    else:
        why += (f" It refills {limits.spawn_concurrency} per {format_seconds(typical)} (the median start) at most: "
                f"{refill:.2f} containers a second.")
    short = attendees - refill * window
    if short > during:
        why += (f" {attendees} − {refill:.2f}/s × {format_seconds(window)} = {short:.1f} attendees the refill "
                "cannot keep up with.")
    warm = min(max(math.ceil(round(max(during, short), 6)), 1), attendees)
    return warm, why + f" Warm spares: {warm}."


def _cores(uses: list[AttendeeUse], attendees: int) -> tuple[int, str]:
    measured = [u for u in uses if u.active_seconds and u.active_seconds > 0]
    if not measured:
        return 1, "No attendee's CPU was measured, so 1 core (a guess)."
    cpu = sum(u.cpu_seconds for u in measured)
    active = sum(u.active_seconds for u in measured)
    per = cpu / active
    cores = max(1, math.ceil(round(attendees * per / BUSY_SHARE, 6)))
    return cores, (f"The {len(measured)} attendees used {cpu:.1f} CPU-seconds in {active:.0f} s of work: "
                   f"{per:.3f} of a core each on average; × {attendees} attendees = {attendees * per:.2f} cores, "
                   f"over {BUSY_SHARE} (room for everyone running the same cell at once, the engine and nbpool), "
                   f"rounded up: {cores}.")


def _nodes(limits: Limits, cores: int, memory: int) -> tuple[int, str]:
    per_cores = min((c for c, _ in limits.nodes if c), default=0)
    per_memory = min((m for _, m in limits.nodes if m), default=0)
    if not per_cores or not per_memory:
        return 1, "The service did not say what its machines have, so 1 machine (unchecked)."
    by_cores = math.ceil(cores / per_cores)
    by_memory = math.ceil(memory / (per_memory * HOST_SHARE))
    nodes = max(1, by_cores, by_memory)
    return nodes, (f"Machines like this service's ({per_cores:g} cores, {format_bytes(per_memory)}): {cores} "
                   f"cores need {by_cores}; {format_bytes(memory)} of containers (max_containers × mem_limit) "
                   f"in {HOST_SHARE:.0%} of each one's memory need {by_memory}: {nodes}.")


def _problems(limits: Limits, advice: dict, attendees: int, failed_attendees: int, failing_cells: int,
              uses: list[AttendeeUse]) -> list[str]:
    problems = []
    if failed_attendees:
        problems.append(f"{failed_attendees} simulated attendees did not get a working notebook "
                        "(see their failures).")
    if failing_cells:
        problems.append(f"{failing_cells} cells failed or passed a limit (listed by notebook and cell).")
    if any(u.oom_kills for u in uses):
        problems.append(f"Kernels were killed at the memory limit ({sum(1 for u in uses if u.oom_kills)} attendees).")
    if limits.mem_limit_bytes and advice["mem_limit_bytes"] > limits.mem_limit_bytes:
        problems.append(f"mem_limit is {format_bytes(limits.mem_limit_bytes)}; this material needs "
                        f"{format_bytes(advice['mem_limit_bytes'])}.")
    if limits.max_containers < attendees:
        problems.append(f"max_containers is {limits.max_containers}: fewer containers than the {attendees} attendees.")
    if limits.cores and advice["cores"] > limits.cores:
        problems.append(f"The service has {limits.cores:g} cores; {attendees} attendees running this material "
                        f"need {advice['cores']}.")
    need = advice["max_containers"] * advice["mem_limit_bytes"]
    if limits.memory and need > limits.memory * HOST_SHARE:
        problems.append(f"{advice['max_containers']} containers (attendees and spares) × "
                        f"{format_bytes(advice['mem_limit_bytes'])} = {format_bytes(need)}, over {HOST_SHARE:.0%} of "
                        f"the service's {format_bytes(limits.memory)}.")
    return problems
