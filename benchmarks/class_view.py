"""Benchmark: what the class view's kernel watch costs, and how soon the view shows a run.

    .venv/bin/python benchmarks/class_view.py [--attendees 60] [--seconds 60] [--rounds 20] [--executions 25]
                                              [--throughput-runs 11] [--warmup 30] [--log-dir DIR]
                                              [--out benchmarks/results/class-view.md]
    .venv/bin/python benchmarks/class_view.py --attendees 5 --seconds 10       # a quick run for development

The proxy reads every attendee's kernel WebSocket for the class view
(``proxy/kernel_watch.py``) unless ``ClassView.enabled = False``. In one run,
through nbpool's public port as a browser does (each attendee their own
cookies, ``/spawn`` through the waiting line, the bundled
``01-python-introduction.ipynb`` opened with ``POST api/sessions``, then its
kernel's WebSocket):

1. **Kernel round trip.** Two nbpools side by side (start.py each, warm 1,
   cap 2), the watch on in one and off in the other, one attendee each.
   ``--rounds`` rounds, alternating which goes first, of ``--executions``
   executions of ``pass`` each; ``execute()`` returns when both the reply and
   the kernel's idle status have arrived. p50 and p99 per setting.
2. **Output throughput.** On the same two attendees: a cell that prints 64 MB
   (64 writes of 1 MB to stdout), alternated, ``--throughput-runs`` runs each;
   MB/s = bytes printed / seconds until ``execute()`` returned (every byte is
   checked to have arrived). Median per setting. Target: on within 1.1x of off.
3. **nbpool's CPU under a class's load.** One nbpool, warm = cap =
   ``--attendees`` (containers limited to 256 MB). Every attendee opens the
   notebook and then runs a small cell (``x = sum(range(1000))``, with the
   notebook's cell id as a front end sends it) every 2 s, staggered, for
   ``--seconds`` (after ``--warmup`` seconds of it unmeasured); nbpool's CPU
   time (utime + stime of the start.py process from ``/proc/<pid>/stat``) over
   that window, as a share of one core. Then the
   watch is switched off (the config file rewritten with ``ClassView.enabled =
   False``, SIGHUP), every attendee's kernel WebSocket closed and opened again
   (the change applies to new WebSockets only), and the same load measured
   again.
4. **Delay to the view.** During phase 3's window with the watch on, a
   subscriber reads ``GET /api/class/events`` (the admin token), and every ~2 s
   one attendee (in turn, in place of its load cell) runs ``raise
   ValueError('probe-<n>')``. Delay: from when that ``execute()`` returned to
   the arrival of the first snapshot whose tile for that attendee has
   ``error_line == 'probe-<n>'``. The probes and the subscriber run in the
   watch-off window as well, so both windows carry the same load. Target: p95 ≤ 2 s.

Writes a Markdown table to ``--out`` and prints it. Every KernelClient is shut
down and every nbpool stopped with its containers removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from running_service import ROOT, RunningService
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

sys.path.insert(0, str(ROOT))
from loadtest.jupyter import KernelClient
from loadtest.report import percentile
from tests.service import cid_of, spawn, visitor

NOTEBOOK = "01-python-introduction.ipynb"
PRINTED = 64 * 1_000_000
BIG_OUTPUT = "import sys\nfor _ in range(64): sys.stdout.write('x' * 1_000_000)\nsys.stdout.flush()"
LOAD_CELL = "x = sum(range(1000))"
# The image's Jupyter Server keeps its default IOPub data rate limit (1 MB/s, then "IOPub data rate exceeded" and
# the output dropped): phases 1-2 lift it, in both nbpools alike, so that the output reaches the proxy at full speed.
NO_RATE_LIMIT = "DockerBackend.command = ['start-notebook', '--ZMQChannelsWebsocketConnection.limit_rate=False']"
# 64 MB printed at once is held several times over by the kernel and the server (its buffer, the message, its
# JSON, the WebSocket frame): at the default 512 MB limit the container runs out of memory by the second run.
BIG_MEMORY = "DockerBackend.mem_limit = '2G'"
EVERY = 2.0  # seconds between two cells of one attendee, and between two probes
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def code_cells() -> list[str]:
    """The ids of the notebook's code cells, as a front end sends them (metadata cellId)."""
    nb = json.loads((ROOT / "notebook-image" / "workshops" / NOTEBOOK).read_text())
    return [c["id"] for c in nb["cells"] if c["cell_type"] == "code" and c.get("id")]


