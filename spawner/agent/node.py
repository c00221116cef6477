"""nbpool's agent on a Swarm node: the guard and the firewall where the containers run (issue 25).

nbpool runs it as a global service (SwarmBackend.node_agent), so every node of the swarm has one, started
by the swarm itself when a node joins. It needs the node's network (host mode), its /proc and cgroups
(mounted read-only at /host/proc and /host/sys/fs/cgroup), the engine's socket, and NET_ADMIN. It

- installs nbpool's egress firewall (spawner.engines.firewall: no host, no private networks, the
  node's own network included, so neither the managers nor nbpool's machine; DNS to the node's
  resolvers) for the bridges the node's containers use, and keeps it installed;
- lets only nbpool's machine reach the notebook port the node publishes for its containers (a task's
  host-mode port would otherwise answer anyone who reaches the node, with only its token in the way),
  and its own port;
- answers ``GET /readings`` (``Authorization: token <the agent token>``, a Swarm secret) with what each
  of nbpool's containers on the node does: its processes' command lines, CPU time, connections out,
  out-of-memory kills, its files' size and whether it runs with no-new-privileges. nbpool's guard
  judges them as it judges its own machine's, and ends sessions through the swarm;
- takes ``POST /notice`` ({service, notice}) and leaves the notice in that container for its attendee's
  JupyterLab (the CPU budget's warning), as the container's own user.

Standard library only, and spawner's probe and firewall modules (with Debian's python3-traitlets):
the image is arch-base/agent.
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import probe
from ..engines.firewall import ContainerFirewall, FirewallError

log = logging.getLogger("nbpool-agent")
VERSION = "1"
POOL_LABEL = "org.nbpool.pool"
ID_LABEL = "org.nbpool.id"
SERVICE_LABEL = "com.docker.swarm.service.id"
NOTEBOOK_PORT = 8888
BRIDGES = ("docker_gwbridge", "docker0")
PUBLISHED_CHAIN = "NBPOOL-PUBLISHED"
AGENT_CHAIN = "NBPOOL-AGENT"
SIZES_EVERY = 10.0  # seconds between measures of the files (the engine walks them), as Pool.disk_check_interval
FIREWALL_EVERY = 30.0  # seconds between two checks that the rules are in place (an engine restart flushes)


class Engine:
    """The node's Docker engine, through its socket (no SDK: the image stays small)."""

    def __init__(self, path: str = "/var/run/docker.sock"):
        self.path = path

    def get(self, url: str):
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(30)
        conn.sock.connect(self.path)
        try:
            conn.request("GET", url)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise OSError(f"engine: GET {url} answered {response.status}")
        return json.loads(body)

    def post(self, url: str, body: dict) -> dict:
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.settimeout(30)
        conn.sock.connect(self.path)
        try:
            conn.request("POST", url, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status not in (200, 201, 204):
            raise OSError(f"engine: POST {url} answered {response.status}")
        return json.loads(data) if data else {}

    def run(self, container_id: str, command: list[str]) -> None:
        """``command`` in the container, as its own user, without waiting for it."""
        made = self.post(f"/containers/{container_id}/exec", {"Cmd": command, "AttachStdout": False,
                                                               "AttachStderr": False})
        self.post(f"/exec/{made['Id']}/start", {"Detach": True})

    def containers(self, size: bool = False) -> list[dict]:
        filters = urllib.parse.quote(json.dumps({"label": [POOL_LABEL], "status": ["running"]}))
        return self.get(f"/containers/json?filters={filters}" + ("&size=1" if size else ""))

    def pid(self, container_id: str) -> int:
        return int((self.get(f"/containers/{container_id}/json").get("State") or {}).get("Pid") or 0)


class Agent:
    def __init__(self, token: str, allowed: list[str], engine: Engine | None = None, egress_rate: str = ""):
        self.token = token
        self.port = int(os.environ.get("NBPOOL_AGENT_PORT", "9777"))
        self.egress_rate = egress_rate  # AbuseGuard.egress_rate: set on every container of ours here
        self.shaped: set[str] = set()
        self.allowed = allowed  # addresses that may reach the published notebook ports (nbpool's machine)
        self.engine = engine or Engine()
        self.mounts = probe.CgroupMounts(under=os.environ.get("NBPOOL_AGENT_CGROUP", "/host/sys/fs/cgroup"))
        self.firewall = ContainerFirewall(log=log)
        self.firewall_problem = ""
        self.firewall_checked = 0.0
        self.pids: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.sizes_at = 0.0
        self.lock = threading.Lock()

    # --- the firewall ------------------------------------------------------------------------------

    def guard_network(self) -> None:
        """nbpool's egress rules for the node's container bridges, the published port and this agent's own port
        for nbpool alone."""
        problems = []
        try:
            self.answer_only_nbpool()
        except (FirewallError, OSError) as exc:
            problems.append(f"agent port: {exc}")
        for bridge in BRIDGES:
            if not os.path.exists(f"/sys/class/net/{bridge}"):
                continue
            try:
                self.firewall.install(bridge)
                self.publish_only_to_nbpool(bridge)
            except (FirewallError, OSError) as exc:
                problems.append(f"{bridge}: {exc}")
        self.firewall_problem = "; ".join(problems)
        self.firewall_checked = time.monotonic()

    def answer_only_nbpool(self) -> None:
        """This agent's port answers nbpool's machine only (its token aside, what it tells is no one else's)."""
        rules = [f"-A {AGENT_CHAIN} -s {address} -j RETURN" for address in self.allowed]
        rules.append(f"-A {AGENT_CHAIN} -j DROP")
        self._own_chain(AGENT_CHAIN, rules, "INPUT", f"-p tcp -m tcp --dport {self.port}")

    def publish_only_to_nbpool(self, bridge: str) -> None:
        rules = [f"-A {PUBLISHED_CHAIN} -p tcp --dport {NOTEBOOK_PORT} -m conntrack --ctstate NEW "
                 f"-s {address} -j RETURN" for address in self.allowed]
        rules.append(f"-A {PUBLISHED_CHAIN} -p tcp --dport {NOTEBOOK_PORT} -m conntrack --ctstate NEW -j DROP")
        self._own_chain(PUBLISHED_CHAIN, rules, "DOCKER-USER", f"-o {bridge}")

    def _own_chain(self, chain: str, rules: list[str], parent: str, match: str) -> None:
        """``chain`` holding exactly ``rules``, jumped to first from ``parent`` for packets matching ``match``."""
        listing = self.firewall._run([self.firewall._tool("iptables"), "-w", "5", "-S"]).splitlines()
        lines = ["*filter", f":{chain} - [0:0]", *rules]
        if f"-A {parent} {match} -j {chain}" not in listing:
            lines.append(f"-I {parent} 1 {match} -j {chain}")
        self.firewall._restore("iptables", lines)

    # --- what the containers do ---------------------------------------------------------------------

    def readings(self) -> dict:
        with self.lock:
            if time.monotonic() - self.firewall_checked > FIREWALL_EVERY:
                self.guard_network()
            sized = time.monotonic() - self.sizes_at > SIZES_EVERY
            rows = self.engine.containers(size=sized)
            if sized:
                self.sizes = {row["Id"]: int(row.get("SizeRw") or 0) for row in rows}
                self.sizes_at = time.monotonic()
            table = probe.host_destinations()
            members = probe.scan_members()  # (this agent's pid namespace is not the node's)
            out = {}
            for row in rows:
                labels = row.get("Labels") or {}
                service = labels.get(SERVICE_LABEL)
                if not service:
                    continue
                pid = self.pids.get(row["Id"]) or self.engine.pid(row["Id"])
                self.pids[row["Id"]] = pid
                reading = probe.read(self.mounts, pid, destinations=False, members=members)
                if reading.cpu_seconds is None:
                    self.pids.pop(row["Id"], None)
                    continue
                if self.egress_rate and row["Id"] not in self.shaped:
                    problem = probe.cap_egress(pid, self.egress_rate)
                    self.shaped.add(row["Id"])
                    if problem:
                        log.warning("cannot cap %s's egress at %s: %s", row["Id"][:12], self.egress_rate, problem)
                address = next((n.get("IPAddress") for n in ((row.get("NetworkSettings") or {}).get("Networks")
                                                             or {}).values() if n.get("IPAddress")), "")
                destinations = table.get(address, set()) if table is not None and address else \
                    probe.read_destinations(pid)
                out[service] = {"cid": labels.get(ID_LABEL, ""), "pool": labels.get(POOL_LABEL, ""),
                                "cpu_seconds": reading.cpu_seconds, "commands": reading.commands[:200],
                                "destinations": sorted(destinations)[:1000],
                                "oom_kills": probe.read_oom_kills(self.mounts, pid), "memory": reading.memory,
                                "no_new_privileges": probe.read_no_new_privileges(pid),
                                "disk": self.sizes.get(row["Id"], 0)}
            live = {row["Id"] for row in rows}
            self.pids = {k: v for k, v in self.pids.items() if k in live}
            self.shaped &= live
            return {"version": VERSION, "node": socket.gethostname(), "firewall": self.firewall_problem or "ok",
                    "containers": out}

    def notice(self, service: str, notice: dict) -> bool:
        """Leave ``notice`` for the attendee's own JupyterLab in the container of ``service`` (see the image's
        nbpool_notice.py), written as the container's user; False when no such container runs here."""
        for row in self.engine.containers():
            if (row.get("Labels") or {}).get(SERVICE_LABEL) == service:
                script = ('umask 077; printf "%s" "$1" > /tmp/nbpool-notice.json.part '
                          '&& mv -f /tmp/nbpool-notice.json.part /tmp/nbpool-notice.json')
                self.engine.run(row["Id"], ["sh", "-c", script, "nbpool", json.dumps(notice)[:4000]])
                return True
        return False

    # --- serving nbpool -----------------------------------------------------------------------------

    def serve(self, port: int) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def _refused(self, path: str) -> bool:
                """Answers 401 without nbpool's token, 404 for any path but ``path``; True when it did."""
                given = self.headers.get("Authorization", "").removeprefix("token ").strip()
                if not given or not hmac.compare_digest(given.encode(), agent.token.encode()):
                    self._answer(401, {"error": "the agent token is needed"})
                    return True
                if self.path != path:
                    self._answer(404, {"error": "not found"})
                    return True
                return False

            def do_GET(self) -> None:
                if self._refused("/readings"):
                    return
                try:
                    self._answer(200, agent.readings())
                except Exception as exc:  # a request boundary: say what failed, keep serving
                    log.exception("readings failed")
                    self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})

            def do_POST(self) -> None:
                if self._refused("/notice"):
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(min(length, 8192)) or b"{}")
                    left = agent.notice(str(body["service"]), dict(body["notice"]))
                except (ValueError, KeyError, TypeError) as exc:
                    self._answer(400, {"error": f"bad notice: {exc}"})
                    return
                except OSError as exc:
                    self._answer(502, {"error": str(exc)})
                    return
                self._answer(200 if left else 404, {"left": left})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass  # nbpool polls every few seconds

        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        log.info("nbpool agent %s on %s: port %d, notebook ports for %s only; firewall %s", VERSION,
                 socket.gethostname(), port, ", ".join(self.allowed) or "nobody", self.firewall_problem or "ok")
        server.serve_forever()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    probe.PROC = os.environ.get("NBPOOL_AGENT_PROC", "/host/proc")
    with open(os.environ.get("NBPOOL_AGENT_TOKEN_FILE", "/run/secrets/nbpool-agent-token")) as f:
        token = f.read().strip()
    allowed = [a for a in os.environ.get("NBPOOL_AGENT_ALLOW", "").split(",") if a]
    agent = Agent(token, allowed, egress_rate=os.environ.get("NBPOOL_AGENT_EGRESS_RATE", ""))
    agent.guard_network()
    # Later checks reinstall the rules quietly (an engine restart flushes them); failures still warn.
    quiet = logging.getLogger("nbpool-agent.firewall")
    quiet.setLevel(logging.WARNING)
    agent.firewall.log = quiet
    agent.serve(agent.port)


if __name__ == "__main__":
    main()
