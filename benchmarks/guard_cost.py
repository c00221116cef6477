"""What the abuse guard costs (issue 25): its reading of N containers, every check_interval, in CPU.

Starts N containers of the workshop image, each with the processes a live session has (a notebook
server's worth: a few Python processes and shells), plus a connection out, and runs the guard's own
reading (``AbuseGuard._read_all``: cgroups, command lines, the host's connection table) over all of them,
pass after pass, as AbuseGuard.check does every check_interval. Reports the CPU time per pass and the share of one
core at the default interval. Target: under 2 % of one core with 60 containers.

    .venv/bin/python benchmarks/guard_cost.py [--containers 60] [--passes 60] [--interval 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import time

import docker

from spawner import probe
from spawner.engines.base import Endpoint
from spawner.guard.guard import AbuseGuard
from spawner.pool.slot import ASSIGNED, Slot

IMAGE = os.environ.get("NBPOOL_IMAGE", "nbpool/notebook:latest")
# A session's processes: a server, a kernel, a terminal's shell, a background job, and a connection out.
SESSION = ("python3 -c 'import time; time.sleep(3600)' & python3 -c 'import time; time.sleep(3600)' & "
           "sh -c 'sleep 3600' & sleep 3600 & "
           "python3 -c 'import socket, time; s = socket.socket(); s.setblocking(False); "
           "s.connect_ex((\"198.51.100.1\", 80)); time.sleep(3600)' & wait")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=60)
    parser.add_argument("--passes", type=int, default=60)
    parser.add_argument("--interval", type=float, default=5.0, help="AbuseGuard.check_interval to report for")
    args = parser.parse_args()
    client = docker.from_env()
    label = f"nbpool-guard-bench-{secrets.token_hex(3)}"
    containers = []
    try:
        started = time.monotonic()
        for _ in range(args.containers):
            containers.append(client.containers.run(IMAGE, ["sh", "-c", SESSION], entrypoint=[], detach=True,
                                                    labels={"org.nbpool.bench": label}, mem_limit="256m"))
        pids, watched = [], []
        for container in containers:
            container.reload()
            pid = int(container.attrs["State"]["Pid"])
            address = container.attrs["NetworkSettings"]["IPAddress"]
            pids.append(pid)
            watched.append((None, Slot(cid=container.id[:12], state=ASSIGNED, generation=0, created=0.0,
                                       engine_id=container.id, endpoint=Endpoint(address, 8888)), pid))
        guard = AbuseGuard()
        time.sleep(3)  # every process started
        print(f"{len(pids)} containers started in {time.monotonic() - started:.0f}s")
        mounts = probe.CgroupMounts()
        readings = [probe.read(mounts, pid) for pid in pids]
        processes = sum(len(r.commands) for r in readings)
        assert all(r.cpu_seconds is not None for r in readings), "a container's cgroup could not be read"
        cpu, wall = [], []
        for _ in range(args.passes):
            c0, w0 = time.process_time(), time.perf_counter()
            guard._read_all(watched)  # what AbuseGuard.check reads in one pass (its thread's part)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        cpu.sort()
        wall.sort()
        median, worst = cpu[len(cpu) // 2], cpu[-1]
        seen = sum(len(r.destinations) for r in guard._read_all(watched))
        print(f"cores: {os.cpu_count()}; {len(pids)} containers, {processes} processes and {seen} connections "
              f"out read per pass (host connection table: {'yes' if probe.host_destinations() is not None else 'no'})")
        print(f"CPU per pass: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms "
              f"(wall median {wall[len(wall) // 2] * 1000:.1f} ms)")
        print(f"share of one core at check_interval {args.interval:g}s: {median / args.interval * 100:.2f} % "
              f"(target < 2 %)")
    finally:
        for container in containers:
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass
        client.close()


if __name__ == "__main__":
    main()
