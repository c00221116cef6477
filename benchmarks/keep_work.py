"""Benchmark: what keeping attendees' work costs: the save at the end of a session, a cull pass, checkpoints.

    .venv/bin/python benchmarks/keep_work.py [--attendees 20] [--spawn-concurrency 4]
    .venv/bin/python benchmarks/keep_work.py --attendees 3 --quick        # a smoke run, about a minute

Starts nbpool (start.py, its own pool, data dir and port) with one spare per
attendee (cap two more), containers limited to 1 GiB, checkpoints every
``keep_interval`` (30 s; 15 s with ``--quick``) and culling off, and waits for
the spares. Then, through the public port as a browser does (each attendee
their own cookies, ``Origin`` on writes):

1. **Work.** Every attendee at once: ``/spawn``, opens the bundled
   ``01-python-introduction.ipynb`` (``POST api/sessions``) and runs each of its
   code cells in the kernel (the plot included), then one cell of a new notebook.
   Once everyone has, and right after a checkpoint pass, they all save what the
   UI would: that notebook *with its outputs* (``PUT`` type notebook), the new
   notebook, a ~100 KB CSV, a ~50 KB binary (random bytes behind a PNG
   signature) and an edited ``README.md``. Their sizes are read back from the
   server.
2. **Checkpoints.** The next pass copies all of that; each attendee then
   changes one small file (a line added to ``README.md``) and lists their files
   (proxy traffic: active), and the pass after copies only that. Per pass, from
   the record: attendees, seconds, nbpool's CPU seconds (``checkpoint``
   events: the process's CPU time during the pass, whatever else it did
   meanwhile), bytes (``kept`` events with final=false in the pass). The
   containers' side is the attendees' containers' cgroup CPU time during the
   pass less their idle rate over the 10 s before it (when the cgroup files
   can be read).
3. **Cull.** Right after that pass every attendee rewrites all five files (so
   the save at the end copies all of their work: the worst case, nothing of it
   in a checkpoint), then all traffic stops; once they have been idle for
   longer than it, ``Pool.cull_idle = 5`` is written into the config file and
   nbpool is sent SIGHUP, so the next cull pass finds all of them due at once.
   From the record: the ``cull`` event(s) and each attendee's last save
   (``kept`` with final=true). Every attendee's kept work is checked through
   ``GET /api/admin/kept`` (ended, at least 4 files, no error, the bytes they
   last wrote): the report says FAILED and the run exits 1 if not.

Writes a Markdown report to ``--out`` (benchmarks/results/keep-work.md; with
``--quick``, a file in the temporary directory) and prints it; ``--log FILE``
keeps nbpool's log. Percentiles interpolate linearly between closest ranks (numpy's
default; ``statistics.quantiles(method="inclusive")`` gives the same).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import quote

from running_service import ROOT, RunningService
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

sys.path.insert(0, str(ROOT))
from loadtest.cookies import add_cookie_header, cookie_header, extract_cookies
from loadtest.jupyter import V1_SUBPROTOCOL, KernelClient, decode_v1
from loadtest.report import percentile
from spawner.keep.keeper import WorkKeeper
from spawner.record.recorder import read_events

NOTEBOOK = "01-python-introduction.ipynb"
FIRST_OUTPUT = "Coffee for 42 people in Lecture hall B costs 75.60 euros"
NEW_NOTEBOOK = "my-analysis.ipynb"
CSV = "my-work/measurements.csv"
BINARY = "my-work/figure.png"
README = "README.md"
FILES = [NOTEBOOK, NEW_NOTEBOOK, CSV, BINARY, README]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) nbpool-keep-work/1"
USER_BASE = re.compile(r"^(.*?/user/([0-9a-f]+)/)")
KIB = 1024
CONCURRENCY = WorkKeeper.save_concurrency.default_value  # the defaults the run keeps
SAVE_TIMEOUT = WorkKeeper.save_timeout.default_value


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the kernel, with the outputs the notebook page would keep -----------------------------------


class _Tee:
    """The kernel WebSocket, passing every message read to ``seen`` as well."""

    def __init__(self, ws, seen):
        self.ws, self.seen = ws, seen

    def write_message(self, *args, **kwargs):
        return self.ws.write_message(*args, **kwargs)

    async def read_message(self):
        raw = await self.ws.read_message()
        if raw is not None:
            self.seen(raw)
        return raw

    def close(self) -> None:
        self.ws.close()


class OutputsKernel(KernelClient):
    """A KernelClient that also keeps each cell's outputs as nbformat output objects, as the page does.

    KernelClient reduces outputs to their text (and a plot to its MIME type);
    a notebook saved with its outputs needs them whole, so its WebSocket is
    wrapped to see each message too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._request_id = ""
        self._outputs: list[dict] = []

    async def attach(self, kernel_id: str) -> None:
        await super().attach(kernel_id)
        self._ws = _Tee(self._ws, self._seen)

    def _message(self, msg_type: str, content: dict, channel: str) -> dict:
        msg = super()._message(msg_type, content, channel)
        self._request_id = msg["header"]["msg_id"]
        return msg

    def _seen(self, raw) -> None:
        if isinstance(raw, bytes):
            if self.subprotocol != V1_SUBPROTOCOL:
                return
            msg = decode_v1(raw)
        else:
            msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != self._request_id:
            return
        kind, body = msg.get("msg_type") or msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            if self._outputs and self._outputs[-1]["output_type"] == "stream" and \
                    self._outputs[-1]["name"] == body["name"]:
                self._outputs[-1]["text"] += body["text"]
            else:
                self._outputs.append({"output_type": "stream", "name": body["name"], "text": body["text"]})
        elif kind == "display_data":
            self._outputs.append({"output_type": kind, "data": body["data"], "metadata": body.get("metadata", {})})
        elif kind == "execute_result":
            self._outputs.append({"output_type": kind, "data": body["data"], "metadata": body.get("metadata", {}),
                                  "execution_count": body.get("execution_count")})
        elif kind == "error":
            self._outputs.append({"output_type": kind, "ename": body["ename"], "evalue": body["evalue"],
                                  "traceback": body.get("traceback", [])})

    async def run_cell(self, code: str) -> list[dict]:
        """Run ``code``; its outputs as the notebook stores them (raises if the cell failed)."""
        self._outputs = []
        result = await self.execute(code)
        if result.status != "ok":
            raise RuntimeError(f"a cell failed: {result.error}")
        return self._outputs


