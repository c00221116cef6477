"""Pool logic with a fake backend and a controllable clock: accounting, queueing, backoff, culling."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.routes import RouteTable
from spawner.engines.base import DIED, OOM, REMOVED, Endpoint
from spawner.pool import Pool
from spawner.pool.errors import PoolFull, PoolUnavailable, QueueTimeout
from spawner.pool.kernel_activity import KernelActivity
from spawner.pool.slot import ASSIGNED, SPARE
from spawner.secret import ServerSecret
from tests.fakes import FakeBackend, FakeClock
from tests.resources import echo


@pytest.fixture
async def ready_server():
    running = await echo.start()
    yield running
    await running.stop()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def wall():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def backend(ready_server):
    return FakeBackend(Endpoint("127.0.0.1", ready_server.port))


@pytest.fixture
async def make_pool(backend, clock, wall):
    pools = []

    def make(**settings) -> Pool:
        options = dict(warm=2, max_containers=5, start_timeout=2, cull_interval=3600, reconcile_interval=3600,
                       failure_backoff=0.01, breaker_probe_interval=0.05)
        options.update(settings)
        pool = Pool(backend=backend, routes=RouteTable(), secret=ServerSecret(b"k" * 32),
                    clock=clock, wallclock=wall, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:  # no task of a test's pool may outlive the test
        await pool.stop()


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_spares_fill_to_warm_and_are_routed(make_pool, backend):
    pool = make_pool(warm=3)
    await pool.start()
    await until(lambda: pool.available == 3)
    assert len(backend.running()) == 3
    for slot in pool.slots.values():
        route = pool.routes.get(slot.prefix)
        assert route is slot.route
        assert route.headers == [(b"Authorization", f"token {pool.secret.token_for(slot.cid)}".encode())]
    assert pool.summary() == {"available": 3, "assigned": 0, "launching": 0, "capacity": 5, "queue": 0, "warm": 3}


async def test_acquire_hands_out_a_spare_at_once_and_refills(make_pool, backend):
    pool = make_pool(warm=2)
    await pool.start()
    await until(lambda: pool.available == 2)
    starts_before = sum(1 for c in backend.calls if c[0] == "start")
    slot = await pool.take_spare()
    assert slot is not None and slot.state == ASSIGNED and slot.nonce and slot.assigned_at
    assert pool.launching == 1  # the refill started during the hand-out
    await until(lambda: pool.available == 2)
    assert sum(1 for c in backend.calls if c[0] == "start") == starts_before + 1
    # Recorded with the engine before the hand-out returned (a crash now cannot make it a spare).
    assert ("rename", slot.name) in backend.calls
    assert slot.name.endswith(f"--a{int(slot.assigned_at)}-{slot.nonce}")


async def test_waiters_are_served_in_order(make_pool, backend):
    pool = make_pool(warm=0, max_containers=5)
    await pool.start()
    backend.gate = asyncio.Event()
    tickets = [pool.enqueue() for _ in range(3)]
    assert [t.position for t in tickets] == [1, 2, 3]
    assert pool.launching == 3
    backend.gate.set()
    slots = await asyncio.gather(*(t.future for t in tickets))
    assert len({s.cid for s in slots}) == 3
    assert all(s.state == ASSIGNED for s in slots)
    assert [t.position for t in tickets] == [0, 0, 0]
    # first in line got the first container ready
    ready_order = sorted(slots, key=lambda s: s.assigned_at)
    assert ready_order[0] is slots[0]


async def test_first_ready_container_goes_to_the_front_of_the_line(make_pool, backend):
    pool = make_pool(warm=0, max_containers=5)
    await pool.start()
    backend.start_delay = 0.05
    first = pool.enqueue()
    second = pool.enqueue()
    done, _ = await asyncio.wait([first.future, second.future], return_when=asyncio.FIRST_COMPLETED)
    assert first.future in done


async def test_cap_refuses_with_pool_full(make_pool):
    pool = make_pool(warm=0, max_containers=2)
    await pool.start()
    a = await pool.acquire()
    b = await pool.acquire()
    with pytest.raises(PoolFull) as info:
        await pool.acquire()
    assert info.value.status == 503 and info.value.retry_after > 0
    assert {a.cid, b.cid} == set(pool.slots)


async def test_waiting_line_is_bounded(make_pool, backend):
    pool = make_pool(warm=0, max_containers=50, queue_size=2)
    await pool.start()
    backend.gate = asyncio.Event()
    pool.enqueue()
    pool.enqueue()
    with pytest.raises(PoolFull, match="waiting line full"):
        pool.enqueue()
    backend.gate.set()


async def test_queue_timeout(make_pool, backend):
    pool = make_pool(warm=0)
    await pool.start()
    backend.gate = asyncio.Event()
    with pytest.raises(QueueTimeout):
        await pool.acquire(timeout=0.05)
    assert pool.summary()["queue"] == 0
    backend.gate.set()
    # the container started for the visitor who left is not wasted or leaked: warm=0 removes it
    await until(lambda: pool.launching == 0 and not pool.slots)


async def test_failed_starts_back_off_exponentially_and_log_the_container(make_pool, backend, clock, caplog):
    pool = make_pool(warm=1, failure_backoff=10, failure_backoff_max=35, breaker_threshold=10)
    backend.fail_starts = 1
    backend.unready_starts = 2
    pool.start_timeout = 0.2
    caplog.set_level(logging.ERROR)
    await pool.start()
    await until(lambda: pool.consecutive_failures == 1)
    assert pool.launches.hold_until == pytest.approx(clock() + 10)
    assert pool.launching == 0  # holding off
    clock.advance(10)
    pool.launches.schedule()
    await until(lambda: pool.consecutive_failures == 2)
    assert pool.launches.hold_until == pytest.approx(clock() + 20)
    await until(lambda: not backend.containers)  # the failed container is removed (after its logs are read)
    assert "fake server output" in caplog.text  # the failed container's own logs
    clock.advance(20)
    pool.launches.schedule()
    await until(lambda: pool.consecutive_failures == 3)
    assert pool.launches.hold_until == pytest.approx(clock() + 35)  # capped by failure_backoff_max
    clock.advance(35)
    pool.launches.schedule()
    await until(lambda: pool.available == 1)
    assert pool.consecutive_failures == 0 and pool.healthy


async def test_circuit_breaker_opens_then_a_probe_closes_it(make_pool, backend, clock):
    pool = make_pool(warm=2, breaker_threshold=3, failure_backoff=1, breaker_probe_interval=30)
    backend.fail_starts = 100
    await pool.start()
    for _ in range(10):
        if pool.breaker_open:
            break
        await until(lambda: pool.launching == 0)
        clock.advance(60)
        pool.launches.schedule()
    assert pool.breaker_open and not pool.healthy
    await until(lambda: pool.launching == 0)
    with pytest.raises(PoolUnavailable):
        pool.enqueue()
    # while open, only one probe at a time, and only after breaker_probe_interval
    starts = sum(1 for c in backend.calls if c[0] == "start")
    pool.launches.schedule()
    assert pool.launching == 0
    backend.fail_starts = 0
    clock.advance(31)
    pool.launches.schedule()
    assert pool.launching == 1  # warm=2 wants two: the open breaker allows one probe
    await until(lambda: pool.healthy)
    assert sum(1 for c in backend.calls if c[0] == "start") >= starts + 1
    await until(lambda: pool.available == 2)


async def test_cull_idle_and_max_age_with_a_clock(make_pool, backend, clock, wall):
    pool = make_pool(warm=1, cull_idle=600, cull_max_age=3600)
    await pool.start()
    await until(lambda: pool.available == 1)
    idle = await pool.take_spare()
    busy = await pool.take_spare() or await pool.acquire()
    idle.route.requests += 1  # each visitor's first request went through the proxy: both were opened
    busy.route.requests += 1
    await until(lambda: pool.available == 1)
    spare = next(s for s in pool.slots.values() if s.state == SPARE)

    clock.advance(500)
    wall.advance(500)
    busy.route.last_activity = clock()  # traffic through the proxy
    assert pool.cull_candidates() == []
    clock.advance(200)
    wall.advance(200)
    due = pool.cull_candidates()
    assert [s for s, *_ in due] == [idle] and "idle" in due[0][1] and "10 minutes" in due[0][2]

    removed_while_routed = []
    original_remove = backend.remove

    async def remove_checking_route(engine_id):
        slot = next(s for s in pool.slots.values() if s.engine_id == engine_id)
        removed_while_routed.append(pool.routes.get(slot.prefix) is not None)
        await original_remove(engine_id)

    backend.remove = remove_checking_route
    assert await pool.cull_once() == 1
    assert removed_while_routed == [False]  # the route went first
    assert idle.cid not in pool.slots and spare.cid in pool.slots

    # hours later, still active: max age culls it anyway; the spare is never culled
    clock.advance(3000)
    wall.advance(3000)
    busy.route.last_activity = clock()
    spare.route.last_activity = clock() - 10_000
    assert [s for s, *_ in pool.cull_candidates()] == [busy]
    await pool.cull_once()
    assert busy.cid not in pool.slots and spare.cid in pool.slots


async def test_a_page_s_server_is_culled_when_no_kernel_runs_whatever_polls_it(make_pool, clock, wall):
    pool = make_pool(warm=2, cull_idle=600, cull_embedded_idle=300)
    await pool.start()
    await until(lambda: pool.available == 2)
    page = await pool.take_spare(embedded=True)
    person = await pool.take_spare()
    page.route.requests += 1
    person.route.requests += 1
    activity = KernelActivity(clock)

    def polled(seconds: float) -> None:  # an open page's Thebe polls every 10 s, a person types now and then
        for _ in range(int(seconds // 10)):
            clock.advance(10)
            wall.advance(10)
            page.route.last_activity = person.route.last_activity = clock()

    polled(200)
    activity.ran(page, "k1", "m1", "c1", "print(1)")  # a run through the kernel's WebSocket
    polled(290)
    assert pool.cull_candidates() == []  # 290 s since its last run
    activity.kernel_state(page, "k1", "busy")  # a long run starts: never cut short
    polled(400)
    assert pool.cull_candidates() == []
    activity.kernel_state(page, "k1", "idle")
    polled(310)
    due = pool.cull_candidates()
    assert [s for s, *_ in due] == [page] and "no kernel run for 310s" in due[0][1]
    assert due[0][3] == "idle"  # the person's container, polled the same way, is not culled: cull_idle rules it
    pool.cull_embedded_idle = 0  # off: the page's server is culled like any other (its polls keep it)
    assert pool.cull_candidates() == []


async def test_resize_grows_and_trims_spares(make_pool, backend):
    pool = make_pool(warm=1, max_containers=6)
    await pool.start()
    await until(lambda: pool.available == 1)
    pool.warm = 4
    await until(lambda: pool.available == 4)
    assigned = await pool.take_spare()
    await until(lambda: pool.available == 4)
    pool.warm = 2
    await until(lambda: pool.available == 2 and len(backend.running()) == 3)
    pool.max_containers = 2
    await until(lambda: len(pool.slots) == 2)
    assert assigned.cid in pool.slots  # trimming never touches assigned containers


async def test_drain_replaces_spares_only(make_pool, backend):
    pool = make_pool(warm=2)
    await pool.start()
    await until(lambda: pool.available == 2)
    assigned = await pool.take_spare()
    await until(lambda: pool.available == 2)
    old_spares = {s.cid for s in pool.slots.values() if s.state == SPARE}
    backend.gate = asyncio.Event()
    backend.image = "fake/image:2"
    assert pool.drain() == 2
    backend.gate.set()
    await until(lambda: pool.available == 2 and not (old_spares & set(pool.slots)))
    assert assigned.cid in pool.slots and assigned.state == ASSIGNED
    assert all(backend.containers[s.engine_id].image == "fake/image:2"
               for s in pool.slots.values() if s.state == SPARE)


async def test_launch_under_way_during_a_drain_is_not_kept(make_pool, backend):
    pool = make_pool(warm=1)
    backend.gate = asyncio.Event()
    await pool.start()
    assert pool.launching == 1
    pool.drain()  # the launch in flight belongs to the old image
    backend.gate.set()
    await until(lambda: pool.available == 1)
    assert all(s.generation == pool.state.generation for s in pool.slots.values())


async def test_restart_adopts_assigned_removes_exited_and_replaces_dead(make_pool, backend):
    first = make_pool(warm=1)
    await first.start()
    handed = await first.acquire()
    await first.stop()  # spares go, the assigned container stays (and its name records the hand-out)
    exited = await backend.start(first.pool_name, "deadbeef0000", name="x", token="t", base_url="/user/deadbeef0000/",
                                 labels={})
    backend.kill(exited.engine_id)

    second = make_pool(warm=2)  # a restart: same pool name, same engine, nothing in memory
    await second.start()
    adopted = second.slots[handed.cid]
    assert adopted.state == ASSIGNED and adopted.nonce == handed.nonce
    assert adopted.assigned_at == int(handed.assigned_at)
    assert second.routes.get(adopted.prefix) is adopted.route
    assert exited.engine_id not in backend.containers
    assert second.stats.adopted == 1
    await until(lambda: second.available == 2)

    victim = next(s for s in second.slots.values() if s.state == SPARE)
    backend.kill(victim.engine_id)
    await second.reconcile()
    assert victim.cid not in second.slots and second.stats.replaced == 1
    assert second.routes.get(victim.prefix) is None
    await until(lambda: second.available == 2)
    assert adopted.cid in second.slots


async def test_restart_does_not_adopt_spares_of_an_old_image(make_pool, backend):
    first = make_pool(warm=2)
    await first.start()
    await until(lambda: first.available == 2)
    first.closing = True  # simulate a crash: nothing cleaned up
    first.upkeep.stop()
    backend.image = "fake/image:2"
    second = make_pool(warm=2)
    second.backend.image = "fake/image:2"
    await second.start()
    await until(lambda: second.available == 2)
    assert all(c.image == "fake/image:2" for c in backend.containers.values())


async def test_two_pools_on_one_engine_keep_apart(make_pool, backend):
    a = make_pool(warm=1, pool_name="alpha")
    await a.start()
    await until(lambda: a.available == 1)
    # One backend (one engine) serves both: each call names its pool.
    b = make_pool(warm=1, pool_name="beta", max_containers=3)
    await b.start()
    await until(lambda: b.available == 1)
    await b.reconcile()
    await a.reconcile()
    assert a.available == 1 and b.available == 1 and len(backend.containers) == 2
    await b.stop()
    assert a.available == 1 and len(backend.containers) == 1


async def test_stop_removes_spares_and_keeps_assigned(make_pool, backend):
    pool = make_pool(warm=2)
    await pool.start()
    await until(lambda: pool.available == 2)
    kept = await pool.take_spare()
    backend.gate = asyncio.Event()  # a refill is under way and will be abandoned
    await until(lambda: pool.launching == 1)
    await pool.stop()
    assert [c.cid for c in backend.containers.values()] == [kept.cid]
    assert backend.containers[kept.engine_id].name.endswith(kept.nonce)


async def test_stop_during_a_failed_start_leaves_no_container_behind(make_pool, backend):
    # A start fails while the engine is slow: stop() arrives while the failed container's
    # logs are fetched, and again while it is being removed. Neither may leave it behind.
    for stop_after in (0.05, 0.25):
        pool = make_pool(warm=1, start_timeout=0.1, breaker_threshold=10)
        backend.unready_starts, backend.cleanup_delay = 1, 0.2
        await pool.start()
        await until(lambda: backend.containers)
        await asyncio.sleep(0.1 + stop_after)  # readiness gives up at 0.1 s, then cleanup begins
        await pool.stop()
        assert not backend.containers, f"stop at +{stop_after}s left {list(backend.containers)}"


async def test_stop_can_remove_assigned_too(make_pool, backend):
    pool = make_pool(warm=1)
    await pool.start()
    await until(lambda: pool.available == 1)
    await pool.take_spare()
    await pool.stop(remove_assigned=True)
    assert not backend.containers


async def test_settings_name_the_bad_value():
    from traitlets import TraitError

    backend = FakeBackend(Endpoint("127.0.0.1", 1))
    with pytest.raises(TraitError, match="-1"):
        Pool(backend=backend, secret=ServerSecret(b"k" * 32), warm=-1)
    with pytest.raises(TraitError, match="bad name!"):
        Pool(backend=backend, secret=ServerSecret(b"k" * 32), pool_name="bad name!")
    with pytest.raises(TraitError, match="-5"):
        Pool(backend=backend, secret=ServerSecret(b"k" * 32), cull_idle=-5)


# --- hand-outs that must survive a crash, that were never opened, and one address's holdings ---------

async def test_a_hand_out_the_engine_cannot_record_is_never_given(make_pool, backend):
    pool = make_pool(warm=1)
    await pool.start()
    await until(lambda: pool.available == 1)
    spare = next(iter(pool.slots.values()))
    backend.fail_renames = 1
    with pytest.raises(PoolUnavailable):
        await pool.take_spare()
    # Its state would be unknown after a crash (a used container looking like a spare): it goes.
    await until(lambda: spare.engine_id not in backend.containers)
    assert spare.cid not in pool.slots
    await until(lambda: pool.available == 1)
    slot = await pool.take_spare()
    assert slot is not None and ("rename", slot.name) in backend.calls


async def test_a_crash_right_after_a_hand_out_never_makes_it_a_spare(make_pool, backend):
    first = make_pool(warm=1)
    await first.start()
    await until(lambda: first.available == 1)
    handed = await first.take_spare()
    # Killed right after the hand-out returned: nothing still running in the background finishes.
    for task in list(first.state.background) + list(first.state.launches):
        task.cancel()
    first.closing = True
    first.upkeep.stop()
    second = make_pool(warm=1)
    await second.start()
    assert second.slots[handed.cid].state == ASSIGNED and second.slots[handed.cid].nonce == handed.nonce


async def test_unopened_hand_outs_are_removed_never_handed_out_again(make_pool, backend, wall):
    pool = make_pool(warm=1, max_containers=4, unopened_timeout=120)
    await pool.start()
    await until(lambda: pool.available == 1)
    unopened = await pool.take_spare(owner="203.0.113.9")
    await until(lambda: pool.available == 1)
    opened = await pool.take_spare(owner="203.0.113.9")
    opened.route.requests += 1  # its visitor's first request through the proxy
    await until(lambda: pool.available == 1)
    assert pool.holdings("203.0.113.9") == 2
    wall.advance(100)
    await pool.cull_once()
    assert unopened.state == ASSIGNED  # not yet: two minutes
    wall.advance(30)
    await pool.cull_once()
    # Gone for good: whoever had it may have written to it without a request through the proxy.
    assert unopened.cid not in pool.slots and unopened.engine_id not in backend.containers
    assert "never opened" in pool.ended_reason(unopened.cid)
    assert opened.state == ASSIGNED
    assert pool.holdings("203.0.113.9") == 1
    await until(lambda: pool.available == 1)  # a fresh spare takes its place
    assert all(s.cid != unopened.cid for s in pool.state.spares)


async def test_adopted_assigned_containers_count_as_opened(make_pool, backend, wall):
    first = make_pool(warm=1, unopened_timeout=60)
    await first.start()
    handed = await first.acquire()
    await first.stop()
    second = make_pool(warm=1, unopened_timeout=60)
    await second.start()
    wall.advance(600)
    await second.cull_once()
    assert second.slots[handed.cid].state == ASSIGNED  # its visitor may be back any minute


async def test_holdings_count_tickets_in_line_too(make_pool, backend):
    pool = make_pool(warm=0, max_containers=5)
    await pool.start()
    backend.gate = asyncio.Event()  # nothing becomes ready while we count
    pool.enqueue(owner="198.51.100.7")
    pool.enqueue(owner="198.51.100.7")
    pool.enqueue(owner="192.0.2.44")
    assert pool.holdings("198.51.100.7") == 2 and pool.holdings("192.0.2.44") == 1
    backend.gate.set()


async def test_ended_sessions_say_why(make_pool, backend, clock, wall):
    pool = make_pool(warm=1, cull_idle=600, unopened_timeout=0)
    await pool.start()
    culled = await pool.acquire()
    removed = await pool.acquire()
    assert await pool.remove(removed.cid)
    clock.advance(700)
    await pool.cull_once()
    assert "10 minutes" in pool.ended_reason(culled.cid)
    assert "operator" in pool.ended_reason(removed.cid)
    assert pool.ended_reason("000000000000") is None


async def test_the_disk_watchdog_ends_containers_over_the_limit(make_pool, backend):
    pool = make_pool(warm=1)
    backend.disk_limit = 2 * 2**30
    await pool.start()
    big = await pool.acquire()
    small = await pool.acquire()
    backend.sizes[big.engine_id] = 3 * 2**30
    backend.sizes[small.engine_id] = 1 * 2**30
    assert await pool.check_disk() == 1
    assert big.cid not in pool.slots and big.engine_id not in backend.containers
    assert small.cid in pool.slots
    assert "2GB" in pool.ended_reason(big.cid)
    backend.disk_limit = 0
    backend.sizes[small.engine_id] = 10 * 2**30
    assert await pool.check_disk() == 0  # no limit: nothing measured, nothing ended


# --- told at once: container events, the engine going away and back, the engine's disk -------------------

async def test_a_dead_spare_is_replaced_at_once_not_at_the_next_reconcile(make_pool, backend):
    pool = make_pool(warm=2)  # reconcile_interval is an hour here: only the event can do it
    await pool.start()
    await until(lambda: pool.available == 2)
    victim = next(iter(pool.slots.values()))
    backend.kill(victim.engine_id)
    backend.event(DIED, victim, exit_code=137)
    await until(lambda: victim.cid not in pool.slots and pool.available == 2)
    assert pool.routes.get(victim.prefix) is None and pool.stats.replaced == 1


async def test_an_attendees_dead_container_ends_the_session_saying_why(make_pool, backend, clock):
    pool = make_pool(warm=1)
    await pool.start()
    died = await pool.acquire()
    oomed = await pool.acquire()
    removed = await pool.acquire()
    backend.event(DIED, died, exit_code=1)
    backend.event(OOM, oomed)
    await asyncio.sleep(0)
    assert oomed.state == ASSIGNED and oomed.oom_kills == 1 and pool.stats.oom_kills == 1  # a kernel, not it
    backend.event(DIED, oomed, exit_code=137)
    backend.event(REMOVED, removed)
    await until(lambda: not ({died.cid, oomed.cid, removed.cid} & set(pool.slots)))
    assert pool.ended_reason(died.cid) == "Its server stopped unexpectedly."
    assert "ran out of memory" in pool.ended_reason(oomed.cid)
    assert "removed by an operator" in pool.ended_reason(removed.cid)
    assert all(pool.routes.get(s.prefix) is None for s in (died, oomed, removed))


async def test_a_container_dying_while_it_starts_fails_at_once(make_pool, backend, clock):
    pool = make_pool(warm=1, start_timeout=30)
    backend.unready_starts = 1  # never answers readiness: only its death can end the wait early
    await pool.start()
    await until(lambda: pool.launching == 1)
    starting = next(iter(pool.slots.values()))
    await until(lambda: starting.engine_id)
    backend.event(DIED, starting, exit_code=1)
    await until(lambda: pool.stats.failed_starts == 1, timeout=3)  # not start_timeout (30 s) later
    clock.advance(1)  # past the failure's backoff
    await until(lambda: pool.available == 1)


async def test_while_the_engine_is_away_nothing_fails_and_everyone_is_served_after(make_pool, backend):
    pool = make_pool(warm=1, max_containers=4)
    await pool.start()
    await until(lambda: pool.available == 1)
    backend.down = True
    # The first engine call that finds it away says so: the hand-out is undone (nobody was sent there),
    # and the visitor is told to wait in line rather than refused.
    assert await pool.take_spare() is None
    assert not pool.engine_up and pool.available == 1 and pool.count(ASSIGNED) == 0
    assert "does not answer" in pool.problems()[0] and not pool.healthy
    assert await pool.take_spare() is None  # no hand-out it cannot record: the visitor waits in line
    ticket = pool.enqueue(owner="198.51.100.1")
    starts = sum(1 for c in backend.calls if c[0] == "start")
    await asyncio.sleep(0.3)
    assert sum(1 for c in backend.calls if c[0] == "start") == starts  # no launch into an absent engine
    backend.down = False  # the pool's own probe finds it back
    slot = await asyncio.wait_for(ticket.future, 10)
    assert slot.state == ASSIGNED and pool.engine_up and pool.healthy
    assert pool.stats.failed_starts == 0 and pool.consecutive_failures == 0


async def test_a_start_the_engine_drops_is_not_a_failed_start(make_pool, backend):
    pool = make_pool(warm=1, breaker_threshold=1)
    backend.down = True
    await pool.start()  # reconcile cannot list: it says so and goes on
    pool.on_engine(True)  # the watcher believed it up
    await until(lambda: not pool.engine_up)  # the start found it away
    assert pool.stats.failed_starts == 0 and not pool.breaker_open
    backend.down = False
    await until(lambda: pool.available == 1)


async def test_a_full_engine_disk_stops_launches_until_there_is_room(make_pool, backend):
    pool = make_pool(warm=2, min_free_disk=5 * 2**30)
    backend.free = 1 * 2**30
    await pool.start()
    await asyncio.sleep(0.2)
    assert pool.launching == 0 and pool.available == 0 and "free on the engine's disk" in pool.problems()[0]
    backend.free = 50 * 2**30
    await pool.check_space()
    await until(lambda: pool.available == 2)
    assert pool.healthy


async def test_no_room_on_any_machine_is_not_a_failed_start(make_pool, backend, clock):
    pool = make_pool(warm=2, breaker_threshold=1)
    backend.no_room = "no swarm node can take another container: node-1 full (8G of 8G reserved)"
    await pool.start()
    await until(lambda: pool.problems())
    assert "node-1 full" in pool.problems()[0] and pool.stats.failed_starts == 0 and not pool.breaker_open
    assert pool.available == 0 and not pool.slots  # nothing half-made is kept
    ticket = pool.enqueue(owner="198.51.100.1")  # a visitor keeps their place in line meanwhile
    backend.no_room = ""  # a node joined, or containers ended
    clock.advance(10)  # past the short wait before trying again
    pool.launches.schedule()
    slot = await asyncio.wait_for(ticket.future, 5)
    assert slot.state == ASSIGNED and not pool.problems()


async def test_a_container_lost_with_its_machine_ends_saying_so(make_pool, backend):
    pool = make_pool(warm=1)
    await pool.start()
    slot = await pool.acquire()
    backend.event(DIED, slot, reason="its machine (node-2) stopped answering")
    await until(lambda: slot.cid not in pool.slots)
    assert pool.ended_reason(slot.cid) == "Its machine (node-2) stopped answering."
    assert pool.stats.replaced == 1 and pool.routes.get(slot.prefix) is None


async def test_a_start_whose_machine_goes_away_is_not_a_failed_start(make_pool, backend):
    pool = make_pool(warm=1, start_timeout=30, breaker_threshold=1)
    backend.unready_starts = 1  # it never answers: only the engine's word can end the wait
    await pool.start()
    await until(lambda: pool.launching == 1)
    starting = next(iter(pool.slots.values()))
    await until(lambda: starting.engine_id)
    backend.event(DIED, starting, reason="its machine (node-2) stopped answering")
    await until(lambda: starting.cid not in pool.slots, timeout=3)
    assert pool.stats.failed_starts == 0 and not pool.breaker_open
    await until(lambda: pool.available == 1)  # started again, on whatever the engine has left


async def test_static_cache_sources_are_spares_only_and_a_drain_empties_it(make_pool, backend):
    """Routes of one image share a cache scope; launched containers may fill the cache, adopted assigned ones not."""
    from proxy.cache_entry import Entry
    from proxy.encoding import Policy
    from proxy.static_cache import StaticCache

    pool = make_pool(warm=2)
    pool.static_cache = StaticCache(pool.routes, Policy(), 1 << 20, 1 << 20)
    await pool.start()
    await until(lambda: pool.available == 2)
    scope = f"{backend.image}#0".encode()
    assert all(s.route.share == scope and s.route.fill_ok for s in pool.slots.values())
    taken = await pool.take_spare()
    assert taken.route.fill_ok and taken.route.share == scope  # until the proxy passes it a POST or an upgrade
    pool.static_cache._store((scope, b"static/app.js"), Entry(b"", {b"": b"x" * 100}, b"", b""))

    second = make_pool(warm=1)  # a restart adopts the handed-out container: never a source
    second.static_cache = pool.static_cache
    pool.closing = True
    pool.upkeep.stop()
    await second.start()
    assert second.slots[taken.cid].route.fill_ok is False

    assert second.drain() >= 0
    assert second.static_cache.entries == {}  # the old generation's files are let go
    await until(lambda: second.available == 1)
    spare = next(s for s in second.slots.values() if s.state == SPARE)
    assert spare.route.share == f"{backend.image}#1".encode() and spare.route.fill_ok


async def test_a_shared_gate_gives_each_pool_its_turn():
    from spawner.pool.gate import FairGate

    gate = FairGate(lambda: 2)
    alpha, beta = gate.share("alpha"), gate.share("beta")
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("a1", "a2", "a3", "a4", "a5", "b1", "b2")}

    async def start(share, name):
        async with share:
            order.append(name)
            await release[name].wait()

    # alpha asks for five places first, then beta for two: beta is not left behind all of alpha's.
    tasks = [asyncio.ensure_future(start(alpha, f"a{i}")) for i in range(1, 6)]
    await asyncio.sleep(0)
    tasks += [asyncio.ensure_future(start(beta, f"b{i}")) for i in range(1, 3)]
    await asyncio.sleep(0)
    assert order == ["a1", "a2"]
    for name in ("a1", "a2", "b1", "a3", "b2", "a4", "a5"):
        release[name].set()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["a1", "a2", "b1", "a3", "b2", "a4", "a5"]  # turn by turn, fewest in flight first
    assert gate.total == 0


async def test_a_cancelled_waiter_gives_up_its_turn_and_leaves_the_gate_usable():
    from spawner.pool.gate import FairGate

    gate = FairGate(lambda: 1)
    share = gate.share("p")
    await gate.acquire("p")
    waiter = asyncio.ensure_future(share.__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release("p")
    async with share:
        assert gate.total == 1
    assert gate.total == 0
