"""nbpool on a real Docker Swarm: the local cluster of `make cluster` (a manager and two worker nodes,
each a container running its own engine), driven by the real nbpool process with ``--backend swarm``.

The module brings the cluster up itself (idempotent: seconds when it runs
already) and its last test takes it down and checks that nothing is left.
Traffic goes only to loopback and to the node containers' addresses.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import math
import os
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from tests.service import ROOT, Service, cid_of, kernel_client, spawn, through_the_line, visitor

CLUSTER = ["bash", str(ROOT / "arch-base" / "cluster.sh")]
WORKERS = ("nbpool-node-1", "nbpool-node-2")
POOL_LABEL = "org.nbpool.pool"
# The node containers are the host engine's, whatever DOCKER_HOST the caller exported.
HOST_ENGINE = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def swarm(docker_client, notebook_image) -> docker.DockerClient:
    """A client of the local cluster's manager, the cluster brought up (2 workers) if it is not."""
    done = subprocess.run([*CLUSTER, "up", "2"], capture_output=True, text=True, timeout=900, env=HOST_ENGINE)
    assert done.returncode == 0, f"make cluster failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("DOCKER_HOST=unix://"), last
    client = docker.DockerClient(base_url=last.split("=", 1)[1], timeout=60)
    yield client
    client.close()


def services_of(swarm: docker.DockerClient, pool: str) -> list:
    return swarm.services.list(filters={"label": f"{POOL_LABEL}={pool}"})


def node_of(swarm: docker.DockerClient, service) -> str:
    tasks = [t for t in service.tasks() if t["DesiredState"] == "running"]
    return swarm.nodes.get(tasks[0]["NodeID"]).attrs["Description"]["Hostname"] if tasks else ""


def container_on_worker(swarm: docker.DockerClient, service: Service, cid: str) -> tuple:
    """(the Swarm service, the node it runs on, its container's id there) of attendee container ``cid``."""
    (svc,) = [s for s in services_of(swarm, service.pool_name) if s.attrs["Spec"]["Labels"]["org.nbpool.id"] == cid]
    node = node_of(swarm, svc)
    return svc, node, in_node(node, "ps", "-q", "--filter", f"label=com.docker.swarm.service.id={svc.id}")


def endpoint_of(data: dict, service) -> str:
    cid = service.attrs["Spec"]["Labels"]["org.nbpool.id"]
    return next(c["endpoint"] for c in data["containers"] if c["id"] == cid)


def in_node(node: str, *command: str) -> str:
    """A docker command run by ``node``'s own engine (inside its container)."""
    done = subprocess.run(["docker", "exec", node, "docker", *command], capture_output=True, text=True, timeout=60,
                          env=HOST_ENGINE)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def run_code(session: requests.Session, url: str, code: str, kernel_id: str = "") -> tuple[str, str]:
    """Run ``code`` in a new kernel (or kernel ``kernel_id``) of the visitor's server; (its output, the kernel)."""
    async def go() -> tuple[str, str]:
        client = kernel_client(session, re.match(r".*?/user/[0-9a-f]+/", url).group(0))
        if kernel_id:
            await client.attach(kernel_id)
        else:
            await client.start("python3")
        result = await client.execute(code)
        assert result.status == "ok", result
        client.detach()
        return result.output.strip(), client.kernel_id
    return asyncio.run(go())


@pytest.fixture
def make_swarm_service(swarm, tmp_path_factory, request):
    started: list[Service] = []

    def make(**settings) -> Service:
        settings = {"NbpoolApp__backend": "swarm", "SwarmBackend__poll_interval": 1.0,
                    "Pool__reconcile_interval": 3, **settings}
        service = Service(tmp_path_factory.mktemp("nbpool"), f"nbpool-sw-{secrets.token_hex(3)}", **settings)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()
        if getattr(request.node, "call_failed", False):
            print(f"--- nbpool log ({service.pool_name}) ---\n{service.logs()[-8000:]}")
        for svc in services_of(swarm, service.pool_name) + services_of(swarm, f"{service.pool_name}-small") + \
                services_of(swarm, f"{service.pool_name}-large"):
            svc.remove()


