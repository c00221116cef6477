"""The warm pool: ready spares handed out in constant time, refilled, capped and queued.

A container's life: LAUNCHING (created, its server not answering yet) ->
SPARE (ready, routed, waiting for a visitor) -> ASSIGNED (handed out) ->
REMOVING (route gone first, then the container). ``warm`` counts ready,
unassigned spares; ``max_containers`` caps everything together.

``Pool`` keeps the settings, the counts, resizing and drains, and puts together its parts, each a plain
class given what it uses: the shared state (``state.PoolState``), launches (``launch.Launches``, whose
``schedule`` is the one "look again at what is needed" the others are given), hand-outs and the waiting
line (``handout.Handouts``), removals (``removal.Removals``), culling and reconciliation
(``upkeep.Upkeep``) and the engine's events and health (``events.EngineWatch``).
"""

from __future__ import annotations

import asyncio
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
from .events import EngineWatch, gib
from .gate import FairGate
from .handout import Handouts
from .launch import Launches
from .removal import Removals
from .routing import SlotRoutes
from .slot import ASSIGNED, NAME_OK, SPARE, Slot
from .state import PoolState
from .ticket import Ticket
from .upkeep import Upkeep

__all__ = ["Pool", "Ticket"]


class Pool(LoggingConfigurable):
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
    spawn_gate = Any(None, allow_none=True,
                     help="This pool's share of the starts in flight (gate.GateShare); None: a gate of its own, "
                          "spawn_concurrency wide.")
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

    _built = False  # the parts exist (trait observers fire during construction too)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.warm > self.max_containers:
            self.log.warning("Pool.warm (%d) is above max_containers (%d): only %d spares can exist",
                             self.warm, self.max_containers, self.max_containers)
        if self.spawn_gate is None:  # (a pool of its own; several workshops share one: the same machine)
            self.spawn_gate = FairGate(lambda: self.spawn_concurrency).share(self)
        self.state = PoolState()
        state, log = self.state, self.log
        # The hooks are read when used: a workshop's registry sets some after the pool is made.
        record = self._record
        self.routing = SlotRoutes(lambda: self.routes, self.secret,
                                  lambda slot: self.route_options(slot) if self.route_options else {},
                                  self.share_scope)
        self.removals = Removals(state, backend=self.backend, routes=self.routing, ended=self.ended,
                                 keeper=lambda: self.keeper, record=record, wallclock=self.wallclock, log=log,
                                 wake=self._schedule, freed=self._freed, unopened_timeout=lambda: self.unopened_timeout)
        self.handouts = Handouts(state, settings=self, backend=self.backend, release=self.removals.release,
                                 wake=self._schedule, record=record, clock=self.clock, wallclock=self.wallclock,
                                 log=log, engine_up=lambda: self.events.engine_up,
                                 engine_lost=lambda: self.events.on_engine(False),
                                 breaker=lambda: self.consecutive_failures if self.breaker_open else 0)
        self.launches = Launches(state, settings=self, backend=self.backend, secret=self.secret,
                                 gate=lambda: self.spawn_gate, routes=self.routing,
                                 give_to_next_waiter=self.handouts.give_to_next_waiter,
                                 turn_away=self.handouts.turn_away, release=self.removals.release,
                                 remove_quietly=self.removals.quietly, keeper=lambda: self.keeper,
                                 on_spare=lambda: self.on_spare, can_launch=lambda: self.events.can_launch,
                                 engine_lost=lambda: self.events.on_engine(False), record=record, clock=self.clock,
                                 wallclock=self.wallclock, log=log)
        self.upkeep = Upkeep(state, settings=self, backend=self.backend, secret=self.secret,
                             removals=self.removals, routes=self.routing, engine_up=lambda: self.events.engine_up,
                             check_space=lambda: self.events.check_space(), trim_spares=self._trim_spares,
                             wake=self._schedule, record=record, clock=self.clock, wallclock=self.wallclock,
                             log=log)
        self.events = EngineWatch(state, settings=self, backend=self.backend, release=self.removals.release,
                                  end=self.removals.end, reconcile=self.upkeep.reconcile,
                                  serve_line=self.handouts.serve_line_from_spares,
                                  engine_returned=self.launches.engine_returned, wake=self._schedule,
                                  record=record, clock=self.clock, log=log)
        self._built = True

    def _schedule(self) -> None:
        """Start what the spares and the waiting line need now (Launches.schedule)."""
        self.launches.schedule()

    def _record(self, event: str, /, **fields) -> None:
        self.record(event, **fields)

    def _freed(self) -> None:
        if self.on_freed is not None:
            self.on_freed(self)

    # --- the parts' state, as the rest of nbpool reads it ---------------------------------------------

    @property
    def slots(self) -> dict[str, Slot]:
        return self.state.slots

    @property
    def stats(self):
        return self.state.stats

    @property
    def closing(self) -> bool:
        return self.state.closing

    @closing.setter
    def closing(self, value: bool) -> None:
        self.state.closing = value

    @property
    def retired(self) -> bool:
        return self.state.retired

    @retired.setter
    def retired(self, value: bool) -> None:
        self.state.retired = value

    @property
    def warm_floor(self) -> int:
        return self.state.warm_floor

    @property
    def engine_up(self) -> bool:
        return self.events.engine_up

    @property
    def consecutive_failures(self) -> int:
        return self.launches.consecutive_failures

    @property
    def node_info(self) -> list:
        return self.upkeep.node_info

    # --- counts ---------------------------------------------------------------------------------

    def share_scope(self) -> str:
        """What containers launched now share (their image's files): the image, and the drain generation."""
        return f"{self.backend.image}#{self.state.generation}"

    @property
    def target_warm(self) -> int:
        """Spares to keep now: ``warm``, or more while a scheduled window asks for them; none once retired."""
        return 0 if self.state.retired else max(self.warm, self.state.warm_floor)

    def room(self) -> int:
        """Containers this pool may still start: its own cap, and the service-wide one's share for it."""
        own = self.max_containers - len(self.state.slots)
        return min(own, self.shared_room(self)) if self.shared_room is not None else own

    def count(self, state: str) -> int:
        return self.state.count(state)

    @property
    def available(self) -> int:
        """Ready spares."""
        return self.state.available

    @property
    def launching(self) -> int:
        """Launches under way (created or waiting for a start slot, not yet ready or failed)."""
        return self.state.launching

    @property
    def breaker_open(self) -> bool:
        return self.launches.breaker_open

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """What keeps the pool from serving fully, in words for /healthz and the status page."""
        out, events = [], self.events
        if not events.engine_up:
            out.append(f"the container engine does not answer (for {self.clock() - events.engine_down_since:.0f}s)")
        if self.breaker_open:
            out.append(f"circuit breaker open after {self.consecutive_failures} failed starts")
        if self.launches.no_room:
            out.append(self.launches.no_room)
        if events.disk_low:
            out.append(f"only {gib(events.disk_free)} free on the engine's disk "
                       f"(min_free_disk {gib(self.min_free_disk)}): no new containers")
        return out

    def summary(self) -> dict:
        """The numbers /api/stats shows."""
        return {"available": self.available, "assigned": self.count(ASSIGNED), "launching": self.launching,
                "capacity": self.max_containers, "queue": len(self.state.queue), "warm": self.target_warm}

    def nodes(self) -> list[dict]:
        """The engine's machines with this pool's containers on each (from the last reconcile and the slots)."""
        return self.upkeep.nodes()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what already runs (after a restart), then fill the spares and start the upkeep loops."""
        await self.backend.setup()
        await self.upkeep.reconcile()
        self.state.started = True
        self.events.start_watching()  # after the first reconcile: the events tell what happens from now on
        await self.events.check_space()
        self._schedule()
        self.upkeep.start()
        self.log.info("pool %s: %d spares wanted, cap %d, %d assigned adopted; image %s", self.pool_name,
                      self.warm, self.max_containers, self.count(ASSIGNED), self.backend.image)

    async def stop(self, remove_assigned: bool | None = None) -> None:
        """Stop launching, turn away waiters, remove spares; assigned containers stay unless asked."""
        remove_assigned = self.remove_assigned_on_stop if remove_assigned is None else remove_assigned
        state = self.state
        state.closing = True
        self.upkeep.stop()
        self.events.stop_watching()
        self.launches.stop()
        self.handouts.turn_away(lambda: PoolClosed("pool stopping"))
        for task in list(state.launches):
            task.cancel()
        await asyncio.gather(*state.launches, return_exceptions=True)
        doomed = [s for s in state.slots.values() if s.state == SPARE or (remove_assigned and s.state == ASSIGNED)]
        await asyncio.gather(*(self.removals.end(s, "the pool is stopping", kind="stopping",
                                                 visitor_reason="The workshop's service was stopped.")
                               for s in doomed), return_exceptions=True)
        # Renames record hand-outs for the next start's adoption, removals must not be left
        # half-done: let them finish (a finishing task may start another, hence the loop).
        while state.background:
            await asyncio.gather(*list(state.background), return_exceptions=True)
        kept = self.count(ASSIGNED)
        self.log.info("pool %s stopped: %d spares removed, %d assigned containers %s", self.pool_name,
                      len(doomed) - (kept if remove_assigned else 0), kept if not remove_assigned else 0,
                      "removed" if remove_assigned else "kept for the next start")

    # --- resize, drain ------------------------------------------------------------------------------

    def ended_reason(self, cid: str) -> str | None:
        """What ended the session in container ``cid``, in words for its visitor (if known)."""
        return self.ended.reason(cid)

    def warmup_page(self) -> str:
        """The page loaded once in a new spare (see warmup_path); '' for none."""
        return self.warmup_path if self.warmup_path is not None else self.landing_page().split("?", 1)[0]

    @observe("spawn_concurrency")
    def _concurrency_changed(self, change) -> None:
        if self._built and self.state.started:
            asyncio.get_running_loop().create_task(self.spawn_gate.limit_changed())

    @observe("warm", "max_containers")
    def _resized(self, change) -> None:
        if not (self._built and self.state.started):
            return
        self.log.info("pool %s: %s %s -> %s", self.pool_name, change["name"], change["old"], change["new"])
        self._trim_spares()
        self._schedule()

    def _trim_spares(self) -> None:
        """Remove spares beyond warm, and beyond the cap (newest first: the oldest have waited longest)."""
        excess = max(self.available - self.target_warm, len(self.slots) - self.max_containers)
        spares = self.state.spares
        while excess > 0 and spares:
            slot = spares.pop()
            if slot.state == SPARE:
                self.removals.release(slot, "pool resized")
                excess -= 1

    def set_warm_floor(self, floor: int) -> None:
        """A scheduled window's spares (0: none): more are started at once, fewer trims the extra spares."""
        if floor == self.state.warm_floor:
            return
        self.state.warm_floor = floor
        if self.state.started and not self.state.closing:
            self._trim_spares()
            self._schedule()

    def retire(self) -> int:
        """Its workshop was removed: hand out nothing more, remove the spares; attendees keep theirs until
        culled. Returns how many spares go."""
        self.state.retired = True
        self.handouts.turn_away(lambda: PoolClosed("its workshop was removed"))
        return self.drain()

    def refill(self) -> None:
        """Start what the spares and the waiting line need now (room may have freed up elsewhere)."""
        self._schedule()

    def drain(self) -> int:
        """Replace every spare (after an image change); assigned containers are never touched.

        Returns how many spares are being replaced. Launches already under way
        are replaced too when they become ready.
        """
        self.state.generation += 1
        if self.static_cache is not None:
            scopes = self.live_scopes() if self.live_scopes is not None else {self.share_scope()}
            freed = self.static_cache.drop(keep={scope.encode() for scope in scopes | {self.share_scope()}})
            self.log.info("static cache: %d bytes of the drained image's files let go", freed)
        drained = 0
        spares = self.state.spares
        while spares:
            slot = spares.popleft()
            if slot.state == SPARE:
                self.removals.release(slot, "drained")
                drained += 1
        self._schedule()
        return drained

    # --- what the rest of nbpool asks of the pool: its parts' public methods ---------------------------

    async def take_spare(self, owner: str = "", embedded: bool = False) -> Slot | None:
        return await self.handouts.take_spare(owner, embedded)

    def enqueue(self, owner: str = "", embedded: bool = False) -> Ticket:
        return self.handouts.enqueue(owner, embedded)

    async def acquire(self, timeout: float | None = None, owner: str = "") -> Slot:
        return await self.handouts.acquire(timeout, owner)

    def holdings(self, owner: str | None = None) -> int:
        return self.handouts.holdings(owner)

    def turn_away(self, error) -> None:
        self.handouts.turn_away(error)

    async def mark_instructor(self, slot: Slot) -> None:
        await self.handouts.mark_instructor(slot)

    def release(self, slot: Slot, reason: str, visitor_reason: str = "", kind: str = "other") -> None:
        self.removals.release(slot, reason, visitor_reason, kind)

    async def remove(self, cid: str, reason: str = "removed by an operator") -> bool:
        return await self.removals.remove(cid, reason)

    async def give_up_unopened(self, slot: Slot) -> None:
        await self.removals.give_up_unopened(slot)

    async def end_for_abuse(self, slot: Slot, reason: str, visitor_reason: str) -> None:
        await self.removals.end_for_abuse(slot, reason, visitor_reason)

    async def reconcile(self) -> None:
        await self.upkeep.reconcile()

    async def cull_once(self) -> int:
        return await self.upkeep.cull_once()

    def cull_candidates(self) -> list[tuple[Slot, str, str, str]]:
        return self.upkeep.cull_candidates()

    async def check_disk(self) -> int:
        return await self.upkeep.check_disk()

    async def check_space(self) -> None:
        await self.events.check_space()

    def on_container_event(self, event) -> None:
        self.events.on_container_event(event)

    def on_engine(self, up: bool) -> None:
        self.events.on_engine(up)