class Service(RunningService):
    """A RunningService whose ``with`` starts nbpool without waiting for its spares (the caller waits, printing
    progress) and, should the start fail, still stops it and removes its containers."""

    def __enter__(self) -> Service:
        try:
            self.start_seconds = self.start(wait_warm=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    log_dir = ""  # where nbpool's log is copied when it stops ('': nowhere)

    def __exit__(self, *exc) -> None:
        if self.log_dir:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.log_dir) / f"{self.pool}.log").write_text(self.logs())
        super().__exit__(*exc)

    def wait_for_spares(self, count: int, timeout: float) -> float:
        t0, shown = time.monotonic(), [0.0]

        def ready() -> bool:
            available = self.stats()["available"]
            if time.monotonic() - shown[0] >= 15:
                shown[0] = time.monotonic()
                log(f"{self.pool}: {available}/{count} spares after {time.monotonic() - t0:.0f}s")
            return available >= count

        self.wait_until(ready, timeout, f"{count} spares", every=1.0)
        return time.monotonic() - t0

    def cpu_seconds(self) -> float:
        """utime + stime of the start.py process (all its threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def watch_off(self) -> None:
        """ClassView.enabled = False in the config file, SIGHUP, and wait until nbpool says it applied it."""
        self.write_config("ClassView.enabled = False")
        self.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "applied ClassView: enabled=False" in self.logs(), 60, "the reload", every=0.2)


@dataclass
class Attendee:
    """One visitor: their cookies, their container, their kernel client."""

    number: int
    url: str  # the container URL /spawn reached
    cookies: str
    client: KernelClient | None = None
    lock: asyncio.Lock | None = None
    load_rtt: list[tuple[float, float]] = field(default_factory=list)  # (monotonic when done, seconds) per load cell
    failures: list[str] = field(default_factory=list)

    @property
    def cid(self) -> str:
        return cid_of(self.url)

    @property
    def base(self) -> str:
        return re.match(r"(.*?/user/[0-9a-f]+/)", self.url).group(1)


def arrive(url: str, count: int) -> list[Attendee]:
    """``count`` visitors through /spawn at once (threads: tests.service's browser-like client)."""

    def one(i: int) -> Attendee:
        session = visitor()
        container = spawn(session, url, timeout=600)
        return Attendee(i, container, "; ".join(f"{k}={v}" for k, v in session.cookies.items()))

    with ThreadPoolExecutor(max_workers=min(count, 10)) as pool:
        return list(pool.map(one, range(count)))


async def open_kernels(attendees: list[Attendee], clients: list[KernelClient], http: AsyncHTTPClient,
                       parallel: int = 6) -> None:
    """Each attendee opens the notebook (POST api/sessions, the kernel WebSocket); ``clients`` collects every
    KernelClient made, so that all are shut down whatever fails."""
    gate = asyncio.Semaphore(parallel)

    async def one(a: Attendee) -> None:
        async with gate:
            a.client = KernelClient(a.base, {"Cookie": a.cookies}, timeout=300, http_client=http)
            a.lock = asyncio.Lock()
            clients.append(a.client)
            await a.client.start_session(NOTEBOOK, "python3")
            result = await a.client.execute("1 + 1")
            if result.status != "ok":
                raise RuntimeError(f"attendee {a.number}: {result.error}")

    await asyncio.gather(*(one(a) for a in attendees))


async def shutdown(clients: list[KernelClient]) -> None:
    await asyncio.gather(*(c.shutdown() for c in clients), return_exceptions=True)


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f} ms"


