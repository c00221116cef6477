"""The settings of the workshop's record, and its sampling: the pool's counts and each container's use.

The pool and the web app record events as they happen (``Pool.record``);
this samples what changes continuously (attendees, spares, the waiting line,
memory and CPU per container, as the engine measures them) every
``sample_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from traitlets import Bool, Float, Unicode, validate
from traitlets.config import LoggingConfigurable

from .. import __version__
from ..backoff import every
from ..pool.stats import add_up
from ..traits import MemorySize, require
from .recorder import Recorder

RECORD_FOLDER = "record"  # under the data directory


class WorkshopRecord(LoggingConfigurable):
    """Records the workshop as JSON lines under <data_dir>/record/ (``python -m spawner.report`` reads them)."""

    enabled = Bool(True, config=True,
                   help="Record the workshop's events (hand-outs and their waits, culls, failures, memory and CPU "
                        "per container) for the report afterwards (python -m spawner.report, or /status/report).")
    sample_interval = Float(20.0, config=True,
                            help="Seconds between samples of the pool's counts and each container's memory and CPU "
                                 "(one engine call per container, in the engine's thread pool).")
    max_bytes = MemorySize("64M", config=True,
                           help="Size at which the record file is rotated (one older file is kept: the record "
                                "holds at most twice this). 64M holds days of a 100-attendee workshop.")
    data_dir = Unicode(help="The service's data directory; the record lives in its 'record' folder.")

    @validate("sample_interval")
    def _validate_interval(self, proposal):
        return require(proposal, proposal.value > 0, "a positive number of seconds")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder = Path(self.data_dir) / RECORD_FOLDER
        self.recorder = Recorder(self.folder if self.enabled and self.data_dir else None, max_bytes=self.max_bytes)
        self._peaks: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    def __call__(self, event: str, /, **fields) -> None:
        self.recorder(event, **fields)

    def record_config(self, pool, engine) -> None:
        """The settings in force (at start and after a reload): the report's advice starts from them."""
        nodes = pool.node_info
        memory = sum(n.memory for n in nodes) if nodes else _host_memory()
        named = {"workshop": pool.workshop} if pool.workshop else {}
        self("config", **named, pool=pool.pool_name, image=engine.image, warm=pool.warm,
             max_containers=pool.max_containers,
             mem_limit=int(getattr(engine, "mem_limit", 0) or 0), cpu_limit=float(getattr(engine, "cpu_limit", 0) or 0),
             host_memory=memory, host_cores=os.cpu_count() or 0, backend=type(engine).__name__, version=__version__)

    def start(self, pools) -> None:
        """Sample every few seconds; ``pools``: () -> every pool (one per workshop)."""
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(
                every(lambda: self.sample_interval, lambda: self.sample(pools()), self.log,
                      "workshop record: a sample"))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.recorder.close()

    async def sample(self, pools) -> None:
        """The service's counts (summed over its workshops' pools), and each running container's use."""
        self("sample", **add_up(pools))
        if any(pool.workshop for pool in pools):  # each workshop's too, for its own report
            for pool in pools:
                self("sample", workshop=pool.workshop, **pool.summary())
        running = {s.engine_id: (s, pool) for pool in pools for s in pool.slots.values()
                   if s.engine_id and s.state in ("spare", "assigned")}
        if not pools:
            return
        try:
            measured = await pools[0].backend.usage(list(running))
        except Exception as exc:  # the engine's trouble is reported by the pool itself; a gap here is fine
            self.log.debug("workshop record: no usage this time: %s", exc)
            return
        for engine_id, use in measured.items():
            slot, pool = running[engine_id]
            peak = max(self._peaks.get(slot.cid, 0), use.memory_peak)
            self._peaks[slot.cid] = peak
            named = {"workshop": pool.workshop} if pool.workshop else {}
            self("usage", cid=slot.cid, **named, state=slot.state, mem=use.memory, mem_peak=peak,
                 cpu=use.cpu_seconds)
        live = {s.cid for s, _ in running.values()}
        for cid in [c for c in self._peaks if c not in live]:
            del self._peaks[cid]


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
