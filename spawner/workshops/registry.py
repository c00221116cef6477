"""The service's workshops: one pool each, built, changed, added and removed from the operator's config.

Without ``NbpoolApp.workshops`` there is one unnamed workshop at ``/``: the
pool and engine of the service itself, exactly as before workshops existed.
With it, each named workshop gets its own pool (named ``<Pool.pool_name>-<name>``,
so restarts adopt, culls and drains stay within it), its own engine settings
(a variant of the service's engine: same connection, its own image and
limits), its own links under ``/w/<name>/``, schedule and pushed updates.

A workshop removed from the config retires: it hands nothing out, its spares
go, its attendees keep working until culled; then it is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from traitlets.config import Config

from .. import reload as settings
from ..backoff import every
from ..engines.base import ContainerBackend
from ..pool.gate import FairGate
from ..pool.pool import Pool
from ..pool.slot import ASSIGNED
from ..secret import ServerSecret
from .cap import TotalCap
from .push import Updates
from .schedule import StartRate, WorkshopSchedule
from .spec import NAME_OK, WorkshopError, WorkshopSpec

TICK = 5.0  # seconds between looks at the schedules and the retiring workshops


class Workshop:
    """One workshop: its pool and engine, links, schedule and pushed updates."""

    def __init__(self, name: str, spec: WorkshopSpec | None, pool: Pool, web, updates: Updates,
                 schedule: WorkshopSchedule):
        self.name = name
        self.spec = spec
        self.pool = pool
        self.web = web
        self.updates = updates
        self.schedule = schedule
        self.active = True  # False once removed from the config (retiring)

    @property
    def prefix(self) -> str:
        """Its links' prefix: '/w/<name>' ('' for the service's one unnamed workshop)."""
        return f"/w/{self.name}" if self.name else ""

    @property
    def display_name(self) -> str:
        return self.spec.display_name if self.spec is not None else self.web.workshop_name

    @property
    def landing_path(self) -> str:
        if self.spec is not None and self.spec.landing_path is not None:
            return self.spec.landing_path
        return self.web.landing_path

    @property
    def key(self) -> str:
        if self.spec is not None and self.spec.key is not None:
            return self.spec.key
        return self.web.workshop_key

    @property
    def helper_key(self) -> str:
        """The class view's key for this workshop's teaching team (its spec's, else one derived for it)."""
        if self.spec is not None and self.spec.helper_key is not None:
            return self.spec.helper_key
        return self.web.helper_key_for(self.name)

    @property
    def instructor_key(self) -> str:
        """The key that makes a session the instructor's, whom attendees follow (its spec's, else derived)."""
        if self.spec is not None and self.spec.instructor_key is not None:
            return self.spec.instructor_key
        return self.web.instructor_key_for(self.name)

    @property
    def push_folder(self) -> str:
        return self.spec.push_folder if self.spec is not None else ""

    def stats(self) -> dict:
        summary = self.pool.summary()
        return {"name": self.name, "display_name": self.display_name, "active": self.active,
                "image": self.pool.backend.image, "url": f"{self.prefix}/", **summary}

    def status(self) -> dict:
        """What the status page shows of it."""
        return {**self.stats(), "landing_path": self.landing_path, "schedule": self.schedule.status(),
                "push": self.updates.status(), "push_folder": self.push_folder, "key": bool(self.key),
                "problems": self.pool.problems(), "spawn_seconds": self.pool.stats.spawn_summary()}


class Workshops:
    """Every workshop of the service, found by name or by URL; the service-wide cap; the schedules' loop."""

    def __init__(self, *, engine, make_pool: Callable[..., Pool], web, keeper, secret, data_dir: Path, log,
                 total: int = 0, clock: Callable[[], float] | None = None, material=None):
        self.engine = engine  # the service's engine (the unnamed workshop's)
        self.make_pool = make_pool  # make_pool(**kwargs) -> Pool wired to the proxy, web app and record
        self.web = web
        self.keeper = keeper
        self.secret = secret
        self.data_dir = data_dir
        self.log = log
        self.named = False
        self.active: dict[str, Workshop] = {}
        self.retiring: dict[str, Workshop] = {}
        self.cap = TotalCap(total, self.pools)
        self.rate = StartRate(data_dir / "start_rate.json", self._launches,
                              lambda: [i for w in self.all() for i in w.pool.stats.launch_intervals])
        self.clock = clock
        self.material = material  # git material (content.Material), poured into each workshop's containers
        self._task: asyncio.Task | None = None
        # Starts in flight across every workshop: the service's Pool.spawn_concurrency (as the pools have it).
        self.spawn_gate = FairGate(lambda: next((w.pool.spawn_concurrency for w in self.active.values()), 4))

    # --- finding ---------------------------------------------------------------------------------

    def all(self) -> list[Workshop]:
        return [*self.active.values(), *self.retiring.values()]

    def pools(self) -> list[Pool]:
        return [w.pool for w in self.all()]

    def _launches(self) -> list[float]:
        return [s for w in self.all() for s in w.pool.stats.spawn_seconds[-50:]]

    def get(self, name: str) -> Workshop | None:
        """An active workshop by name ('' : the unnamed one, when there are no named ones)."""
        return self.active.get(name)

    def of_cid(self, cid: str) -> Workshop | None:
        """The workshop container ``cid`` belongs (or belonged) to, if known."""
        for ws in self.all():
            if cid in ws.pool.slots:
                return ws
        kept = self.keeper.sessions.get(cid) if self.keeper is not None else None
        if kept is not None:
            return self.get(kept.workshop)
        return None

    @property
    def default(self) -> Workshop | None:
        """The workshop at '/' (None when the service has named workshops: '/' lists them)."""
        return None if self.named else self.active.get("")

    # --- building ----------------------------------------------------------------------------------

    def _build(self, name: str, spec: WorkshopSpec | None, config: Config | None) -> Workshop:
        """A workshop's parts (its pool not started yet); ``spec`` None: the service's one unnamed workshop
        (``config`` None: the service's own settings as loaded at start)."""
        updates = Updates(name, self.data_dir / "pushed" / (name or "_"), self.secret, self.keeper, self.log)
        backend = self.engine if spec is None else self.engine.variant(config)
        if self.material is not None:
            self.material.configure(name, spec.content if spec is not None else self.material.sources.get(name, []))

        async def fill(slot) -> None:  # the git material first: a push (a later fix) wins over it
            if self.material is not None:
                await self.material.into_spare(name, slot, backend)
            await updates.into_spare(slot)

        made: list[Workshop] = []  # (the pool asks its workshop's landing page only once it runs)
        pool = self.make_pool(
            backend=backend, config=config, workshop=name if spec is not None else "",
            **({"pool_name": f"{self._base_pool_name(config)}-{name}"} if spec is not None else {}),
            spawn_gate=self.spawn_gate.share(object()),  # one machine (or cluster): one limit on starts in flight
            shared_room=self.cap.room, on_freed=self.cap.freed, on_spare=fill,
            live_scopes=lambda: {p.share_scope() for p in self.pools()}, landing_page=lambda: made[0].landing_path)
        schedule = WorkshopSchedule(name or "(default)", spec.windows if spec else [], pool, self.rate, self.log,
                                    **({"clock": self.clock} if self.clock else {}))
        made.append(Workshop(name, spec, pool, self.web, updates, schedule))
        return made[0]

    @staticmethod
    def _base_pool_name(config: Config) -> str:
        return config.Pool.get("pool_name", Pool.pool_name.default_value) if "Pool" in config else \
            Pool.pool_name.default_value

    async def start(self, specs: dict[str, WorkshopSpec] | None, config: Config) -> None:
        """Build and start the workshops (``specs`` None: the one unnamed workshop)."""
        self.named = specs is not None
        if specs is None:
            self.active[""] = self._build("", None, None)
        else:
            for name, spec in specs.items():
                self.active[name] = self._build(name, spec, spec.config(config, type(self.engine).__name__))
        for ws in self.active.values():
            await ws.pool.start()
        await self._adopt_removed(config)
        self._warn_cap()
        self._task = asyncio.get_running_loop().create_task(every(lambda: TICK, self.tick, self.log,
                                                                  "workshops: schedules"))

    async def _adopt_removed(self, config: Config) -> None:
        """Attendees of workshops removed from the config while nbpool was down: adopted by a retiring pool
        each (no hand-outs, spares removed), culled as usual; the workshop is gone once they have left."""
        base = self._base_pool_name(config)
        found = await self.engine.workshop_pools()
        configured = {ws.pool.pool_name for ws in self.active.values()}
        for pool_name, name in sorted(found.items()):
            if pool_name in configured or pool_name != f"{base}-{name}" or not NAME_OK.match(name):
                continue  # another service's pool on the same engine, or one of ours still configured
            spec = WorkshopSpec(name=name, display_name=name, landing_path=None, key=None, helper_key=None,
                                push_folder="")
            ws = self._build(name, spec, spec.config(config, type(self.engine).__name__))
            ws.active = False
            ws.pool.retired = True
            self.retiring[name] = ws
            await ws.pool.start()
            self.log.info("workshop %s is no longer in the config: its %d attendees keep working until culled",
                          name, ws.pool.count(ASSIGNED))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for ws in self.all():
            if ws.updates.task is not None:
                ws.updates.task.cancel()
        await asyncio.gather(*(ws.pool.stop() for ws in self.all()))

    async def tick(self) -> None:
        for ws in self.active.values():
            ws.schedule.tick()
        for name, ws in list(self.retiring.items()):
            if not ws.pool.slots:
                del self.retiring[name]
                await ws.pool.stop()
                self.log.info("workshop %s: its last attendee has left; it is gone", name)

    def _warn_cap(self) -> None:
        total = self.cap.total
        if not total:
            return
        asked = sum(w.pool.max_containers for w in self.active.values())
        shares = self.cap.shares()
        self.log.info("service-wide cap %d containers (the workshops' own caps add up to %d): shares %s", total,
                      asked, ", ".join(f"{w.name or '(default)'} {shares.get(w.pool, 0)}"
                                       for w in self.active.values()))

    def set_total(self, total: int) -> None:
        """A new service-wide cap (a reload): every pool consults it from now on."""
        self.cap.total = total
        for pool in self.pools():
            pool.refill()

    # --- a reload ----------------------------------------------------------------------------------

    async def check(self, specs: dict[str, WorkshopSpec] | None, config: Config, engine_factory) -> None:
        """Raise WorkshopError naming the first bad setting: each workshop's settings build a throwaway pool
        and engine (spawner.reload.check), and each image a workshop names must exist on the engine."""
        for name, spec in (specs or {}).items():
            merged = spec.config(config, type(self.engine).__name__)
            try:
                settings.check(merged, lambda c: engine_factory(config=c),
                               lambda c: Pool(config=c, backend=ContainerBackend(), secret=ServerSecret(b"x" * 32)))
            except ValueError as exc:
                raise WorkshopError(f"workshops[{name!r}]: {exc}") from None
            if spec.image:
                known = await self.engine.has_image(spec.image)
                if known is False:
                    raise WorkshopError(f"workshops[{name!r}].image: {spec.image!r} does not exist on the engine "
                                        "('make images' builds nbpool's; docker images lists what there is)")

    async def apply(self, specs: dict[str, WorkshopSpec] | None, config: Config) -> None:
        """Make the workshops what ``specs`` says: add new ones, change the others, retire removed ones."""
        if specs is None and not self.named:
            return  # the unnamed workshop follows the service's own settings (start.py applies them)
        want = specs or {}
        for name in [n for n in self.active if n not in want]:
            ws = self.active.pop(name)
            ws.active = False
            if self.material is not None:
                self.material.configure(name, [])
            drained = ws.pool.retire()
            self.retiring[name] = ws
            self.log.info("workshop %s removed: no new attendees, %d spares removed, %d attendees keep "
                          "working until culled", name or "at /", drained, ws.pool.count(ASSIGNED))
        for name, spec in want.items():
            merged = spec.config(config, type(self.engine).__name__)
            ws = self.active.get(name)
            if ws is None:
                if name in self.retiring:
                    self.log.info("workshop %s is back in the config: its remaining attendees stay with the "
                                  "retiring pool; new ones get a fresh one", name)
                self._set_aside(name)
                ws = self._build(name, spec, merged)
                self.active[name] = ws
                await ws.pool.start()
                if self.material is not None and spec.content:
                    asyncio.get_running_loop().create_task(self.material.pull(name))
                self.log.info("workshop %s added: %s, %d warm, cap %d, image %s, at /w/%s/", name, spec.display_name,
                              ws.pool.warm, ws.pool.max_containers, ws.pool.backend.image, name)
                continue
            self._change(ws, spec, merged)
        if specs is None:  # back to one workshop at '/', with the service's own settings
            self._set_aside("")
            ws = self._build("", None, config)
            self.active[""] = ws
            self.named = False
            await ws.pool.start()
            self.log.info("NbpoolApp.workshops was removed: the named workshops retire; '/' serves the "
                          "service's own pool again")
        self.named = specs is not None
        self._warn_cap()

    def _set_aside(self, name: str) -> None:
        """A retiring workshop whose name comes back: it keeps its attendees under another key (the name
        now finds the new one)."""
        old = self.retiring.pop(name, None)
        if old is not None:
            self.retiring[f"{name}~{id(old)}"] = old

    def _change(self, ws: Workshop, spec: WorkshopSpec, merged: Config) -> None:
        old_image = ws.pool.backend.image
        merged.Pool.pool_name = ws.pool.pool_name  # a workshop's is derived from the service's, at its start
        for obj in (ws.pool, ws.pool.backend):  # what changed is logged as "applied workshop <name> <Class>"
            settings.apply_checked(obj, merged, self.log, f"workshop {ws.name} {type(obj).__name__}")
        ws.spec = spec
        if self.material is not None and self.material.configure(ws.name, spec.content):
            self.log.info("workshop %s: its content is now %s", ws.name,
                          "; ".join(s.describe() for s in spec.content) or "none")
            asyncio.get_running_loop().create_task(self.material.pull(ws.name))
        ws.schedule.windows = spec.windows
        ws.schedule._explained = False  # say again what the windows will do
        if ws.pool.backend.image != old_image:
            drained = ws.pool.drain()
            self.log.info("workshop %s: image %s -> %s: replacing %d spares; attendees keep theirs", ws.name,
                          old_image, ws.pool.backend.image, drained)