# --- phases 1 and 2: two nbpools side by side ----------------------------------------------------------------


async def side_by_side(services: dict[str, Service], args) -> dict:
    http = AsyncHTTPClient(force_instance=True, max_clients=20)
    clients: list[KernelClient] = []
    try:
        attendees = {}
        for name, service in services.items():
            attendees[name] = (await asyncio.to_thread(arrive, service.url, 1))[0]
        await asyncio.gather(*(open_kernels([a], clients, http) for a in attendees.values()))
        # the pools' replacement spares start now: wait for them, then let them settle
        for service in services.values():
            await asyncio.to_thread(service.wait_for_spares, 1, 600)
        await asyncio.sleep(10)
        names = list(services)
        for name in names:  # warm-up
            for _ in range(20):
                await attendees[name].client.execute("pass")

        rtt: dict[str, list[float]] = {n: [] for n in names}
        round_p50: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                client, mine = attendees[name].client, []
                for _ in range(args.executions):
                    t0 = time.perf_counter()
                    result = await client.execute("pass")
                    mine.append(time.perf_counter() - t0)
                    if result.status != "ok":
                        raise RuntimeError(f"pass failed ({name}): {result.error}")
                rtt[name] += mine
                round_p50[name].append(statistics.median(mine))
                log(f"round {r + 1} {name:3s}: p50 {ms(statistics.median(mine))}, "
                    f"p99 {ms(percentile(mine, 99))}")

        throughput: dict[str, list[float]] = {n: [] for n in names}
        for name in names:  # warm-up (and the check that every byte arrives)
            result = await attendees[name].client.execute(BIG_OUTPUT)
            if len(result.stdout) != PRINTED:
                raise RuntimeError(f"{name}: {len(result.stdout)} of {PRINTED} bytes arrived; stderr "
                                   f"{result.stderr[:300]!r}")
        for r in range(args.throughput_runs):
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                result = await attendees[name].client.execute(BIG_OUTPUT)
                seconds = time.perf_counter() - t0
                if result.status != "ok" or len(result.stdout) != PRINTED:
                    raise RuntimeError(f"{name}: {len(result.stdout)} of {PRINTED} bytes ({result.status} "
                                       f"{result.error})")
                throughput[name].append(PRINTED / 1e6 / seconds)
                log(f"throughput run {r + 1} {name:3s}: {throughput[name][-1]:.0f} MB/s ({seconds:.2f} s)")
        return {"rtt": rtt, "round_p50": round_p50, "throughput": throughput,
                "subprotocol": {n: a.client.subprotocol for n, a in attendees.items()}}
    finally:
        await shutdown(clients)
        http.close()


# --- phases 3 and 4: a class ------------------------------------------------------------------------------------


@dataclass
class Probe:
    name: str
    cid: str
    returned: float | None = None  # monotonic: execute() returned
    reply_at: float | None = None  # monotonic: the reply arrived (the client's read)
    seen: float | None = None  # monotonic: the first snapshot showing it arrived


