"""Benchmark: what real-time collaboration with server-side execution costs a container (NBPOOL_COLLABORATION).

    .venv/bin/python benchmarks/server_side_cost.py [--runs 5] [--json] [--out benchmarks/results/server-side-cost.md]

Starts ``--runs`` containers of the image (default nbpool/notebook:latest) per setting, one at a
time, alternating NBPOOL_COLLABORATION=1 and =0 (which goes first alternates too), in one sitting.
Each container gets what nbpool gives it (1 core, 1 GiB, uid 1000, the pre-started kernel on:
``--cpus``, ``--memory``, ``--prestart``) and is reached straight over Docker's default bridge
with its token. For each one:

1. **time to ready**: from ``docker start`` (the container already created) until
   ``GET <base>/api/status`` answers 200 (polled every 50 ms);
2. **CPU until ready + 5 s**: the container's CPU time from its cgroup (cgroup v1
   ``cpuacct.usage``, v2 ``cpu.stat``) read 5 s after it was ready; it includes the
   pre-started kernel's start, which comes right after the server answers;
3. **idle memory**, 20 s after ready with nothing connected: the cgroup's memory usage less its
   page cache (v1 ``memory.usage_in_bytes - total_cache``; v2 ``memory.current - file``), and
   its anonymous memory (``total_rss``; v2 ``anon``);
4. **after opening a notebook**: what the notebook page does on the server for
   ``01-python-introduction.ipynb``, without a browser: ``GET api/contents/<path>``, ``POST
   api/sessions`` (python3: the pre-started kernel is handed over) and, with collaboration on,
   ``PUT api/collaboration/session/<path>`` and one WebSocket to the document's room that asks for
   the document (y-websocket sync step 1) and closes once it has it: the server then keeps the
   shared document in memory (the image never drops it: ``document_cleanup_delay = None``).
   Memory as in 3, 20 s later.

Prints the medians as a markdown table and writes it, with every run, to ``--out``; ``--json`` prints
JSON instead. Every container it made is removed, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01-python-introduction.ipynb"
MIB = 1024 * 1024
SETTINGS = {"on": "1", "off": "0"}
SYNC_STEP1_EMPTY = bytes([0, 0, 1, 0])  # y-websocket: sync, step 1, an empty state vector


@dataclass
class Sample:
    setting: str  # "on" (NBPOOL_COLLABORATION=1) or "off"
    ready_s: float  # docker start -> api/status answers 200
    cpu_s: float  # CPU-seconds from the container's start until 5 s after ready
    idle_mem_mib: float  # memory usage less page cache, 20 s after ready
    idle_rss_mib: float  # anonymous memory, 20 s after ready
    open_mem_mib: float  # the same, 20 s after opening the notebook
    open_rss_mib: float


class Cgroup:
    """CPU and memory of one container from its cgroup (v1 with the cgroupfs driver, or v2)."""

    def __init__(self, container_id: str):
        v1 = Path("/sys/fs/cgroup/cpuacct/docker") / container_id
        self.v2 = None
        if not v1.exists():
            for candidate in (Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",
                              Path("/sys/fs/cgroup/docker") / container_id):
                if (candidate / "cpu.stat").exists():
                    self.v2 = candidate
                    break
            else:
                raise RuntimeError(f"no cgroup found for container {container_id[:12]}")
        self.cpuacct = v1
        self.memory = Path("/sys/fs/cgroup/memory/docker") / container_id

    def cpu_seconds(self) -> float:
        if self.v2 is None:
            return int((self.cpuacct / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.v2 / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def memory_mib(self) -> tuple[float, float]:
        """(usage less page cache, anonymous memory) in MiB."""
        if self.v2 is None:
            stat = dict(line.split() for line in (self.memory / "memory.stat").read_text().splitlines())
            usage = int((self.memory / "memory.usage_in_bytes").read_text())
            return (usage - int(stat["total_cache"])) / MIB, int(stat["total_rss"]) / MIB
        stat = dict(line.split() for line in (self.v2 / "memory.stat").read_text().splitlines())
        usage = int((self.v2 / "memory.current").read_text())
        return (usage - int(stat["file"])) / MIB, int(stat["anon"]) / MIB


def wait_ready(url: str, headers: dict, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


async def fetch_document(ws_url: str, headers: dict) -> None:
    """Open the document's room as a page does, receive the document, close."""
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, connect_timeout=30))
    try:
        await conn.write_message(SYNC_STEP1_EMPTY, binary=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            msg = await asyncio.wait_for(conn.read_message(), timeout=end - time.monotonic())
            if msg is None:
                raise RuntimeError(f"the room closed the WebSocket ({conn.close_code} {conn.close_reason})")
            if isinstance(msg, bytes) and msg[:2] == b"\x00\x01":  # sync step 2: the document
                return
        raise TimeoutError("no document from the room within 30 s")
    finally:
        conn.close()


def open_notebook(base: str, headers: dict, collaboration: bool) -> None:
    """What the notebook page does on the server when it opens NOTEBOOK (no browser)."""
    # The page reads the file (with collaboration on, only its model: the content comes from the room).
    r = requests.get(base + f"api/contents/{NOTEBOOK}", headers=headers, timeout=30,
                     params={"content": "0" if collaboration else "1"})
    r.raise_for_status()
    r = requests.post(base + "api/sessions", headers=headers, timeout=60,
                      json={"path": NOTEBOOK, "name": NOTEBOOK, "type": "notebook", "kernel": {"name": "python3"}})
    r.raise_for_status()
    if not collaboration:
        return
    r = requests.put(base + f"api/collaboration/session/{NOTEBOOK}", headers=headers, timeout=30,
                     json={"format": "json", "type": "notebook"})
    r.raise_for_status()
    session = r.json()
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    ws_url = base.replace("http://", "ws://") + f"api/collaboration/room/{room}?sessionId={session['sessionId']}"
    asyncio.run(fetch_document(ws_url, headers))


def one(engine: docker.DockerClient, args: argparse.Namespace, setting: str, made: list) -> Sample:
    token = secrets.token_hex(16)
    cid = secrets.token_hex(4)
    base_url = f"/user/{cid}/"
    container = engine.containers.create(
        args.image, name=f"{args.prefix}-{setting}-{cid}", detach=True, user="1000:1000",
        environment={"JUPYTER_TOKEN": token, "NBPOOL_BASE_URL": base_url, "JUPYTER_PORT": "8888",
                     "NBPOOL_COLLABORATION": SETTINGS[setting], "NBPOOL_PRESTART_KERNEL": args.prestart},
        nano_cpus=int(args.cpus * 1e9) or None, mem_limit=args.memory, memswap_limit=args.memory,
        labels={"org.nbpool.benchmark": "server_side_cost"})
    made.append(container)
    headers = {"Authorization": f"token {token}"}
    t0 = time.monotonic()
    container.start()
    container.reload()
    ip = container.attrs["NetworkSettings"]["IPAddress"]
    base = f"http://{ip}:8888{base_url}"
    wait_ready(base + "api/status", headers)
    ready = time.monotonic()
    cgroup = Cgroup(container.id)
    time.sleep(max(0.0, ready + 5 - time.monotonic()))
    cpu = cgroup.cpu_seconds()
    time.sleep(max(0.0, ready + 20 - time.monotonic()))
    idle_mem, idle_rss = cgroup.memory_mib()
    opened = time.monotonic()
    open_notebook(base, headers, setting == "on")
    time.sleep(max(0.0, opened + 20 - time.monotonic()))
    open_mem, open_rss = cgroup.memory_mib()
    container.remove(force=True)
    made.remove(container)
    return Sample(setting, ready - t0, cpu, idle_mem, idle_rss, open_mem, open_rss)


def measure(args: argparse.Namespace) -> list[Sample]:
    engine = docker.from_env(timeout=120)
    made: list = []
    samples: list[Sample] = []
    try:
        for i in range(args.runs):
            order = ["on", "off"] if i % 2 == 0 else ["off", "on"]
            for setting in order:
                s = one(engine, args, setting, made)
                samples.append(s)
                print(f"run {i + 1} {setting:3s}: ready {s.ready_s:.2f} s, cpu {s.cpu_s:.2f} s, idle "
                      f"{s.idle_mem_mib:.1f} MiB (rss {s.idle_rss_mib:.1f}), with the notebook open "
                      f"{s.open_mem_mib:.1f} MiB (rss {s.open_rss_mib:.1f})", file=sys.stderr)
    finally:
        for container in made:
            try:
                container.remove(force=True)
            except docker.errors.DockerException as exc:
                print(f"could not remove {container.name}: {exc}", file=sys.stderr)
        engine.close()
    return samples


FIELDS = ("ready_s", "cpu_s", "idle_mem_mib", "idle_rss_mib", "open_mem_mib", "open_rss_mib")


def medians(samples: list[Sample]) -> dict[str, dict[str, float]]:
    return {setting: {f: round(statistics.median(getattr(s, f) for s in samples if s.setting == setting), 3)
                      for f in FIELDS}
            for setting in SETTINGS if any(s.setting == setting for s in samples)}


def report(samples: list[Sample], args: argparse.Namespace) -> str:
    med = medians(samples)
    label = {"on": "on (`NBPOOL_COLLABORATION=1`)", "off": "off (`=0`)"}
    rows = [f"| {label[k]} | {m['ready_s']:.2f} s | {m['cpu_s']:.2f} s | {m['idle_mem_mib']:.1f} MiB | "
            f"{m['idle_rss_mib']:.1f} MiB | {m['open_mem_mib']:.1f} MiB | {m['open_rss_mib']:.1f} MiB |"
            for k, m in med.items()]
    if len(med) == 2:
        on, off = med["on"], med["off"]
        rows.append(f"| difference | {on['ready_s'] - off['ready_s']:+.2f} s | {on['cpu_s'] - off['cpu_s']:+.2f} s | "
                    f"{on['idle_mem_mib'] - off['idle_mem_mib']:+.1f} MiB | "
                    f"{on['idle_rss_mib'] - off['idle_rss_mib']:+.1f} MiB | "
                    f"{on['open_mem_mib'] - off['open_mem_mib']:+.1f} MiB | "
                    f"{on['open_rss_mib'] - off['open_rss_mib']:+.1f} MiB |")
    raw = "\n".join(f"| {i // 2 + 1} | {s.setting} | {s.ready_s:.2f} | {s.cpu_s:.2f} | {s.idle_mem_mib:.1f} | "
                    f"{s.idle_rss_mib:.1f} | {s.open_mem_mib:.1f} | {s.open_rss_mib:.1f} |"
                    for i, s in enumerate(samples))
    return f"""# What collaboration with server-side execution costs a container — `benchmarks/server_side_cost.py`

{args.runs} containers per setting of `{args.image}`, one at a time, NBPOOL_COLLABORATION=1 and =0
alternating; {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; each container {args.cpus:g} core and {args.memory}
memory, the pre-started kernel {'on' if args.prestart == '1' else 'off'}. Medians. **Ready**: `docker start` until
`api/status` answers 200. **CPU**: the container's CPU-seconds until 5 s after ready (cgroup).
**Idle**: 20 s after ready, nothing connected; memory is the cgroup's usage less page cache, rss
its anonymous memory. **Notebook open**: 20 s after `GET api/contents/…` and `POST api/sessions`
for `{NOTEBOOK}` (the pre-started kernel is handed over) and, with collaboration on,
`PUT api/collaboration/session/…` plus one room WebSocket that fetched the document and closed
(the server keeps the shared document in memory).

| collaboration | ready | CPU until ready + 5 s | idle memory | idle rss | memory, notebook open | rss, notebook open |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Every run (seconds; MiB):

| run | setting | ready | CPU | idle memory | idle rss | notebook open | rss, open |
|---|---|---|---|---|---|---|---|
{raw}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="containers per setting")
    parser.add_argument("--image", default="nbpool/notebook:latest")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPU limit per container (nbpool's default 1)")
    parser.add_argument("--memory", default="1g", help="memory limit per container (nbpool's default 1g)")
    parser.add_argument("--prestart", choices=("1", "0"), default="1", help="NBPOOL_PRESTART_KERNEL")
    parser.add_argument("--prefix", default="nbpool-server-side-cost", help="name prefix of the containers")
    parser.add_argument("--json", action="store_true", help="print JSON (medians and every run), not markdown")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "server-side-cost.md"))
    args = parser.parse_args()
    samples = measure(args)
    text = report(samples, args)
    Path(args.out).write_text(text)
    if args.json:
        print(json.dumps({"medians": medians(samples), "runs": [asdict(s) for s in samples],
                          "settings": {"image": args.image, "cpus": args.cpus, "memory": args.memory,
                                       "prestart": args.prestart}}, indent=2))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