# --- one attendee ----------------------------------------------------------------------------------


@dataclass
class Attendee:
    index: int
    service_url: str
    http: AsyncHTTPClient
    jar: CookieJar = field(default_factory=CookieJar)
    base: str = ""  # http://127.0.0.1:<port>/user/<cid>/
    cid: str = ""
    notebook: dict = field(default_factory=dict)  # the bundled notebook, run, with its outputs
    new_cell_outputs: list = field(default_factory=list)
    readme: str = ""
    written: dict[str, int] = field(default_factory=dict)  # path -> bytes on the server after the work
    rewritten: dict[str, int] = field(default_factory=dict)  # the same before the cull

    async def fetch(self, url: str, method: str = "GET", body: bytes | None = None,
                    headers: dict | None = None, timeout: float = 60) -> HTTPResponse:
        request = HTTPRequest(url, method=method, body=body, headers={"User-Agent": USER_AGENT, **(headers or {})},
                              follow_redirects=False, request_timeout=timeout, connect_timeout=10)
        add_cookie_header(self.jar, request)
        response = await self.http.fetch(request, raise_error=False)
        extract_cookies(self.jar, request, response)
        return response

    async def spawn(self, timeout: float = 300) -> None:
        """Follow /spawn (through the waiting line if there is one) to a container of their own."""
        deadline = time.monotonic() + timeout
        response = await self.fetch(f"{self.service_url}/spawn")
        while response.code == 302 and "/spawn/wait/" in response.headers["Location"]:
            wait_url = self.service_url + response.headers["Location"].removeprefix(self.service_url)
            key = wait_url.rsplit("/", 1)[1]
            while not json.loads((await self.fetch(f"{self.service_url}/api/queue/{key}")).body).get("ready"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"attendee {self.index} still waiting in line after {timeout:.0f}s")
                await asyncio.sleep(0.5)
            response = await self.fetch(wait_url)
        location = response.headers.get("Location", "") if response.code == 302 else ""
        match = USER_BASE.match(location if location.startswith("http") else self.service_url + location)
        if not match:
            raise RuntimeError(f"attendee {self.index}: /spawn answered {response.code} {location!r}")
        self.base, self.cid = match.group(1), match.group(2)

    async def api(self, method: str, path: str, model: dict | None = None, query: str = "") -> dict:
        """A contents API call through the proxy; a write carries the page's Origin, as a browser's does."""
        headers = {"Origin": self.service_url, "Content-Type": "application/json"} if model is not None else {}
        url = f"{self.base}api/contents/{quote(path)}" + (f"?{query}" if query else "")
        response = await self.fetch(url, method, headers=headers,
                                    body=json.dumps(model).encode() if model is not None else None)
        if response.code >= 400:
            raise RuntimeError(f"attendee {self.index}: {method} api/contents/{path} answered {response.code}: "
                               f"{(response.body or b'')[:200]!r}")
        return json.loads(response.body) if response.body else {}

    async def run_notebook(self, timeout: float) -> None:
        """Open the bundled notebook as the page does and run every code cell; keep the outputs."""
        self.notebook = (await self.api("GET", NOTEBOOK, query="content=1"))["content"]
        self.readme = (await self.api("GET", README, query="content=1&format=text&type=file"))["content"]
        cookie = cookie_header(self.jar, self.base + "api/sessions")
        kernel = OutputsKernel(self.base, {"Cookie": cookie} if cookie else {}, timeout=timeout, http_client=self.http)
        await kernel.start_session(NOTEBOOK, "python3")
        try:
            count = 0
            for cell in self.notebook["cells"]:
                if cell["cell_type"] != "code":
                    continue
                count += 1
                cell["outputs"] = await kernel.run_cell("".join(cell["source"]))
                cell["execution_count"] = count
            first = next(c for c in self.notebook["cells"] if c["cell_type"] == "code")["outputs"]
            if first[0].get("text", "").strip() != FIRST_OUTPUT:
                raise RuntimeError(f"attendee {self.index}: the first cell printed {first!r}")
            if not any("image/png" in o.get("data", {}) for c in self.notebook["cells"] for o in c.get("outputs", [])):
                raise RuntimeError(f"attendee {self.index}: the notebook's plot produced no image")
            self.new_cell_outputs = await kernel.run_cell(f"attendee = {self.index}\nprint(f'attendee {{attendee}}')")
        finally:
            kernel.detach()  # the tab closed; the kernel runs on, as it does when an attendee leaves

    async def save_work(self, round_: int) -> dict[str, int]:
        """Save the run notebook, a new notebook, a CSV, a binary and an edited README; their sizes on the server."""
        rng = random.Random(self.index * 1000 + round_)
        notebook = json.loads(json.dumps(self.notebook))
        if round_:
            notebook["cells"].append({"cell_type": "markdown", "id": f"note-{round_}", "metadata": {},
                                      "source": [f"My note, take {round_}."]})
        new = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "made-by-the-attendee", "metadata": {},
                          "outputs": self.new_cell_outputs, "source": [f"attendee = {self.index}\n",
                                                                       "print(f'attendee {attendee}')"]}],
               "metadata": self.notebook["metadata"], "nbformat": 4, "nbformat_minor": 5}
        if round_:
            new["cells"][0]["source"].append(f"  # take {round_}")
        rows, size = ["time,sensor,value"], 18
        while size < 100 * KIB:
            rows.append(f"{len(rows)},{rng.choice('ABCD')},{rng.gauss(20, 5):.6f}")
            size += len(rows[-1]) + 1
        binary = b"\x89PNG\r\n\x1a\n" + rng.randbytes(50 * KIB)
        self.readme += f"\n## My notes ({round_ + 1})\n\nAttendee {self.index} was here and ran the notebook.\n"
        await self.api("PUT", NOTEBOOK, {"type": "notebook", "format": "json", "content": notebook})
        await self.api("PUT", NEW_NOTEBOOK, {"type": "notebook", "format": "json", "content": new})
        if not round_:
            await self.api("PUT", "my-work", {"type": "directory"})
        await self.api("PUT", CSV, {"type": "file", "format": "text", "content": "\n".join(rows) + "\n"})
        encoded = base64.b64encode(binary).decode()
        await self.api("PUT", BINARY, {"type": "file", "format": "base64", "content": encoded})
        await self.api("PUT", README, {"type": "file", "format": "text", "content": self.readme})
        return {path: int((await self.api("GET", path, query="content=0"))["size"]) for path in FILES}

    async def small_change(self) -> int:
        """One line added to README.md, and a look at the file list; the README's new size."""
        self.readme += f"One more line from attendee {self.index}.\n"
        await self.api("PUT", README, {"type": "file", "format": "text", "content": self.readme})
        await self.api("GET", "", query="content=1")
        return int((await self.api("GET", README, query="content=0"))["size"])

    async def keep_alive(self, stop: asyncio.Event) -> None:
        """A little traffic until ``stop`` (a browser's periodic file-list refresh): active for checkpoints."""
        while not stop.is_set():
            await self.api("GET", "", query="content=1")
            try:
                await asyncio.wait_for(stop.wait(), 2)
            except TimeoutError:
                pass