class Subscriber:
    """GET /api/class/events, read as it streams; notes when each pending probe first shows."""

    def __init__(self, service: Service):
        self.service = service
        self.http = AsyncHTTPClient(force_instance=True)
        self.buffer = b""
        self.pending: dict[str, Probe] = {}
        self.snapshots = 0
        self.bytes = 0
        self.task: asyncio.Task | None = None
        self.closed = False

    def start(self) -> None:
        request = HTTPRequest(self.service.url + "/api/class/events",
                              headers={"Authorization": f"token {self.service.admin_token}"},
                              streaming_callback=self.chunk, request_timeout=24 * 3600, connect_timeout=30)
        self.task = asyncio.ensure_future(self.http.fetch(request, raise_error=False))

    def chunk(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(data)
        self.buffer += data
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    self.snapshots += 1
                    self.event(line[6:], now)

    def event(self, payload: bytes, now: float) -> None:
        hits = [p for p in self.pending.values() if p.seen is None and f'"error_line":"{p.name}"'.encode() in payload]
        if not hits:
            return
        tiles = {t["id"]: t for t in json.loads(payload)["sessions"]}
        for probe in hits:
            tile = tiles.get(probe.cid)
            if tile is not None and tile.get("error_line") == probe.name:
                probe.seen = now

    async def close(self) -> None:
        # Cutting the stream off fails its fetch, which tornado logs as an error once the future is gone: expected.
        logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
        self.http.close()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except Exception:  # a stream we cut off
                pass


async def load(attendees: list[Attendee], stop: asyncio.Event, cell_id: str) -> None:
    """Every attendee runs LOAD_CELL every EVERY seconds, staggered over the period, until ``stop``."""

    async def one(a: Attendee, offset: float) -> None:
        start = time.monotonic() + offset
        k = 0
        while not stop.is_set():
            delay = start + k * EVERY - time.monotonic()
            k += 1
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            elif delay < -EVERY:  # fell behind (a probe held the kernel): skip, as a person would not catch up
                continue
            async with a.lock:
                t0 = time.perf_counter()
                try:
                    result = await a.client.execute(LOAD_CELL, cell_id=cell_id)
                except Exception as exc:  # counted, the load goes on
                    a.failures.append(repr(exc))
                    continue
                a.load_rtt.append((time.monotonic(), time.perf_counter() - t0))
                if result.status != "ok":
                    a.failures.append(result.error)

    n = len(attendees)
    await asyncio.gather(*(one(a, EVERY * i / n) for i, a in enumerate(attendees)))


async def probes(attendees: list[Attendee], subscriber: Subscriber, stop: asyncio.Event, first: int,
                 watched: bool, cell_id: str) -> list[Probe]:
    """Every EVERY seconds, the next attendee runs a failing cell; with ``watched``, their kernel is held
    until the view shows it (or 10 s), so that no later cell of theirs replaces it on the tile first."""
    done: list[Probe] = []
    n = first
    start = time.monotonic()
    while not stop.is_set():
        a = attendees[n % len(attendees)]
        probe = Probe(f"probe-{n}", a.cid)
        n += 1
        async with a.lock:
            if watched:
                subscriber.pending[probe.name] = probe
            try:
                result = await a.client.execute(f"raise ValueError('{probe.name}')", cell_id=cell_id)
            except Exception as exc:  # counted, the probes go on
                a.failures.append(f"probe: {exc!r}")
                result = None
            if result is not None:
                probe.returned, probe.reply_at = time.monotonic(), result.reply_at
                if result.status != "error" or probe.name not in result.error:
                    a.failures.append(f"probe {probe.name}: {result.status} {result.error}")
                if watched:
                    end = time.monotonic() + 10
                    while probe.seen is None and time.monotonic() < end:
                        await asyncio.sleep(0.01)
                done.append(probe)
            subscriber.pending.pop(probe.name, None)
        delay = start + (n - first) * EVERY - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    return done


async def window(service: Service, attendees: list[Attendee], subscriber: Subscriber, seconds: float,
                 first_probe: int, watched: bool, cells: list[str]) -> dict:
    """The load (and the probes) for ``seconds`` after a settling time; nbpool's CPU over exactly that window."""
    for a in attendees:
        a.load_rtt, a.failures = [], []
    stop = asyncio.Event()
    loading = asyncio.ensure_future(load(attendees, stop, cells[0]))
    probing = asyncio.ensure_future(probes(attendees, subscriber, stop, first_probe, watched, cells[1]))
    await asyncio.sleep(EVERY * 2)  # every attendee has started
    cpu0, t0 = service.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = service.cpu_seconds(), time.monotonic()
    stop.set()
    await loading
    done = await probing
    rtt = [x for a in attendees for done_at, x in a.load_rtt if t0 <= done_at <= t1]  # cells done in the window
    failures = [f for a in attendees for f in a.failures]
    return {"cpu_s": cpu1 - cpu0, "wall_s": t1 - t0, "share": (cpu1 - cpu0) / (t1 - t0), "cells": len(rtt),
            "rtt_p50": percentile(rtt, 50), "rtt_p95": percentile(rtt, 95), "failures": failures,
            "probes": done}


async def cells_run(service: Service) -> int:
    status, body = await asyncio.to_thread(service.get_json, "/api/class", True)
    return sum(t["cells_run"] for t in body["sessions"]) if status == 200 else -1


async def a_class(service: Service, args) -> dict:
    cells = code_cells()
    http = AsyncHTTPClient(force_instance=True, max_clients=100)
    clients: list[KernelClient] = []
    subscriber = Subscriber(service)
    try:
        t0 = time.monotonic()
        attendees = await asyncio.to_thread(arrive, service.url, args.attendees)
        log(f"{len(attendees)} attendees have their containers ({time.monotonic() - t0:.0f}s)")
        await open_kernels(attendees, clients, http)
        log(f"{len(attendees)} kernels open ({time.monotonic() - t0:.0f}s); {args.warmup:.0f} s of load unmeasured")
        subscriber.start()
        stop = asyncio.Event()
        warming = asyncio.ensure_future(load(attendees, stop, cells[0]))
        await asyncio.sleep(args.warmup)  # the first runs of each kernel, the class view's first reads of each server
        stop.set()
        await warming
        await asyncio.sleep(2)

        log(f"watch on: {args.seconds:.0f} s of load")
        on = await window(service, attendees, subscriber, args.seconds, 0, True, cells)
        log(f"watch on: nbpool CPU {on['share'] * 100:.1f} % of a core; {on['cells']} cells, "
            f"{len(on['failures'])} failures; {len(on['probes'])} probes, "
            f"{sum(p.seen is not None for p in on['probes'])} seen")
        before_off = await cells_run(service)

        service.watch_off()
        log("watch switched off (SIGHUP applied); reopening every kernel WebSocket")
        gate = asyncio.Semaphore(10)

        async def reopen(a: Attendee) -> None:
            async with gate:
                a.client.detach()
                await a.client.attach(a.client.kernel_id)

        await asyncio.gather(*(reopen(a) for a in attendees))
        await asyncio.sleep(5)
        log(f"watch off: {args.seconds:.0f} s of load")
        off = await window(service, attendees, subscriber, args.seconds, 100_000, False, cells)
        log(f"watch off: nbpool CPU {off['share'] * 100:.1f} % of a core; {off['cells']} cells, "
            f"{len(off['failures'])} failures")
        after_off = await cells_run(service)
        return {"on": on, "off": off, "runs_counted_while_off": after_off - before_off,
                "snapshots": subscriber.snapshots, "stream_bytes": subscriber.bytes}
    finally:
        await subscriber.close()
        await shutdown(clients)
        http.close()


# --- the report ------------------------------------------------------------------------------------------------


def report(args, pair: dict, room: dict, timings: dict) -> str:
    rtt, tp = pair["rtt"], pair["throughput"]
    p50 = {n: percentile(rtt[n], 50) for n in rtt}
    p99 = {n: percentile(rtt[n], 99) for n in rtt}
    mbps = {n: statistics.median(tp[n]) for n in tp}
    slower = mbps["off"] / mbps["on"]
    on, off = room["on"], room["off"]
    probes = [p for p in on["probes"] if p.returned is not None]
    delays = [p.seen - p.returned for p in probes if p.seen is not None]
    from_reply = [p.seen - p.reply_at for p in probes if p.seen is not None and p.reply_at is not None]
    missed = len(probes) - len(delays)
    d50, d95 = percentile(delays, 50), percentile(delays, 95)
    n = args.attendees
    failures = on["failures"] + off["failures"]
    rounds = "; ".join(f"{name} " + ", ".join(ms(x) for x in pair["round_p50"][name]) for name in ("on", "off"))
    runs = "; ".join(f"{name} " + ", ".join(f"{x:.0f}" for x in tp[name]) for name in ("on", "off"))
    paired = statistics.median(a / b for a, b in zip(tp["on"], tp["off"], strict=True))
    protocols = ", ".join(f"{name}: {chosen or 'JSON'}" for name, chosen in pair["subprotocol"].items())
    met = "**met**", "**not met**"
    cpu = {name: f"{w['share'] * 100:.1f} % of a core ({w['cpu_s']:.1f} CPU-s)" for name, w in room.items()
           if name in ("on", "off")}
    rows = [
        ("measure", "watch on", "watch off", "on / off", "target"),
        ("---",) * 5,
        (f"kernel round trip of `pass`, p50 ({len(rtt['on'])} each)", ms(p50["on"]), ms(p50["off"]),
         f"{p50['on'] / p50['off']:.2f}", "–"),
        ("kernel round trip of `pass`, p99", ms(p99["on"]), ms(p99["off"]), f"{p99['on'] / p99['off']:.2f}", "–"),
        (f"output throughput, 64 MB printed (median of {args.throughput_runs})", f"{mbps['on']:.0f} MB/s",
         f"{mbps['off']:.0f} MB/s", f"{mbps['on'] / mbps['off']:.2f}",
         f"on within 1.1x of off: {met[slower > 1.1]} (off/on {slower:.2f})"),
        (f"nbpool CPU, {n} attendees, a cell each {EVERY:g} s, {args.seconds:g} s window", cpu["on"], cpu["off"],
         f"{(on['share'] - off['share']) * 100:+.1f} points of a core", "–"),
        (f"reply → class view shows it, p50 ({len(delays)} probes)", ms(d50), "–", "–", "–"),
        ("reply → class view shows it, p95", ms(d95), "–", "–", f"≤ 2 s: {met[d95 is None or d95 > 2]}"),
    ]
    failed = f"{len(failures)}" + (" — " + "; ".join(failures[:5]) if failures else "")
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    loads = ", ".join(f"{value:.2f} {when}" for when, value in timings["load_avg"].items())
    command = "benchmarks/class_view.py " + " ".join(sys.argv[1:])
    return f"""# The class view's kernel watch: its cost, and how soon the view shows a run — `benchmarks/class_view.py`

`.venv/bin/python {command.strip()}`, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; the whole run took
{timings['total'] / 60:.1f} min. Everything goes through nbpool's public port as a browser's would
(`/spawn`, the attendee's cookie, `POST api/sessions` for `{NOTEBOOK}`, its kernel WebSocket; the server
selected {protocols}). "On" is the default; "off" is `ClassView.enabled = False`. The machine's 1-minute load
average: {loads} (anything else running on it shows here).

{table}

Phases 1–2: two nbpools side by side (warm 1, cap 2), one attendee each; {args.rounds} rounds × {args.executions}
executions of `pass`, alternating which goes first (p50 per round: {rounds}); `execute()` returns once both the reply
and the kernel's idle status arrived. Throughput: `{BIG_OUTPUT!r}`, runs alternated after one warm-up each, every
byte checked to arrive; MB/s per run: {runs} (median of the runs' on/off ratios, pairing each on run with the
off run next to it: {paired:.2f}). The image's Jupyter Server limits IOPub output to 1 MB/s by default
(beyond it, "IOPub data rate exceeded" and the output is dropped): both nbpools of phases 1–2 start their containers
with `start-notebook --ZMQChannelsWebsocketConnection.limit_rate=False`, and limit them to 2 GB, not 512 MB (a
64 MB output is held several times over by the kernel and its server: at 512 MB the container ran out of memory).

Phases 3–4: one nbpool, warm = cap = {n}, containers limited to 256 MB ({timings['spares'] / 60:.1f} min until all
{n} spares were ready). Every attendee runs `{LOAD_CELL}` (the notebook's first code cell's id as `cellId`) every
{EVERY:g} s, staggered; CPU is utime + stime of the start.py process (`/proc/<pid>/stat`) over {args.seconds:g} s,
after {2 * EVERY:g} s of load to settle; before the first window, {args.warmup:g} s of the same load went unmeasured
(a trial's first window right after the kernels opened showed a tail of slow cells that later windows with the
same setting did not). Both windows carry
the same load: a `/api/class/events` subscriber and, every
~{EVERY:g} s, one attendee (in turn, in place of a load cell) running `raise ValueError('probe-<n>')`. Load cells
done in the window: {on['cells']} on, {off['cells']} off (load-cell round trip p50 {ms(on['rtt_p50'])} on,
{ms(off['rtt_p50'])} off; p95 {ms(on['rtt_p95'])} on, {ms(off['rtt_p95'])} off); failures: {failed}.
Off means: the config rewritten with `ClassView.enabled = False`, SIGHUP, then every attendee's kernel WebSocket
closed and opened again; the class view counted {room['runs_counted_while_off']} runs during the off window (0: the
watch was really off). The subscriber received {room['snapshots']} snapshots ({room['stream_bytes'] / 1e6:.1f} MB)
in all.

Delay: from the probe's `execute()` returning (its reply and idle status in) to the arrival of the first
`/api/class/events` snapshot whose tile for that attendee has `error_line == 'probe-<n>'`; measured from the
reply's arrival instead: p50 {ms(percentile(from_reply, 50))}, p95 {ms(percentile(from_reply, 95))}. The stream
sends at most one snapshot every 0.25 s (`STREAM_GAP`). Probes not seen within 10 s: {missed}. Every delay (ms):
{', '.join(f'{d * 1000:.0f}' for d in delays)}.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=60, help="phase 3: attendees (= spares = cap)")
    parser.add_argument("--seconds", type=float, default=60.0, help="phase 3: seconds of load per setting")
    parser.add_argument("--rounds", type=int, default=20, help="phase 1: alternating rounds")
    parser.add_argument("--executions", type=int, default=25, help="phase 1: executions of `pass` per round")
    parser.add_argument("--throughput-runs", type=int, default=11, help="phase 2: runs per setting")
    parser.add_argument("--spare-timeout", type=float, default=0, help="seconds to wait for phase 3's spares "
                        "(default 120 + 30 per attendee)")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="phase 3: seconds of the same load, unmeasured, before the first window")
    parser.add_argument("--log-dir", default="", help="copy each nbpool's log into this directory at its end")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "class-view.md"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `with` cleans up on the way out
    Service.log_dir = args.log_dir
    began = time.monotonic()
    timings = {}

    load_avg = {"at the start": os.getloadavg()[0]}
    log("phases 1-2: two nbpools, the watch on and off")
    with Service(warm=1, cap=2, name="cv-on", extra=[NO_RATE_LIMIT, BIG_MEMORY]) as on_service, \
            Service(warm=1, cap=2, name="cv-off", extra=[NO_RATE_LIMIT, BIG_MEMORY, "ClassView.enabled = False"]) \
            as off_service:
        for service in (on_service, off_service):
            service.wait_for_spares(1, 600)
        pair = asyncio.run(side_by_side({"on": on_service, "off": off_service}, args))
    timings["pair"] = time.monotonic() - began
    load_avg["after phases 1-2"] = os.getloadavg()[0]

    log(f"phases 3-4: one nbpool, {args.attendees} attendees")
    with Service(warm=args.attendees, cap=args.attendees, name="cv-class",
                 extra=["DockerBackend.mem_limit = '256M'"]) as service:
        timings["spares"] = service.wait_for_spares(args.attendees, args.spare_timeout or 120 + 30 * args.attendees)
        log(f"{args.attendees} spares after {timings['spares']:.0f}s")
        room = asyncio.run(a_class(service, args))
        load_avg["after phases 3-4"] = os.getloadavg()[0]
    timings["total"] = time.monotonic() - began

    timings["load_avg"] = load_avg
    text = report(args, pair, room, timings)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
