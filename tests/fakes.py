"""Fakes for the pool's unit tests: a backend without an engine, and a clock that moves when told.

They stand in only for what a unit test cannot reach quickly (a failing
engine, hours passing); tests/test_pool_docker.py runs the same pool against
the real engine and image. The "containers" here answer readiness through one
small real HTTP server (tests/resources/echo.py), so the pool's readiness
check runs for real.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from spawner.engines.base import (
    GONE,
    ID_LABEL,
    POOL_LABEL,
    RUNNING,
    BackendError,
    ContainerBackend,
    ContainerEvent,
    ContainerInfo,
    Endpoint,
    EngineUnavailable,
    NoRoom,
)

_ENGINE_IDS = itertools.count(1)


class FakeClock:
    """A monotonic (or wall) clock that only moves when a test says so."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeContainer:
    engine_id: str
    name: str
    cid: str
    labels: dict[str, str]
    endpoint: Endpoint
    state: str = RUNNING
    logs: str = "fake server output\n"
    image: str = "fake/image:1"


class FakeBackend(ContainerBackend):
    """Containers in a dict, behind the same contract as DockerBackend. Starts can be slowed, held, or fail."""

    def __init__(self, ready_endpoint: Endpoint, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ready_endpoint = ready_endpoint  # where a healthy container's server answers
        self.start_delay = 0.0
        self.fail_starts = 0  # the next N starts fail
        self.unready_starts = 0  # the next N starts run but never answer readiness
        self.image = "fake/image:1"
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None  # when set, starts wait for it
        self.cleanup_delay = 0.0  # seconds that fetching logs and removing take (a busy engine)
        self.fail_renames = 0  # the next N renames fail (an engine that cannot record a hand-out)
        self.sizes: dict[str, int] = {}  # engine id -> bytes written, for the disk watchdog
        self.disk_limit = 0
        self.down = False  # the engine does not answer: every call raises EngineUnavailable
        self.free: int | None = None  # what free_space() reports
        self.tell = None  # the pool's on_event, once it watches
        self.tell_engine = None  # the pool's on_engine, once it watches
        self.no_room = ""  # when set, starts raise NoRoom with it (every node full, paused or without the image)

    def _answer(self, what: str) -> None:
        if self.down:
            raise EngineUnavailable(f"fake engine away ({what})")

    async def watch(self, pool, on_event, on_engine):
        self.tell, self.tell_engine = on_event, on_engine
        await asyncio.Event().wait()

    async def ping(self):
        self._answer("ping")

    async def free_space(self):
        return self.free

    def event(self, kind: str, slot, exit_code: int | None = None, reason: str = "") -> None:
        """What the engine's event stream would say about ``slot``'s container."""
        self.tell(ContainerEvent(kind, slot.engine_id, slot.cid, exit_code, reason))

    async def start(self, pool, cid, *, name, token, base_url, labels):
        self.calls.append(("start", cid))
        self._answer("start")
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.start_delay)
        if self.no_room:
            raise NoRoom(self.no_room)
        if self.fail_starts:
            self.fail_starts -= 1
            raise BackendError("fake engine refused to start it")
        endpoint = self.ready_endpoint
        if self.unready_starts:
            self.unready_starts -= 1
            endpoint = Endpoint("127.0.0.1", 9)  # nothing listens: readiness never succeeds
        engine_id = f"e{next(_ENGINE_IDS):05d}"  # unique across fakes sharing one "engine"
        self.containers[engine_id] = FakeContainer(
            engine_id, name, cid, {**labels, POOL_LABEL: pool, ID_LABEL: cid}, endpoint, image=self.image)
        return self._info(self.containers[engine_id])

    def _info(self, c: FakeContainer) -> ContainerInfo:
        return ContainerInfo(c.engine_id, c.name, c.cid, c.state, dict(c.labels), c.endpoint)

    async def list(self, pool):
        self._answer("list")
        return [self._info(c) for c in self.containers.values() if c.labels.get(POOL_LABEL) == pool]

    async def logs(self, engine_id, tail=50):
        await asyncio.sleep(self.cleanup_delay)
        c = self.containers.get(engine_id)
        return c.logs if c else ""

    async def rename(self, engine_id, name):
        self.calls.append(("rename", name))
        self._answer("rename")
        if self.fail_renames:
            self.fail_renames -= 1
            raise BackendError("fake engine refused the rename")
        if engine_id not in self.containers:
            raise BackendError("no such container")
        self.containers[engine_id].name = name

    async def disk_usage(self, pool):
        return {e: self.sizes.get(e, 0) for e, c in self.containers.items()
                if c.state == RUNNING and c.labels.get(POOL_LABEL) == pool}

    async def remove(self, engine_id):
        self.calls.append(("remove", engine_id))
        self._answer("remove")
        await asyncio.sleep(self.cleanup_delay)
        self.containers.pop(engine_id, None)

    # test helpers
    def kill(self, engine_id: str) -> None:
        self.containers[engine_id].state = GONE

    def running(self) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.state == RUNNING]
