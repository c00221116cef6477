"""Benchmark: a spare-served attendee's first cell, with and without the pre-started kernel (issue 13).

    .venv/bin/python benchmarks/first_cell.py [--runs 10] [--settle 5] [--out benchmarks/results/first-cell.md]

Each run starts one fresh container per variant, one at a time, rotating which
goes first, through the Docker backend class the pool uses (nbpool's default
limits: 1 core, 1 GiB), on the real image. The variants: the pre-started kernel
on (DockerBackend.prestart_kernel, the default) and off; and on, with Jupyter
Server's stock kernel WebSocket instead of the image's TCP_NODELAY one
(nbpool_websocket.py), to show what that part is worth on its own. For each:

1. until its server answers ``api/status`` (the pool's readiness check), then the
   landing page once (the pool's warm-up), then with the setting on until the
   server logs its pre-started kernel ready; then ``--settle`` seconds of idling,
   as a spare does;
2. the idle spare's memory and CPU time from the engine (``docker stats``);
3. what the notebook page does once it has loaded, timed from its first request:
   ``POST api/sessions`` for ``01-python-introduction.ipynb`` (python3), the
   kernel's WebSocket and its ``kernel_info`` handshake, then the notebook's first
   code cell as an ``execute_request``, until its first output arrives.

It talks to each container's server straight over the bridge network (the
backend's container-ip endpoint) with its token, not through nbpool's proxy: the
proxy adds the same sub-millisecond relay to both settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from running_service import ROOT
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

sys.path.insert(0, str(ROOT))
from loadtest.jupyter import KernelClient
from loadtest.report import percentile
from spawner.backoff import wait_for_http
from spawner.engines.docker import DockerBackend

NOTEBOOK = "01-python-introduction.ipynb"
READY = re.compile(r"nbpool: pre-started python3 kernel \S+ is ready")
HANDED = "nbpool: handed the pre-started"
MIB = 1024 * 1024
HEADER = ("| pre-started kernel | first output p50 | p95 | session + WebSocket p50 | idle spare, docker stats | "
          "its anonymous memory | CPU used by the idle spare | created → server answers | "
          "created → kernel ready | kernel handed over |\n|---|---|---|---|---|---|---|---|---|---|")


def first_cell() -> tuple[str, str]:
    """The bundled notebook's first code cell, and the line it prints."""
    nb = json.loads((ROOT / "notebook-image" / "workshops" / NOTEBOOK).read_text())
    code = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    return code, "Coffee for 42 people in Lecture hall B costs 75.60 euros"


STOCK_WEBSOCKET = "--ServerApp.kernel_websocket_connection_class=" \
                  "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection"
# name -> the DockerBackend settings of that variant
VARIANTS = {
    "on": dict(prestart_kernel=True),
    "off": dict(prestart_kernel=False),
    "on, stock WebSocket": dict(prestart_kernel=True, command=["start-notebook", STOCK_WEBSOCKET]),
}


@dataclass
class Sample:
    variant: str
    ready_s: float  # created -> api/status answers
    kernel_ready_s: float | None  # created -> the pre-started kernel is logged ready
    mem_mib: float  # docker stats' MEM USAGE: the cgroup's usage less inactive file cache
    rss_mib: float  # anonymous memory (the cgroup's rss): what no other container can share
    cpu_s: float  # CPU time the container used from its start to the idle point
    session_s: float  # POST api/sessions + WebSocket + kernel_info
    first_output_s: float  # from POST api/sessions to the first cell's first output
    handed: bool  # the server logged the hand-over of its pre-started kernel


def memory(stats: dict) -> tuple[float, float]:
    """(docker stats' MEM USAGE, anonymous memory) in MiB, on cgroup v1 or v2."""
    mem = stats["memory_stats"]
    detail = mem.get("stats", {})
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    anon = detail.get("total_rss", detail.get("anon", 0))
    return (mem["usage"] - inactive) / MIB, anon / MIB


