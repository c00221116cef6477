"""A per-client spawn rate limit: a token bucket per address."""

from __future__ import annotations

import time


class RateLimiter:
    """Allow ``burst`` spawns at once per client, refilled at ``rate`` per second.

    ``check(key)`` returns 0 when allowed (and counts it), else the seconds to
    wait. Idle buckets are forgotten, so memory stays bounded.
    """

    def __init__(self, burst: int, per_seconds: float, clock=time.monotonic):
        self.burst = burst
        self.rate = burst / per_seconds
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last update)

    def check(self, key: str) -> float:
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 10000:
                self._forget_full(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely carries no information.
        full_after = self.burst / self.rate
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
