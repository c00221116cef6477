"""The contract between the pool and a container engine, engine-agnostic.

A backend creates, lists, renames and removes "pool containers", reports where
each one's notebook server answers (its ``Endpoint``, which the pool checks for
readiness and the proxy routes to) and measures their disk use. Docker on one
machine is one implementation (``docker.DockerBackend``); a Swarm or
Kubernetes backend implements the same coroutines and leaves the pool
untouched. Nothing above this contract asks which engine it is.

State lives with the containers: every one carries the labels below (no
secrets), and its name records its hand-out (see ``pool.slot``), so a
restarted pool can adopt what runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

# The labels every pool container carries. The backend sets POOL_LABEL and
# ID_LABEL itself (they are how list() finds a pool's containers); the pool
# gives the others to start().
POOL_LABEL = "org.nbpool.pool"  # the pool's name
ID_LABEL = "org.nbpool.id"  # the pool's id for the container: its URL is /user/<id>/
CREATED_LABEL = "org.nbpool.created"  # wall-clock seconds at creation
IMAGE_LABEL = "org.nbpool.image"  # the image it was started from, so a restart replaces old spares
WORKSHOP_LABEL = "org.nbpool.workshop"  # the workshop it serves (named workshops only)

# Container state names the pool understands (from the engine's own words).
RUNNING = "running"
GONE = "gone"  # exited, dead, or no longer there


@dataclass(frozen=True)
class Endpoint:
    """Where the proxy reaches a container's notebook server."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class ContainerInfo:
    """What a backend reports of one pool container."""

    engine_id: str  # the engine's id (Docker's container id)
    name: str  # the engine's current name
    cid: str  # the pool's id for it: its URL is /user/<cid>/
    state: str  # RUNNING, GONE, or the engine's word for anything else
    labels: dict[str, str] = field(default_factory=dict)
    endpoint: Endpoint | None = None
    node: str = ""  # the machine it runs on (a cluster node's name; '' on a single engine)
    reason: str = ""  # why it is GONE, in words for its attendee's ended page, when the engine says
    node_active: bool = True  # False when its node takes no new containers (paused or drained for maintenance)


@dataclass
class NodeInfo:
    """One machine of the engine, as the status page and /metrics show it."""

    name: str
    address: str
    state: str  # the engine's word: ready, down, ...
    availability: str  # active, pause or drain
    role: str
    memory: int  # bytes it has
    reserved_memory: int = 0  # bytes reserved by the containers on it
    containers: int = 0  # pool containers on it (every pool of this engine)
    image: str = "ready"  # whether it has the pool's image: ready, probing, missing, unknown
    agent: str = ""  # a swarm node's agent: '' (none needed), 'guarded', or why the node is not
    cores: float = 0.0  # CPUs it has (0: not known)


@dataclass(frozen=True)
class Usage:
    """What one container uses now, as the engine measures it (for the workshop's record)."""

    memory: int  # bytes in use, without the page cache the kernel can reclaim
    memory_peak: int  # the highest the engine saw since the container started (page cache included), or memory
    cpu_seconds: float  # CPU time used since it started


# What happened to a container, as the engine's event stream tells it.
DIED = "died"  # its main process ended (the container stopped)
OOM = "oom"  # a process in it was killed at its memory limit (the container may live on)
REMOVED = "removed"  # it is gone from the engine


@dataclass(frozen=True)
class ContainerEvent:
    """One event of a pool container (see ContainerBackend.watch)."""

    kind: str  # DIED, OOM or REMOVED
    engine_id: str
    cid: str
    exit_code: int | None = None  # for DIED, when the engine says
    reason: str = ""  # for DIED, in words, when the engine knows more than an exit code (e.g. its node went down)


class BackendError(Exception):
    """A backend call failed; ``message`` says which call and why."""


class EngineUnavailable(BackendError):
    """The engine does not answer (restarting, or gone): nothing is wrong with the container or its image."""


class NoRoom(BackendError):
    """No machine can take another container now (all full, paused, or without the image): not a failed start."""


