"""Benchmark: what a per-container disk quota on btrfs costs container starts, against overlay2 (issue 24).

    .venv/bin/python benchmarks/disk_quota.py --btrfs unix:///run/nbpool-btrfs/docker.sock \\
        [--overlay unix:///var/run/docker.sock] [--runs 10] [--burst 4] [--write-mb 200] \\
        [--out benchmarks/results/disk-quota.md]

Two engines side by side, in one sitting, on the same machine: the overlay2 one (no quota: nbpool's
watchdog measures) and a btrfs one (quota groups: `--storage-opt size`, as `make engine` sets up where
the host offers no quota). Each container is started by the Docker backend class the pool uses, with
nbpool's defaults (1 core, 1 GiB, 512 pids, disk_limit 2G: on btrfs a quota of 2G plus the image),
one at a time, alternating the engines and which goes first. For each:

1. create → running: ``DockerBackend.start`` (create, start, inspect) returns;
2. create → Jupyter ready: its server answers ``api/status`` over the bridge network (the pool's check);
3. the CPU time dockerd and its containerd used meanwhile (from /proc; the kernel's own btrfs threads
   are not in it);
4. writing inside it: ``dd`` of ``--write-mb`` MB with ``conv=fsync``, as its user;
5. remove: ``DockerBackend.remove`` (force, with volumes).

Then a burst: ``--burst`` containers started at once on each engine, until all answer.
The firewall is left out on both (egress 'open'): a second engine beside the host's runs without
iptables, and the rules cost both engines the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from running_service import ROOT

sys.path.insert(0, str(ROOT))
from loadtest.report import percentile
from spawner.backoff import wait_for_http
from spawner.engines.docker import DockerBackend
from spawner.engines.docker_disk import storage_words
from spawner.engines.firewall import ContainerFirewall

TICK = os.sysconf("SC_CLK_TCK")
HEADER = ("| storage | per-container quota | create → running p50 | p95 | create → Jupyter ready p50 | p95 | "
          "dockerd + containerd CPU per start | remove p50 | dd {mb} MB p50 | burst of {burst}, all ready |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


@dataclass
class Engine:
    label: str
    host: str
    backend: DockerBackend
    pids: list[int]
    storage: str = ""
    running: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    burst: float = 0.0


def daemon_pids(host: str) -> list[int]:
    """dockerd serving ``host`` (a unix socket URL) and its containerd, from /proc."""
    sock = host.removeprefix("unix://")
    default = sock in ("/var/run/docker.sock", "/run/docker.sock")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm != "dockerd":
            continue
        named = any(sock.encode() in a for a in args)
        if named or (default and not any(a.startswith(b"-H") or a.startswith(b"--host") for a in args)):
            found.append(int(pid))
    if len(found) != 1:
        raise SystemExit(f"cannot tell which dockerd serves {host}: {found or 'none'}")
    dockerd = found[0]
    children = [int(p) for p in filter(str.isdigit, os.listdir("/proc"))
                if _stat(int(p)) and _stat(int(p))[1] == dockerd and _comm(int(p)) == "containerd"]
    return [dockerd, *children]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, parent pid) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[1])


def cpu_of(pids: list[int]) -> float:
    return sum((_stat(p) or (0.0, 0))[0] for p in pids)


async def one(engine: Engine, pool: str, write_mb: int) -> None:
    backend = engine.backend
    cid, token = secrets.token_hex(6), secrets.token_hex(16)
    cpu0, t0 = cpu_of(engine.pids), time.monotonic()
    info = await backend.start(pool, cid, name=f"{pool}-{cid}", token=token, base_url=f"/user/{cid}/", labels={})
    try:
        engine.running.append(time.monotonic() - t0)
        await wait_for_http(f"{info.endpoint.url}/user/{cid}/api/status",
                            headers={"Authorization": f"token {token}"}, timeout=120, most=0.05)
        engine.ready.append(time.monotonic() - t0)
        engine.cpu.append(cpu_of(engine.pids) - cpu0)
        container = backend._docker().containers.get(info.engine_id)
        started = time.monotonic()
        code, out = await asyncio.to_thread(
            container.exec_run, ["dd", "if=/dev/zero", "of=/home/jovyan/big", "bs=1M", f"count={write_mb}",
                                 "conv=fsync"], user="1000")
        took = time.monotonic() - started
        if code == 0:
            engine.write.append(took)
        else:
            engine.write_errors.append(out.decode(errors="replace").strip().splitlines()[0])
    finally:
        started = time.monotonic()
        await backend.remove(info.engine_id)
        engine.remove.append(time.monotonic() - started)


async def burst(engine: Engine, pool: str, count: int) -> None:
    """``count`` containers started at once; the time until every one answers."""
    backend = engine.backend

    async def start_one() -> str:
        cid, token = secrets.token_hex(6), secrets.token_hex(16)
        info = await backend.start(pool, cid, name=f"{pool}-{cid}", token=token, base_url=f"/user/{cid}/",
                                   labels={})
        await wait_for_http(f"{info.endpoint.url}/user/{cid}/api/status",
                            headers={"Authorization": f"token {token}"}, timeout=180, most=0.05)
        return info.engine_id

    t0 = time.monotonic()
    ids = await asyncio.gather(*(start_one() for _ in range(count)))
    engine.burst = time.monotonic() - t0
    await asyncio.gather(*(backend.remove(i) for i in ids))


def make_engine(label: str, host: str, network: str, **settings) -> Engine:
    backend = DockerBackend(network_name=network, firewall=ContainerFirewall(egress="open"), **settings)
    backend._client = docker.DockerClient(base_url=host, timeout=120)  # one engine each, in one process
    return Engine(label, host, backend, daemon_pids(host))


async def measure(args) -> list[Engine]:
    network = f"nbpool-diskbench-{secrets.token_hex(3)}"
    pool = f"nbpool-diskbench-{secrets.token_hex(3)}"
    # --no-quota: the same btrfs engine without a limit (run 'btrfs quota disable' on its file system first),
    # to tell what quota groups cost from what btrfs on a loop file costs.
    btrfs = make_engine("btrfs", args.btrfs, network, **({"disk_limit": 0} if args.no_quota else {}))
    engines = [make_engine("overlay2", args.overlay, network), btrfs]
    try:
        for engine in engines:
            await engine.backend.setup()
            engine.storage = storage_words(engine.backend._engine_info)
            if engine.label == "btrfs" and not engine.backend.disk_quota and not args.no_quota:
                raise SystemExit(f"{engine.host} has no per-container quota ({engine.storage})")
            await one(engine, pool, args.write_mb)  # a first start warms caches: not counted
            for series in (engine.running, engine.ready, engine.cpu, engine.write, engine.remove):
                series.clear()
        for i in range(args.runs):
            for engine in engines[i % 2:] + engines[:i % 2]:
                await one(engine, pool, args.write_mb)
                print(f"run {i + 1:2d} {engine.label:8s}: running {engine.running[-1]:.2f} s, ready "
                      f"{engine.ready[-1]:.2f} s, cpu {engine.cpu[-1]:.2f} s, remove {engine.remove[-1]:.2f} s",
                      file=sys.stderr)
        if args.burst:
            for engine in engines:
                await burst(engine, pool, args.burst)
                print(f"burst of {args.burst} on {engine.label}: {engine.burst:.1f} s", file=sys.stderr)
    finally:
        for engine in engines:
            client = engine.backend._docker()
            for c in client.containers.list(all=True, filters={"label": f"org.nbpool.pool={pool}"}):
                c.remove(force=True)
            for net in client.networks.list(names=[network]):
                if net.name == network:
                    net.remove()
            await engine.backend.close()
    return engines


def s(values: list[float], q: int) -> str:
    return f"{percentile(values, q):.2f} s" if values else "–"


def report(engines: list[Engine], args) -> str:
    rows = []
    for e in engines:
        quota = ("btrfs quota groups" if e.backend.disk_limit else "none: quota groups off") \
            if e.backend.disk_quota else "none (watchdog)"
        rate = f"{args.write_mb / statistics.median(e.write):.0f} MB/s" if e.write else "–"
        rows.append(f"| {e.storage} | {quota} | {s(e.running, 50)} | {s(e.running, 95)} | {s(e.ready, 50)} | "
                    f"{s(e.ready, 95)} | {statistics.median(e.cpu):.2f} s | {s(e.remove, 50)} | "
                    f"{s(e.write, 50)} ({rate}) | {e.burst:.1f} s |")
    base, quota = engines
    def diff(a: list[float], b: list[float]) -> str:
        return f"{(percentile(b, 50) - percentile(a, 50)) * 1000:+.0f} ms"
    errors = "".join(f"\n- {e.label}: dd failed {len(e.write_errors)} times: {e.write_errors[0]}"
                     for e in engines if e.write_errors)
    return f"""# Disk quota on btrfs: what it costs container starts — `benchmarks/disk_quota.py`

