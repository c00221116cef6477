"""Benchmark: where an attendee's CPU goes when their container starts on demand (a burst's expensive path).

    .venv/bin/python benchmarks/attendee_cpu.py [--attendees 8] [--variants default,no-prestart] [--also-image TAG]

nbpool (start.py, its own pool) with no spares (``warm`` 0), so every attendee's container is started for them,
as for the attendees of a burst who find no spare. One attendee at a time, on an otherwise quiet machine, so
each phase's CPU is that attendee's alone:

1. **spawn**: ``GET /spawn`` through the waiting line to the notebook server answering, split into the engine's
   work (dockerd, containerd and the containers' shims, with the runc processes they reaped: ``/proc/<pid>/stat``
   utime+stime+cutime+cstime), the container's own (Jupyter's start, and the pre-started kernel when on: its
   cgroup's ``cpuacct.usage``) and nbpool's (``/proc/<pid>/stat``);
2. **page**: the notebook page, the notebook through the contents API and JupyterLab's page, as a browser's
   first requests;
3. **kernel**: the notebook's session (its kernel) and its WebSocket, and a first cell, ``print(6 * 7)``;
4. then the session is closed and the container removed (admin API), and the next attendee comes.

Each variant is a fresh nbpool with some settings changed (``default``; ``no-prestart``: no kernel started
before the attendee asks). Medians per phase and part are written to ``attendee-cpu.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.running_service import ROOT, RunningService, spawn
from loadtest.jupyter import KernelClient

TICK = os.sysconf("SC_CLK_TCK")
NOTEBOOK = "01-python-introduction.ipynb"
VARIANTS = {"default": [], "no-prestart": ["DockerBackend.prestart_kernel = False"]}


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU-seconds of ``pid`` (with its reaped children's when asked); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICK


def engine_cpu() -> dict[int, float]:
    """CPU-seconds of dockerd, containerd and every containerd-shim (with the runc processes they reaped), by
    pid: a shim that exits takes its count with it, so deltas are taken per process (see ``Meter``)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name in ("dockerd", "containerd") or name.startswith("containerd-shim"):
            found[int(entry.name)] = process_cpu(int(entry.name), children=True)
    return found


def container_cpu(engine_id: str) -> float:
    for root in ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker",
                 "/sys/fs/cgroup/system.slice"):
        for name in (engine_id, f"docker-{engine_id}.scope"):
            path = Path(root, name, "cpuacct.usage")
            if path.exists():
                return int(path.read_text()) / 1e9
            stat = Path(root, name, "cpu.stat")
            if stat.exists():  # cgroup v2
                return int(stat.read_text().split()[1]) / 1e6
    return 0.0


def engine_id_of(cid: str) -> str:
    return subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=org.nbpool.id={cid}"],
                          capture_output=True, text=True).stdout.strip()


class Meter:
    """CPU of the three parts since the last ``lap``."""

    def __init__(self, nbpool_pid: int):
        self.pid = nbpool_pid
        self.engine_id = ""
        self.last = self.read()

    def read(self) -> tuple[dict[int, float], float, float]:
        return (engine_cpu(), container_cpu(self.engine_id) if self.engine_id else 0.0, process_cpu(self.pid))

    def lap(self) -> dict[str, float]:
        now = self.read()
        engine = sum(cpu - self.last[0].get(pid, 0.0) for pid, cpu in now[0].items())  # new shims: all of theirs
        spent = {"engine": engine, "container": now[1] - self.last[1], "nbpool": now[2] - self.last[2]}
        self.last = now
        return spent


async def kernel_phase(base: str, cookie: str) -> None:
    client = KernelClient(base, {"Cookie": cookie}, timeout=120)
    await client.start_session(NOTEBOOK)
    result = await client.execute("print(6 * 7)")
    assert result.output.strip() == "42", result
    await client.shutdown()


def attendee(service: RunningService, meter: Meter) -> dict[str, dict[str, float]]:
    session = requests.Session()
    session.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) nbpool-bench/1"
    meter.engine_id = ""
    meter.lap()
    container = spawn(session, service.url)
    cid = container.split("/user/")[1].split("/")[0]
    meter.engine_id = engine_id_of(cid)
    first = meter.lap()
    first["container"] = container_cpu(meter.engine_id)  # all of it: the container did nothing before
    meter.last = meter.read()
    phases = {"spawn": first}
    base = container.split("/user/")[0] + f"/user/{cid}/"
    for path in (f"notebooks/{NOTEBOOK}", f"api/contents/{NOTEBOOK}?content=1", "lab"):
        assert session.get(base + path, timeout=60).status_code == 200
    phases["page"] = meter.lap()
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    asyncio.run(kernel_phase(base, cookie))
    time.sleep(1.0)  # the kernel's shutdown settles
    phases["kernel"] = meter.lap()
    requests.delete(f"{service.url}/api/admin/containers/{cid}", timeout=60,
                    headers={"Authorization": f"token {service.admin_token}", "Origin": service.url})
    service.wait_until(lambda: not engine_id_of(cid), 60, "the container removed", every=0.2)
    return phases


def medians(runs: list[dict]) -> dict[str, dict[str, float]]:
    return {phase: {part: round(statistics.median(r[phase][part] for r in runs), 3)
                    for part in ("engine", "container", "nbpool")} for phase in ("spawn", "page", "kernel")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=8)
    parser.add_argument("--variants", default="default,no-prestart")
    parser.add_argument("--also-image", action="append", default=[], metavar="TAG",
                        help="also measure the default settings on this image (e.g. a tag of the image before a "
                             "change), as the variant 'image TAG'; may be repeated")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    variants.update({f"image {tag}": [f"DockerBackend.image = {tag!r}"] for tag in args.also_image})
    results = {}
    for variant, settings in variants.items():
        with RunningService(warm=0, cap=2, extra=settings, name="cpu") as service:
            meter = Meter(service.proc.pid)
            time.sleep(3)
            runs = [attendee(service, meter) for _ in range(args.attendees)]
        results[variant] = {"runs": runs, "medians": medians(runs)}
        print(variant, json.dumps(results[variant]["medians"]), flush=True)
    lines = [f"CPU-seconds per attendee whose container starts on demand, medians of {args.attendees} attendees one "
             f"at a time, {os.cpu_count()} cores.", "",
             "| variant | phase | engine | container | nbpool | all |", "|---|---|---:|---:|---:|---:|"]
    for variant, result in results.items():
        total = 0.0
        for phase, parts in result["medians"].items():
            whole = sum(parts.values())
            total += whole
            lines.append(f"| {variant} | {phase} | {parts['engine']:.3f} | {parts['container']:.3f} | "
                         f"{parts['nbpool']:.3f} | {whole:.3f} |")
        lines.append(f"| {variant} | **attendee** | | | | **{total:.3f}** |")
    text = "\n".join(lines) + "\n"
    (out / "attendee-cpu.md").write_text(text)
    (out / "attendee-cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
