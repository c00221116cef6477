"""Scheduled warming: a workshop's spares raised ahead of a window so they are ready *at* its start.

A window is ``{"start", "end", "warm"}``. The raise begins ``lead`` seconds
before ``start``: the time this service needs to start the extra spares (see
``StartRate``: the rate it measured in bursts of launches, else its single
launch times), times LEAD_FACTOR, plus LEAD_MARGIN. Until anything is
measured, ASSUMED_LAUNCH stands in, and the log says so. After
``end`` the workshop returns to its base ``warm`` (extra spares are removed;
attendees keep their containers). Overlapping windows: the larger ``warm``
applies while both are open. Pure logic with an injected clock, so the unit
tests run it on a fake one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

LEAD_FACTOR = 1.5  # launches under a burst of scheduled raises run slower than the measured ones
LEAD_MARGIN = 60.0  # seconds, for the last wave and the spares' warm-up
ASSUMED_LAUNCH = 20.0  # seconds per launch before any was measured on this machine
RECENT = 50  # launches the measurement looks at
BURST = 4  # overlapping launches that make a burst (a rate worth measuring)


@dataclass
class Window:
    start: float  # seconds since the epoch
    end: float
    warm: int
    label: str  # as the operator wrote it, for the log and the status page

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end


class StartRate:
    """How fast this service starts containers: measured from the pools' recent launches, remembered across
    restarts (``<data_dir>/start_rate.json``).

    The best figure is a *measured rate*: containers made ready per second while several launches ran at
    once (launches compete for the machine's CPU, so a lone launch says little about a burst). Until a
    burst of at least BURST launches was seen, the estimate is the 90th percentile of single launch times,
    ``spawn_concurrency`` at once but never faster than one launch per core at a time.
    """

    def __init__(self, path: Path | None, launches: Callable[[], list[float]],
                 intervals: Callable[[], list[tuple[float, float]]] = list, cores: int | None = None):
        self.path = path
        self.launches = launches  # recent launch-to-ready seconds, all pools
        self.intervals = intervals  # recent (started, ready) monotonic times of launches, all pools
        self.cores = cores or os.cpu_count() or 1
        self.remembered: dict = {}
        if path is not None and path.exists():
            try:
                found = json.loads(path.read_text())
                self.remembered = {k: float(found[k]) for k in ("launch_p90", "rate") if found.get(k)}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.remembered = {}

    def launch_seconds(self) -> tuple[float, str]:
        """(seconds one launch takes, where that figure comes from)."""
        recent = sorted(self.launches()[-RECENT:])
        if recent:
            p90 = recent[min(len(recent) - 1, int(0.9 * len(recent)))]
            self._remember("launch_p90", p90)
            return p90, f"p90 of the last {len(recent)} launches"
        if "launch_p90" in self.remembered:
            return self.remembered["launch_p90"], "p90 measured before the last restart"
        return ASSUMED_LAUNCH, "assumed: no launch measured yet"

    def burst_rate(self) -> tuple[float, str] | None:
        """(containers ready per second in bursts, where from), or None before any burst was seen.

        Launches that overlap form a busy stretch; a stretch of at least BURST launches gives a rate
        (launches / its length). The slowest of the last three such stretches counts.
        """
        stretches: list[list[float]] = []  # [start, end, launches]
        for start, end in sorted(self.intervals()):
            if stretches and start <= stretches[-1][1]:
                stretches[-1][1] = max(stretches[-1][1], end)
                stretches[-1][2] += 1
            else:
                stretches.append([start, end, 1])
        rates = [n / (end - start) for start, end, n in stretches if n >= BURST and end > start]
        if rates:
            rate = min(rates[-3:])
            self._remember("rate", rate)
            return rate, f"measured in the last {min(3, len(rates))} bursts of launches"
        if "rate" in self.remembered:
            return self.remembered["rate"], "measured in bursts before the last restart"
        return None

    def _remember(self, key: str, value: float) -> None:
        if self.path is None or abs(self.remembered.get(key, -1.0) - value) <= 0.01 * value:
            return
        self.remembered[key] = value
        try:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**{k: round(v, 4) for k, v in self.remembered.items()}, "at": time.time()}))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a figure to reuse after a restart, no more

    def estimate(self, extra: int, concurrency: int) -> tuple[float, str]:
        """Seconds to start ``extra`` spares (no margin), and how that was worked out."""
        burst = self.burst_rate()
        if burst is not None:
            rate, source = burst
            return extra / rate, f"{extra} more spares at {rate:.2f} a second ({source})"
        seconds, source = self.launch_seconds()
        parallel = max(1, min(concurrency, self.cores))
        estimate = max(math.ceil(extra / max(1, concurrency)), extra / parallel) * seconds
        return estimate, (f"{extra} more spares, {seconds:.1f}s a launch ({source}), at most {parallel} at "
                          f"full speed ({concurrency} at once, {self.cores} cores)")

    def lead(self, extra: int, concurrency: int) -> tuple[float, str]:
        """Seconds needed to start ``extra`` spares, with the margin, and the reasoning for the log."""
        if extra <= 0:
            return 0.0, "no extra spares needed"
        estimate, how = self.estimate(extra, concurrency)
        lead = estimate * LEAD_FACTOR + LEAD_MARGIN
        return lead, f"{how}: {estimate:.0f}s, x{LEAD_FACTOR:g} + {LEAD_MARGIN:.0f}s margin = {lead:.0f}s"


def clock_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


class WorkshopSchedule:
    """One workshop's windows against its pool: the spares it should keep now, and how it is going."""

    def __init__(self, name: str, windows: list[Window], pool, rate: StartRate, log,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.windows = windows
        self.pool = pool
        self.rate = rate
        self.log = log
        self.clock = clock
        self._raised: set[int] = set()  # windows (by index) being warmed or open
        self._explained = False

    def explain(self, cap: int | None = None) -> None:
        """Say in the log what the windows will do: past ones, overlaps, ones larger than the caps."""
        now = self.clock()
        pool = self.pool
        for i, w in enumerate(self.windows):
            where = f"workshop {self.name}: window {w.label} (warm {w.warm})"
            if w.end <= now:
                self.log.info("%s is over already: ignored", where)
                continue
            if w.start <= now:
                self.log.warning("%s has started already: its spares are raised now, not ahead", where)
            else:
                lead, how = self.lead(w)
                self.log.info("%s: spares raised from %s, %.0fs ahead of its start (%s)", where,
                              clock_time(w.start - lead), lead, how)
            if w.warm <= pool.warm:
                self.log.info("%s asks no more than the base warm (%d): nothing to raise", where, pool.warm)
            if w.warm > pool.max_containers:
                self.log.warning("%s asks more spares than its max_containers (%d): at most %d can be ready, "
                                 "fewer as attendees arrive", where, pool.max_containers, pool.max_containers)
            if cap is not None and w.warm > cap:
                self.log.warning("%s asks more than its share of the service-wide cap (%d): spares beyond it "
                                 "start only while other workshops leave room", where, cap)
            for later in self.windows[i + 1:]:
                if w.overlaps(later) and later.end > now:
                    self.log.info("workshop %s: windows %s and %s overlap: while both are open the larger warm "
                                  "(%d) applies", self.name, w.label, later.label, max(w.warm, later.warm))
        self._explained = True

    def lead(self, window: Window) -> tuple[float, str]:
        extra = max(0, min(window.warm, self.pool.max_containers) - self.pool.warm)
        return self.rate.lead(extra, self.pool.spawn_concurrency)

    def floor(self, now: float) -> int:
        """The spares the windows ask for at ``now`` (0: none open or being warmed)."""
        best = 0
        for w in self.windows:
            if w.start - self.lead(w)[0] <= now < w.end:
                best = max(best, w.warm)
        return best

    def tick(self) -> int:
        """Apply the windows to the pool now (the registry calls this every few seconds); returns the floor."""
        if not self._explained:
            self.explain()
        now = self.clock()
        for i, w in enumerate(self.windows):
            lead, how = self.lead(w)
            opening = w.start - lead <= now < w.end
            if opening and i not in self._raised:
                self._raised.add(i)
                if now < w.start:
                    self.log.info("workshop %s: raising spares to %d for the window %s, %.0fs ahead (%s); "
                                  "ready expected by %s", self.name, w.warm, w.label, w.start - now, how,
                                  clock_time(now + self.rate.estimate(max(0, w.warm - self.pool.warm),
                                                                      self.pool.spawn_concurrency)[0]))
                else:
                    self.log.info("workshop %s: window %s is open: spares raised to %d", self.name, w.label,
                                  w.warm)
            elif not opening and i in self._raised and now >= w.end:
                self._raised.discard(i)
                self.log.info("workshop %s: window %s is over: back to the base warm (%d)", self.name, w.label,
                              self.pool.warm)
        floor = self.floor(now)
        self.pool.set_warm_floor(min(floor, self.pool.max_containers))
        return floor

    def status(self) -> list[dict]:
        """The coming and open windows, each with its state, for the status page."""
        now = self.clock()
        pool = self.pool
        rows = []
        for w in self.windows:
            if w.end <= now:
                continue
            lead, how = self.lead(w)
            raise_at = w.start - lead
            ready = pool.available
            want = min(w.warm, pool.max_containers)
            if now < raise_at:
                state, note = "scheduled", f"spares raised from {clock_time(raise_at)}"
            elif now < w.start:
                missing = max(0, want - ready - pool.launching)
                eta = now + self.rate.estimate(missing, pool.spawn_concurrency)[0] if missing else now
                on_track = ready >= want or eta <= w.start
                state = "warming, on track" if on_track else "warming, behind"
                note = f"{ready} of {want} spares ready"
            else:
                state, note = "open", f"{ready} spares ready, {pool.count('assigned')} attendees"
            rows.append({"start": w.start, "end": w.end, "warm": w.warm, "label": w.label, "state": state,
                         "note": note, "raise_at": raise_at, "lead_seconds": round(lead), "lead_reason": how})
        return rows
