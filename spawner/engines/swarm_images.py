"""Which Swarm node has which image: a one-shot service of the image running ``true`` on that node (a probe).

Complete: the node has it; rejected: it lacks it (and gets no spares; probed again every
``SwarmBackend.image_check_interval``). With a registry, the probe is what pulls, never an attendee's start.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import docker

from .base import BackendError
from .swarm_cluster import ENDED, Probe, Snapshot, newest_task, task_words

PROBE_LABEL = "org.nbpool.probe"  # an image probe, not a pool container


class ProbeHost(Protocol):
    """What the probes use of the Swarm backend (SwarmBackend): its client, settings, snapshot and removals."""

    image: str
    user: str
    image_check_interval: float
    probe_timeout: float
    log: Any
    _snapshot: Snapshot | None

    def _docker(self) -> docker.DockerClient: ...

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]: ...

    def remove(self, engine_id: str) -> Awaitable[None]: ...


class ImageProbes:
    """The probes of one engine (a backend and its workshops' variants share them), by (node id, image)."""

    def __init__(self, backend: ProbeHost):
        self.backend = backend  # its client, settings (image, user, intervals), snapshot and removals
        self.probes: dict[tuple[str, str], Probe] = {}

    def state(self, node_id: str, image: str) -> str:
        return self.probes.get((node_id, image), Probe()).state

    def _spec(self, node_id: str) -> dict:
        backend = self.backend
        spec = docker.types.ContainerSpec(backend.image, command=["true"], user=backend.user,
                                          labels={PROBE_LABEL: "1"})
        return docker.types.TaskTemplate(spec, restart_policy=docker.types.RestartPolicy(condition="none"),
                                         placement=docker.types.Placement(constraints=[f"node.id=={node_id}"]))

    async def probe(self, snap: Snapshot, wait: bool = False) -> None:
        """Start a probe on every node whose image is unknown (or was missing long enough); check running ones."""
        backend = self.backend
        now = time.monotonic()
        image = backend.image
        for node in snap.nodes.values():
            if not node.up or node.availability != "active":
                continue
            probe = self.probes.setdefault((node.id, image), Probe())
            stale = probe.state == "missing" and now - probe.since > backend.image_check_interval
            if probe.state == "unknown" or stale:
                name = f"nbpool-probe-{node.id[:12]}-{secrets.token_hex(3)}"
                try:
                    made = await backend._call("probe", backend._docker().api.create_service, self._spec(node.id),
                                            name=name, labels={PROBE_LABEL: "1"})
                except BackendError as exc:
                    backend.log.warning("could not probe node %s for image %s: %s", node.hostname, image, exc)
                    probe.state, probe.since = "missing", now
                    continue
                probe.state, probe.service, probe.since = "probing", made["ID"], now
        deadline = now + backend.probe_timeout
        while True:
            probing = [(key, p) for key, p in self.probes.items() if p.state == "probing"]
            for key, probe in probing:
                await self._check(key, probe)
            if not wait or not any(p.state == "probing" for p in self.probes.values()):
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.5)

    async def _check(self, key: tuple[str, str], probe: Probe) -> None:
        backend = self.backend
        tasks = await backend._call("probe tasks", backend._docker().api.tasks, filters={"service": probe.service})
        task = newest_task(tasks)
        state = ((task or {}).get("Status") or {}).get("State", "")
        words = task_words(task) if task else "no task"
        node = backend._snapshot.nodes.get(key[0]) if backend._snapshot else None
        where = node.hostname if node else key[0][:12]
        if state == "complete" or (state == "failed" and "non-zero exit" in words):
            probe.state = "ready"  # it ran: the image is there
            backend.log.info("image %s is on node %s", key[1], where)
        elif state in ENDED:
            probe.state = "missing"
            backend.log.warning("node %s lacks image %s, so it gets no containers (probed again in %.0fs): %s",
                             where, key[1], backend.image_check_interval, words)
        elif time.monotonic() - probe.since > backend.probe_timeout:
            probe.state = "missing"
            backend.log.warning("image probe on node %s timed out: %s", where, words)
        else:
            return
        probe.since = time.monotonic()
        await backend.remove(probe.service)

