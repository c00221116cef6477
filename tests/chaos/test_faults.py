"""Faults mid-workshop, on the real service and the real engine: each must cost no attendee their work.

Timings are measured by benchmarks/faults.py; these tests check what must
hold (who keeps what, what the pool and the pages say), with deadlines
generous enough for a slow CI machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.service import cid_of, kernel_client, spawn, visitor

pytestmark = [pytest.mark.docker, pytest.mark.chaos, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]



def pool_containers(docker_client, service) -> dict[str, str]:
    """cid -> engine name of every container of ``service``'s pool that the engine has, running or not."""
    # One list call (the high-level list inspects each in turn, racing with removals).
    return {c["Labels"]["org.nbpool.id"]: c["Names"][0].lstrip("/") for c in docker_client.api.containers(
        all=True, filters={"label": f"org.nbpool.pool={service.pool_name}"})}


def known_to_pool(service) -> dict[str, str]:
    """cid -> state of every container nbpool tracks."""
    return {row["id"]: row["state"] for row in service.admin("GET", "/api/admin/containers").json()["containers"]}


def restart_engine() -> None:
    """Stop dockerd (SIGTERM, as a package upgrade or an operator does) and start it again as `make engine` does."""
    subprocess.run(["bash", str(ROOT / "arch-base" / "engine.sh"), "--restart"], check=True, capture_output=True,
                   timeout=180)


def test_a_killed_spare_is_replaced_by_the_event_not_the_next_reconcile(make_service, docker_client):
    service = make_service(Pool__warm=2, Pool__reconcile_interval=3600)
    service.start()
    spares = pool_containers(docker_client, service)
    first = sorted(spares)[0]
    victim = docker_client.containers.get(spares[first])
    victim.kill()
    service.wait_for(lambda: service.stats()["available"] == 2 and first not in known_to_pool(service),
                     timeout=60, what="a new spare in its place")
    assert "replacing it" in service.logs()


@pytest.fixture
def restart_network(docker_client):
    """A network of the engine-restart test's own, removed after it (after its service and containers).

    Docker 20.10, restarted under live restore, can fail to delete a container's endpoint ("Removing
    stale sandbox … key modified … retrying") and leave its veth on the bridge, answering that IP (and
    its IP-derived MAC) with resets: the next container given the IP never answers. On a network of
    its own, removed with its bridge, that cannot reach the tests after it.
    """
    import docker.errors

    name = "nbpool-tests-restart"
    yield name
    try:
        network = docker_client.networks.get(name)
        for container in (network.attrs.get("Containers") or {}):
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(container, force=True)
        network.remove()
    except docker.errors.NotFound:
        pass


def test_an_engine_restart_keeps_every_attendees_kernel(restart_network, make_service, docker_client):
    # No reconcile pass during the test: what the pool learns, it learns from the engine's events.
    service = make_service(Pool__warm=2, Pool__max_containers=6, Pool__reconcile_interval=3600,
                           DockerBackend__network_name=restart_network)
    service.start()
    session = visitor()
    url = spawn(session, service.url)
    said_down: list[dict] = []
    usage_while_down: list[int] = []  # the rehearsal's measurements, asked while the engine is away

    def watch_health(stop) -> None:
        while not stop.is_set():
            health = requests.get(f"{service.url}/healthz", timeout=10).json()
            if not health["engine_up"]:
                said_down.append(health)
                usage_while_down.append(service.admin("GET", f"/api/admin/usage?cid={cid_of(url)}").status_code)
            time.sleep(0.1)

    async def through_the_restart() -> str:
        client = kernel_client(session, url)
        await client.start("python3")
        assert (await client.execute("x = 41")).status == "ok"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        watcher = loop.run_in_executor(None, watch_health, stop)
        await asyncio.to_thread(restart_engine)
        newcomer = await asyncio.to_thread(spawn, visitor(), service.url)  # served, not refused, right after
        stop.set()
        await watcher
        try:
            # The same kernel, over the same WebSocket: the connection lived through the restart.
            return (await client.execute("print(x + 1)")).output.strip(), newcomer
        finally:
            await client.shutdown()

    result, newcomer = asyncio.run(through_the_restart())
    assert result == "42"
    assert requests.get(newcomer, cookies=None, timeout=30).status_code in (200, 403)  # it exists (not our cookie)
    assert said_down and "does not answer" in said_down[0]["problems"][0]  # /healthz told operators meanwhile
    # Measurements asked meanwhile (as a rehearsal does): "try again" (503) or an answer, never a server
    # error (it answered 500 when the engine's stats call failed).
    assert usage_while_down and 500 not in usage_while_down, usage_while_down
    service.wait_for(lambda: requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
                     and service.stats()["available"] == 2, timeout=60, what="the pool whole again")
    health = requests.get(f"{service.url}/healthz", timeout=10).json()
    assert health["consecutive_failures"] == 0
    assert "nbpool_pool_failed_starts_total 0.0" in service.admin("GET", "/metrics").text
    assert session.get(url, timeout=30).status_code == 200
    # The event stream reconnected by itself: a spare killed now is still replaced at once.
    spare = next(cid for cid, state in known_to_pool(service).items() if state == "spare")
    docker_client.containers.get(pool_containers(docker_client, service)[spare]).kill()
    service.wait_for(lambda: spare not in known_to_pool(service) and service.stats()["available"] == 2,
                     timeout=60, what="the killed spare replaced after the restart")


