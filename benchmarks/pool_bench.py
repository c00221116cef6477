"""Benchmark: how fast the pool brings containers up, how fast it hands them out, what it costs.

    .venv/bin/python benchmarks/pool_bench.py [--containers 20] [--concurrency 1,2,4,8] [--big 50]

1. Plain parallel ``docker run`` of the same image, command and settings, then
   polling each container's ``/api/status`` until it answers: the engine's own
   throughput, the yardstick.
2. The pool filling ``--containers`` spares at each ``spawn_concurrency``,
   timed from ``start()`` to the last spare ready (readiness checked the same way).
3. ``--big`` spares at once: the orchestrator's memory with that many
   containers, and ``acquire()`` latency over handing every one of them out
   (finding a spare is constant time; recording the hand-out with the engine,
   before the visitor is redirected, is one ``docker rename``).

Uses the real engine and nbpool/notebook:latest; removes everything it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.routes import RouteTable  # noqa: E402
from spawner.backoff import wait_for_http  # noqa: E402
from spawner.engines.docker import DockerBackend  # noqa: E402
from spawner.pool import Pool  # noqa: E402
from spawner.secret import ServerSecret  # noqa: E402

IMAGE = "nbpool/notebook:latest"
NETWORK = "nbpool-bench"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_pool(name: str, count: int, concurrency: int) -> Pool:
    backend = DockerBackend(image=IMAGE, network_name=NETWORK, mem_limit="512M")
    return Pool(pool_name=name, backend=backend, secret=ServerSecret(secrets.token_bytes(32)), routes=RouteTable(),
                warm=count, max_containers=count, spawn_concurrency=concurrency, start_timeout=300,
                cull_interval=3600, reconcile_interval=3600)


async def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.05)


async def docker_run_baseline(count: int) -> float:
    """``count`` parallel ``docker run``s, as an operator would script them; seconds until all answer."""
    label = f"org.nbpool.pool=nbpool-bench-plain-{secrets.token_hex(3)}"
    token = secrets.token_hex(16)
    subprocess.run(["docker", "network", "create", "-o", "com.docker.network.bridge.enable_icc=false", NETWORK],
                   capture_output=True)

    async def one(i: int) -> None:
        cid = f"plain{i}"
        proc = await asyncio.create_subprocess_exec(
            "docker", "run", "-d", "--label", label, "--network", NETWORK, "-p", "127.0.0.1::8888",
            "--memory", "512m", "--memory-swap", "512m", "--cpus", "1", "--pids-limit", "512",
            "--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", f"NBPOOL_BASE_URL=/user/{cid}/", "-e", f"JUPYTER_TOKEN={token}", IMAGE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(err.decode())
        engine_id = out.decode().strip()
        port = await asyncio.create_subprocess_exec("docker", "port", engine_id, "8888/tcp",
                                                    stdout=asyncio.subprocess.PIPE)
        host_port = (await port.communicate())[0].decode().split(":")[-1].strip()
        await wait_for_http(f"http://127.0.0.1:{host_port}/user/{cid}/api/status",
                            headers={"Authorization": f"token {token}"}, timeout=300)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.monotonic() - started
    finally:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


async def pool_fill(count: int, concurrency: int) -> float:
    pool = make_pool(f"nbpool-bench-{secrets.token_hex(3)}", count, concurrency)
    started = time.monotonic()
    await pool.start()
    try:
        await until(lambda: pool.available == count, timeout=600)
        return time.monotonic() - started
    finally:
        await pool.stop(remove_assigned=True)


async def big_pool(count: int) -> dict:
    before = rss_mib()
    pool = make_pool(f"nbpool-bench-{secrets.token_hex(3)}", count, 4)
    await pool.start()
    try:
        await until(lambda: pool.available == count, timeout=900)
        # warm == max_containers: hand-outs cannot be refilled, so every acquire takes a ready spare
        with_spares = rss_mib()
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            slot = await pool.acquire()
            samples.append(time.perf_counter() - t0)
            assert slot is not None
        after = rss_mib()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        await pool.stop(remove_assigned=True)
    samples.sort()
    return {"rss_before": before, "rss_spares": with_spares, "rss_assigned": after, "peak": peak,
            "p50_us": statistics.median(samples) * 1e6, "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
            "max_us": samples[-1] * 1e6, "samples": len(samples)}


async def main(args) -> None:
    rows = [("cores", str(os.cpu_count()))]

    def note(row: tuple[str, str]) -> None:
        rows.append(row)
        print(f"  {row[0]}: {row[1]}", file=sys.stderr)

    print(f"docker run baseline: {args.containers} containers ...", file=sys.stderr)
    plain = await docker_run_baseline(args.containers)
    plain_rate = args.containers / plain
    note((f"plain parallel `docker run` of {args.containers}, until all answer",
          f"{plain:.1f} s ({plain_rate:.2f} containers/s)"))
    for concurrency in args.concurrency:
        print(f"pool fill: {args.containers} containers at spawn_concurrency={concurrency} ...", file=sys.stderr)
        seconds = await pool_fill(args.containers, concurrency)
        rate = args.containers / seconds
        note((f"pool: {args.containers} ready spares, spawn_concurrency={concurrency}",
              f"{seconds:.1f} s ({rate:.2f} containers/s, {rate / plain_rate:.2f}x docker run)"))
    print(f"big pool: {args.big} containers ...", file=sys.stderr)
    big = await big_pool(args.big)
    rows += [
        (f"acquire() latency over {big['samples']} hand-outs (each recorded with a Docker rename)",
         f"p50 {big['p50_us'] / 1000:.1f} ms, p99 {big['p99_us'] / 1000:.1f} ms, max {big['max_us'] / 1000:.1f} ms"),
        (f"orchestrator memory with {args.big} containers (pool + routes, RSS)",
         f"{big['rss_spares']:.0f} MiB as spares, {big['rss_assigned']:.0f} MiB assigned "
         f"(empty pool: {big['rss_before']:.0f} MiB)"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--concurrency", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--big", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
