"""Prometheus metrics of the pool and the proxy, with ``prometheus_client``.

The pool and the proxy keep plain counters (cheap on the hot path); a custom
collector reads them at scrape time. Each ``render`` builds its own
``CollectorRegistry``, never the library's global one, so several pools in one
process (tests) do not collide, and adds the library's process, platform and
garbage-collector collectors to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.server import Proxy

from ..pool.pool import Pool

HEALTHY = ("1 unless something keeps the pool from serving fully (engine away, circuit breaker open, engine's "
           "disk low).")
SPAWN_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)

POOL_GAUGES = (
    ("available", "Ready spare containers."),
    ("assigned", "Containers handed out."),
    ("launching", "Containers starting."),
    ("queue", "Visitors waiting in line."),
    ("capacity", "The pool's cap (max_containers)."),
    ("warm", "Spares the pool keeps ready."),
)
# PoolStats attribute -> help; exposed as nbpool_pool_<name without _total>_total.
POOL_COUNTERS = (
    ("handed_out", "Containers handed to visitors."),
    ("failed_starts", "Starts that failed."),
    ("culled", "Containers culled (idle or too old)."),
    ("over_disk", "Containers ended by the disk watchdog."),
    ("abuse", "Sessions ended by the abuse guard (banned command, CPU budget, destinations)."),
    ("adopted", "Containers adopted at start."),
    ("replaced", "Containers found dead behind the pool's back."),
    ("oom_kills", "Processes killed at a container's memory limit."),
    ("queued_total", "Visitors who had to wait in line."),
)
# proxy Stats attribute -> (metric family, metric name, help)
PROXY_METRICS = (
    (CounterMetricFamily, "requests_total", "nbpool_proxy_requests_total", "HTTP requests the proxy parsed."),
    (CounterMetricFamily, "connections_total", "nbpool_proxy_connections_total", "Client connections accepted."),
    (CounterMetricFamily, "websockets_total", "nbpool_proxy_websockets_total",
     "Upgraded (WebSocket) connections spliced."),
    (GaugeMetricFamily, "websockets_active", "nbpool_proxy_websockets_active", "WebSocket connections open now."),
    (CounterMetricFamily, "bad_requests", "nbpool_proxy_bad_requests_total", "Malformed requests refused."),
    (CounterMetricFamily, "timeouts", "nbpool_proxy_timeouts_total", "Connections ended by a timeout."),
    (CounterMetricFamily, "rejected_connections", "nbpool_proxy_rejected_connections_total",
     "Connections turned away at a connection cap."),
    (CounterMetricFamily, "filtered_headers", "nbpool_proxy_filtered_headers_total",
     "Response headers of attendees' containers dropped for reaching past the container (cookies outside its "
     "path, service-worker scope, clear-site-data, ...)."),
)


def spawn_histogram(spawn_seconds: list[float]) -> HistogramMetricFamily:
    """The spawn times as a histogram, counted now from the pool's list (cumulative buckets)."""
    # le labels as "0.5", "1", … (not the library's "1.0"), as dashboards already match them.
    buckets = [(f"{b:g}", sum(1 for s in spawn_seconds if s <= b)) for b in SPAWN_BUCKETS]
    buckets.append(("+Inf", len(spawn_seconds)))
    return HistogramMetricFamily("nbpool_spawn_seconds",
                                 "Seconds from launching a container to its server answering.",
                                 buckets=buckets, sum_value=sum(spawn_seconds))


def node_metrics(nodes: list[dict]) -> Iterator[Metric]:
    """Per machine of the engine: this pool's containers by state, memory it has and memory reserved."""
    containers = GaugeMetricFamily("nbpool_node_containers", "This pool's containers on each node, by state.",
                                   labels=["node", "state"])
    memory = GaugeMetricFamily("nbpool_node_memory_bytes", "Memory each node has.", labels=["node"])
    reserved = GaugeMetricFamily("nbpool_node_memory_reserved_bytes",
                                 "Memory reserved on each node by the containers on it.", labels=["node"])
    up = GaugeMetricFamily("nbpool_node_up", "1 while a node is ready and takes new containers.", labels=["node"])
    for node in nodes:
        for state in ("spare", "assigned", "launching"):
            containers.add_metric([node["name"], state], node[state])
        memory.add_metric([node["name"]], node["memory_bytes"])
        reserved.add_metric([node["name"]], node["memory_reserved_bytes"])
        up.add_metric([node["name"]], int(node["state"] == "ready" and node["availability"] == "active"))
    yield from (containers, memory, reserved, up)