# --- what the service recorded ---------------------------------------------------------------------------


class Record:
    """The service's record (``<data_dir>/record``), read again on every question."""

    def __init__(self, folder: Path, service: RunningService):
        self.folder, self.service = folder, service

    def events(self, kind: str, since: float = 0.0) -> list[dict]:
        return [e for e in read_events(self.folder) if e["e"] == kind and e["t"] >= since]

    async def wait_for(self, what: str, find, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            found = find()
            if found:
                return found
            if self.service.proc.poll() is not None:
                raise RuntimeError(f"nbpool exited while waiting for {what}:\n{self.service.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{self.service.logs()[-3000:]}")
            await asyncio.sleep(0.5)  # the whole record is read again: not too often

    async def next_pass(self, after: float, timeout: float, *, began: bool = True) -> dict:
        """The first checkpoint pass that began (or, ``began=False``, ended) at or after ``after``, once ended."""
        return await self.wait_for(
            "a checkpoint pass", lambda: next((e for e in self.events("checkpoint")
                                               if e["t"] - (e["seconds"] if began else 0) >= after), None), timeout)

    def pass_bytes(self, cp: dict) -> tuple[int, int]:
        """(bytes, saves) of the checkpoint saves in pass ``cp`` (recorded within its span)."""
        saves = [e for e in self.events("kept", cp["t"] - cp["seconds"] - 0.01)
                 if not e["final"] and e["t"] <= cp["t"] + 0.01]
        return sum(e["bytes"] for e in saves), len(saves)


# --- the containers' CPU, from their cgroups ------------------------------------------------------------------


def cgroup_cpu_seconds(engine_id: str) -> float | None:
    """A container's CPU time so far from its cgroup (v1 cpuacct or v2 cpu.stat); None if unreadable."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{engine_id}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{engine_id}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{engine_id}/cpu.stat")):
        if v2.exists():
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


class ContainerCpu:
    """Samples the attendees' containers' total CPU time every 0.25 s, in a thread."""

    def __init__(self, pool: str, cids: list[str]):
        names = subprocess.run(["docker", "ps", "--no-trunc", "--filter", f"label=org.nbpool.pool={pool}",
                                "--format", "{{.ID}} {{.Names}}"], capture_output=True, text=True).stdout
        self.ids = [line.split()[0] for line in names.splitlines()
                    if any(f"{pool}-{cid}" in line.split()[1] for cid in cids)]
        self.samples: list[tuple[float, float]] = []
        self.ok = len(self.ids) == len(cids) and all(cgroup_cpu_seconds(i) is not None for i in self.ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.ok:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.samples.append((time.time(), sum(cgroup_cpu_seconds(i) or 0.0 for i in self.ids)))
            except (OSError, ValueError):  # a container gone: the samples end here
                return

    def stop(self) -> None:
        self._stop.set()

    def _at(self, t: float, after: bool) -> tuple[float, float] | None:
        if after:
            return next((s for s in self.samples if s[0] >= t), None)
        return next((s for s in reversed(self.samples) if s[0] <= t), None)

    def during(self, start: float, end: float, idle: float = 10.0) -> float | None:
        """CPU seconds the containers used from ``start`` to ``end`` beyond their rate over ``idle`` s before."""
        a, b = self._at(start, after=False), self._at(end, after=True)
        i0, i1 = self._at(start - 1 - idle, after=False), self._at(start - 1, after=False)
        if not (self.ok and a and b and i0 and i1) or i1[0] <= i0[0]:
            return None
        rate = (i1[1] - i0[1]) / (i1[0] - i0[0])
        return max(0.0, (b[1] - a[1]) - rate * (b[0] - a[0]))


# --- the run ----------------------------------------------------------------------------------------------------


def wait_for_spares(service: RunningService, count: int, timeout: float) -> float:
    """Wait (printing progress) until ``count`` spares are ready; seconds since start."""
    t0 = time.monotonic()
    shown = 0.0
    while True:
        stats = service.stats() if service.answers() else {}
        if stats.get("available", 0) >= count:
            return time.monotonic() - t0
        if service.proc.poll() is not None:
            raise RuntimeError(f"nbpool exited while its spares started:\n{service.logs()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{count} spares not ready within {timeout:.0f}s ({stats})")
        if time.monotonic() - shown >= 15:
            shown = time.monotonic()
            log(f"spares: {stats.get('available', 0)}/{count} ready, {stats.get('launching', 0)} starting "
                f"({time.monotonic() - t0:.0f}s)")
        time.sleep(1)


async def everyone(attendees: list[Attendee], step) -> list:
    return await asyncio.gather(*(step(a) for a in attendees))


async def scenario(service: RunningService, args) -> dict:
    record = Record(service.dir / "data" / "record", service)
    http = AsyncHTTPClient(force_instance=True, max_clients=4 * args.attendees + 10)
    attendees = [Attendee(i, service.url, http) for i in range(args.attendees)]
    out: dict = {"keep_interval": args.keep_interval}

    log(f"{len(attendees)} attendees: spawn, run {NOTEBOOK}'s cells and a new notebook's")
    t0 = time.monotonic()

    async def work(a: Attendee) -> None:
        await a.spawn()
        await a.run_notebook(timeout=300)

    await everyone(attendees, work)
    out["work_seconds"] = time.monotonic() - t0
    log(f"all ran their notebooks in {out['work_seconds']:.0f}s; waiting for a checkpoint pass to save after")
    cpu = ContainerCpu(service.pool, [a.cid for a in attendees])

    # Save right after a pass, so the next one finds all of it new (a little traffic meanwhile makes
    # sure there is a pass to wait for: one with nobody due is not recorded).
    stop = asyncio.Event()
    alive = asyncio.gather(*(a.keep_alive(stop) for a in attendees))
    await record.next_pass(time.time(), args.keep_interval + 120, began=False)
    stop.set()
    await alive
    saving = time.time()
    written = await everyone(attendees, lambda a: a.save_work(0))
    for a, sizes in zip(attendees, written, strict=True):
        a.written = sizes
    saved = time.time()
    log(f"work saved by all in {saved - saving:.1f}s; waiting for the next checkpoint pass")
    full = await record.next_pass(saved, args.keep_interval + 120)
    out["overlap"] = [e for e in record.events("checkpoint", saving) if e["t"] - e["seconds"] < saved]

    changing = time.time()
    out["small_bytes"] = await everyone(attendees, lambda a: a.small_change())
    changed = time.time()
    log(f"one small change each ({changed - changing:.1f}s); waiting for the next checkpoint pass")
    small = await record.next_pass(changed, args.keep_interval + 120)
    await asyncio.sleep(1)  # the containers' CPU sampled after the pass too
    out["passes"] = []
    for label, cp in (("first after the work (all of it new)", full), ("next (one small file changed)", small)):
        moved, saves = record.pass_bytes(cp)
        out["passes"].append({"label": label, "count": cp["count"], "seconds": cp["seconds"], "cpu": cp["cpu"],
                              "bytes": moved, "saves": saves,
                              "containers_cpu": cpu.during(cp["t"] - cp["seconds"], cp["t"])})
    out["containers_cpu_measured"] = cpu.ok
    cpu.stop()

    log("everyone rewrites their five files; then nobody does anything, and culling is turned on")
    rewriting = time.time()
    rewritten = await everyone(attendees, lambda a: a.save_work(1))
    for a, sizes in zip(attendees, rewritten, strict=True):
        a.rewritten = sizes
    await asyncio.sleep(args.cull_idle + 1.5)  # idle for longer than cull_idle: all due at the first cull pass
    service.write_config(f"Pool.cull_idle = {args.cull_idle}")
    service.proc.send_signal(signal.SIGHUP)
    reloaded = time.time()
    cids = {a.cid for a in attendees}

    def all_ended():
        # A cull pass is recorded once every removal in it is done, saves included (or given up).
        ends = [e for e in record.events("end", reloaded) if e["cid"] in cids]
        culls = record.events("cull", reloaded)
        if len({e["cid"] for e in ends}) < len(cids) or sum(c["count"] for c in culls) < len(cids):
            return None
        return ends, [e for e in record.events("kept", reloaded) if e["final"] and e["cid"] in cids], culls

    ends, finals, culls = await record.wait_for("every attendee culled", all_ended, 180)
    log(f"all {len(cids)} culled in {len(culls)} pass(es)")
    out["ends"], out["finals"], out["culls"] = ends, finals, culls
    out["late_passes"] = [e for e in record.events("checkpoint", rewriting)
                          if e["t"] - e["seconds"] < max(c["t"] for c in culls)]

    status, kept = service.get_json("/api/admin/kept", token=True)
    rows = {row["id"]: row for row in kept.get("sessions", [])} if status == 200 else {}
    saved_last = {e["cid"] for e in finals}
    out["bad"] = [f"{a.cid}: no last save recorded (given up before it began?)" for a in attendees
                  if a.cid not in saved_last]
    for a in attendees:
        row = rows.get(a.cid)
        if row is None or row["files"] < 4 or row["error"] or row["state"] != "ended":
            out["bad"].append(f"{a.cid}: {row}")
        elif row["bytes"] != sum(a.rewritten.values()):
            out["bad"].append(f"{a.cid}: {row['bytes']} bytes kept, not the {sum(a.rewritten.values())} last "
                              "written (an older checkpoint)")
    if status != 200:
        out["bad"].append(f"GET /api/admin/kept answered {status}: {kept}")
    out["kept_rows"] = [rows[a.cid] for a in attendees if a.cid in rows]
    out["written"] = [sum(a.written.values()) for a in attendees]
    out["rewritten"] = [sum(a.rewritten.values()) for a in attendees]
    out["per_file"] = {path: statistics.median(a.written[path] for a in attendees) for path in FILES}
    http.close()
    return out


# --- the report ------------------------------------------------------------------------------------------------


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return f"{os.cpu_count()} cores ({model}), Docker {docker}, {time.strftime('%Y-%m-%d')}"


def kib(value: float) -> str:
    return f"{value / KIB:.1f}"


def report(out: dict, args, spares_seconds: float) -> str:
    n = args.attendees
    finals = out["finals"]
    secs = [e["seconds"] for e in finals]
    files = [e["files"] for e in finals]
    moved = [e["bytes"] for e in finals]
    errors = sum(1 for e in finals if e["error"])
    cull_rows = "\n".join(f"| {c['count']} | {c['seconds']:.2f} | {c['seconds'] / c['count']:.3f} |"
                          for c in out["culls"])
    pass_rows = []
    for p in out["passes"]:
        per = p["count"] or 1
        theirs = p["containers_cpu"]
        pass_rows.append(f"| {p['label']} | {p['count']} | {p['seconds']:.2f} | {p['cpu']:.3f} | "
                         f"{p['cpu'] * 1000 / per:.1f} | {kib(p['bytes'] / per)} | "
                         + (f"{theirs * 1000 / per:.0f} |" if theirs is not None else "– |"))
    notes = []
    if out["bad"]:
        notes.append(f"- **FAILED: the kept work of {len(out['bad'])} attendee(s) is missing, incomplete or has an "
                     "error** (`GET /api/admin/kept`): " + "; ".join(f"`{b}`" for b in out["bad"]))
    if out["overlap"]:
        notes.append(f"- **Warning:** {len(out['overlap'])} checkpoint pass(es) began while the work was being "
                     "saved, so the first pass below did not find all of it new.")
    if out["late_passes"]:
        notes.append(f"- **Warning:** {len(out['late_passes'])} checkpoint pass(es) began between the rewrite and "
                     "the cull, so some last saves copied less than all five files.")
    if len(out["culls"]) > 1:
        notes.append(f"- The attendees were culled in {len(out['culls'])} passes, not one.")
    kinds = {e["kind"] for e in out["ends"]}
    small_kib = kib(statistics.median(out["small_bytes"]))
    save_row = (f"| {len(finals)} | {percentile(secs, 50):.3f} | {percentile(secs, 95):.3f} | {max(secs):.3f} | "
                f"{statistics.median(files):g} | {kib(statistics.median(moved))} | {errors} |" if finals
                else "| 0 | – | – | – | – | – | – |")
    what = {NOTEBOOK: "the bundled notebook, run, saved with its outputs", NEW_NOTEBOOK: "a new notebook, one cell "
            "and its output", CSV: "a CSV", BINARY: "random bytes behind a PNG signature", README: "edited"}
    file_rows = "\n".join(f"| `{path}` ({what[path]}) | {kib(size)} |" for path, size in out["per_file"].items())
    kept_files = [r["files"] for r in out["kept_rows"]]
    kept_bytes = [r["bytes"] for r in out["kept_rows"]]
    kept_line = (f"{len(kept_files)} of {n} attendees, {min(kept_files, default=0)}–{max(kept_files, default=0)} "
                 f"files and {kib(statistics.median(kept_bytes or [0]))} KiB (median) each; {len(out['bad'])} "
                 "missing, incomplete or with an error")
    return f"""# Keeping attendees' work: the save at the end, a cull pass, checkpoints — `benchmarks/keep_work.py`

{n} attendees{' (a --quick smoke run)' if args.quick else ''}; {machine()}.

nbpool from `start.py` with {n} spares (cap {n + 2}), containers of `nbpool/notebook:latest`
limited to 1 GiB, `WorkKeeper.keep_interval = {out['keep_interval']:g}` s, the keeper's defaults otherwise
(`save_concurrency` {CONCURRENCY}, `save_timeout` {SAVE_TIMEOUT:g} s). The spares were ready
{spares_seconds:.0f} s after the start; all {n} attendees spawned and ran the notebook in {out['work_seconds']:.0f} s.

Each attendee, through the public port with their own cookies: spawned, ran every code cell of
`{NOTEBOOK}` in its kernel (the plot included) and one cell of a new notebook, then saved
what the UI would. Median sizes on the server:

| file | KiB |
|---|---|
{file_rows}
| **per attendee** | **{kib(statistics.median(out['written']))}** |

Before the cull they rewrote all five ({kib(statistics.median(out['rewritten']))} KiB), so each save at
the end copies all of their work: the worst case, none of it in a checkpoint. Numbers come from the
service's record (`<data_dir>/record/events.jsonl`). Percentiles interpolate linearly between
closest ranks (numpy's default, `statistics.quantiles(method="inclusive")`).
{"".join(chr(10) + note for note in notes)}

## Save at the end of a session

The last save of each culled attendee's files (`kept` events, final=true), taken after their route
is gone and before their container is removed ({args.cull_idle:g} s idle cull; ended as:
{', '.join(sorted(kinds))}). Its seconds count from its turn among the keeper's `save_concurrency`
(8) copies at once: the cull pass's own span, below, includes the turns.

| attendees | p50 s | p95 s | max s | files per attendee (median) | KiB per attendee (median) | errors |
|---|---|---|---|---|---|---|
{save_row}

Kept afterwards (`GET /api/admin/kept`): {kept_line}.

## The cull pass with {n} due at once

`cull` events: the pass's whole span, every save and container removal in it (the keeper copies
`save_concurrency` attendees at once; the pool starts replacement spares meanwhile).

| containers | seconds | seconds per container |
|---|---|---|
{cull_rows}

## Checkpoints

Every {out['keep_interval']:g} s, each attendee active since their last checkpoint has what changed
copied (the small change: `README.md`, {small_kib} KiB after it). nbpool CPU: the process's CPU time
during the pass (`checkpoint` events), whatever else it did meanwhile. KiB: the bytes copied (`kept`
events, final=false, in the pass). Containers' CPU: the attendees' containers' cgroup CPU time during
the pass, less their rate in the 10 s before
({'measured' if out['containers_cpu_measured'] else 'cgroup files not readable here: not measured'}).

| pass | attendees | seconds | nbpool CPU s | CPU ms per attendee | KiB per attendee | containers' CPU ms per attendee |
|---|---|---|---|---|---|---|
{chr(10).join(pass_rows)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=20)
    parser.add_argument("--spawn-concurrency", type=int, default=4, help="Pool.spawn_concurrency")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: checkpoints every 15 s instead of 30 (use with --attendees 3); its "
                             "report goes to a temporary file unless --out says otherwise")
    parser.add_argument("--log", default="", help="also copy nbpool's log to this file at the end")
    parser.add_argument("--out", default="",
                        help="where the report goes (default benchmarks/results/keep-work.md)")
    args = parser.parse_args()
    if not args.out:
        args.out = str(Path(tempfile.gettempdir()) / "keep-work-quick.md" if args.quick
                       else ROOT / "benchmarks" / "results" / "keep-work.md")
    args.keep_interval = 15.0 if args.quick else 30.0
    args.cull_idle = 5.0
    extra = ["Pool.cull_idle = 0", "Pool.cull_interval = 2", f"WorkKeeper.keep_interval = {args.keep_interval:g}",
             "WorkshopRecord.sample_interval = 5", "DockerBackend.mem_limit = '1G'"]
    service = RunningService(warm=args.attendees, cap=args.attendees + 2, concurrency=args.spawn_concurrency,
                             extra=extra, name="keep")
    began = time.monotonic()
    try:
        service.start(wait_warm=False)
        log(f"nbpool at {service.url} (pool {service.pool}); waiting for {args.attendees} spares")
        spares = wait_for_spares(service, args.attendees, 900)
        log(f"{args.attendees} spares ready after {spares:.0f}s")
        out = asyncio.run(scenario(service, args))
    finally:
        if args.log:
            Path(args.log).write_text(service.logs())
        service.__exit__(None, None, None)  # stops nbpool and removes its containers, whatever happened
    text = report(out, args, spares)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    log(f"wrote {args.out} ({time.monotonic() - began:.0f}s in all)")
    if out["bad"]:
        log(f"FAILED: kept work missing, incomplete or with an error for {len(out['bad'])}: {out['bad']} "
            "(--log FILE keeps nbpool's log)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
