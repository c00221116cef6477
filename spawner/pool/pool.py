"""The warm pool: ready spares handed out in constant time, refilled, capped and queued.

A container's life: LAUNCHING (created, its server not answering yet) ->
SPARE (ready, routed, waiting for a visitor) -> ASSIGNED (handed out) ->
REMOVING (route gone first, then the container). ``warm`` counts ready,
unassigned spares; ``max_containers`` caps everything together.

Hand-outs and the waiting line live in ``handout.PoolHandouts``, launches in
``launch.PoolLaunches``, removals in ``removal.PoolRemovals``, culling and
reconciliation in ``upkeep.PoolUpkeep``; this module keeps the settings, the
accounting, resizing and drains.
"""

from __future__ import annotations

import asyncio
import collections
import time

from traitlets import Any, Bool, Callable, Float, Instance, Integer, Unicode, default, observe, validate
from traitlets.config import LoggingConfigurable

from proxy.routes import RouteTable
from proxy.static_cache import StaticCache

from ..engines.base import ContainerBackend
from ..secret import ServerSecret
from ..traits import MemorySize, require
from .ended import EndedSessions
from .errors import PoolClosed
from .events import PoolEvents
from .gate import FairGate
from .handout import PoolHandouts
from .launch import PoolLaunches
from .removal import PoolRemovals
from .slot import ASSIGNED, LAUNCHING, NAME_OK, SPARE, Slot
from .stats import PoolStats
from .ticket import Ticket
from .upkeep import PoolUpkeep


