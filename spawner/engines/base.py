"""The container backend interface the pool drives, engine-agnostic.

A backend creates, lists, inspects and removes "pool containers". Docker is
one implementation (``docker_backend.DockerBackend``); a Swarm or Kubernetes
backend would implement the same few coroutines and leave the pool untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

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
    image: str = ""


class BackendError(Exception):
    """A backend call failed; ``message`` says which call and why."""


class ContainerBackend(LoggingConfigurable):
    """What the pool needs from a container engine. Every call may raise BackendError.

    A base class with the contract, in the manner of JupyterHub's Proxy: an
    engine implements each coroutine below.
    """

    pool_name = Unicode("nbpool", help="Only containers labelled with this pool name are this backend's.")
    # Largest size (bytes) of a container's own files; 0: no limit. Engines
    # without a quota report usage through disk_usage() and the pool ends the
    # containers over it (Pool.disk_check_interval).
    disk_limit = 0

    async def setup(self) -> None:
        """Prepare the engine before the pool's first reconcile (networks, firewall rules)."""

    async def start(self, cid: str, *, token: str, base_url: str, labels: dict[str, str],
                    name: str | None = None) -> ContainerInfo:
        """Create and start a container for ``cid``; returns it with its endpoint."""
        raise NotImplementedError

    async def list(self) -> list[ContainerInfo]:
        """Every container of this pool (by label), in any state."""
        raise NotImplementedError

    async def inspect(self, engine_id: str) -> ContainerInfo | None:
        """One container's current state, or None if it no longer exists."""
        raise NotImplementedError

    async def logs(self, engine_id: str, tail: int = 50) -> str:
        """The last ``tail`` lines of a container's output ('' if unavailable)."""
        raise NotImplementedError

    async def disk_usage(self) -> dict[str, int]:
        """Bytes each running container of this pool has written (its writable layer), by engine id.

        Engines that cannot measure it return {} (the pool then ends nothing).
        """
        return {}

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