async def wait_for_log(container, pattern: re.Pattern, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pattern.search((await asyncio.to_thread(container.logs)).decode(errors="replace")):
        if time.monotonic() > end:
            raise TimeoutError(f"{pattern.pattern!r} not logged within {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def one(variant: str, backend: DockerBackend, engine: docker.DockerClient, pool: str,
              settle: float) -> Sample:
    """One fresh container as a spare, then its attendee's first cell; the container is removed after."""
    cid, token = secrets.token_hex(6), secrets.token_hex(16)
    auth = {"Authorization": f"token {token}"}
    code, expected = first_cell()
    t0 = time.monotonic()
    info = await backend.start(pool, cid, name=f"{pool}-{cid}", token=token, base_url=f"/user/{cid}/", labels={})
    try:
        url = f"{info.endpoint.url}/user/{cid}/"
        await wait_for_http(url + "api/status", headers=auth, timeout=120, most=0.05)
        ready = time.monotonic() - t0
        await AsyncHTTPClient().fetch(HTTPRequest(url + "tree", headers=auth, request_timeout=60))  # the warm-up
        container = engine.containers.get(info.engine_id)
        kernel_ready = None
        if backend.prestart_kernel:
            await wait_for_log(container, READY, 120)
            kernel_ready = time.monotonic() - t0
        await asyncio.sleep(settle)
        stats = await asyncio.to_thread(container.stats, stream=False)
        mem, rss = memory(stats)
        cpu = stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9

        attendee = KernelClient(url, auth, timeout=60)
        try:
            start = time.monotonic()
            await attendee.start_session(NOTEBOOK, "python3")
            connected = time.monotonic()
            result = await attendee.execute(code)
        finally:
            await attendee.shutdown()
        if result.status != "ok" or result.output.strip() != expected:
            raise RuntimeError(f"the first cell printed {result.output!r} ({result.status} {result.error})")
        logs = (await asyncio.to_thread(container.logs)).decode(errors="replace")
        return Sample(variant, ready, kernel_ready, mem, rss, cpu, connected - start,
                      (result.first_output_at or result.reply_at) - start, HANDED in logs)
    finally:
        await backend.remove(info.engine_id)


async def measure(runs: int, settle: float) -> list[Sample]:
    backends = {name: DockerBackend(**settings) for name, settings in VARIANTS.items()}
    names = list(backends)
    engine = docker.from_env(timeout=60)
    pool = f"nbpool-firstcell-{secrets.token_hex(3)}"
    samples: list[Sample] = []
    try:
        for backend in backends.values():
            await backend.setup()
        for i in range(runs):
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate which goes first
                sample = await one(name, backends[name], engine, pool, settle)
                samples.append(sample)
                print(f"run {i + 1:2d} {name:20s}: first output "
                      f"{sample.first_output_s * 1000:6.0f} ms (session {sample.session_s * 1000:4.0f} ms), "
                      f"idle {sample.mem_mib:5.1f} MiB, rss {sample.rss_mib:5.1f} MiB, cpu {sample.cpu_s:.2f} s",
                      file=sys.stderr)
    finally:
        for container in engine.containers.list(all=True, filters={"label": f"org.nbpool.pool={pool}"}):
            container.remove(force=True)
        for backend in backends.values():
            await backend.close()
        engine.close()
    return samples


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def report(samples: list[Sample], runs: int, settle: float) -> str:
    rows = []
    for name in VARIANTS:
        mine = [s for s in samples if s.variant == name]
        first = [s.first_output_s for s in mine]
        session = [s.session_s for s in mine]
        kernel = [s.kernel_ready_s for s in mine if s.kernel_ready_s is not None]
        rows.append(
            f"| {name} | {ms(percentile(first, 50))} | {ms(percentile(first, 95))} | "
            f"{ms(percentile(session, 50))} | {statistics.median(s.mem_mib for s in mine):.0f} MiB | "
            f"{statistics.median(s.rss_mib for s in mine):.0f} MiB | "
            f"{statistics.median(s.cpu_s for s in mine):.2f} s | {statistics.median(s.ready_s for s in mine):.2f} s | "
            f"{f'{statistics.median(kernel):.2f} s' if kernel else '–'} | "
            f"{sum(s.handed for s in mine)}/{len(mine)} |")
    on = [s for s in samples if s.variant == "on"]
    off = [s for s in samples if s.variant == "off"]
    extra_mem = statistics.median(s.mem_mib for s in on) - statistics.median(s.mem_mib for s in off)
    extra_rss = statistics.median(s.rss_mib for s in on) - statistics.median(s.rss_mib for s in off)
    extra_cpu = statistics.median(s.cpu_s for s in on) - statistics.median(s.cpu_s for s in off)
    p50_on = percentile([s.first_output_s for s in on], 50)
    verdict = "met" if p50_on <= 0.1 else "not met"
    raw = "\n".join(
        f"| {i + 1} | {s.variant} | {ms(s.first_output_s)} | {ms(s.session_s)} | "
        f"{s.mem_mib:.1f} | {s.rss_mib:.1f} | {s.cpu_s:.2f} |" for i, s in enumerate(samples))
    return f"""# First cell after the page, with and without the pre-started kernel — `benchmarks/first_cell.py`

{runs} fresh containers per variant in one run, one container at a time, rotating which
variant goes first; {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}. Each container is started by
`DockerBackend` (nbpool's defaults: 1 core, 1 GiB) from `nbpool/notebook:latest`, becomes a spare
as the pool makes one (`api/status` answers, the landing page loaded once), idles {settle:.0f} s, and then
its attendee does what the notebook page does for `{NOTEBOOK}`: `POST api/sessions`
(python3), the kernel WebSocket with its `kernel_info` handshake, and the notebook's first code
cell as an `execute_request`. **First output** is timed from the `POST` to the cell's first output.
The server is reached straight over the bridge network with its token, not through nbpool's
proxy (which relays every variant alike). "on, stock WebSocket" is the pre-started kernel with
Jupyter Server's own kernel WebSocket, without the image's TCP_NODELAY (`nbpool_websocket.py`).

{HEADER}
{chr(10).join(rows)}

Issue 13's target, first output p50 ≤ 100 ms for a spare-served attendee: **{verdict}** ({ms(p50_on)}).

A pre-started kernel costs each spare **{extra_mem:.0f} MiB** (docker stats; {extra_rss:.0f} MiB of it
anonymous memory) and **{extra_cpu:.2f} CPU-seconds** once, at its start, after the server
answers. Docker stats counts page cache too, which containers of one image share in part.

Every run (ms; MiB; CPU-seconds):

| run | variant | first output | session + WebSocket | docker stats | anonymous | CPU |
|---|---|---|---|---|---|---|
{raw}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh containers per variant")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds a spare idles before its attendee")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "first-cell.md"))
    args = parser.parse_args()
    samples = asyncio.run(measure(args.runs, args.settle))
    text = report(samples, args.runs, args.settle)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
