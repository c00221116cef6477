"""Prometheus text exposition of the pool's and the proxy's numbers (no client library needed)."""

from __future__ import annotations

from proxy.server import Proxy

from ..pool.pool import Pool

SPAWN_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)


def _line(out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{labels} {value:g}")


def render(pool: Pool, proxy: Proxy) -> str:
    """The /metrics page."""
    out: list[str] = []
    summary = pool.summary()
    for key, text in (("available", "Ready spare containers."), ("assigned", "Containers handed out."),
                      ("launching", "Containers starting."), ("queue", "Visitors waiting in line."),
                      ("capacity", "The pool's cap (max_containers)."), ("warm", "Spares the pool keeps ready.")):
        _line(out, f"nbpool_pool_{key}", "gauge", text, [("", summary[key])])
    _line(out, "nbpool_pool_healthy", "gauge", "1 unless the circuit breaker is open.", [("", int(pool.healthy))])
    stats = pool.stats
    for key, text in (("handed_out", "Containers handed to visitors."), ("failed_starts", "Starts that failed."),
                      ("culled", "Containers culled (idle or too old)."), ("adopted", "Containers adopted at start."),
                      ("replaced", "Containers found dead behind the pool's back."),
                      ("queued_total", "Visitors who had to wait in line.")):
        _line(out, f"nbpool_pool_{key.removesuffix('_total')}_total", "counter", text, [("", getattr(stats, key))])

    spawns = stats.spawn_seconds
    samples = [(f'{{le="{b:g}"}}', sum(1 for s in spawns if s <= b)) for b in SPAWN_BUCKETS]
    samples.append(('{le="+Inf"}', len(spawns)))
    out.append("# HELP nbpool_spawn_seconds Seconds from launching a container to its server answering.")
    out.append("# TYPE nbpool_spawn_seconds histogram")
    for labels, value in samples:
        out.append(f"nbpool_spawn_seconds_bucket{labels} {value}")
    out.append(f"nbpool_spawn_seconds_sum {sum(spawns):g}")
    out.append(f"nbpool_spawn_seconds_count {len(spawns)}")

    p = proxy.stats
    _line(out, "nbpool_proxy_requests_total", "counter", "HTTP requests the proxy parsed.", [("", p.requests_total)])
    _line(out, "nbpool_proxy_connections_total", "counter", "Client connections accepted.",
          [("", p.connections_total)])
    _line(out, "nbpool_proxy_websockets_total", "counter", "Upgraded (WebSocket) connections spliced.",
          [("", p.websockets_total)])
    _line(out, "nbpool_proxy_websockets_active", "gauge", "WebSocket connections open now.",
          [("", p.websockets_active)])
    _line(out, "nbpool_proxy_bad_requests_total", "counter", "Malformed requests refused.", [("", p.bad_requests)])
    _line(out, "nbpool_proxy_errors_total", "counter", "Error responses the proxy made itself, by status.",
          [(f'{{status="{code}"}}', n) for code, n in sorted(p.errors.items())] or [('{status="none"}', 0)])
    return "\n".join(out) + "\n"
