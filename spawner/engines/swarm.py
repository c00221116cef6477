"""Docker Swarm: the pool's containers as swarm services on many machines, one replica each.

A subclass of DockerBackend because Swarm is the same engine in cluster mode:
the operator's ``c.DockerBackend`` settings (image, limits, user, command,
environment) apply unchanged, and ``c.SwarmBackend`` adds what only a cluster
has. nbpool talks to a manager only; it never reaches a worker's engine.

- **One service per notebook container**, one replica, restart condition
  ``none`` (a dead server is replaced by the pool, fresh, never restarted with
  an attendee's half state). Its labels carry the pool's state; unlike a
  container's, a service's labels can change, so the hand-out is recorded in
  NAME_LABEL (changing a service's labels does not restart its task).
- **nbpool places each one itself** (a ``node.id`` constraint): the node with
  the image, free reservations, and the fewest of this pool's containers.
  Swarm alone would place on a node that lacks the image (a failed start) or
  is full (a task pending for ever).
- **The image on a node is checked by a probe** (``swarm_images``); a node
  without it gets no spares.
- **The endpoint** is the node's address and a host-mode published port the
  engine chooses: no routing mesh, so a connection goes straight to the node
  that runs the container.
- **Swarm has no task events**: ``watch`` polls the manager every
  poll_interval and reports a task that stopped, or whose node went down or
  left, as DIED with the reason (the visitor's ended page says it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
from traitlets import Bool, Float, Integer, List, Unicode, default, validate

from ..traits import MemorySize, format_memory, require
from .base import (
    ID_LABEL,
    OOM,
    POOL_LABEL,
    RUNNING,
    WORKSHOP_LABEL,
    BackendError,
    ContainerEvent,
    ContainerInfo,
    Endpoint,
    EngineUnavailable,
    NodeInfo,
    NoRoom,
    Usage,
)
from .docker import DockerBackend
from .docker_containers import NOTEBOOK_PORT
from .swarm_agents import NodeAgents
from .swarm_cluster import (
    ENDED,
    Node,
    Snapshot,
    look,
    newest_task,
    place,
    published_port,
    service_name,
    task_status,
    task_words,
)
from .swarm_images import PROBE_LABEL, ImageProbes
from .swarm_watch import changes

NAME_LABEL = "org.nbpool.name"  # the pool's name for it (a service cannot be renamed): records the hand-out
CHECKOUT = Path(__file__).resolve().parents[2]
CLUSTER_ENDPOINT = CHECKOUT / ".cluster" / "endpoint"  # written by `make cluster`

class SwarmBackend(DockerBackend):
    """Runs each pool container as a one-replica service on a Docker Swarm, placed by nbpool."""

    docker_host = Unicode(config=True,
                          help="The swarm manager's Docker API (unix:///… or tcp://…:2376; TLS from DOCKER_TLS_VERIFY "
                               "and DOCKER_CERT_PATH). Default: the endpoint 'make cluster' wrote to .cluster/endpoint "
                               "in this checkout, else DOCKER_HOST, else the local engine.")
    mem_reservation = MemorySize(0, config=True,
                                 help="Memory each container reserves on its node (Swarm places no container where "
                                      "the reservations would exceed the node's memory). 0: the same as "
                                      "DockerBackend.mem_limit, so a full node can never run out of memory.")
    cpu_reservation = Float(0.05, config=True,
                            help="CPU each container reserves on its node, in cores (Swarm places none where the "
                                 "reservations would exceed the node's cores). Attendees are idle most of the time: "
                                 "reserving the whole cpu_limit would let a 2-core node hold 2 of them; 0.05 lets "
                                 "it hold 40, and memory is what binds first on most machines.")
    constraints = List(Unicode(), config=True,
                       help="Further Swarm placement constraints for every container, e.g. "
                            "['node.labels.nbpool == yes'] to keep them on some nodes only.")
    poll_interval = Float(2.0, config=True,
                          help="Seconds between looks at the cluster (Swarm has no task events: a container that "
                               "stopped, or a node that went down, is seen within this).")
    image_check_interval = Float(60.0, config=True,
                                 help="Seconds between image probes of a node that lacked the image.")
    probe_timeout = Float(300.0, config=True,
                          help="Seconds an image probe may take (with a registry it is what pulls the image).")
    start_wait = Float(120.0, config=True,
                       help="Seconds a new service's task may take to run (its image is on the node already).")

    node_agent = Bool(True, config=True,
                      help="Run nbpool's agent on every node (a global service of agent_image): it keeps nbpool's "
                           "egress firewall on the node, lets only nbpool's machine reach the notebook ports the "
                           "node publishes, and reports what each container does to the abuse guard, the disk "
                           "watchdog and the out-of-memory counts. Containers go only to nodes whose agent "
                           "answers, whose firewall is in place and whose containers run with "
                           "no-new-privileges. False: none of this on the nodes (docs/scale/real-machines.md says "
                           "what to do instead).")
    agent_image = Unicode("nbpool/agent:latest", config=True,
                          help="The agent's image, on every node (arch-base/agent/build.sh builds it; 'make "
                               "cluster' loads it into the local swarm's nodes).")
    agent_port = Integer(9777, config=True,
                         help="The port each node's agent answers nbpool on, on the node's own address (its "
                              "token, a Swarm secret, is needed).")
    agent_allow = List(Unicode(), [], config=True,
                       help="Addresses that may reach the notebook ports the nodes publish (nbpool's machine, as "
                            "the nodes see it). Empty: this machine's own IPv4 addresses.")

    @default("docker_host")
    def _default_docker_host(self) -> str:
        try:
            return CLUSTER_ENDPOINT.read_text().strip()
        except OSError:
            return os.environ.get("DOCKER_HOST", "")

    @validate("cpu_reservation")
    def _validate_cpu_reservation(self, proposal):
        return require(proposal, proposal.value >= 0, "0 (none) or a positive number of cores")

    @validate("poll_interval")
    def _validate_poll(self, proposal):
        return require(proposal, 0.2 <= proposal.value <= 60, "between 0.2 and 60 seconds")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._snapshot: Snapshot | None = None
        self._snapshot_lock = asyncio.Lock()
        self._images = ImageProbes(self)  # which node has which image
        self._placing: dict[str, tuple[str, int, int]] = {}  # service name -> (node id, memory, cpus) being placed
        self._agents = NodeAgents(self)
        self.agent_token = ""  # set by the application before setup (derived from nbpool's secret)
        self.agent_egress_rate = ""  # AbuseGuard.egress_rate, set by the application: the agents apply it
        self._oom_seen: dict[str, int] = {}  # service id -> oom kills its node's agent reported

    # --- the engine -----------------------------------------------------------------------------

    def _share(self, origin) -> None:
        self._placing = origin._placing  # one engine's placements, whichever workshop made them
        self._images = origin._images
        self._agents = origin._agents
        self.agent_token = origin.agent_token
        self.agent_egress_rate = origin.agent_egress_rate

    @property
    def guards_remotely(self) -> bool:  # type: ignore[override]
        return self.node_agent

    def guard_reading(self, engine_id: str):
        return self._agents.reading(engine_id) if self.node_agent else None

    def node_problem(self, node_id: str) -> str:
        """'' when containers may go to the node, else why not (its agent)."""
        return self._agents.problem(node_id) if self.node_agent else ""

    def _docker(self) -> docker.DockerClient:
        if self.origin is not None:
            return self.origin._docker()
        if self._client is None:
            env = dict(os.environ)
            if self.docker_host:
                env["DOCKER_HOST"] = self.docker_host
            self._client = docker.from_env(environment=env, timeout=int(self.docker_timeout))
        return self._client

    async def has_image(self, image: str) -> bool | None:
        return None  # the nodes hold the images (probed per node as containers are placed)

    async def workshop_pools(self) -> dict[str, str]:
        found = await self._call("list", lambda: self._docker().api.services(filters={"label": WORKSHOP_LABEL}))
        labels = [(svc.get("Spec") or {}).get("Labels") or {} for svc in found]
        return {lab[POOL_LABEL]: lab[WORKSHOP_LABEL] for lab in labels if POOL_LABEL in lab}

    async def setup(self) -> None:
        if self.origin is not None:  # a workshop's variant: the origin checked the swarm; probe our image
            self._engine_info = self.origin._engine_info
            snap = await self.refresh()
            if self.node_agent:  # (with named workshops only variants are set up: the first starts the agents)
                await self._agents.start(snap)
            await self._images.probe(snap, wait=True)
            return
        info = await self._call("info", lambda: self._docker().info())
        swarm = info.get("Swarm") or {}
        where = self.docker_host or "the local engine"
        if not swarm.get("ControlAvailable"):
            raise BackendError(
                f"SwarmBackend: {where} is not a swarm manager (swarm state {swarm.get('LocalNodeState')!r}). "
                "'make cluster' starts a local one; on real machines point SwarmBackend.docker_host at a manager.")
        self._engine_info = info
        leftovers = await self._call("list probes", self._docker().api.services,
                                     filters={"label": PROBE_LABEL})
        for svc in leftovers:
            await self.remove(svc["ID"])
        snap = await self.refresh()
        nodes = ", ".join(f"{n.hostname} ({n.state}, {n.availability})" for n in snap.nodes.values())
        self.log.info("swarm at %s: %d nodes: %s", where, len(snap.nodes), nodes)
        self.log.info("each container reserves %s and %.2g cores on its node; Swarm nodes cannot use live "
                      "restore: before restarting a node's engine, pause the node and let its attendees leave "
                      "(or drain it: they end)",
                      format_memory(self._mem_reservation()), self.cpu_reservation)
        if self.node_agent:
            await self._agents.start(snap)
        elif self.firewall.egress != "open":
            self.log.warning("SwarmBackend.node_agent is off: no egress rules, abuse guard, disk watchdog or "
                             "out-of-memory counts on the nodes; give each node its own "
                             "(docs/scale/real-machines.md)")
        await self._images.probe(snap, wait=True)

    async def ensure_network(self) -> None:
        """Services use each node's default bridge (started with icc=false); nothing to create."""

    async def free_space(self) -> int | None:
        return None  # the nodes' disks are not this machine's

    async def promote(self, engine_id: str) -> None:
        """Changing a running service's resources would restart its task: start_cpu_shares does not apply."""

    async def usage(self, engine_ids: list[str]) -> dict[str, Usage]:
        # A manager's API has no stats of containers on other nodes: usage is not recorded on a swarm.
        return {}

    async def disk_usage(self, pool: str) -> dict[str, int]:
        # The nodes' agents measure them (the manager's API cannot).
        return self._agents.disk() if self.node_agent else {}

    async def close(self) -> None:
        if self.origin is None:
            self._agents.stop()
        await super().close()

    async def host_pid(self, engine_id: str) -> int | None:
        return None  # tasks run on the nodes, out of this machine's sight (the abuse guard says so)

    async def put_files(self, engine_id: str, folder: str, files: dict[str, bytes]) -> bool:
        return False  # a task's container is on a node, out of the manager API's reach: the contents API

    async def notify(self, engine_id: str, notice: dict) -> bool:
        # A service's task runs on a node, out of the manager API's reach: its node's agent leaves it.
        return await self._agents.notice(engine_id, notice) if self.node_agent else False

    # --- a look at the cluster ------------------------------------------------------------------

    def _mem_reservation(self) -> int:
        return self.mem_reservation if self.mem_reservation else (self.mem_limit or 0)

    def _look_sync(self, pool: str | None) -> Snapshot:
        return look(self._docker().api, pool)

    async def refresh(self, pool: str | None = None) -> Snapshot:
        """A fresh look at the cluster (every pool's services unless ``pool`` is given)."""
        snap = await self._call("look at the swarm", self._look_sync, pool)
        if pool is None:
            self._snapshot = snap
        return snap

    async def _recent(self) -> Snapshot:
        """The last look if it is recent enough for placement, else a new one."""
        async with self._snapshot_lock:
            snap = self._snapshot
            if snap is None or time.monotonic() - snap.taken > self.poll_interval:
                snap = await self.refresh()
            return snap

    def _info(self, svc: dict, snap: Snapshot) -> ContainerInfo:
        labels = dict((svc.get("Spec") or {}).get("Labels") or {})
        task = snap.tasks.get(svc["ID"])
        state, reason, node = task_status(task, snap.nodes)
        port = published_port(task) if task else None
        endpoint = Endpoint(node.addr, port) if node is not None and port and state == RUNNING else None
        return ContainerInfo(engine_id=svc["ID"], name=labels.get(NAME_LABEL, svc["Spec"]["Name"]),
                             cid=labels.get(ID_LABEL, ""), state=state, labels=labels, endpoint=endpoint,
                             node=node.hostname if node else "", reason=reason,
                             node_active=node is not None and node.availability == "active"
                             and not self.node_problem(node.id))

    async def list(self, pool: str) -> list[ContainerInfo]:
        snap = await self.refresh(pool)
        return [self._info(svc, snap) for svc in snap.services.values()]

    async def nodes(self) -> list[NodeInfo]:
        snap = self._snapshot or await self.refresh()
        image = self.image
        return [NodeInfo(name=n.hostname, address=n.addr, state=n.state, availability=n.availability,
                         role=n.role, memory=n.memory, reserved_memory=n.reserved_memory, containers=n.ours,
                         image=self._images.state(n.id, image),
                         agent=(self.node_problem(n.id) or "guarded") if self.node_agent else "",
                         cores=n.cpus / 1e9)
                for n in sorted(snap.nodes.values(), key=lambda n: n.hostname)]

    # --- the backend contract ---------------------------------------------------------------------

    def _task_template(self, pool: str, cid: str, token: str, base_url: str, node_id: str) -> dict:
        spec = docker.types.ContainerSpec(
            # args, not command: a Swarm "command" replaces the image's entrypoint, Docker's only its CMD.
            self.image, args=self.spec.command(token, base_url) or None, env=self.spec.environment(token, base_url),
            user=self.user,
            labels={POOL_LABEL: pool, ID_LABEL: cid}, cap_drop=["ALL"], init=self.init_process or None,
            stop_grace_period=2_000_000_000,  # Jupyter stops in well under 2 s; then the node's memory is free
            mounts=[docker.types.Mount(inside, host, type="bind", read_only=True)
                    for host, inside in self.volumes.items()] or None,
        )
        resources = docker.types.Resources(
            cpu_limit=int(self.cpu_limit * 1e9) or None, mem_limit=self.mem_limit or None,
            cpu_reservation=int(self.cpu_reservation * 1e9) or None, mem_reservation=self._mem_reservation() or None)
        if self.pids_limit:
            resources.setdefault("Limits", {})["Pids"] = self.pids_limit
        log_driver = None
        if self.log_max_size:
            log_driver = docker.types.DriverConfig("json-file",
                                                   {"max-size": str(self.spec.log_half()), "max-file": "2"})
        return docker.types.TaskTemplate(
            spec, resources=resources, restart_policy=docker.types.RestartPolicy(condition="none"),
            placement=docker.types.Placement(constraints=[f"node.id=={node_id}", *self.constraints]),
            log_driver=log_driver)

    async def start(self, pool: str, cid: str, *, name: str, token: str, base_url: str,
                    labels: dict[str, str]) -> ContainerInfo:
        snap = await self._recent()
        memory, cpus = self._mem_reservation(), int(self.cpu_reservation * 1e9)
        # What the look counted on a node already (a service whose task has no node yet is not: it is
        # still one of ours in flight, else two starts a moment apart would both miss it).
        counted = {svc["Spec"]["Name"] for sid, svc in snap.services.items()
                   if (snap.tasks.get(sid) or {}).get("NodeID") in snap.nodes
                   and snap.tasks[sid].get("DesiredState") == "running"}
        placing = [where for sname, where in self._placing.items() if sname not in counted]
        node = place(snap, self._images.probes, placing, self.image, memory, cpus, refused=self.node_problem)
        sname = service_name(name)
        self._placing[sname] = (node.id, memory, cpus)
        try:
            made = await self._call(
                f"create service {sname}", self._docker().api.create_service,
                self._task_template(pool, cid, token, base_url, node.id), name=sname,
                labels={**labels, POOL_LABEL: pool, ID_LABEL: cid, NAME_LABEL: name},
                endpoint_spec={"Ports": [{"Protocol": "tcp", "TargetPort": NOTEBOOK_PORT, "PublishMode": "host"}]})
            try:
                return await self._until_running(made["ID"], node)
            except BaseException:
                await asyncio.shield(self._quiet(made["ID"]))
                raise
        finally:
            # Counted by the next look from now on; a look may still miss it, so keep it a poll longer.
            asyncio.get_running_loop().call_later(self.poll_interval * 2, self._placing.pop, sname, None)

    async def _until_running(self, service_id: str, node: Node) -> ContainerInfo:
        deadline = time.monotonic() + self.start_wait
        words, delay = "no task yet", 0.1
        while time.monotonic() < deadline:
            tasks = await self._call("tasks", self._docker().api.tasks, filters={"service": service_id})
            task = newest_task(tasks)
            # Placed just before the manager noticed its node was gone: the task would wait for it for ever.
            # Not the image's fault: the pool tries again on the nodes that remain.
            latest = self._snapshot.nodes.get(node.id) if self._snapshot else None
            if latest is not None and not latest.up:
                raise NoRoom(f"{node.hostname} stopped answering while a container started there")
            if task is not None:
                words = task_words(task)
                state = (task.get("Status") or {}).get("State", "")
                port = published_port(task)
                if state == "running" and port:
                    svc = await self._call("inspect service", self._docker().api.inspect_service, service_id)
                    snap = Snapshot(taken=time.monotonic(), services={service_id: svc}, tasks={service_id: task},
                                    nodes={node.id: node})
                    return self._info(svc, snap)
                if state in ENDED:
                    output = await self.logs(service_id, tail=30)
                    raise BackendError(f"service {service_id[:12]} on {node.hostname}: {words}"
                                       + (f"; its last output:\n{output}" if output else ""))
                if state == "pending" and "no suitable node" in words:
                    raise NoRoom(f"Swarm cannot place it on {node.hostname}: {words}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise BackendError(f"service {service_id[:12]} on {node.hostname} did not run within "
                           f"{self.start_wait:.0f}s ({words})")

    async def _quiet(self, service_id: str) -> None:
        with contextlib.suppress(BackendError):
            await self.remove(service_id)

    async def logs(self, engine_id: str, tail: int = 50) -> str:
        def fetch() -> str:
            try:
                chunks = self._docker().api.service_logs(engine_id, stdout=True, stderr=True, tail=tail)
                return b"".join(chunks).decode(errors="replace")
            except docker.errors.NotFound:
                return ""
        try:
            # A node that is down never answers: a short deadline, the logs are a courtesy.
            return await asyncio.wait_for(self._call("service logs", fetch), 10)
        except (BackendError, TimeoutError) as exc:
            return f"(logs unavailable: {exc or 'no answer in 10s'})"

    def _relabel_sync(self, service_id: str, name: str) -> None:
        api = self._docker().api
        for attempt in range(3):
            svc = api.inspect_service(service_id)
            spec = svc["Spec"]
            spec["Labels"] = {**(spec.get("Labels") or {}), NAME_LABEL: name}
            # The spec exactly as the manager gave it, labels aside: Swarm then leaves the task (the attendee's
            # container) alone. The SDK's update_service(fetch_current_spec=True) rewrites the task template
            # on the way, and Swarm replaces the container (measured: a new task at every hand-out).
            resp = api._post_json(api._url("/services/{0}/update", service_id), data=spec,
                                  params={"version": svc["Version"]["Index"]})
            try:
                api._raise_for_status(resp)
                return
            except docker.errors.APIError as exc:
                if "out of sequence" not in str(exc) or attempt == 2:
                    raise

    async def rename(self, engine_id: str, name: str) -> None:
        await self._call("label service", self._relabel_sync, engine_id, name)

    def _remove_sync(self, engine_id: str) -> None:
        try:
            self._docker().api.remove_service(engine_id)
        except docker.errors.NotFound:
            pass  # already gone: done

    async def remove(self, engine_id: str) -> None:
        await self._call("remove service", self._remove_sync, engine_id)

    async def retire_firewall(self) -> None:
        """No host rules to retire: see setup()."""

    async def reinstall_firewall(self) -> None:
        """No host rules to apply: see setup()."""

    def guard_with(self, *, egress_ports, egress_rate: str, agent_token: str) -> bool:
        # Its nodes' agents answer nbpool with this token (a Swarm secret) and apply the egress rate (read at
        # their start); the firewall they keep is the one these settings describe.
        self.agent_token, self.agent_egress_rate = agent_token, egress_rate
        return super().guard_with(egress_ports=egress_ports, egress_rate=egress_rate, agent_token=agent_token)

    # --- following the cluster ------------------------------------------------------------------

    async def watch(self, pool: str, on_event: Callable[[ContainerEvent], None],
                    on_engine: Callable[[bool], None]) -> None:
        """Look every poll_interval: a running task that ended (or lost its node) is DIED, a vanished one REMOVED."""
        seen: dict[str, tuple[str, str]] = {}  # service id -> (cid, state)
        up = True
        while True:
            try:
                async with self._snapshot_lock:
                    snap = await self.refresh()
            except EngineUnavailable:
                if up:
                    up = False
                    on_engine(False)
                await asyncio.sleep(self.poll_interval)
                continue
            except BackendError as exc:
                self.log.warning("swarm: %s", exc)
                await asyncio.sleep(self.poll_interval)
                continue
            if not up:
                up = True
                on_engine(True)
            now, events = changes(pool, seen, snap, self._info, self.log)
            for event in events:
                on_event(event)
            seen = now
            for sid, (cid, _) in now.items():  # kills at the memory limit, as the nodes' agents count them
                reading = self.guard_reading(sid)
                if reading is None:
                    continue
                before = self._oom_seen.get(sid)
                self._oom_seen[sid] = reading.oom_kills
                for _ in range(reading.oom_kills - before if before is not None else 0):
                    on_event(ContainerEvent(OOM, sid, cid))
            self._oom_seen = {sid: n for sid, n in self._oom_seen.items() if sid in now}
            try:
                await self._images.probe(snap)
            except BackendError as exc:
                self.log.warning("swarm image probes: %s", exc)
            await asyncio.sleep(self.poll_interval)