def test_sigkill_during_a_burst_leaves_no_orphan_and_nobody_loses_a_container(make_service, docker_client):
    service = make_service(Pool__warm=0, Pool__max_containers=20, Pool__spawn_concurrency=4)
    service.start()
    visitors = [visitor() for _ in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        # Twenty arrive at once and follow the waiting line, as browsers do.
        arrivals = [pool.submit(spawn, session, service.url, "", 120) for session in visitors]
        # A few served: in their containers already (assigned is not enough: a visitor is served once
        # the hand-out is recorded and they are redirected, a moment later).
        service.wait_for(lambda: sum(f.done() and f.exception() is None for f in arrivals) >= 3, timeout=60,
                         what="a few served")
        service.proc.send_signal(signal.SIGKILL)  # mid-burst: some served, some starting, some in line
        service.proc.wait(30)
        concurrent.futures.wait(arrivals, timeout=120)
    served = {cid_of(f.result()): (session, f.result()) for session, f in zip(visitors, arrivals, strict=True)
              if f.exception() is None}
    assert served  # (the others were in line when it died: they simply ask again)
    service.start(wait_warm=False)
    # Every container on the engine is the pool's (adopted or removed), none twice.
    service.wait_for(lambda: set(pool_containers(docker_client, service)) <= set(known_to_pool(service)),
                     timeout=60, what="no orphans")
    for cid, (session, url) in served.items():  # whoever had one still has it
        assert known_to_pool(service)[cid] == "assigned"
        assert session.get(url, timeout=30).status_code == 200
    assert "assigned adopted" in service.logs()


def test_sigkill_during_a_drain_and_a_cull_keeps_the_active_attendee(make_service, docker_client):
    service = make_service(Pool__warm=3, Pool__max_containers=8, Pool__cull_idle=4, Pool__cull_interval=1)
    service.start()
    active, idle = visitor(), visitor()
    active_url = spawn(active, service.url)
    spawn(idle, service.url)  # opened once, then left alone: due for culling when nbpool dies
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # keeps its container busy while the other one idles
        assert active.get(active_url, timeout=30).ok
        time.sleep(0.5)
    assert service.admin("POST", "/api/admin/drain").ok
    service.proc.send_signal(signal.SIGKILL)  # spares half replaced, the idle one being culled
    service.proc.wait(30)
    service.start(wait_warm=True)
    service.wait_for(lambda: set(pool_containers(docker_client, service)) <= set(known_to_pool(service)),
                     timeout=60, what="no orphans")
    assert active.get(active_url, timeout=30).status_code == 200
    assert known_to_pool(service)[cid_of(active_url)] == "assigned"
    assert sum(1 for state in known_to_pool(service).values() if state == "spare") == 3


def test_a_kernel_killed_at_the_memory_limit_is_seen_by_the_operator(make_service):
    service = make_service(Pool__warm=1, DockerBackend__mem_limit="256M")
    service.start()
    session = visitor()
    url = spawn(session, service.url)

    async def exhaust() -> str:
        client = kernel_client(session, url)
        kernel = await client.start("python3")
        try:
            await asyncio.wait_for(client.execute("hog = b'x' * (400 * 2**20)"), 60)
        except Exception:  # the kernel died under it: what the attendee sees as a kernel restart
            pass
        return kernel

    asyncio.run(exhaust())
    service.wait_for(lambda: any(r["oom_kills"] for r in service.admin("GET", "/api/admin/containers")
                                 .json()["containers"]), timeout=30, what="the OOM kill counted")
    assert "killed at its memory limit" in service.logs()
    assert "nbpool_pool_oom_kills_total 1.0" in service.admin("GET", "/metrics").text
    assert session.get(url, timeout=30).status_code == 200  # the container, and the session, live on


def test_a_nearly_full_engine_disk_stops_launches_and_says_why(make_service):
    service = make_service(Pool__warm=2, Pool__min_free_disk="1000T", Pool__disk_check_interval=1)
    service.start(wait_warm=False)
    service.wait_for(lambda: requests.get(f"{service.url}/healthz", timeout=10).status_code == 503, timeout=30,
                     what="/healthz saying the disk is low")
    assert "free on the engine's disk" in requests.get(f"{service.url}/healthz", timeout=10).json()["problems"][0]
    time.sleep(2)
    assert service.stats()["available"] == 0 and service.stats()["launching"] == 0
    service.write_config(Pool__min_free_disk="1G")
    service.sighup()
    service.wait_for(lambda: service.stats()["available"] == 2, timeout=60, what="launches resumed")
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200


def test_a_fork_bomb_meets_the_pids_limit_and_hurts_nobody_else(make_service, docker_client):
    service = make_service(Pool__warm=2, DockerBackend__pids_limit=128)
    service.start()
    bomber, neighbour = visitor(), visitor()
    bomb_url, other_url = spawn(bomber, service.url), spawn(neighbour, service.url)
    container = docker_client.containers.get(pool_containers(docker_client, service)[cid_of(bomb_url)])
    # Children that hold their pid for 20 s; the count of those it could start goes to a file.
    bomb = ("import os, time\nn = 0\ntry:\n    for _ in range(5000):\n        if os.fork() == 0:\n"
            "            time.sleep(20)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
            "open('/tmp/forked', 'w').write(str(n))")
    container.exec_run(["python3", "-c", bomb], user="1000", detach=True)
    time.sleep(3)  # the bomb has met the limit by now, its children still hold it
    assert neighbour.get(other_url, timeout=30).status_code == 200  # meanwhile the neighbour never noticed
    deadline = time.monotonic() + 40
    while container.exec_run(["cat", "/tmp/forked"], user="1000").exit_code != 0:
        assert time.monotonic() < deadline, "the fork loop never ended"
        time.sleep(0.5)
    forked = int(container.exec_run(["cat", "/tmp/forked"], user="1000").output)
    assert forked < 128  # stopped at the limit, not at 5000
    service.wait_for(lambda: bomber.get(bomb_url, timeout=30).status_code == 200, timeout=60,
                     what="the bomber's own server answering again")
