"""The pool against the real Docker engine and the real workshop image."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from loadtest.jupyter import KernelClient
from proxy.routes import RouteTable
from spawner.engines.docker import DockerBackend
from spawner.pool import Pool
from spawner.pool.slot import ASSIGNED, SPARE
from spawner.secret import ServerSecret
from tests.dockertools import TEST_POOL, remove_pool_containers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NETWORK = TEST_POOL  # the session's own network: its cleanup removes it


async def until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        await asyncio.sleep(0.1)


@pytest.fixture
def pool_name(docker_client, notebook_image, request):
    """A pool name of this test's own; afterwards nothing of it may be left on the engine."""
    name = f"nbpool-test-{secrets.token_hex(3)}"
    yield name
    failed = getattr(request.node, "call_failed", False)
    leftovers = remove_pool_containers(docker_client, name, show_logs=failed)
    assert not leftovers or failed, f"test left {leftovers} behind"


@pytest.fixture
def secret():
    return ServerSecret(secrets.token_bytes(32))


def make_pool(pool_name: str, secret: ServerSecret, routes: RouteTable | None = None, **settings) -> Pool:
    backend = DockerBackend(image="nbpool/notebook:latest", network_name=NETWORK, mem_limit="512M",
                            cpu_limit=1.0, pids_limit=256)
    options = dict(warm=1, max_containers=4, spawn_concurrency=2, start_timeout=90, cull_interval=3600,
                   reconcile_interval=3600)
    options.update(settings)
    return Pool(pool_name=pool_name, backend=backend, secret=secret,
                routes=RouteTable() if routes is None else routes, **options)


async def test_spares_appear_ready_and_hand_out_at_once(pool_name, secret, docker_client):
    pool = make_pool(pool_name, secret, warm=2)
    await pool.start()
    try:
        await until(lambda: pool.available == 2, what="two ready spares")
        for slot in pool.slots.values():
            client = KernelClient(f"{slot.endpoint.url}{slot.base_url}",
                                  {"Authorization": f"token {secret.token_for(slot.cid)}"})
            assert await client.kernels() == []  # the server answers, with the derived token
        slot = await pool.take_spare()
        assert slot is not None and slot.state == ASSIGNED
        # The engine has the hand-out before take_spare returns (a crash now cannot make it a spare).
        assert docker_client.containers.get(slot.engine_id).name.endswith(f"--a{int(slot.assigned_at)}-{slot.nonce}")
        assert pool.launching == 1
        await until(lambda: pool.available == 2, what="refill")
    finally:
        await pool.stop(remove_assigned=True)


async def test_limits_and_isolation_show_in_docker_inspect(pool_name, secret, docker_client):
    pool = make_pool(pool_name, secret, warm=1)
    pool.backend.start_cpu_shares = 64
    await pool.start()
    try:
        await until(lambda: pool.available == 1)
        slot = next(iter(pool.slots.values()))
        attrs = docker_client.api.inspect_container(slot.engine_id)
        host = attrs["HostConfig"]
        assert host["Memory"] == 512 * 2**20
        assert host["MemorySwap"] == 512 * 2**20
        assert host["NanoCpus"] == 1_000_000_000
        assert host["PidsLimit"] == 256
        assert host["CpuShares"] == 1024  # started at a low weight, raised once ready
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert attrs["Config"]["User"] == "1000:1000"
        assert not host["PortBindings"]  # reached at its bridge address: nothing published on the host
        assert slot.endpoint.host == attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        assert NETWORK in attrs["NetworkSettings"]["Networks"]
        network = docker_client.networks.get(NETWORK)
        assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        labels = attrs["Config"]["Labels"]
        assert labels["org.nbpool.pool"] == pool_name and labels["org.nbpool.id"] == slot.cid
        token = secret.token_for(slot.cid)
        assert not any(token in value for value in labels.values()), "a secret leaked into the labels"
    finally:
        await pool.stop(remove_assigned=True)


