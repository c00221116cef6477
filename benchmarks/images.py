"""Benchmark: image build times and sizes, container cold start, memory per container.

    .venv/bin/python benchmarks/images.py [--skip-cold-build] [--starts 5]

Cold builds go to throw-away tags (nbpool-bench/*) on a freshly bootstrapped
base, so nothing is cached and the real images are left alone. Prints a
Markdown table for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.jupyter import KernelClient  # noqa: E402
from spawner.backoff import wait_for_http  # noqa: E402

IMAGE = "nbpool/notebook:latest"
BENCH_BASE_REPO = "nbpool-bench/base"
BENCH_IMAGE = "nbpool-bench/notebook:cold"
# The containers started here carry org.nbpool.pool=BENCH_POOL, so leftovers can be found by label.
BENCH_POOL = "nbpool-bench"


@dataclass
class NotebookServer:
    container: Container
    url: str  # the server's root as reached from the host, e.g. http://127.0.0.1:PORT/user/bench0/
    auth: dict[str, str]


async def start_notebook_container(client: docker.DockerClient, base_url: str) -> NotebookServer:
    """Start a workshop container as the pool does (base URL and token in its environment), wait until ready."""
    token = secrets.token_hex(16)
    container = client.containers.run(
        IMAGE, detach=True, environment={"NBPOOL_BASE_URL": base_url, "JUPYTER_TOKEN": token},
        ports={"8888/tcp": ("127.0.0.1", None)}, labels={"org.nbpool.pool": BENCH_POOL}, mem_limit="1g")
    container.reload()
    port = int(container.ports["8888/tcp"][0]["HostPort"])
    server = NotebookServer(container, f"http://127.0.0.1:{port}{base_url}", {"Authorization": f"token {token}"})
    try:
        await wait_for_http(server.url + "api/status", headers=server.auth, timeout=60)  # the pool's own check
    except TimeoutError:
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
        raise TimeoutError(f"notebook container never became ready; its logs:\n{logs}") from None
    return server


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, env={**os.environ, **env})
    return time.monotonic() - start


def mib(container) -> float:
    stats = container.stats(stream=False)
    mem = stats["memory_stats"]
    # What `docker stats` shows: usage minus the page cache.
    cache = mem.get("stats", {}).get("total_inactive_file", mem.get("stats", {}).get("cache", 0))
    return (mem["usage"] - cache) / 2**20


async def memory_with_kernels(server) -> float:
    """Start one kernel of each kind, run a line in each, and return the container's memory."""
    clients = []
    for name, code in (("python3", "1+1"), ("ir", "1+1"), ("octave", "1+1"), ("bash", "echo 2")):
        client = KernelClient(server.url, server.auth, timeout=120)
        await client.start(name)
        result = await client.execute(code)
        assert result.status == "ok", (name, result.error)
        clients.append(client)
    await asyncio.sleep(3)
    used = mib(server.container)
    for c in clients:
        await c.shutdown()
    return used


async def starts_and_memory(client: docker.DockerClient, count: int) -> list[tuple[str, str]]:
    starts = []
    for i in range(count):
        t0 = time.monotonic()
        server = await start_notebook_container(client, f"/user/bench{i}/")
        starts.append(time.monotonic() - t0)
        if i < count - 1:
            server.container.remove(force=True)
    rows = [(f"container cold start to ready /api/status (median of {count})",
             f"{statistics.median(starts):.2f} s (min {min(starts):.2f}, max {max(starts):.2f})")]
    await asyncio.sleep(5)  # let the server settle after start-up
    rows.append(("idle container memory", f"{mib(server.container):.0f} MiB"))
    rows.append(("memory with one kernel of each kind (python3, ir, octave, bash)",
                 f"{await memory_with_kernels(server):.0f} MiB"))
    server.container.remove(force=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold-build", action="store_true", help="measure only starts and memory")
    parser.add_argument("--starts", type=int, default=5, help="cold starts to take the median of")
    args = parser.parse_args()

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine: say so and stop
        sys.exit(f"no Docker engine ({type(exc).__name__}: {exc}); run 'make engine'")
    rows: list[tuple[str, str]] = [("cores", str(os.cpu_count()))]

    if not args.skip_cold_build:
        base_tag = f"{BENCH_BASE_REPO}:bookworm"
        t_base = timed(["bash", str(ROOT / "arch-base/mkimage.sh"), "--force"], {"NBPOOL_BASE_REPO": BENCH_BASE_REPO})
        t_nb = timed(["bash", str(ROOT / "notebook-image/build.sh"), "--force", "--base", base_tag,
                      "--tag", BENCH_IMAGE], {})
        rows += [
            ("base image cold build (debootstrap + import)", f"{t_base:.0f} s"),
            ("notebook image cold build (uncached)", f"{t_nb:.0f} s"),
            ("base image size", f"{client.images.get(base_tag).attrs['Size'] / 1e6:.0f} MB"),
            ("notebook image size", f"{client.images.get(BENCH_IMAGE).attrs['Size'] / 1e9:.2f} GB"),
        ]
        client.images.remove(BENCH_IMAGE, force=True)
        client.images.remove(base_tag, force=True)

    rows += asyncio.run(starts_and_memory(client, args.starts))

    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
