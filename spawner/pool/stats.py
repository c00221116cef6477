"""The pool's counters (shown by /metrics and the status page)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class PoolStats:
    handed_out: int = 0
    queued_total: int = 0
    launched: int = 0
    failed_starts: int = 0
    culled: int = 0
    over_disk: int = 0  # ended by the disk watchdog
    abuse: int = 0  # ended by the abuse guard (spawner.guard)
    replaced: int = 0  # found dead or missing behind the pool's back
    oom_kills: int = 0  # processes killed at a container's memory limit
    adopted: int = 0
    spawn_seconds: list[float] = field(default_factory=list)  # launch to ready, bounded below
    # (launched, ready) on the pool's clock, for the rate of launches in bursts (scheduled warming)
    launch_intervals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))

    def spawn_summary(self) -> dict:
        """Launch-to-ready seconds: how many, median and 95th percentile (None before the first)."""
        return spawn_summary(self.spawn_seconds)

    def record_spawn(self, seconds: float) -> None:
        self.spawn_seconds.append(seconds)
        if len(self.spawn_seconds) > 10000:
            del self.spawn_seconds[:5000]


def spawn_summary(seconds: list[float]) -> dict:
    """Launch-to-ready seconds (of one pool or several): how many, median and 95th percentile."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0, "p50": None, "p95": None}
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
    return {"count": len(ordered), "p50": pick(0.5), "p95": pick(0.95)}


def add_up(pools, cap: int = 0) -> dict:
    """Several pools' summaries added up (a service with several workshops); ``cap``: the service-wide
    cap, which bounds the total capacity."""
    total: dict[str, int] = {}
    for pool in pools:
        for key, value in pool.summary().items():
            total[key] = total.get(key, 0) + value
    if cap and "capacity" in total:
        total["capacity"] = min(total["capacity"], cap)
    return total