def all_nodes(workshops) -> list[dict]:
    """The engine's machines with every workshop's containers on each."""
    rows: dict[str, dict] = {}
    for ws in workshops:
        for node in ws.pool.nodes():
            row = rows.setdefault(node["name"], node)
            if row is not node:
                for state in ("spare", "assigned", "launching"):
                    row[state] += node[state]
    return list(rows.values())


class PoolCollector(Collector):
    """Reads the workshops' pools and ``proxy`` whenever the registry is collected.

    With named workshops every pool metric carries a ``workshop`` label (one
    sample per workshop, retiring ones included); without, they have none, as
    before workshops existed.
    """

    def __init__(self, workshops, proxy: Proxy, guard=None, classroom=None):
        self.workshops = workshops
        self.proxy = proxy
        self.guard = guard
        self.classroom = classroom

    def describe(self) -> list[Metric]:
        return []  # no names to reserve: the registry is this collector's alone, and collecting costs a scrape

    def collect(self) -> Iterator[Metric]:
        all_ = self.workshops.all()
        if not self.workshops.named and len(all_) == 1:
            yield from self.one_pool(all_[0].pool)
        else:
            yield from self.labelled(all_)

        p = self.proxy.stats
        for family, key, name, text in PROXY_METRICS:
            yield family(name, text, value=getattr(p, key))
        errors = CounterMetricFamily("nbpool_proxy_errors_total", "Error responses the proxy made itself, by status.",
                                     labels=["status"])
        for code, n in sorted(p.errors.items()) or [("none", 0)]:
            errors.add_metric([str(code)], n)
        yield errors
        yield from cache_metrics(self.proxy.cache)
        if self.guard is not None:
            yield from guard_metrics(self.guard)
        if self.classroom is not None:
            yield from class_metrics(self.classroom)
        # Tasks alive on the event loop: a soak's sign of something started and never ended.
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside the loop (a test): nothing to count
            tasks = 0
        yield GaugeMetricFamily("nbpool_event_loop_tasks", "Tasks alive on nbpool's event loop.", value=tasks)

    @staticmethod
    def one_pool(pool: Pool) -> Iterator[Metric]:
        summary = pool.summary()
        for key, text in POOL_GAUGES:
            yield GaugeMetricFamily(f"nbpool_pool_{key}", text, value=summary[key])
        yield GaugeMetricFamily("nbpool_pool_healthy", HEALTHY, value=int(pool.healthy))
        yield GaugeMetricFamily("nbpool_engine_up", "1 while the container engine answers.", value=int(pool.engine_up))
        stats = pool.stats
        for key, text in POOL_COUNTERS:
            # CounterMetricFamily adds the _total suffix to the samples.
            yield CounterMetricFamily(f"nbpool_pool_{key.removesuffix('_total')}", text, value=getattr(stats, key))
        yield spawn_histogram(stats.spawn_seconds)
        yield from node_metrics(pool.nodes())

    @staticmethod
    def labelled(workshops: list) -> Iterator[Metric]:
        label = ["workshop"]
        for key, text in POOL_GAUGES:
            family = GaugeMetricFamily(f"nbpool_pool_{key}", text, labels=label)
            for ws in workshops:
                family.add_metric([ws.name], ws.pool.summary()[key])
            yield family
        healthy = GaugeMetricFamily("nbpool_pool_healthy", HEALTHY, labels=label)
        for ws in workshops:
            healthy.add_metric([ws.name], int(ws.pool.healthy))
        yield healthy
        yield GaugeMetricFamily("nbpool_engine_up", "1 while the container engine answers.",
                                value=int(all(ws.pool.engine_up for ws in workshops)))
        for key, text in POOL_COUNTERS:
            family = CounterMetricFamily(f"nbpool_pool_{key.removesuffix('_total')}", text, labels=label)
            for ws in workshops:
                family.add_metric([ws.name], getattr(ws.pool.stats, key))
            yield family
        yield spawn_histogram([s for ws in workshops for s in ws.pool.stats.spawn_seconds])
        yield from node_metrics(all_nodes(workshops))


