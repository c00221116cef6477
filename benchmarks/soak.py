"""Benchmark: a day-long soak with everything on, watching nbpool for growth.

    .venv/bin/python benchmarks/soak.py [--hours 2] [--wave-minutes 12] [--wave 8] [--out benchmarks/results]
    .venv/bin/python benchmarks/soak.py --hours 0.25 --wave-minutes 4 --wave 6 --out /tmp/soak-smoke   # a smoke run

One nbpool (start.py, its own pool and data dir) with two workshops, ``python`` and ``data`` (2 spares each,
cap 14 each, 28 in all), kept work checkpointing every 60 s, the workshop record, the class view, a trusted
course page for embedded live code, and short culls (idle 120 s, a page's server after 120 s without a run,
any session after 40 min). For ``--hours``, every ``--wave-minutes`` a wave of ``--wave`` visitors arrives at
one workshop (the two in turn) over a minute, more than its spares, so some wait in line:

- half of them run the bundled notebooks (Python, R, Octave, Bash) cell by cell: ``python -m loadtest
  --rehearse notebook-image/workshops --keep-containers`` (their containers left to the idle cull);
- the other half open the Python notebook, run its cells for a minute and close the tab without shutting their
  kernel down (``python -m loadtest --walk-away 1``);
- two more leave their tab open: the kernel's WebSocket stays open (Jupyter pings it), so only the session's
  maximum age ends it; each writes a file of its own (44 KB), which kept work checkpoints and keeps;
- the instructor pushes a fix into that workshop's running containers (``POST /api/admin/workshops/<name>/push``);
- the course page's reader comes back: the page asks ``/build/gh/teach/python/main`` (the ``python`` workshop)
  for a server, runs a cell, then keeps polling ``api/kernels`` every 10 s, as an open tab's Thebe does, until
  its server is culled for running nothing.

Every 30 s: nbpool's resident memory, open files, threads and event-loop tasks (``nbpool_event_loop_tasks``),
the containers on the engine, the kept work's disk and the record's size. At the end the drivers stop, the tabs
close, culling is waited for, and ``soak.md`` (the figures over time, growth after the first half hour, what is
left), ``soak.json`` and ``soak.svg`` (RSS and tasks over time) are written into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.running_service import ROOT, RunningService, spawn
from loadtest.jupyter import KernelClient
from spawner.report import svg

PAGE = "http://localhost:9432"  # the course page's origin (trusted: WebApp.cors_origin)
WORKSHOPS = ("python", "data")
SAMPLE_EVERY = 30.0


def process_figures(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status}
    return {"rss_mib": int(field["VmRSS"][0]) / 1024, "threads": int(field["Threads"][0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


class Soak:
    def __init__(self, service: RunningService, args: argparse.Namespace, out: Path):
        self.service = service
        self.args = args
        self.out = out
        self.stop = threading.Event()
        self.day_over = threading.Event()  # set at the end of --hours, or early by SIGINT/SIGTERM
        self.ended_early_at: float | None = None
        self.samples: list[dict] = []
        self.events: list[str] = []  # what the drivers did, for the report
        self.waves: list[dict] = []
        self.tabs_closed_by_server = 0
        self.page_servers = 0
        self.t0 = time.monotonic()

    def end_early(self, signum: int, _frame) -> None:
        """SIGINT or SIGTERM: the day ends now (after the wave under way) and the report covers what ran; a
        second signal stops at once (the service and its containers are still removed)."""
        if self.day_over.is_set():
            raise SystemExit(f"soak: stopped by signal {signum}")
        self.ended_early_at = (time.monotonic() - self.t0) / 60
        self.note(f"signal {signum}: the day ends early (again to stop at once)")
        self.day_over.set()

    def note(self, text: str) -> None:
        self.events.append(f"{(time.monotonic() - self.t0) / 60:6.1f} min  {text}")
        print(self.events[-1], flush=True)

    # --- what is measured -----------------------------------------------------------------------------

    def sample(self) -> None:
        service = self.service
        figures = process_figures(service.proc.pid)
        request = urllib.request.Request(service.url + "/metrics",
                                         headers={"Authorization": f"token {service.admin_token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            metrics = answer.read().decode()
        tasks = next((float(line.split()[1]) for line in metrics.splitlines()
                      if line.startswith("nbpool_event_loop_tasks ")), -1)
        engine = subprocess.run(["docker", "ps", "-q", "--filter", "label=org.nbpool.pool"], capture_output=True,
                                text=True).stdout.split()
        data = service.dir / "data"
        self.samples.append({"minute": round((time.monotonic() - self.t0) / 60, 2), **figures, "tasks": tasks,
                             "containers": len(engine), "kept_bytes": folder_bytes(data / "kept"),
                             "record_bytes": folder_bytes(data / "record"), **service.stats()})

    def sampler(self) -> None:
        while not self.stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a missed sample is a gap in the curve, not the end of the soak
                self.note(f"sample failed: {exc}")
            self.stop.wait(SAMPLE_EVERY)

    # --- the visitors ---------------------------------------------------------------------------------

    def wave(self, number: int) -> None:
        name = WORKSHOPS[number % 2]
        url, half = self.service.url, max(1, self.args.wave // 2)
        env = {**os.environ, "NBPOOL_ADMIN_TOKEN": self.service.admin_token}
        common = ["--workshop", name, "--arrival", "ramp:60", "--quiet", "--spawn-timeout", "300", "--retries", "3"]
        rehearsal = subprocess.Popen(
            [sys.executable, "-m", "loadtest", url, "--rehearse", str(ROOT / "notebook-image" / "workshops"),
             "--attendees", str(half), "--think", "5", "--keep-containers", *common,
             "--json", str(self.out / f"soak-wave{number}-rehearsal.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        walkers = subprocess.Popen(
            [sys.executable, "-m", "loadtest", url, "--users", str(self.args.wave - half),
             "--notebook", "01-python-introduction.ipynb", "--session-seconds", "60", "--think", "5",
             "--walk-away", "1", "--plot", "", *common, "--json", str(self.out / f"soak-wave{number}-walkers.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.push(name, number)
        for _ in range(2):
            threading.Thread(target=self.open_tab, args=(name,), daemon=True).start()
        outcome = {"wave": number, "workshop": name}
        for kind, proc in (("rehearsal", rehearsal), ("walkers", walkers)):
            text, _ = proc.communicate()
            outcome[kind] = {"exit": proc.returncode, "tail": text.strip().splitlines()[-3:]}
        self.waves.append(outcome)
        self.note(f"wave {number} ({name}) done: rehearsal exit {rehearsal.returncode}, walkers exit "
                  f"{walkers.returncode}")

    def push(self, name: str, number: int) -> None:
        answer = requests.post(f"{self.service.url}/api/admin/workshops/{name}/push", timeout=60,
                               headers={"Authorization": f"token {self.service.admin_token}",
                                        "Origin": self.service.url},
                               json={"files": {"fix.py": f"# fix number {number}\nANSWER = {number}\n"}})
        self.note(f"push into {name}: {answer.status_code}")

    def open_tab(self, name: str) -> None:
        """A visitor who leaves the tab open: the kernel's WebSocket stays until the session's maximum age."""
        session = requests.Session()
        session.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) nbpool-soak/1"
        try:
            found = spawn(session, self.service.url, f"/w/{name}/spawn")
            base = found[:found.index("/user/")] + "/user/" + found.split("/user/")[1].split("/")[0]
            cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
            asyncio.run(self._hold(base + "/", cookie))
        except Exception as exc:
            self.note(f"open tab failed: {exc}")

    async def _hold(self, base: str, cookie: str) -> None:
        client = KernelClient(base, {"Cookie": cookie}, timeout=120)
        await client.start("python3")
        # A file of the attendee's own, so kept work has something to checkpoint every minute and to keep after.
        await client.execute("tab = 'open'; open('my-notes.txt', 'w').write('notes from an open tab\\n' * 2000)")
        while not self.stop.is_set():  # nothing runs; the server's pings keep the WebSocket alive
            await asyncio.sleep(5)
            if not client.connected:
                self.tabs_closed_by_server += 1
                return
        client.detach()

    def course_page(self) -> None:
        """The course page's reader: a server from /build, a cell now and then, Thebe's polls in between."""
        headers = {"Origin": PAGE}
        while not self.stop.is_set():
            try:
                with requests.get(f"{self.service.url}/build/gh/teach/python/main", timeout=300, stream=True,
                                  headers={**headers, "Accept": "text/event-stream"}) as stream:
                    ready = [json.loads(line[6:]) for line in stream.iter_lines(decode_unicode=True)
                             if line.startswith("data: ")][-1]
                url, token = ready["url"], ready["token"]
                self.page_servers += 1
                auth = {**headers, "Authorization": f"token {token}"}
                kernel = requests.post(url + "api/kernels", json={"name": "python3"}, headers=auth, timeout=60)
                client = KernelClient(url, headers, ws_query=f"token={token}")
                asyncio.run(self._run_once(client, kernel.json()["id"]))
                while not self.stop.is_set():  # polled as an open tab does, until the server is gone
                    if requests.get(url + "api/kernels", headers=auth, timeout=30).status_code != 200:
                        break
                    self.stop.wait(10)
            except Exception as exc:
                self.note(f"course page: {exc}")
            self.stop.wait(self.args.wave_minutes * 60 / 2)  # the reader comes back later

    @staticmethod
    async def _run_once(client: KernelClient, kernel: str) -> None:
        await client.attach(kernel)
        await client.execute("print(6 * 7)")
        client.detach()

    def run(self) -> None:
        threads = [threading.Thread(target=self.sampler, daemon=True),
                   threading.Thread(target=self.course_page, daemon=True)]
        for thread in threads:
            thread.start()
        end = self.t0 + self.args.hours * 3600
        number = 0
        while time.monotonic() + 60 < end and not self.day_over.is_set():
            started = time.monotonic()
            self.wave(number)
            number += 1
            self.day_over.wait(max(0.0, min(end, started + self.args.wave_minutes * 60) - time.monotonic()))
        self.note("the day is over: the drivers stop, the tabs close")
        self.stop.set()
        self.service.wait_until(lambda: self.service.stats()["assigned"] == 0, 900, "everything culled", every=5)
        time.sleep(SAMPLE_EVERY)
        self.stop.clear()
        self.sample()  # the end, everything culled
        self.stop.set()


def plot(samples: list[dict]) -> str:
    rss = svg.Line("nbpool RSS (MiB)", svg.PALETTE[0], [(s["minute"], s["rss_mib"]) for s in samples])
    tasks = svg.Line("event-loop tasks", svg.PALETTE[1], [(s["minute"], s["tasks"]) for s in samples])
    fds = svg.Line("open files", svg.PALETTE[2], [(s["minute"], s["fds"]) for s in samples])
    return svg.line_chart([rss, tasks, fds], "minutes", "MiB / count")


def report(soak: Soak, args: argparse.Namespace) -> str:
    samples = soak.samples
    settled = [s for s in samples if s["minute"] >= 30] or samples
    lines = [f"Soak, {args.hours:g} h, {os.cpu_count()} cores: two workshops, a wave of {args.wave} every "
             f"{args.wave_minutes:g} min ({len(soak.waves)} waves), kept work every 60 s, pushes, a course page, "
             "culls (idle 120 s, page 120 s, age 40 min)."
             + (f" **Ended early** by a signal at minute {soak.ended_early_at:.0f}." if soak.ended_early_at else ""),
             "",
             "| minute | RSS MiB | open files | threads | tasks | containers | assigned | in line | kept work | "
             "record |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    step = max(1, len(samples) // 24)
    for s in samples[::step] + samples[-1:]:
        lines.append(f"| {s['minute']:.0f} | {s['rss_mib']:.1f} | {s['fds']} | {s['threads']} | {s['tasks']:.0f} | "
                     f"{s['containers']} | {s['assigned']} | {s['queue']} | {s['kept_bytes'] / 2**20:.1f} MiB | "
                     f"{s['record_bytes'] / 2**20:.2f} MiB |")
    rss = [s["rss_mib"] for s in settled]
    half = len(rss) // 2
    lines += ["", f"After the first 30 minutes: RSS {min(rss):.1f}–{max(rss):.1f} MiB (median "
              f"{statistics.median(rss):.1f}); median of the first half {statistics.median(rss[:half or 1]):.1f}, "
              f"of the second half {statistics.median(rss[half:]):.1f}. Tasks {min(s['tasks'] for s in settled):.0f}–"
              f"{max(s['tasks'] for s in settled):.0f}; open files {min(s['fds'] for s in settled)}–"
              f"{max(s['fds'] for s in settled)}; threads {min(s['threads'] for s in settled)}–"
              f"{max(s['threads'] for s in settled)}.",
              f"At the end, everything culled: {samples[-1]['containers']} containers on the engine (the spares: "
              f"{samples[-1]['available']}), kept work {samples[-1]['kept_bytes'] / 2**20:.1f} MiB, record "
              f"{samples[-1]['record_bytes'] / 2**20:.2f} MiB. Course-page servers handed out: {soak.page_servers}; "
              f"open tabs ended by the session's maximum age: {soak.tabs_closed_by_server}.", "",
              "Waves:", ""]
    for wave in soak.waves:
        lines.append(f"- wave {wave['wave']} ({wave['workshop']}): rehearsal exit {wave['rehearsal']['exit']}, "
                     f"walkers exit {wave['walkers']['exit']}; {' / '.join(wave['walkers']['tail'][-1:])}")
    lines += ["", "What the drivers did:", "", "```", *soak.events, "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--wave-minutes", type=float, default=12.0)
    # 8: a workshop's wave (8), its two open tabs and the two still open from its previous wave (24 min before,
    # kept until the 40-minute maximum age) come to 12 of its 14; more would be turned away as full.
    parser.add_argument("--wave", type=int, default=8, help="visitors per wave")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workshops = {name: {"warm": 2, "max_containers": 14} for name in WORKSHOPS}
    extra = [f"NbpoolApp.workshops = {workshops!r}", "NbpoolApp.total_containers = 28",
             "Pool.cull_idle = 120", "Pool.cull_embedded_idle = 120", "Pool.cull_max_age = 2400",
             "Pool.cull_interval = 10", "WorkKeeper.keep_interval = 60", f"WebApp.cors_origin = [{PAGE!r}]",
             "WebApp.history_interval = 5", "WebApp.address_share_exempt = ['127.0.0.1/32']"]
    with RunningService(warm=4, cap=28, extra=extra, name="soak") as service:
        soak = Soak(service, args, out)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, soak.end_early)
        print(f"soak: {args.hours:g} h against {service.url}, {os.cpu_count()} cores", flush=True)
        soak.run()
        (out / "soak.json").write_text(json.dumps({"samples": soak.samples, "waves": soak.waves,
                                                   "events": soak.events}, indent=1) + "\n")
        (out / "soak.svg").write_text(plot(soak.samples))
        text = report(soak, args)
        (out / "soak.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