{args.runs} containers per engine, one at a time, alternating the engines and which goes first (after one
uncounted start each); {os.cpu_count()} cores shared with other work, {time.strftime('%Y-%m-%d')}. Both engines are
Docker {base.backend._engine_info.get('ServerVersion')} on this machine: the host's (overlay2, no quota: nbpool's
watchdog measures) and a second one on a loop-mounted btrfs file with quota groups (as `make engine` sets up where
the host offers no quota). Each container is `nbpool/notebook:latest` started by `DockerBackend` with nbpool's
defaults (1 core, 1 GiB, disk_limit 2G: on btrfs `--storage-opt size` of 2G plus the image). CPU is dockerd's
and its containerd's, from create until Jupyter answers. The write is `dd` of {args.write_mb} MB with
`conv=fsync` inside the container, as its user. The burst is {args.burst} containers started at once, until every
one answers.

{HEADER.format(mb=args.write_mb, burst=args.burst)}
{chr(10).join(rows)}

btrfs against overlay2, p50: create → running {diff(base.running, quota.running)}, create → ready
{diff(base.ready, quota.ready)}, remove {diff(base.remove, quota.remove)}.{errors}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--btrfs", required=True, help="the btrfs engine's socket, e.g. unix:///run/x/docker.sock")
    parser.add_argument("--overlay", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
                        help="the overlay2 engine's socket (default: DOCKER_HOST or the host's)")
    parser.add_argument("--runs", type=int, default=10, help="containers per engine, one at a time")
    parser.add_argument("--burst", type=int, default=4, help="containers started at once per engine (0: none)")
    parser.add_argument("--write-mb", type=int, default=200, help="MB dd writes in each container")
    parser.add_argument("--no-quota", action="store_true",
                        help="start the btrfs engine's containers without a limit (disable its quota groups first)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "disk-quota.md"))
    args = parser.parse_args()
    engines = asyncio.run(measure(args))
    text = report(engines, args)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