# The shared static cache (proxy.static_cache): (kind, attribute, metric name, help).
CACHE_METRICS = (
    (CounterMetricFamily, "hits", "nbpool_static_cache_hits", "Static files served from the shared cache."),
    (CounterMetricFamily, "misses", "nbpool_static_cache_misses",
     "Static file requests the shared cache did not have (sent to the visitor's own container)."),
    (CounterMetricFamily, "static_relayed", "nbpool_static_requests_to_containers",
     "Requests for static files that reached a container: misses, ranges, and all of them with the cache off."),
    (CounterMetricFamily, "fills", "nbpool_static_cache_fills", "Files fetched from a spare and stored."),
    (CounterMetricFamily, "fill_failures", "nbpool_static_cache_fill_failures",
     "Background fetches that failed (the file is still served by the container)."),
    (CounterMetricFamily, "fills_declined", "nbpool_static_cache_fills_declined",
     "Misses that started no fetch because the fetches in flight were at their bounds (per attendee, in all)."),
    (CounterMetricFamily, "evictions", "nbpool_static_cache_evictions",
     "Files dropped to keep the cache within Proxy.cache_size."),
    (CounterMetricFamily, "bytes_served", "nbpool_static_cache_served_bytes", "Body bytes served from the cache."),
    (GaugeMetricFamily, "bytes", "nbpool_static_cache_bytes", "Memory held by the cache's files, all versions."),
)


def cache_metrics(cache) -> Iterator[Metric]:
    for family, key, name, text in CACHE_METRICS:
        yield family(name, text, value=getattr(cache, key))
    yield GaugeMetricFamily("nbpool_static_cache_entries", "Files in the shared static cache.",
                            value=len(cache.entries))
    yield GaugeMetricFamily("nbpool_static_cache_size_bytes", "The cache's limit (Proxy.cache_size).",
                            value=cache.max_bytes)


def class_metrics(room) -> Iterator[Metric]:
    """The class view's room, counted (spawner.classroom): no names, no code."""
    seats = list(room.seats.values())
    yield GaugeMetricFamily("nbpool_class_attendees", "Attendee sessions the class view shows.", value=len(seats))
    yield GaugeMetricFamily("nbpool_class_hands_raised", "Hands up now.",
                            value=sum(1 for s in seats if s.hand is not None))
    yield GaugeMetricFamily("nbpool_class_stuck", "Attendees stuck now (ClassView's rule).",
                            value=sum(1 for s in seats if s.stuck_since is not None))
    yield CounterMetricFamily("nbpool_class_runs_seen", "Cells run that the proxy's kernel watch saw.",
                              value=room.runs_seen)
    yield CounterMetricFamily("nbpool_class_hands", "Hands raised.", value=room.hands_raised)
    grants = [g for mine in room.helpers.grants.values() for g in mine.values() if g.joined is not None]
    helping = GaugeMetricFamily("nbpool_class_helpers", "Helpers inside attendees' notebooks now, by mode.",
                                labels=["mode"])
    for mode in ("watch", "help"):
        helping.add_metric([mode], sum(1 for g in grants if g.mode == mode))
    yield helping
    yield CounterMetricFamily("nbpool_class_helper_joins", "Helper links opened.", value=room.helpers.joins)
    yield GaugeMetricFamily("nbpool_follow_streams", "Follow pages with a stream open (following the instructor).",
                            value=sum(f.streams for f in room.follow.followed.values()))


def guard_metrics(guard) -> Iterator[Metric]:
    """The abuse guard's actions, warnings, bans, and its own cost (spawner.guard)."""
    actions = CounterMetricFamily("nbpool_abuse_actions", "Sessions the abuse guard ended, by rule.",
                                  labels=["rule"])
    for rule in ("banned_command", "cpu_budget", "destinations"):
        actions.add_metric([rule], guard.actions[rule])
    yield actions
    yield CounterMetricFamily("nbpool_abuse_warnings", "Sessions warned at cpu_warning of their CPU budget.",
                              value=guard.warnings)
    yield GaugeMetricFamily("nbpool_bans", "Bans in force (browsers and networks refused new notebooks).",
                            value=len(guard.bans) if guard.bans is not None else 0)
    yield CounterMetricFamily("nbpool_abuse_guard_cpu_seconds", "CPU time of the guard's own passes.",
                              value=round(guard.pass_seconds, 6))


def registry_for(workshops, proxy: Proxy, guard=None, classroom=None) -> CollectorRegistry:
    """A fresh registry with the pools' and proxy's metrics, and this process's (CPU, memory, fds, GC)."""
    registry = CollectorRegistry()
    registry.register(PoolCollector(workshops, proxy, guard, classroom))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(workshops, proxy: Proxy, guard=None, classroom=None) -> tuple[bytes, str]:
    """The /metrics page: (body, content type)."""
    return generate_latest(registry_for(workshops, proxy, guard, classroom)), CONTENT_TYPE_LATEST