class ContainerBackend(LoggingConfigurable):
    """What the pool needs from a container engine. Every call may raise BackendError.

    A base class with the contract, in the manner of JupyterHub's Proxy: an
    engine declares ``image`` and ``disk_limit`` as its own settings and
    implements each coroutine below. ``pool`` names the pool a call is for:
    one backend may serve several pools (workshops).
    """

    image = Unicode(help="The notebook image new containers run (each engine declares it as a setting).")
    # Largest size (bytes) of a container's own files; 0: no limit. Engines
    # without a quota report usage through disk_usage() and the pool ends the
    # containers over it (Pool.disk_check_interval).
    disk_limit = 0
    # True when the engine itself stops a container's writes at disk_limit (a
    # per-container quota): the pool's watchdog then measures nothing.
    disk_quota = False

    def variant(self, config) -> ContainerBackend:
        """The same engine with one workshop's settings (``config``: the service's with the workshop's laid
        over): shares connections and setup with this one, makes containers by its own settings."""
        raise NotImplementedError

    async def has_image(self, image: str) -> bool | None:
        """Whether the engine has ``image`` (None: it cannot tell); a workshop naming a missing one is refused."""
        return None

    async def workshop_pools(self) -> dict[str, str]:
        """Pools of named workshops with containers on the engine: {pool name: workshop} (after a restart,
        a workshop no longer configured still has attendees to adopt and cull)."""
        return {}

    async def setup(self) -> None:
        """Prepare the engine before the pool's first reconcile (networks, firewall rules).

        Says once in the log what the operator should know about the engine
        (e.g. that its restarts would stop every container).
        """

    async def watch(self, pool: str, on_event: Callable[[ContainerEvent], None],
                    on_engine: Callable[[bool], None]) -> None:
        """Follow the engine's events for ``pool``'s containers until cancelled, reconnecting by itself.

        ``on_event`` gets each ContainerEvent as it happens; ``on_engine(False)``
        is called when the engine stops answering and ``on_engine(True)`` when it
        answers again (events may have been missed meanwhile: reconcile then).
        An engine without events watches nothing; the pool's reconcile pass
        remains the safety net either way.
        """
        await asyncio.Event().wait()

    async def ping(self) -> None:
        """Return when the engine answers; raise EngineUnavailable when it does not."""

    async def nodes(self) -> list[NodeInfo]:
        """The machines containers run on, for the status page and /metrics ([] if the engine cannot tell)."""
        return []

    async def free_space(self) -> int | None:
        """Bytes free where the engine keeps images and containers' files; None if it cannot tell."""
        return None

    async def start(self, pool: str, cid: str, *, name: str, token: str, base_url: str,
                    labels: dict[str, str]) -> ContainerInfo:
        """Create and start container ``cid`` of ``pool``, named ``name``, its notebook server at ``base_url``
        with ``token``, carrying ``labels`` plus POOL_LABEL and ID_LABEL. Returns it with its endpoint
        (BackendError, with the container's last output, if it has none: nothing is left behind)."""
        raise NotImplementedError

    async def list(self, pool: str) -> list[ContainerInfo]:
        """Every container of ``pool`` (by POOL_LABEL), in any state."""
        raise NotImplementedError

    async def logs(self, engine_id: str, tail: int = 50) -> str:
        """The last ``tail`` lines of a container's output ('' if unavailable)."""
        raise NotImplementedError

    async def disk_usage(self, pool: str) -> dict[str, int]:
        """Bytes each running container of ``pool`` has written (its writable layer), by engine id.

        Engines that cannot measure it return {} (the pool then ends nothing).
        """
        return {}

    async def usage(self, engine_ids: list[str]) -> dict[str, Usage]:
        """Memory and CPU of the given running containers, by engine id (those it cannot measure left out)."""
        return {}

    async def host_pid(self, engine_id: str) -> int | None:
        """The pid, on this machine, of a running container's main process, for the abuse guard to read its
        cgroup and network; None when its containers run elsewhere (or it is gone)."""
        return None

    # Whether the abuse guard reads this backend's containers through guard_reading (agents on other
    # machines) rather than through host_pid (this machine's /proc).
    guards_remotely = False

    def guard_reading(self, engine_id: str):
        """The latest reading of a container on another machine (spawner.probe.Reading), or None."""
        return None

    async def notify(self, engine_id: str, notice: dict) -> bool:
        """Leave ``notice`` ({id, type, message}) for the attendee's own JupyterLab to show (the image's
        nbpool_notice extension); False when this backend cannot reach into its containers."""
        return False

    async def put_files(self, engine_id: str, folder: str, files: dict[str, bytes]) -> bool:
        """Write ``files`` (relative paths) under ``folder`` (relative to the home folder) of a container
        nobody has touched yet, as its user, in one go; False when this backend cannot (the caller then
        writes them through the notebook server's contents API)."""
        return False

    async def promote(self, engine_id: str) -> None:
        """A container's server is ready: give it its full share of the machine (see DockerBackend.start_cpu_shares)."""

    async def rename(self, engine_id: str, name: str) -> None:
        """Give a container a new name (the pool records assignment there; labels cannot change)."""
        raise NotImplementedError

    async def remove(self, engine_id: str) -> None:
        """Stop and remove a container. Already gone, or already being removed, counts as done."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the backend's own resources (connections, threads)."""

    # --- what the service asks of the engine at start, at a reload and when it stops ------------------

    def reload_parts(self) -> list:
        """The engine's own configurable parts, besides itself, that a reload applies the config file to
        (Docker: its container firewall); a change to their settings calls ``rules_changed``."""
        return []

    def guard_with(self, *, egress_ports, egress_rate: str, agent_token: str) -> bool:
        """What the abuse guard asks of the rules the engine keeps on its machines: the egress ports it watches
        (AbuseGuard.ports()), the egress rate, and the token nodes' agents answer with (an engine uses what it
        has rules for). True when the rules must be installed again (see ``rules_changed``)."""
        return False

    async def rules_changed(self) -> None:
        """A reload changed the engine's host rules (reload_parts' settings, or guard_with): apply them again."""

    async def leave(self) -> None:
        """The service stops: what the engine keeps on the host goes once no container needs it any more, and
        the engine's connections close."""
        await self.close()
