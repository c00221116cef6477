"""nbpool's agents on the swarm's nodes, as the Swarm backend deploys and asks them (issue 25).

The agent (spawner.agent, image SwarmBackend.agent_image) runs as one global service, so the swarm starts
it on every node, joining ones included. It keeps nbpool's egress firewall on its node, lets only nbpool's
machine reach the notebook ports the node publishes, and tells what each container there does. This
module deploys it (its token is a Swarm secret, never an environment variable or a label), asks every
node's agent every few seconds, and says which nodes are guarded: only those get containers.

A node is guarded when its agent answered within AGENT_STALE, its firewall is in place, and every
container of ours on it runs with no-new-privileges (Swarm's service specs cannot ask for it on this API:
the node's engine must default to it, and the agent reads it from each container's process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field

import docker
import docker.errors
import requests

from .. import probe
from .base import BackendError

AGENT_LABEL = "org.nbpool.agent"
AGENT_SERVICE = "nbpool-agent"
SECRET_PREFIX = "nbpool-agent-token-"
AGENT_STALE = 20.0  # seconds without an answer after which a node is not guarded
ASK_TIMEOUT = 4.0


@dataclass
class AgentState:
    seen: float = 0.0  # monotonic time of the last answer
    problem: str = "no answer from nbpool's agent yet"
    containers: dict[str, dict] = field(default_factory=dict)  # service id -> the agent's reading

    def guarded(self, now: float) -> bool:
        return not self.problem and now - self.seen < AGENT_STALE


class NodeAgents:
    """The agents of one swarm (the backend's engine; a workshop's variant shares its origin's)."""

    def __init__(self, backend):
        self.backend = backend
        self.states: dict[str, AgentState] = {}  # node id -> its agent's state
        self.spec_hash = ""
        self.starting = asyncio.Lock()  # the engine and its workshops' variants start them once
        self.task: asyncio.Task | None = None  # asking them, every few seconds

    # --- running -----------------------------------------------------------------------------------

    async def start(self, snap) -> None:
        """Deploy the agents, wait (a while) for every node's, and keep asking them (once per engine)."""
        async with self.starting:
            if self.task is None:
                told = await self._deploy(snap)
                self.task = asyncio.get_running_loop().create_task(self._keep_asking(told))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _deploy(self, snap) -> dict[str, str]:
        b = self.backend
        if not b.agent_token:
            raise BackendError("SwarmBackend.node_agent needs the agent token (set by the application)")
        done = await b._call("deploy agents", self.deploy_sync)
        b.log.info("swarm: nbpool's node agents (%s, port %d) %s; the nodes' notebook ports answer %s only",
                   b.agent_image, b.agent_port, done, ", ".join(self.allowed()) or "nobody")
        deadline = time.monotonic() + 90
        while True:
            await self.ask(snap)
            if time.monotonic() > deadline or not any(
                    self.problem(n.id) for n in snap.nodes.values() if n.up and n.availability == "active"):
                break
            await asyncio.sleep(1)
        return self._tell(snap, {})

    async def _keep_asking(self, told: dict[str, str]) -> None:
        b = self.backend
        while True:
            await asyncio.sleep(max(2.0, b.poll_interval))
            snap = b._snapshot
            if snap is None:
                continue
            try:
                await self.ask(snap)
            except Exception:  # a task boundary: keep asking; say what broke
                b.log.exception("swarm: asking the node agents failed")
                continue
            told = self._tell(snap, told)

    def _tell(self, snap, told: dict[str, str]) -> dict[str, str]:
        """Log each node whose guard changed since ``told`` (node id -> its problem); returns the new state."""
        now = {}
        for node in snap.nodes.values():
            if not node.up or node.availability == "drain":
                continue  # (a drained node runs no task, its agent's neither)
            problem = now[node.id] = self.problem(node.id)
            if node.id in told and told[node.id] == problem:
                continue
            if problem:
                self.backend.log.warning("swarm: node %s gets no containers: %s", node.hostname, problem)
            else:
                self.backend.log.info("swarm: node %s guarded by nbpool's agent", node.hostname)
        return now

    # --- deploying ----------------------------------------------------------------------------------

    def allowed(self) -> list[str]:
        """Addresses that may reach the nodes' published notebook ports: SwarmBackend.agent_allow, or this
        machine's own IPv4 addresses (nbpool's proxy connects from one of them)."""
        if self.backend.agent_allow:
            return list(self.backend.agent_allow)
        try:
            out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=10).stdout
            rows = json.loads(out or "[]")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return []
        return sorted({info["local"] for row in rows for info in row.get("addr_info", [])
                       if info.get("local") and not info["local"].startswith("127.")})

    def _spec(self, secret_id: str, secret_name: str) -> tuple[dict, dict]:
        b = self.backend
        env = {"NBPOOL_AGENT_PORT": str(b.agent_port), "NBPOOL_AGENT_ALLOW": ",".join(self.allowed()),
               "NBPOOL_AGENT_TOKEN_FILE": "/run/secrets/nbpool-agent-token",
               "NBPOOL_AGENT_EGRESS_RATE": b.agent_egress_rate}
        spec = docker.types.ContainerSpec(
            b.agent_image, env=env, user="0", labels={AGENT_LABEL: "1"},
            mounts=[docker.types.Mount("/host/proc", "/proc", type="bind", read_only=True),
                    docker.types.Mount("/host/sys/fs/cgroup", "/sys/fs/cgroup", type="bind", read_only=True),
                    docker.types.Mount("/var/run/docker.sock", "/var/run/docker.sock", type="bind")],
            secrets=[docker.types.SecretReference(secret_id, secret_name, filename="nbpool-agent-token", mode=0o400)],
            # (SYS_ADMIN and SYS_PTRACE: into a container's network, to cap what it sends: AbuseGuard.egress_rate)
            cap_add=["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"])
        template = docker.types.TaskTemplate(spec, restart_policy=docker.types.RestartPolicy(condition="any",
                                                                                             delay=2_000_000_000),
                                             networks=[docker.types.NetworkAttachmentConfig("host")])
        return template, env

    def deploy_sync(self) -> str:
        """Create (or bring up to date) the agents' secret and global service; returns what was done."""
        b = self.backend
        api = b._docker().api
        token = b.agent_token
        digest = hashlib.sha256(token.encode()).hexdigest()[:12]
        secret_name = SECRET_PREFIX + digest
        found = api.secrets(filters={"name": secret_name})
        secret_id = found[0]["ID"] if found else api.create_secret(secret_name, token.encode(),
                                                                     labels={AGENT_LABEL: "1"})["ID"]
        template, env = self._spec(secret_id, secret_name)
        try:  # the image's id where the manager has it: a rebuilt image under the same tag replaces the agents
            image_id = api.inspect_image(b.agent_image)["Id"]
        except docker.errors.APIError:
            image_id = ""
        self.spec_hash = hashlib.sha256(json.dumps([b.agent_image, image_id, env, secret_name, b.agent_port],
                                                   sort_keys=True).encode()).hexdigest()[:16]
        services = api.services(filters={"name": AGENT_SERVICE})
        current = next((s for s in services if s["Spec"]["Name"] == AGENT_SERVICE), None)
        if current is not None and (current["Spec"].get("Labels") or {}).get(AGENT_LABEL) == self.spec_hash:
            done = "up to date"
        else:
            if current is not None:
                api.remove_service(current["ID"])
            api.create_service(template, name=AGENT_SERVICE, labels={AGENT_LABEL: self.spec_hash},
                               mode=docker.types.ServiceMode("global"))
            done = "created" if current is None else "replaced"
        for old in api.secrets(filters={"label": AGENT_LABEL}):
            if old["Spec"]["Name"] != secret_name:
                try:
                    api.remove_secret(old["ID"])
                except docker.errors.APIError:
                    pass  # still in use by a service being replaced: the next start removes it
        return done

    # --- asking -------------------------------------------------------------------------------------

    def _ask_sync(self, address: str) -> dict:
        b = self.backend
        response = requests.get(f"http://{address}:{b.agent_port}/readings", timeout=ASK_TIMEOUT,
                                headers={"Authorization": f"token {b.agent_token}"})
        if response.status_code != 200:
            raise OSError(f"answered {response.status_code}")
        return response.json()

    async def ask(self, snap) -> None:
        """Ask every node's agent once (together); each node's state is what it answered, or why not."""
        nodes = [n for n in snap.nodes.values() if n.up]

        async def one(node) -> None:
            state = self.states.setdefault(node.id, AgentState())
            try:
                answer = await asyncio.wait_for(self.backend._call("agent", self._ask_sync, node.addr),
                                                ASK_TIMEOUT + 1)
            except Exception as exc:  # a task boundary: any failure is this node's agent's problem to show
                if time.monotonic() - state.seen >= AGENT_STALE:
                    state.problem = f"nbpool's agent does not answer ({type(exc).__name__})"
                return
            state.seen = time.monotonic()
            state.containers = answer.get("containers") or {}
            problems = []
            if answer.get("firewall") != "ok":
                problems.append(f"its firewall is not in place: {answer.get('firewall')}")
            loose = [r.get("cid") or sid[:12] for sid, r in state.containers.items()
                     if r.get("no_new_privileges") is False]
            if loose:
                problems.append(f"{len(loose)} containers run without no-new-privileges (start the node's dockerd "
                                "with --no-new-privileges)")
            state.problem = "; ".join(problems)

        await asyncio.gather(*(one(node) for node in nodes))
        for node_id in [n for n in self.states if n not in snap.nodes]:
            del self.states[node_id]

    def _notice_sync(self, address: str, service_id: str, notice: dict) -> bool:
        b = self.backend
        response = requests.post(f"http://{address}:{b.agent_port}/notice", timeout=ASK_TIMEOUT * 3,
                                 json={"service": service_id, "notice": notice},
                                 headers={"Authorization": f"token {b.agent_token}"})
        return response.status_code == 200

    async def notice(self, service_id: str, notice: dict) -> bool:
        """Have the agent of the node that runs ``service_id`` leave ``notice`` in its container."""
        snap = self.backend._snapshot
        for node_id, state in self.states.items():
            node = snap.nodes.get(node_id) if snap is not None else None
            if service_id in state.containers and node is not None:
                return await self.backend._call("agent notice", self._notice_sync, node.addr, service_id, notice)
        return False

    # --- what nbpool reads ----------------------------------------------------------------------------

    def problem(self, node_id: str) -> str:
        """'' when the node is guarded, else why not."""
        state = self.states.get(node_id)
        if state is None:
            return "no answer from nbpool's agent yet"
        if state.guarded(time.monotonic()):
            return ""
        return state.problem or "nbpool's agent stopped answering"

    def reading(self, service_id: str) -> probe.Reading | None:
        for state in self.states.values():
            row = state.containers.get(service_id)
            if row is not None:
                return probe.Reading(cpu_seconds=row.get("cpu_seconds"), commands=list(row.get("commands") or []),
                                     destinations=set(row.get("destinations") or []),
                                     oom_kills=int(row.get("oom_kills") or 0),
                                     memory=row.get("memory") if isinstance(row.get("memory"), int) else None,
                                     no_new_privileges=row.get("no_new_privileges"))
        return None

    def disk(self) -> dict[str, int]:
        return {sid: int(row.get("disk") or 0) for state in self.states.values()
                for sid, row in state.containers.items()}
