"""What the Swarm backend knows of the cluster: nodes, this pool's services and their tasks, image probes,
and where the next container goes. Plain data and pure functions over the manager's answers, so the
backend (swarm.py) keeps only the engine calls and the contract.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..traits import format_memory
from .base import GONE, POOL_LABEL, RUNNING, NoRoom
from .docker_containers import NOTEBOOK_PORT

SERVICE_NAME_BAD = re.compile(r"[^A-Za-z0-9-]")

# Task states (Swarm's words) it never leaves; any other but "running" is on the way there.
ENDED = {"complete", "shutdown", "failed", "rejected", "orphaned", "remove"}


@dataclass
class Node:
    """A swarm node as placement sees it."""

    id: str
    hostname: str
    addr: str
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    role: str
    memory: int  # bytes the node has
    cpus: int  # nano-CPUs the node has
    reserved_memory: int = 0  # by every running task on it (any service)
    reserved_cpus: int = 0
    ours: int = 0  # nbpool's containers on it (the looked-at pool's, or every pool's)

    @property
    def up(self) -> bool:
        return self.state == "ready"


@dataclass
class Snapshot:
    """One look at the cluster: this pool's services with their tasks, and the nodes."""

    taken: float
    services: dict[str, dict] = field(default_factory=dict)  # service id -> service
    tasks: dict[str, dict] = field(default_factory=dict)  # service id -> its newest task
    nodes: dict[str, Node] = field(default_factory=dict)  # node id -> node


@dataclass
class Probe:
    """Whether one node has one image."""

    state: str = "unknown"  # unknown, probing, ready, missing
    service: str = ""
    since: float = 0.0


def service_name(name: str) -> str:
    """A swarm service name for the pool's container name (letters, digits and '-', at most 63)."""
    return SERVICE_NAME_BAD.sub("-", name)[:63].strip("-") or "nbpool"


def newest_task(tasks: list[dict]) -> dict | None:
    return max(tasks, key=lambda t: (t.get("Version") or {}).get("Index", 0), default=None)


def published_port(task: dict) -> int | None:
    for port in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
        if port.get("TargetPort") == NOTEBOOK_PORT and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


def task_words(task: dict) -> str:
    """What Swarm says about a task: its state, message and error."""
    status = task.get("Status") or {}
    parts = [status.get("State", "?"), status.get("Message", ""), status.get("Err", "")]
    return ": ".join(p for p in parts if p)


def look(api, pool: str | None) -> Snapshot:
    """One look at the cluster through the manager's API: ``pool``'s services (every pool's if None), tasks, nodes."""
    services = api.services(filters={"label": f"{POOL_LABEL}={pool}"} if pool else {"label": POOL_LABEL})
    tasks_by_service: dict[str, list[dict]] = {}
    for task in api.tasks():
        tasks_by_service.setdefault(task.get("ServiceID", ""), []).append(task)
    snap = Snapshot(taken=time.monotonic())
    for raw in api.nodes():
        desc = raw.get("Description") or {}
        res = desc.get("Resources") or {}
        snap.nodes[raw["ID"]] = Node(
            id=raw["ID"], hostname=desc.get("Hostname", raw["ID"][:12]),
            addr=(raw.get("Status") or {}).get("Addr", ""), state=(raw.get("Status") or {}).get("State", ""),
            availability=(raw.get("Spec") or {}).get("Availability", ""),
            role=(raw.get("Spec") or {}).get("Role", ""),
            memory=int(res.get("MemoryBytes") or 0), cpus=int(res.get("NanoCPUs") or 0))
    for tasks in tasks_by_service.values():
        for task in tasks:
            node = snap.nodes.get(task.get("NodeID", ""))
            if node is None or task.get("DesiredState") != "running":
                continue
            want = ((task.get("Spec") or {}).get("Resources") or {}).get("Reservations") or {}
            node.reserved_memory += int(want.get("MemoryBytes") or 0)
            node.reserved_cpus += int(want.get("NanoCPUs") or 0)
    for svc in services:
        snap.services[svc["ID"]] = svc
        task = newest_task(tasks_by_service.get(svc["ID"], []))
        if task is not None:
            snap.tasks[svc["ID"]] = task
            node = snap.nodes.get(task.get("NodeID", ""))
            if node is not None and task.get("DesiredState") == "running":
                node.ours += 1
    return snap


def task_status(task: dict | None, nodes: dict[str, Node]) -> tuple[str, str, Node | None]:
    """(state for the pool, why it ended, its node) of a service's newest task."""
    if task is None:
        return "starting", "", None
    node = nodes.get(task.get("NodeID", ""))
    state = (task.get("Status") or {}).get("State", "")
    if state == "running":
        if node is None:
            return GONE, "its machine left the cluster", None
        if not node.up:
            return GONE, f"its machine ({node.hostname}) stopped answering", node
        if task.get("DesiredState") != "running":
            return GONE, f"Swarm is stopping it ({node.hostname} is {node.availability})", node
        return RUNNING, "", node
    if state in ENDED:
        return GONE, "", node  # its own end (an exit code, OOM): the pool's usual words; task_words() for the log
    return "starting", "", node


def place(snap: Snapshot, probes: dict[tuple[str, str], Probe], placing: Iterable[tuple[str, int, int]], image: str,
          memory: int, cpus: int, refused: Callable[[str], str] | None = None) -> Node:
    """The node for one more container: up, active, guarded (``refused(node id)`` says why not, '' when it
    may), with the image and room; the fewest of ours first."""
    extra_mem: dict[str, int] = {}
    extra_cpu: dict[str, int] = {}
    extra_n: dict[str, int] = {}
    for node_id, mem, cpu in placing:
        extra_mem[node_id] = extra_mem.get(node_id, 0) + mem
        extra_cpu[node_id] = extra_cpu.get(node_id, 0) + cpu
        extra_n[node_id] = extra_n.get(node_id, 0) + 1
    fits, why = [], []
    for node in snap.nodes.values():
        probe = probes.get((node.id, image), Probe())
        if not node.up or node.availability != "active":
            why.append(f"{node.hostname} is {node.state if not node.up else node.availability}")
            continue
        if probe.state != "ready":
            why.append(f"{node.hostname}: image {probe.state}")
            continue
        problem = refused(node.id) if refused is not None else ""
        if problem:
            why.append(f"{node.hostname}: {problem}")
            continue
        free_mem = node.memory - node.reserved_memory - extra_mem.get(node.id, 0)
        free_cpu = node.cpus - node.reserved_cpus - extra_cpu.get(node.id, 0)
        if free_mem < memory:
            why.append(f"{node.hostname} full ({format_memory(node.memory - free_mem)} of "
                       f"{format_memory(node.memory)} memory reserved)")
            continue
        if free_cpu < cpus:
            why.append(f"{node.hostname} full ({(node.cpus - free_cpu) / 1e9:g} of {node.cpus / 1e9:g} cores reserved)")
            continue
        fits.append((node.ours + extra_n.get(node.id, 0), -free_mem, node.hostname, node))
    if not fits:
        raise NoRoom("no swarm node can take another container: " + ("; ".join(why) or "no nodes"))
    return min(fits, key=lambda f: f[:3])[3]
