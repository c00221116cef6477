"""Benchmark: one container at a time, on a quiet machine, on the Docker backend and on the Swarm of `make cluster`.

    .venv/bin/python benchmarks/quiet_start.py [--runs 5] [--out benchmarks/results/quiet-start.md]

Drives each backend class itself (what the pool calls), one start after
another: the time until the engine says it runs with an endpoint (Docker:
container created and started; Swarm: service created, task placed and
running, port published), then until its notebook server answers
``api/status`` with its token, then its removal. Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

from running_service import ROOT

sys.path.insert(0, str(ROOT))
from spawner.backoff import wait_for_http
from spawner.engines.docker import DockerBackend
from spawner.engines.swarm import SwarmBackend


async def measure(backend, runs: int) -> dict[str, float]:
    await backend.setup()
    pool = f"nbpool-quiet-{secrets.token_hex(3)}"
    running, ready, removed = [], [], []
    for _ in range(runs):
        cid = secrets.token_hex(6)
        token = secrets.token_hex(16)
        t0 = time.monotonic()
        info = await backend.start(pool, cid, name=f"{pool}-{cid}", token=token, base_url=f"/user/{cid}/",
                                   labels={})
        t1 = time.monotonic()
        await wait_for_http(f"{info.endpoint.url}/user/{cid}/api/status",
                            headers={"Authorization": f"token {token}"}, timeout=120, most=0.05)
        t2 = time.monotonic()
        await backend.remove(info.engine_id)
        t3 = time.monotonic()
        running.append(t1 - t0)
        ready.append(t2 - t0)
        removed.append(t3 - t2)
        await asyncio.sleep(2)  # quiet again
    await backend.close()
    return {"running": statistics.median(running), "ready": statistics.median(ready),
            "removed": statistics.median(removed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quiet-start.md"))
    args = parser.parse_args()
    rows = []
    for name, backend in (("docker", DockerBackend(mem_limit="512M")),
                          ("swarm", SwarmBackend(mem_limit="512M"))):
        result = asyncio.run(measure(backend, args.runs))
        rows.append(f"| {name} | {result['running']:.2f} s | {result['ready']:.2f} s | {result['removed']:.2f} s |")
        print(rows[-1], file=sys.stderr)
    text = (f"One start at a time on a quiet machine, median of {args.runs} ({os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')})\n\n| backend | created → running with an endpoint | created → server "
            "answers | remove call |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