async def test_host_port_mode_publishes_on_loopback_only(pool_name, secret, docker_client):
    pool = make_pool(pool_name, secret, warm=1)
    pool.backend.endpoint_mode = "host-port"
    await pool.start()
    try:
        await until(lambda: pool.available == 1)
        slot = next(iter(pool.slots.values()))
        attrs = docker_client.api.inspect_container(slot.engine_id)
        bindings = attrs["HostConfig"]["PortBindings"]["8888/tcp"]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
        published = attrs["NetworkSettings"]["Ports"]["8888/tcp"]
        assert all(b["HostIp"] == "127.0.0.1" for b in published)
        assert slot.endpoint.host == "127.0.0.1" and slot.endpoint.port == int(published[0]["HostPort"])
    finally:
        await pool.stop(remove_assigned=True)


async def test_container_killed_behind_the_pools_back_is_replaced(pool_name, secret, docker_client):
    routes = RouteTable()
    pool = make_pool(pool_name, secret, routes, warm=1, reconcile_interval=2)
    await pool.start()
    try:
        await until(lambda: pool.available == 1)
        victim = await pool.take_spare()
        await until(lambda: pool.available == 1)
        docker_client.containers.get(victim.engine_id).kill()
        # within one reconcile interval (plus the reconcile itself)
        await until(lambda: victim.cid not in pool.slots, timeout=10, what="the dead container dropped")
        assert routes.get(victim.prefix) is None
        await until(lambda: pool.available == 1 and pool.count(ASSIGNED) == 0)
        assert pool.stats.replaced == 1
    finally:
        await pool.stop(remove_assigned=True)


async def test_restart_adopts_an_assigned_container_with_its_kernel(pool_name, secret):
    first = make_pool(pool_name, secret, warm=1)
    await first.start()
    await until(lambda: first.available == 1)
    slot = await first.take_spare()
    auth = {"Authorization": f"token {secret.token_for(slot.cid)}"}
    client = KernelClient(f"{slot.endpoint.url}{slot.base_url}", auth)
    kernel_id = await client.start("python3")
    assert (await client.execute("attendee_work = 6 * 7")).status == "ok"
    client.detach()
    await first.stop()  # the spare goes, the attendee's container stays

    routes = RouteTable()
    second = make_pool(pool_name, secret, routes, warm=1)  # a restart: a new pool, same secret
    await second.start()
    try:
        adopted = second.slots[slot.cid]
        assert adopted.state == ASSIGNED and adopted.nonce == slot.nonce
        route = routes.get(adopted.prefix)
        assert route is not None and route.target.url == slot.endpoint.url
        client = KernelClient(f"{adopted.endpoint.url}{adopted.base_url}", auth)
        await client.attach(kernel_id)
        result = await client.execute("print(attendee_work)")
        assert result.output.strip() == "42"
        await client.shutdown()
        await until(lambda: second.available == 1)
        assert sum(1 for s in second.slots.values() if s.state == SPARE) == 1
    finally:
        await second.stop(remove_assigned=True)


async def test_stopping_leaves_no_spare_behind(pool_name, secret, docker_client):
    pool = make_pool(pool_name, secret, warm=2)
    await pool.start()
    await until(lambda: pool.available == 2)
    kept = await pool.take_spare()
    await pool.stop()
    names = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"org.nbpool.pool={pool_name}"})]
    assert names == [f"{pool_name}-{kept.cid}--a{int(kept.assigned_at)}-{kept.nonce}"]
    docker_client.containers.get(kept.engine_id).remove(force=True)


async def test_a_broken_image_trips_the_breaker_and_logs_why(pool_name, secret, caplog):
    pool = make_pool(pool_name, secret, warm=1, start_timeout=5, breaker_threshold=2, failure_backoff=0.1)
    pool.backend.command = ["sh", "-c", "echo 'the server is broken on purpose' >&2; exit 3"]
    await pool.start()
    try:
        await until(lambda: pool.breaker_open, timeout=60, what="the breaker opening")
        assert not pool.healthy
        assert "broken on purpose" in caplog.text
    finally:
        await pool.stop(remove_assigned=True)
