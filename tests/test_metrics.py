"""/metrics (spawner/web/metrics.py): the page parses as Prometheus text, with every name, type and value.

The pool side is a stand-in with the attributes ``render`` reads; the proxy
side is a real ``Proxy`` (not started: its counters are plain attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.server import Proxy
from spawner.pool.stats import PoolStats
from spawner.web import metrics


def counted() -> PoolStats:
    return PoolStats(handed_out=5, queued_total=7, launched=0, failed_starts=1, culled=2, over_disk=3, replaced=6,
                     oom_kills=8, adopted=4, spawn_seconds=[0.3, 0.5, 1.5, 4.0, 200.0])


@dataclass
class StandInPool:
    """What the collector reads of a pool (a real one needs an engine to have numbers worth checking)."""

    healthy: bool = True
    engine_up: bool = True
    stats: PoolStats = field(default_factory=counted)

    def summary(self) -> dict:
        return {"available": 2, "assigned": 3, "launching": 1, "capacity": 10, "queue": 4, "warm": 3}

    def nodes(self) -> list[dict]:
        return [{"name": "node-1", "state": "ready", "availability": "active", "memory_bytes": 8 << 30,
                 "memory_reserved_bytes": 3 << 30, "spare": 1, "assigned": 2, "launching": 0},
                {"name": "node-2", "state": "down", "availability": "active", "memory_bytes": 8 << 30,
                 "memory_reserved_bytes": 0, "spare": 0, "assigned": 0, "launching": 1}]


@pytest.fixture
def proxy() -> Proxy:
    proxy = Proxy(port=0)
    s = proxy.stats
    s.requests_total, s.connections_total, s.websockets_total, s.websockets_active = 11, 12, 13, 2
    s.bad_requests, s.timeouts, s.rejected_connections = 14, 15, 16
    return proxy


def only(pool) -> SimpleNamespace:
    """A service without named workshops: its one pool."""
    return SimpleNamespace(named=False, all=lambda: [SimpleNamespace(name="", pool=pool)])


def scrape(pool, proxy) -> dict:
    """name -> family, from the rendered page (checking its content type on the way)."""
    workshops = pool if isinstance(pool, SimpleNamespace) else only(pool)
    body, content_type = metrics.render(workshops, proxy)
    assert isinstance(body, bytes) and content_type == CONTENT_TYPE_LATEST
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def value(family, name: str | None = None, **labels) -> float:
    (sample,) = [s for s in family.samples if s.name == (name or family.name) and s.labels == labels]
    return sample.value


def test_pool_gauges_and_counters(proxy):
    families = scrape(StandInPool(), proxy)
    gauges = {"available": 2, "assigned": 3, "launching": 1, "capacity": 10, "queue": 4, "warm": 3, "healthy": 1}
    for key, expected in gauges.items():
        family = families[f"nbpool_pool_{key}"]
        assert family.type == "gauge" and value(family) == expected
    counters = {"handed_out": 5, "failed_starts": 1, "culled": 2, "over_disk": 3, "adopted": 4, "replaced": 6,
                "queued": 7, "oom_kills": 8}
    for key, expected in counters.items():
        # The parser names counter families without _total; the sample keeps it, as dashboards see it.
        family = families[f"nbpool_pool_{key}"]
        assert family.type == "counter" and value(family, f"nbpool_pool_{key}_total") == expected
    assert families["nbpool_pool_over_disk"].documentation == "Containers ended by the disk watchdog."
    assert value(scrape(StandInPool(healthy=False), proxy)["nbpool_pool_healthy"]) == 0
    assert value(families["nbpool_engine_up"]) == 1
    assert value(scrape(StandInPool(engine_up=False), proxy)["nbpool_engine_up"]) == 0


def test_exposed_names_are_unchanged(proxy):
    body, _ = metrics.render(only(StandInPool()), proxy)
    text = body.decode()
    for line in ("# TYPE nbpool_pool_queued_total counter", "# TYPE nbpool_pool_handed_out_total counter",
                 "# TYPE nbpool_spawn_seconds histogram", "# TYPE nbpool_proxy_errors_total counter",
                 "# HELP nbpool_pool_capacity The pool's cap (max_containers).",
                 'nbpool_spawn_seconds_bucket{le="0.5"} ', 'nbpool_spawn_seconds_bucket{le="120"} '):
        assert line in text
    assert "_total_total" not in text and "_created" not in text


def test_spawn_histogram_buckets(proxy):
    family = scrape(StandInPool(), proxy)["nbpool_spawn_seconds"]
    assert family.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "nbpool_spawn_seconds_bucket"}
    assert list(buckets) == [f"{b:g}" for b in metrics.SPAWN_BUCKETS] + ["+Inf"]
    # spawns 0.3, 0.5, 1.5, 4.0, 200.0: cumulative, le is inclusive
    assert buckets == {"0.5": 2, "1": 2, "2": 3, "3": 3, "5": 4, "10": 4, "20": 4, "30": 4, "60": 4, "120": 4,
                       "+Inf": 5}
    assert value(family, "nbpool_spawn_seconds_count") == 5
    assert value(family, "nbpool_spawn_seconds_sum") == pytest.approx(206.3)


def test_empty_spawn_histogram(proxy):
    family = scrape(StandInPool(stats=PoolStats()), proxy)["nbpool_spawn_seconds"]
    assert all(s.value == 0 for s in family.samples)


def test_proxy_counters_and_errors_by_status(proxy):
    families = scrape(StandInPool(), proxy)
    counters = {"requests": 11, "connections": 12, "websockets": 13, "bad_requests": 14, "timeouts": 15,
                "rejected_connections": 16}
    for key, expected in counters.items():
        family = families[f"nbpool_proxy_{key}"]
        assert family.type == "counter" and value(family, f"nbpool_proxy_{key}_total") == expected
    active = families["nbpool_proxy_websockets_active"]
    assert active.type == "gauge" and value(active) == 2

    errors = families["nbpool_proxy_errors"]
    assert errors.type == "counter" and [s.labels for s in errors.samples] == [{"status": "none"}]
    assert value(errors, "nbpool_proxy_errors_total", status="none") == 0  # the series exists before any error
    for status in (502, 404, 502, 503, 502):
        proxy.stats.count_error(status)
    errors = scrape(StandInPool(), proxy)["nbpool_proxy_errors"]
    assert {s.labels["status"]: s.value for s in errors.samples} == {"404": 1, "502": 3, "503": 1}


def test_process_and_python_metrics(proxy):
    families = scrape(StandInPool(), proxy)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info",
                 "python_gc_collections"):
        assert name in families, sorted(families)
    assert value(families["process_open_fds"]) > 0


def test_several_scrapes_and_pools_in_one_process(proxy):
    # Each render has its own registry: no "Duplicated timeseries" from a second call or a second pool.
    first = scrape(StandInPool(), proxy)
    second = scrape(StandInPool(stats=PoolStats(handed_out=50)), Proxy(port=0))
    assert value(first["nbpool_pool_handed_out"], "nbpool_pool_handed_out_total") == 5
    assert value(second["nbpool_pool_handed_out"], "nbpool_pool_handed_out_total") == 50
    assert value(second["nbpool_proxy_requests"], "nbpool_proxy_requests_total") == 0
    assert b"nbpool_" not in generate_latest(REGISTRY)  # the library's global registry is left alone


def test_node_metrics_per_node(proxy):
    families = scrape(StandInPool(), proxy)
    assert value(families["nbpool_node_containers"], node="node-1", state="assigned") == 2
    assert value(families["nbpool_node_containers"], node="node-2", state="launching") == 1
    assert value(families["nbpool_node_memory_reserved_bytes"], node="node-1") == 3 << 30
    assert value(families["nbpool_node_up"], node="node-1") == 1
    assert value(families["nbpool_node_up"], node="node-2") == 0


def test_named_workshops_label_every_pool_metric(proxy):
    python = StandInPool()
    r = StandInPool(healthy=False, stats=PoolStats(handed_out=9, spawn_seconds=[2.5]))
    workshops = SimpleNamespace(named=True, all=lambda: [SimpleNamespace(name="python-intro", pool=python),
                                                        SimpleNamespace(name="r-stats", pool=r)])
    families = scrape(workshops, proxy)
    assert value(families["nbpool_pool_handed_out"], "nbpool_pool_handed_out_total", workshop="python-intro") == 5
    assert value(families["nbpool_pool_handed_out"], "nbpool_pool_handed_out_total", workshop="r-stats") == 9
    assert value(families["nbpool_pool_available"], workshop="r-stats") == 2
    assert value(families["nbpool_pool_healthy"], workshop="python-intro") == 1
    assert value(families["nbpool_pool_healthy"], workshop="r-stats") == 0
    # The spawn histogram counts every workshop's launches.
    assert value(families["nbpool_spawn_seconds"], "nbpool_spawn_seconds_count") == 6