class Pool(PoolHandouts, PoolLaunches, PoolRemovals, PoolUpkeep, PoolEvents, LoggingConfigurable):
    """Keeps ``warm`` ready spares, hands them out, queues visitors when none is ready."""

    pool_name = Unicode("nbpool", config=True,
                        help="Name of this pool. Containers are labelled with it, so two pools can share one "
                             "Docker engine without touching each other's containers. Read at start only.")
    warm = Integer(3, config=True,
                   help="Ready, unassigned spare containers to keep. Each hand-out starts a replacement. "
                        "Set it to about the number of attendees expected in the first minute.")
    max_containers = Integer(20, config=True,
                             help="Hard cap on all containers of this pool (spares, starting and assigned). "
                                  "Keep mem_limit x max_containers within the machine's RAM.")
    spawn_concurrency = Integer(4, config=True,
                                help="Containers started at once. Starts are CPU-bound: 2 per core is plenty. "
                                     "With several workshops, the limit is the service's, shared by them all.")
    start_timeout = Float(60.0, config=True,
                          help="Seconds a new container has to answer its readiness check before it counts "
                               "as a failed start (its logs go to the log; it is removed and retried).")
    warmup_path = Unicode(None, allow_none=True, config=True,
                          help="A page of the notebook server (relative to /user/<id>/) loaded once before a new "
                               "container becomes a spare, so its first visitor does not wait for Jupyter's "
                               "first page render. Unset: the page visitors land on (WebApp.landing_path, as it "
                               "is at each launch). Empty: no warm-up.")
    queue_size = Integer(200, config=True,
                         help="Most visitors waiting in line for a container; beyond it they get the 'full' page.")
    queue_timeout = Float(120.0, config=True,
                          help="Seconds a visitor waits in line before being told to try again.")
    cull_idle = Float(600.0, config=True,
                      help="Seconds without any traffic through the proxy after which an assigned container "
                           "is removed (0: never). Spares are never culled for idleness.")
    cull_embedded_idle = Float(300.0, config=True,
                               help="Seconds without a kernel run (a cell executed, or a kernel busy, as the "
                                    "proxy sees its WebSockets) after which a container handed to a web page's "
                                    "live code (Thebe, MyST, Jupyter Book: /build) is removed, whatever else "
                                    "reaches it: an open page polls its server every 10 s, which cull_idle counts "
                                    "as activity. The page takes a fresh server when it runs code again. A busy "
                                    "kernel is never cut short. 0: such containers are culled like any other "
                                    "(cull_idle, cull_max_age).")
    cull_max_age = Float(14400.0, config=True,
                         help="Seconds after hand-out after which an assigned container is removed, active "
                              "or not (0: never). 14400 is four hours.")
    cull_interval = Float(30.0, config=True, help="Seconds between culling passes.")
    disk_check_interval = Float(10.0, config=True,
                                help="Seconds between measurements of each assigned container's own files "
                                     "against the backend's disk_limit (the watchdog for engines without a "
                                     "disk quota: an attendee writing fast gets this long past it) and of the "
                                     "engine's free space. One engine call per pass, for all containers (a few "
                                     "milliseconds for 8 containers here).")
    unopened_timeout = Float(120.0, config=True,
                             help="Seconds a container may stay handed out without a single request of its "
                                  "visitor's through the proxy (the redirect never followed: a script, a "
                                  "crawler, a closed tab) before it is removed and its place goes to a fresh "
                                  "spare. Never back to the spares: a container handed out is never anyone "
                                  "else's. Checked every cull_interval. 0: never.")
    reconcile_interval = Float(30.0, config=True,
                               help="Seconds between reconciliations with the engine: dead containers replaced, "
                                    "unknown ones adopted or removed, spares topped up.")
    failure_backoff = Float(1.0, config=True,
                            help="Seconds to wait before retrying after a failed start; doubles with each "
                                 "consecutive failure, up to failure_backoff_max.")
    failure_backoff_max = Float(60.0, config=True, help="Longest wait between retries of failed starts.")
    breaker_threshold = Integer(5, config=True,
                                help="Consecutive failed starts that open the circuit breaker: launching stops "
                                     "and /healthz reports unhealthy until a probe start succeeds.")
    breaker_probe_interval = Float(30.0, config=True,
                                   help="Seconds between probe starts while the circuit breaker is open.")
    min_free_disk = MemorySize("5G", config=True,
                               help="Free space the engine's disk (images, containers' files, logs) must keep: "
                                    "below it no new container is started, /healthz and the status page say why, "
                                    "and starts resume once there is room again. Checked every "
                                    "disk_check_interval. 0: never checked.")
    remove_assigned_on_stop = Bool(False, config=True,
                                   help="On shutdown, also remove assigned containers. Off by default: they keep "
                                        "running and a restarted nbpool adopts them, so attendees keep their work.")

    workshop = Unicode("", help="The workshop this pool serves ('' for a service without named workshops).")
    shared_room = Callable(None, allow_none=True,
                           help="shared_room(pool) -> places the service-wide cap (NbpoolApp.total_containers) "
                                "leaves this pool; None: only max_containers counts.")
    on_spare = Callable(None, allow_none=True,
                        help="async on_spare(slot): called for each new container once its server answers, "
                             "before anyone has it (the workshop's pushed updates are copied in there).")
    on_freed = Callable(None, allow_none=True,
                        help="on_freed(pool): a container of this pool is gone (other pools under the same "
                             "service-wide cap may start one).")
    live_scopes = Callable(None, allow_none=True,
                           help="() -> the share scopes of every pool now (one per workshop): a drain empties "
                                "the static cache of all others only.")
    backend = Instance(ContainerBackend)
    routes = Instance(RouteTable, allow_none=True, help="Where ready containers are routed (the proxy's table).")
    static_cache = Instance(StaticCache, allow_none=True,
                            help="The proxy's shared static cache: emptied of an image's files when it is drained.")
    secret = Instance(ServerSecret)
    route_options = Callable(None, allow_none=True,
                             help="route_options(slot) -> dict of extra RouteTable.add arguments "
                                  "(authorize, error_page, origin_policy) for a container's route.")
    landing_page = Callable(lambda: "tree", help="() -> the page visitors land on, for warmup_path's default.")
    ended = Instance(EndedSessions, help="Where the pool records why sessions ended (the ended page reads it).")
    keeper = Any(None, allow_none=True,
                 help="The WorkKeeper: saves an attendee's files before their container goes (None: nothing kept).")
    record = Callable(lambda event, /, **fields: None, help="record(event, **fields): the workshop's record.")
    clock = Callable(time.monotonic, help="Monotonic clock (seconds); the proxy's activity uses the same.")
    wallclock = Callable(time.time, help="Wall clock (seconds since the epoch), for ages that survive restarts.")

    @validate("warm", "max_containers", "spawn_concurrency", "queue_size", "breaker_threshold")
    def _validate_counts(self, proposal):
        low = 0 if proposal.trait.name in ("warm", "queue_size") else 1
        return require(proposal, proposal.value >= low, f"at least {low}")

    @validate("start_timeout", "queue_timeout", "cull_interval", "disk_check_interval", "reconcile_interval",
              "failure_backoff", "failure_backoff_max", "breaker_probe_interval")
    def _validate_positive(self, proposal):
        return require(proposal, proposal.value > 0, "a positive number of seconds")

    @validate("cull_idle", "cull_max_age", "unopened_timeout", "cull_embedded_idle")
    def _validate_cull(self, proposal):
        return require(proposal, proposal.value >= 0, "0 (never) or a number of seconds")

    @default("ended")
    def _default_ended(self) -> EndedSessions:
        return EndedSessions()

    @validate("pool_name")
    def _validate_pool_name(self, proposal):
        return require(proposal, bool(NAME_OK.match(proposal.value)),
                       "letters, digits, '_', '.' or '-' (at most 41), starting with a letter or digit")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.warm > self.max_containers:
            self.log.warning("Pool.warm (%d) is above max_containers (%d): only %d spares can exist",
                             self.warm, self.max_containers, self.max_containers)
        self.slots: dict[str, Slot] = {}
        self._spares: collections.deque[Slot] = collections.deque()
        self._queue: collections.deque[Ticket] = collections.deque()
        self._launches: set[asyncio.Task] = set()
        self._in_flight: set[Slot] = set()
        self._background: set[asyncio.Task] = set()
        # Starts in flight (several workshops share one: starts compete for the same machine).
        self.spawn_gate = FairGate(lambda: self.spawn_concurrency).share(self)
        self.generation = 0  # bumped by drain(): older spares are replaced
        self.closing = False
        self.started = False
        self.consecutive_failures = 0
        self._hold_until = 0.0  # no launches before this (backoff after failures)
        self._wakeup: asyncio.TimerHandle | None = None
        self.stats = PoolStats()
        self.engine_up = True  # the engine answers (see PoolEvents.on_engine)
        self.engine_down_since = 0.0
        self.disk_low = False  # below min_free_disk (see PoolEvents.check_space)
        self.disk_free = 0
        self.no_room = ""  # why the engine could not take the last launch ('' once one succeeds)
        self.node_info: list = []  # the engine's machines (NodeInfo), as of the last reconcile
        self.warm_floor = 0  # spares a scheduled window asks for (see target_warm); set by the workshop's schedule
        self.retired = False  # its workshop was removed: no hand-outs, no launches; culled as usual until empty

    # --- counts ---------------------------------------------------------------------------------

    def share_scope(self) -> str:
        """What containers launched now share (their image's files): the image, and the drain generation."""
        return f"{self.backend.image}#{self.generation}"

    @property
    def target_warm(self) -> int:
        """Spares to keep now: ``warm``, or more while a scheduled window asks for them; none once retired."""
        return 0 if self.retired else max(self.warm, self.warm_floor)

    def room(self) -> int:
        """Containers this pool may still start: its own cap, and the service-wide one's share for it."""
        own = self.max_containers - len(self.slots)
        return min(own, self.shared_room(self)) if self.shared_room is not None else own

    def count(self, state: str) -> int:
        return sum(1 for s in self.slots.values() if s.state == state)

    @property
    def available(self) -> int:
        """Ready spares."""
        return sum(1 for s in self._spares if s.state == SPARE)

    @property
    def launching(self) -> int:
        """Launches under way (created or waiting for a start slot, not yet ready or failed)."""
        return len(self._in_flight)

    @property
    def breaker_open(self) -> bool:
        return self.consecutive_failures >= self.breaker_threshold

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def summary(self) -> dict:
        """The numbers /api/stats shows."""
        return {"available": self.available, "assigned": self.count(ASSIGNED), "launching": self.launching,
                "capacity": self.max_containers, "queue": len(self._queue), "warm": self.target_warm}

    def nodes(self) -> list[dict]:
        """The engine's machines with this pool's containers on each (from the last reconcile and the slots)."""
        mine: dict[str, dict[str, int]] = {}
        for slot in self.slots.values():
            counts = mine.setdefault(slot.node, {})
            counts[slot.state] = counts.get(slot.state, 0) + 1
        rows = []
        for node in self.node_info:
            counts = mine.pop(node.name, None) or (mine.pop("", {}) if len(self.node_info) == 1 else {})
            rows.append({"name": node.name, "address": node.address, "state": node.state,
                         "availability": node.availability, "role": node.role, "image": node.image,
                         "agent": node.agent,
                         "memory_bytes": node.memory, "memory_reserved_bytes": node.reserved_memory,
                         "cores": node.cores, "containers": node.containers, "spare": counts.get(SPARE, 0),
                         "assigned": counts.get(ASSIGNED, 0), "launching": counts.get(LAUNCHING, 0)})
        return rows

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what already runs (after a restart), then fill the spares and start the upkeep loops."""
        await self.backend.setup()
        await self.reconcile()
        self.started = True
        self.start_watching()  # after the first reconcile: the events tell what happens from now on
        await self.check_space()
        self._schedule()
        self.start_upkeep()
        self.log.info("pool %s: %d spares wanted, cap %d, %d assigned adopted; image %s", self.pool_name,
                      self.warm, self.max_containers, self.count(ASSIGNED), self.backend.image)

    async def stop(self, remove_assigned: bool | None = None) -> None:
        """Stop launching, turn away waiters, remove spares; assigned containers stay unless asked."""
        remove_assigned = self.remove_assigned_on_stop if remove_assigned is None else remove_assigned
        self.closing = True
        self.stop_upkeep()
        self.stop_watching()
        if self._wakeup is not None:
            self._wakeup.cancel()
        self.turn_away(lambda: PoolClosed("pool stopping"))
        for task in list(self._launches):
            task.cancel()
        await asyncio.gather(*self._launches, return_exceptions=True)
        doomed = [s for s in self.slots.values() if s.state == SPARE or (remove_assigned and s.state == ASSIGNED)]
        await asyncio.gather(*(self._remove(s, "the pool is stopping", kind="stopping",
                                            visitor_reason="The workshop's service was stopped.") for s in doomed),
                             return_exceptions=True)
        # Renames record hand-outs for the next start's adoption, removals must not be left
        # half-done: let them finish (a finishing task may start another, hence the loop).
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        kept = self.count(ASSIGNED)
        self.log.info("pool %s stopped: %d spares removed, %d assigned containers %s", self.pool_name,
                      len(doomed) - (kept if remove_assigned else 0), kept if not remove_assigned else 0,
                      "removed" if remove_assigned else "kept for the next start")

    def _background_task(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- resize, drain ------------------------------------------------------------------------------

    def ended_reason(self, cid: str) -> str | None:
        """What ended the session in container ``cid``, in words for its visitor (if known)."""
        return self.ended.reason(cid)

    def warmup_page(self) -> str:
        """The page loaded once in a new spare (see warmup_path); '' for none."""
        return self.warmup_path if self.warmup_path is not None else self.landing_page().split("?", 1)[0]

    @observe("spawn_concurrency")
    def _concurrency_changed(self, change) -> None:
        if getattr(self, "started", False):
            asyncio.get_running_loop().create_task(self.spawn_gate.limit_changed())

    @observe("warm", "max_containers")
    def _resized(self, change) -> None:
        if not getattr(self, "started", False):
            return
        self.log.info("pool %s: %s %s -> %s", self.pool_name, change["name"], change["old"], change["new"])
        self._trim_spares()
        self._schedule()

    def _trim_spares(self) -> None:
        """Remove spares beyond warm, and beyond the cap (newest first: the oldest have waited longest)."""
        excess = max(self.available - self.target_warm, len(self.slots) - self.max_containers)
        while excess > 0 and self._spares:
            slot = self._spares.pop()
            if slot.state == SPARE:
                self.release(slot, "pool resized")
                excess -= 1

    def set_warm_floor(self, floor: int) -> None:
        """A scheduled window's spares (0: none): more are started at once, fewer trims the extra spares."""
        if floor == self.warm_floor:
            return
        self.warm_floor = floor
        if self.started and not self.closing:
            self._trim_spares()
            self._schedule()

    def retire(self) -> int:
        """Its workshop was removed: hand out nothing more, remove the spares; attendees keep theirs until
        culled. Returns how many spares go."""
        self.retired = True
        self.turn_away(lambda: PoolClosed("its workshop was removed"))
        return self.drain()

    def refill(self) -> None:
        """Start what the spares and the waiting line need now (room may have freed up elsewhere)."""
        self._schedule()

    def drain(self) -> int:
        """Replace every spare (after an image change); assigned containers are never touched.

        Returns how many spares are being replaced. Launches already under way
        are replaced too when they become ready.
        """
        self.generation += 1
        if self.static_cache is not None:
            scopes = self.live_scopes() if self.live_scopes is not None else {self.share_scope()}
            freed = self.static_cache.drop(keep={scope.encode() for scope in scopes | {self.share_scope()}})
            self.log.info("static cache: %d bytes of the drained image's files let go", freed)
        drained = 0
        while self._spares:
            slot = self._spares.popleft()
            if slot.state == SPARE:
                self.release(slot, "drained")
                drained += 1
        self._schedule()
        return drained