def bridge_gateway(engine) -> str:
    """The host's address on Docker's default bridge, where the nodes reach nbpool's machine.

    On a fresh machine the bridge of an engine at its first start listed only its subnet (2026-12-05, Docker
    20.10; the gateway was listed after a restart): the gateway is then the subnet's first address.
    """
    config = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def test_spares_spread_over_nodes_with_the_limits_in_each_spec(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=4, Pool__max_containers=6)
    service.start(timeout=180)
    found = services_of(swarm, service.pool_name)
    assert len(found) == 4
    assert collections.Counter(node_of(swarm, s) for s in found) == {WORKERS[0]: 2, WORKERS[1]: 2}

    spec = found[0].attrs["Spec"]
    template = spec["TaskTemplate"]
    limits, wants = template["Resources"]["Limits"], template["Resources"]["Reservations"]
    assert limits["MemoryBytes"] == wants["MemoryBytes"] == 512 * 2**20
    assert limits["NanoCPUs"] == 10**9 and wants["NanoCPUs"] == 5 * 10**7 and limits["Pids"] == 512
    container = template["ContainerSpec"]
    assert container["User"] == "1000:1000" and container["CapabilityDrop"] == ["ALL"]
    assert template["RestartPolicy"]["Condition"] == "none" and spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
    labels = spec["Labels"]
    assert {"org.nbpool.pool", "org.nbpool.id", "org.nbpool.created", "org.nbpool.image", "org.nbpool.name"} <= set(
        labels)
    assert not any("token" in key.lower() for key in labels)

    # Inside a worker's engine: the container runs without capabilities, unable to gain privileges.
    node = node_of(swarm, found[0])
    ctr = in_node(node, "ps", "-q", "--filter", f"label=com.docker.swarm.service.id={found[0].id}")
    status = in_node(node, "exec", ctr, "cat", "/proc/1/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M)

    # An attendee's container reaches no neighbour's server directly (same node or another), nor nbpool's machine,
    # nor the manager: the rules of nbpool's agent on its node.
    data = service.admin("GET", "/api/admin/containers").json()
    endpoints = {c["node"]: c["endpoint"] for c in data["containers"]}
    same = next(c["endpoint"] for c in data["containers"]
                if c["node"] == node and c["endpoint"] != endpoint_of(data, found[0]))
    gateway = bridge_gateway(docker.from_env(environment=HOST_ENGINE))
    listener = socket.create_server((gateway, 0))  # a server on nbpool's machine, on the nodes' network
    manager = docker.from_env(environment=HOST_ENGINE).containers.get("nbpool-manager").attrs["NetworkSettings"][
        "Networks"]["bridge"]["IPAddress"]
    targets = [same, endpoints[next(w for w in WORKERS if w != node)], f"http://{gateway}:{listener.getsockname()[1]}",
               f"http://{manager}:2377"]  # (the manager's swarm port: it listens)
    probe = ("import socket, sys\nfor t in sys.argv[1:]:\n    h, p = t.split('//')[1].split(':')\n"
             "    try:\n        socket.create_connection((h, int(p)), timeout=3); print('reached', t)\n"
             "    except OSError as e:\n        print('refused', t, e)\n")
    with listener:
        said = in_node(node, "exec", ctr, "python3", "-c", probe, *targets)
    assert "reached" not in said and [line.split()[0] for line in said.splitlines()] == ["refused"] * 4, said

    # The operator sees the machines: admin API, metrics.
    data = service.admin("GET", "/api/admin/containers").json()
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["nbpool-manager"]["availability"] == "drain"
    assert nodes[WORKERS[0]]["spare"] == nodes[WORKERS[1]]["spare"] == 2
    assert nodes[WORKERS[0]]["image"] == "ready"
    assert {c["node"] for c in data["containers"]} == set(WORKERS)
    metrics = service.admin("GET", "/metrics").text
    assert f'nbpool_node_containers{{node="{WORKERS[1]}",state="spare"}} 2.0' in metrics


def test_each_worker_is_guarded_by_its_agent_and_a_miner_there_is_ended(swarm, make_swarm_service):
    """Issue 25 on the swarm: nbpool's agent on every worker; a miner on a worker ends as on one machine; a
    worker's published notebook port answers nbpool's machine only."""
    service = make_swarm_service(Pool__warm=2, Pool__max_containers=4, AbuseGuard__check_interval=1.0)
    service.start(timeout=180)
    nodes = {n["name"]: n for n in service.admin("GET", "/api/admin/containers").json()["nodes"]}
    assert all(nodes[w]["agent"] == "guarded" for w in WORKERS), nodes
    agents = [s for s in swarm.services.list() if s.name == "nbpool-agent"]
    assert len(agents) == 1 and agents[0].attrs["Spec"]["Mode"] == {"Global": {}}
    assert not any("token" in key.lower() for key in agents[0].attrs["Spec"]["Labels"])
    assert all("TOKEN=" not in e for e in agents[0].attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", []))

    miner = visitor()
    url = spawn(miner, service.url)
    cid = cid_of(url)
    svc, node, ctr = container_on_worker(swarm, service, cid)
    # Another node (the manager) cannot reach this worker's published notebook port; nbpool's machine can.
    endpoint = endpoint_of(service.admin("GET", "/api/admin/containers").json(), svc)
    host, port = endpoint.split("//")[1].split(":")
    tried = subprocess.run(["docker", "exec", "nbpool-manager", "timeout", "5", "bash", "-c",
                            f"</dev/tcp/{host}/{port}"], capture_output=True, text=True, env=HOST_ENGINE)
    assert tried.returncode != 0, "the manager reached a worker's notebook port"
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    tried = subprocess.run(["docker", "exec", "nbpool-manager", "timeout", "5", "bash", "-c",
                            f"</dev/tcp/{host}/9777"], capture_output=True, text=True, env=HOST_ENGINE)
    assert tried.returncode != 0, "the manager reached a worker's agent"  # (its token aside)

    in_node(node, "exec", "-d", ctr, "sh", "-c", "cp /bin/sleep /tmp/xmrig && exec /tmp/xmrig 600")
    deadline = time.monotonic() + 60
    while "has ended" not in (page := miner.get(url, timeout=30)).text:
        assert time.monotonic() < deadline, service.logs()[-3000:]
        time.sleep(0.5)
    assert "It ran a program this service does not allow (xmrig)" in page.text
    assert re.search(rf"abuse guard: session {cid} from 127\.0\.0\.1 ran .*xmrig.*\(rule banned_command\)",
                     service.logs())
    assert miner.get(f"{service.url}/spawn?new=1", allow_redirects=False, timeout=30).status_code == 403


def test_a_cpu_burner_on_a_worker_is_warned_in_its_page_and_ended(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=1, Pool__max_containers=3, AbuseGuard__check_interval=1.0,
                                 AbuseGuard__cpu_budget=12, AbuseGuard__cpu_warning=0.4,
                                 AbuseGuard__egress_rate="20mbit")
    service.start(timeout=180)
    burner = visitor()
    url = spawn(burner, service.url)
    cid = cid_of(url)
    _svc, node, ctr = container_on_worker(swarm, service, cid)
    # The node's agent capped what it sends out (AbuseGuard.egress_rate), on the container's own interface.
    pid = in_node(node, "inspect", "-f", "{{.State.Pid}}", ctr)
    deadline = time.monotonic() + 30
    while "rate 20Mbit" not in (shown := subprocess.run(
            ["docker", "exec", node, "nsenter", "-t", pid, "-n", "tc", "qdisc", "show", "dev", "eth0"],
            capture_output=True, text=True, env=HOST_ENGINE).stdout):
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)
    in_node(node, "exec", "-d", ctr, "sh", "-c", "nohup python3 -c 'while True: pass' >/dev/null 2>&1 &")
    # The warning reaches the attendee's own server (what their JupyterLab shows), through the node's agent.
    deadline = time.monotonic() + 60
    while "computing time" not in (notice := burner.get(url.split("/tree")[0] + "/nbpool/notice", timeout=30)).text:
        assert time.monotonic() < deadline, service.logs()[-3000:]
        time.sleep(0.5)
    assert notice.json()["id"] == "cpu-budget"
    while "has ended" not in (page := burner.get(url, timeout=30)).text:
        assert time.monotonic() < deadline + 60, service.logs()[-3000:]
        time.sleep(0.5)
    assert "It used all the computing time one session may have" in page.text


def test_a_worker_containers_files_over_the_disk_limit_end_its_session(swarm, make_swarm_service):
    """The disk watchdog on a swarm: the node's agent measures the container's files, nbpool ends it."""
    service = make_swarm_service(Pool__warm=1, Pool__max_containers=3, DockerBackend__disk_limit="100M",
                                 Pool__disk_check_interval=2)
    service.start(timeout=180)
    writer = visitor()
    url = spawn(writer, service.url)
    cid = cid_of(url)
    _svc, node, ctr = container_on_worker(swarm, service, cid)
    in_node(node, "exec", ctr, "dd", "if=/dev/zero", "of=/home/jovyan/big", "bs=1M", "count=200")
    deadline = time.monotonic() + 60
    while "has ended" not in (page := writer.get(url, timeout=30)).text:
        assert time.monotonic() < deadline, service.logs()[-3000:]
        time.sleep(0.5)
    assert "It stored more than the 100MB of files" in page.text, page.text[:2000]


def test_a_visitor_reaches_their_container_on_a_worker_through_the_proxy(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=1)
    service.start(timeout=180)
    session = visitor()
    url = spawn(session, service.url, "notebooks/01-python-introduction.ipynb")
    assert url.startswith(service.url + "/user/")
    assert url.endswith("/notebooks/01-python-introduction.ipynb") and session.get(url, timeout=30).ok
    base = url.split("/notebooks/", 1)[0]
    notebook = session.get(f"{base}/api/contents/01-python-introduction.ipynb", timeout=30)
    assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"  # the workshop file, from the worker
    row = next(c for c in service.admin("GET", "/api/admin/containers").json()["containers"]
               if c["id"] == cid_of(url))
    assert row["node"] in WORKERS and not row["endpoint"].startswith("http://127.")
    (svc,) = [s for s in services_of(swarm, service.pool_name)
              if s.attrs["Spec"]["Labels"]["org.nbpool.id"] == row["id"]]
    assert svc.attrs["Spec"]["Labels"]["org.nbpool.name"] == row["name"]  # the hand-out is recorded in a label
    assert len(svc.tasks()) == 1  # and recording it left the attendee's container alone (no second task)
    assert run_code(session, url, "print(6 * 7)")[0] == "42"
    # A stranger without the cookie is refused before anything reaches the worker.
    assert requests.get(url, timeout=10, allow_redirects=False).status_code == 403

    # The class view sees the attendee on the worker as on one machine: a failing cell, where it is, and
    # the container's memory (read on its node by nbpool's agent).
    async def fail() -> str:
        client = kernel_client(session, f"{base}/")
        await client.start_session("01-python-introduction.ipynb")
        result = await client.execute("1 / 0", cell_id="cell-09")
        await client.shutdown()
        return result.status

    assert asyncio.run(fail()) == "error"
    def shown() -> dict | None:
        sessions = service.admin("GET", "/api/class").json()["sessions"]
        return next((t for t in sessions if t["id"] == row["id"] and t["error"] == "ZeroDivisionError"
                     and t["memory_bytes"]), None)
    service.wait_for(lambda: shown() is not None, timeout=30, what="the failed cell and memory on the class view")
    tile = shown()
    assert tile["cell"] == {"index": 9, "first_line": "1 / 0"} and tile["section"] == "3. Functions", tile
    assert 0 < tile["memory_bytes"] < tile["memory_limit_bytes"], tile


def test_two_workshops_on_the_swarm_each_with_its_limits_and_a_push_reaching_the_workers(swarm,
                                                                                           make_swarm_service):
    service = make_swarm_service(NbpoolApp__workshops={
        "small": {"warm": 1, "max_containers": 2, "mem_limit": "384M"},
        "large": {"warm": 1, "max_containers": 2, "mem_limit": "640M", "landing_path": "lab"}})
    service.start(wait_warm=False, timeout=180)
    stats = lambda name: requests.get(f"{service.url}/w/{name}/api/stats", timeout=10).json()  # noqa: E731
    service.wait_for(lambda: stats("small")["available"] >= 1 and stats("large")["available"] >= 1, timeout=180,
                     what="a spare of each workshop")
    for name, memory in (("small", 384), ("large", 640)):
        (svc,) = services_of(swarm, f"{service.pool_name}-{name}")
        assert svc.attrs["Spec"]["Labels"]["org.nbpool.workshop"] == name
        assert svc.attrs["Spec"]["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == memory * 2**20
    session = visitor()
    resp = session.get(f"{service.url}/w/large/spawn", allow_redirects=False, timeout=60)
    url = through_the_line(session, service.url, resp)
    assert url.endswith("/lab") and session.get(url, timeout=30).ok
    headers = {"Authorization": f"token {service.admin_token}", "Origin": service.url}
    pushed = requests.post(f"{service.url}/api/admin/workshops/large/push", headers=headers, timeout=30,
                           json={"files": {"notes/today.md": "# pushed to a worker\n"}})
    assert pushed.status_code == 202, pushed.text
    service.wait_for(lambda: service.admin("GET", "/api/admin/workshops/large/push").json()["push"]["finished"],
                     timeout=60, what="the push")
    assert service.admin("GET", "/api/admin/workshops/large/push").json()["push"]["failed"] == 0
    base = url.rsplit("/lab", 1)[0]
    assert session.get(f"{base}/files/notes/today.md", timeout=30).text == "# pushed to a worker\n"


def test_containers_killed_on_a_worker_are_replaced_and_their_attendee_told(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=2, Pool__reconcile_interval=3600)  # only the watch can see it
    service.start(timeout=180)
    session = visitor()
    url = spawn(session, service.url)
    service.wait_for(lambda: service.stats()["available"] == 2, timeout=60, what="spares refilled")
    rows = service.admin("GET", "/api/admin/containers").json()["containers"]
    mine = next(c for c in rows if c["id"] == cid_of(url))
    spare = next(c for c in rows if c["state"] == "spare")
    by_id = {s.attrs["Spec"]["Labels"]["org.nbpool.id"]: s for s in services_of(swarm, service.pool_name)}
    for row in (mine, spare):
        ctr = in_node(row["node"], "ps", "-q", "--filter", f"label=com.docker.swarm.service.id={by_id[row['id']].id}")
        in_node(row["node"], "kill", ctr)

    def ended() -> bool:
        page = session.get(url, timeout=30)
        return page.status_code != 200 and "stopped unexpectedly" in page.text
    service.wait_for(ended, timeout=30, what="the attendee's ended page")
    service.wait_for(lambda: spare["id"] not in {c["id"] for c in service.admin(
        "GET", "/api/admin/containers").json()["containers"]} and service.stats()["available"] == 2,
        timeout=60, what="the killed spare replaced")
    assert "failed to start" not in service.logs()


def test_a_worker_lost_ends_its_attendees_and_spares_move_to_the_rest(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=2, Pool__max_containers=5)
    service.start(timeout=180)
    sessions, urls = [], []
    on_node2 = None
    while on_node2 is None and len(urls) < 3:
        session = visitor()
        url = spawn(session, service.url)
        sessions.append(session)
        urls.append(url)
        rows = {c["id"]: c for c in service.admin("GET", "/api/admin/containers").json()["containers"]}
        if rows[cid_of(url)]["node"] == WORKERS[1]:
            on_node2 = (session, url)
    assert on_node2 is not None, "no hand-out landed on the second worker"
    session, url = on_node2

    subprocess.run(["docker", "stop", "-t", "2", WORKERS[1]], check=True, capture_output=True, timeout=60,
                   env=HOST_ENGINE)
    try:
        def ended() -> bool:
            try:
                page = session.get(url, timeout=30)
            except requests.Timeout:
                return False  # the proxy still trying the lost machine (its connect_timeout): not ended yet
            return page.status_code != 200 and "stopped answering" in page.text
        service.wait_for(ended, timeout=90, what="the ended page of an attendee on the lost node")
        page = session.get(url, timeout=10)
        assert "has ended" in page.text and WORKERS[1] in page.text

        def refilled() -> bool:
            rows = service.admin("GET", "/api/admin/containers").json()["containers"]
            spares = [c for c in rows if c["state"] == "spare"]
            return len(spares) == 2 and all(c["node"] == WORKERS[0] for c in spares)
        service.wait_for(refilled, timeout=90, what="spares refilled on the remaining worker")
        assert len(services_of(swarm, service.pool_name)) <= 5  # the cap holds
        assert "failed to start" not in service.logs()
    finally:
        done = subprocess.run([*CLUSTER, "up", "2"], capture_output=True, text=True, timeout=600, env=HOST_ENGINE)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    # The node is back: nothing duplicated, its stale containers go, the pool and the swarm agree.
    def agreed() -> bool:
        ours = {s.attrs["Spec"]["Labels"]["org.nbpool.id"] for s in services_of(swarm, service.pool_name)}
        rows = {c["id"] for c in service.admin("GET", "/api/admin/containers").json()["containers"]}
        stale = in_node(WORKERS[1], "ps", "-aq", "--filter", f"label={POOL_LABEL}={service.pool_name}")
        return ours == rows and not stale
    service.wait_for(agreed, timeout=90, what="pool, swarm and the returned node to agree")


def test_nbpool_killed_and_restarted_adopts_the_services_with_kernels_intact(swarm, make_swarm_service):
    service = make_swarm_service(Pool__warm=1)
    service.start(timeout=180)
    session = visitor()
    url = spawn(session, service.url)
    _, kernel = run_code(session, url, "remembered = 41")
    before = service.admin("GET", "/api/admin/containers").json()["containers"]
    service.proc.kill()
    service.proc.wait(30)
    service.start(timeout=180)
    assert run_code(session, url, "print(remembered + 1)", kernel)[0] == "42"  # the same kernel, its state kept
    after = service.admin("GET", "/api/admin/containers").json()["containers"]
    mine = next(c for c in after if c["id"] == cid_of(url))
    assert mine["state"] == "assigned" and mine["node"] == next(c["node"] for c in before if c["id"] == mine["id"])
    assert "adopted assigned container" in service.logs()


def test_full_nodes_take_no_more_and_a_paused_node_keeps_its_attendees(swarm, make_swarm_service):
    reserve = 8 * 2**30
    workers = [n.attrs for n in swarm.nodes.list() if n.attrs["Description"]["Hostname"] in WORKERS]
    room = sum(math.floor(n["Description"]["Resources"]["MemoryBytes"] / reserve) for n in workers)
    service = make_swarm_service(Pool__warm=room + 2, Pool__max_containers=room + 4,
                                 SwarmBackend__mem_reservation="8G", Pool__spawn_concurrency=4)
    service.start(wait_warm=False)
    service.wait_for(lambda: service.stats()["available"] == room, timeout=180, what=f"{room} spares")
    time.sleep(3)
    data = service.admin("GET", "/api/admin/containers").json()
    assert data["available"] == room and len(services_of(swarm, service.pool_name)) == room
    assert any("full" in p for p in data["problems"]), data["problems"]
    assert "failed to start" not in service.logs()

    session = visitor()
    url = spawn(session, service.url)
    paused = next(c["node"] for c in service.admin("GET", "/api/admin/containers").json()["containers"]
                  if c["id"] == cid_of(url))
    node = swarm.nodes.get(paused)
    spec = node.attrs["Spec"]
    try:
        node.update({**spec, "Availability": "pause"})

        def moved() -> bool:
            rows = service.admin("GET", "/api/admin/containers").json()["containers"]
            return not any(c["node"] == paused and c["state"] == "spare" for c in rows)
        service.wait_for(moved, timeout=60, what=f"no spares left on the paused {paused}")
        assert session.get(url, timeout=10).status_code == 200  # its attendee works on
        assert run_code(session, url, "print(2 + 2)")[0] == "4"
    finally:
        node.reload()
        node.update({**node.attrs["Spec"], "Availability": "active"})


def test_a_node_without_the_image_gets_no_container_until_it_has_it(swarm, make_swarm_service):
    # nbpool-node-2 loses its copy of the image (a new node, or a registry that is away).
    in_node(WORKERS[1], "rmi", "-f", "nbpool/notebook:latest")  # -f: containers of earlier tests may still be going
    service = make_swarm_service(Pool__warm=3, SwarmBackend__image_check_interval=5)
    try:
        service.start(timeout=180)
        rows = service.admin("GET", "/api/admin/containers").json()
        assert {c["node"] for c in rows["containers"]} == {WORKERS[0]}  # every spare where the image is
        # Missing, then probed again every image_check_interval (5 s here: "probing" for a moment each time).
        service.wait_for(lambda: {n["name"]: n["image"] for n in service.admin(
            "GET", "/api/admin/containers").json()["nodes"]}[WORKERS[1]] == "missing", timeout=30, what="missing")
        assert "failed to start" not in service.logs() and "lacks image" in service.logs()
    finally:
        done = subprocess.run([*CLUSTER, "up", "2"], capture_output=True, text=True, timeout=600, env=HOST_ENGINE)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]  # copies the image back
    # The next probe finds it there: the node takes containers again (a hand-out makes room for one).
    service.wait_for(lambda: {n["name"]: n["image"] for n in service.admin(
        "GET", "/api/admin/containers").json()["nodes"]}[WORKERS[1]] == "ready", timeout=60, what="image found")
    spawn(visitor(), service.url)
    service.wait_for(lambda: any(c["node"] == WORKERS[1] for c in service.admin(
        "GET", "/api/admin/containers").json()["containers"]), timeout=60, what="a container on the node")


def test_cluster_down_leaves_nothing(swarm, docker_client):
    done = subprocess.run([*CLUSTER, "down"], capture_output=True, text=True, timeout=300, env=HOST_ENGINE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not docker_client.containers.list(all=True, filters={"label": "org.nbpool.cluster=local"})
    assert not docker_client.volumes.list(filters={"label": "org.nbpool.cluster=local"})
    assert not Path("/run/nbpool-cluster/docker.sock").exists()
    assert not (ROOT / ".cluster" / "endpoint").exists()
    info = docker_client.info()
    assert info["Swarm"]["LocalNodeState"] == "inactive"  # the host's engine never joined
    assert json.dumps(info["LiveRestoreEnabled"]) == "true"  # and kept live restore
