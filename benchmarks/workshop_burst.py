"""Scenario: a workshop's attendees all click the link at once.

    .venv/bin/python benchmarks/workshop_burst.py [--users 50] [--warm 10] [--cap 60] [--out benchmarks/results]
    .venv/bin/python benchmarks/workshop_burst.py --backend swarm      # on the cluster of `make cluster`
    .venv/bin/python benchmarks/workshop_burst.py --compare            # docker, then swarm, in one sitting
    .venv/bin/python benchmarks/workshop_burst.py --static-compare     # proxy compression/cache off, then on
    .venv/bin/python benchmarks/workshop_burst.py --workshops          # one named workshop, then two at once
    .venv/bin/python benchmarks/workshop_burst.py --collaboration-compare  # the notebook on the server off, then on

Starts nbpool (start.py, its own pool name, data dir and port) with ``--warm``
spares and a cap of ``--cap``, waits until the spares are ready, then runs
``python -m loadtest`` with ``--users`` attendees arriving in one burst, each
running a cell every ``--think`` seconds (the default cell, or ``--notebook``'s). Writes the loadtest's JSON and
plot into ``--out`` and prints its table. Run it twice (``--warm 10`` and
``--warm 0``) to see what pre-warming buys. Removes its containers afterwards.

``--compare`` runs the same burst on the plain Docker backend and then on the
Swarm of ``make cluster`` (same machine, same cores: it measures what Swarm
costs, not a speed-up) and writes ``swarm-vs-docker.md``: spares ready after
the start, container create to server ready (p50), hand-out from a spare
(p50), and the burst's time to notebook page and to first result.

``--assets`` makes each attendee fetch the notebook page's static files after
the page, as a browser does (``auto`` records the list first with Chromium on
a throwaway container, outside the pool). ``--static-compare`` runs the burst
with the proxy's compression, its shared static cache and the pre-started
kernel off, then on, and writes
``static-cache-burst.md``: the usual figures plus the static requests that
reached containers, those served from the cache, and the static bytes
attendees received.

``--collaboration-compare`` runs the burst with ``DockerBackend.collaboration``
off (plain Jupyter), then on (real-time collaboration and server-side
execution), then off again (``--repeat N``: N "on" runs, each between two
"off" runs), in one sitting, and writes ``collaboration-burst.md``: the usual
figures, and the change of the first result's p95 (the mean of the "on" runs
against the mean of the "off" runs around them).

``--workshops`` uses named workshops (``NbpoolApp.workshops``, attendees at
``/w/<name>/spawn`` through ``loadtest --workshop``), in one sitting: (a) one
workshop (landing path ``tree``) of ``--users`` (default 25) attendees arriving
at once with ``--warm`` (default 5) spares, then (b) on a fresh service, two
workshops (landing paths ``tree`` and ``lab``) of ``--users`` attendees each,
both bursts started at the same moment, ``--warm`` spares each, then (c) the
control: the same total load in one workshop (twice the attendees and spares),
so the cost of splitting into workshops shows apart from the work itself. Each
workshop's cap is ``--cap`` (default ``--users`` + ``--warm``). Writes
``workshops-burst.md`` and ``workshops-burst.json``: per workshop the failures,
time to notebook page and to first result (p50/p95), and its p95 to first
result against (a)'s and (c)'s.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from running_service import ROOT, RunningService


def record_assets(image: str, out: Path) -> Path:
    """The notebook page's static files, recorded with Chromium on a throwaway container of ``image``.

    Outside the pool, so the service's shared static cache starts as empty as
    it would on the day.
    """
    sys.path.insert(0, str(ROOT))
    from loadtest.assets import record

    token = secrets.token_hex(16)
    cid = subprocess.run(["docker", "run", "-d", "--rm", "-e", "NBPOOL_BASE_URL=/user/assets/", "-e",
                          f"JUPYTER_TOKEN={token}", "-p", "127.0.0.1::8888", image],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        port = subprocess.run(["docker", "port", cid, "8888"], capture_output=True, text=True,
                              check=True).stdout.split(":")[-1].strip()
        base = f"http://127.0.0.1:{port}/user/assets/"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        paths = record(f"{base}notebooks/01-python-introduction.ipynb?token={token}")
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    path = out / "assets.txt"
    path.write_text(f"# static files of {image}'s notebook page, recorded {time.strftime('%Y-%m-%d')}\n"
                    + "".join(f"{p}\n" for p in paths))
    print(f"recorded {len(paths)} static files the notebook page loads", file=sys.stderr)
    return path


def run(args, backend: str, name: str, out: Path, extra: tuple[str, ...] = (), label: str = "") -> dict:
    """One burst on ``backend``; the figures the comparison table shows."""
    with RunningService(warm=args.warm, cap=args.cap, concurrency=args.concurrency, extra=[*args.set, *extra],
                        name="burst", backend=backend) as service:
        ready = service.start_seconds
        spawn = service.get_json("/api/admin/containers", token=True)[1]["spawn_seconds"]
        time.sleep(3)  # let the machine settle after warming the spares
        print(f"{name}: {args.users} attendees, {args.warm} spares, cap {args.cap}, {backend} backend, "
              f"{os.cpu_count()} cores", file=sys.stderr)
        done = subprocess.run([
            sys.executable, "-m", "loadtest", service.url, "--users", str(args.users), "--arrival", "burst",
            "--session-seconds", str(args.session_seconds), "--think", str(args.think),
            *(["--notebook", args.notebook] if args.notebook else []), "--spawn-timeout", "300",
            *(["--assets", str(args.assets)] if args.assets else []),
            "--json", str(out / f"{name}.json"), "--plot", str(out / f"{name}.svg"),
        ], cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"{name}: the loadtest failed ({done.returncode})")
        relayed = service.metric("nbpool_static_requests_to_containers_total")
        hits = service.metric("nbpool_static_cache_hits_total")
    data = json.loads((out / f"{name}.json").read_text())
    summary = data["summary"]
    asset_bytes = sum(a.get("asset_bytes", 0) for a in data["attendees"])
    rows = {row["name"]: row for row in summary["rows"]}
    return {"backend": label or backend, "relayed": relayed, "hits": hits, "asset_bytes": asset_bytes,
            "spares_ready": ready, "spawn_p50": spawn["p50"], "spawn_p95": spawn["p95"],
            "handout_p50": rows["spawn/spare"]["p50"] if "spawn/spare" in rows else None,
            "page_p50": rows["time to notebook page"]["p50"], "page_p95": rows["time to notebook page"]["p95"],
            "result_p50": rows["time to first result"]["p50"], "result_p95": rows["time to first result"]["p95"],
            "ok": summary["ok"], "failed": summary["failed"], "duration": summary["duration"]}


def machine_note() -> str:
    """The machine's load when a run begins: other work on it skews the figures."""
    others = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True).stdout.split()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"load average {load} (1/5/15 min) and {len(others)} containers running on the engine when it began"


WITHIN = 0.20  # each workshop's p95 to first result may be this much slower than the single workshop's


def figures(path: Path) -> dict:
    """One loadtest JSON's figures: failures, time to notebook page and to first result."""
    data = json.loads(path.read_text())
    summary = data["summary"]
    rows = {row["name"]: row for row in summary["rows"]}
    return {"users": summary["users"], "ok": summary["ok"], "failed": summary["failed"],
            "failures": summary["failures"], "failure_examples": summary["failure_examples"],
            "from_spare": summary["served_from_spare"], "after_queue": summary["served_after_queue"],
            "page_p50": rows["time to notebook page"]["p50"], "page_p95": rows["time to notebook page"]["p95"],
            "result_p50": rows["time to first result"]["p50"], "result_p95": rows["time to first result"]["p95"],
            "duration": summary["duration"]}


class Watch(threading.Thread):
    """While a burst runs: the highest 1-minute load average, and the most containers of other pools on the
    engine (someone else's work on the same machine), sampled every 5 seconds."""

    def __init__(self, pool: str):
        super().__init__(daemon=True)
        self.pool = pool
        self.load_max = 0.0
        self.foreign_max = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.load_max = max(self.load_max, os.getloadavg()[0])
            labels = subprocess.run(["docker", "ps", "--format", '{{.Label "org.nbpool.pool"}}'],
                                    capture_output=True, text=True).stdout.splitlines()
            self.foreign_max = max(self.foreign_max, sum(1 for label in labels if not label.startswith(self.pool)))
            self.done.wait(5)

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def workshops_config(workshops: dict[str, str], args) -> list[str]:
    """Config lines for named workshops {name: landing path}, each with --warm spares and a cap of --cap."""
    spec = {name: {"display_name": f"Burst {name}", "warm": args.warm, "max_containers": args.cap,
                   "landing_path": landing} for name, landing in workshops.items()}
    return [f"NbpoolApp.workshops = {spec!r}", "NbpoolApp.total_containers = 0"]


def burst_workshops(args, workshops: dict[str, str], tag: str, out: Path) -> dict[str, dict]:
    """One service with ``workshops`` ({name: landing path}); ``--users`` attendees to each, all bursts at once."""
    service = RunningService(warm=args.warm * len(workshops), cap=args.cap, concurrency=args.concurrency,
                             extra=[*args.set, *workshops_config(workshops, args)], name="wsburst")
    return burst_on(service, args, workshops, tag, out)


def burst_on(service: RunningService, args, workshops: dict[str, str], tag: str, out: Path) -> dict[str, dict]:
    with service:
        ready = service.start_seconds
        each = service.stats()["workshops"]
        for name in workshops:
            if each[name]["available"] < args.warm:
                raise SystemExit(f"{tag}: workshop {name} has {each[name]['available']} spares, not {args.warm}")
        time.sleep(3)  # let the machine settle after warming the spares
        print(f"{tag}: {len(workshops)} workshop(s) x {args.users} attendees at once, {args.warm} spares each, "
              f"cap {args.cap} each, {os.cpu_count()} cores (spares ready {ready:.1f}s after the start)",
              file=sys.stderr)
        procs = {}
        for name in workshops:  # all started before any is waited for: the bursts overlap
            procs[name] = subprocess.Popen([
                sys.executable, "-m", "loadtest", service.url, "--workshop", name, "--users", str(args.users),
                "--arrival", "burst", "--session-seconds", str(args.session_seconds), "--think", str(args.think),
                *(["--notebook", args.notebook] if args.notebook else []), "--spawn-timeout", "300", "--quiet",
                "--json", str(out / f"workshops-burst-{tag}-{name}.json"),
                "--plot", str(out / f"workshops-burst-{tag}-{name}.svg"),
            ], cwd=ROOT)
        watch = Watch(service.pool)
        watch.start()
        codes = {name: proc.wait() for name, proc in procs.items()}
        watch.stop()
        admin = service.get_json("/api/admin/workshops", token=True)[1]
        spawn = {w["name"]: w["spawn_seconds"] for w in admin["workshops"]}
    results = {}
    for name, landing in workshops.items():
        path = out / f"workshops-burst-{tag}-{name}.json"
        if not path.exists():
            raise SystemExit(f"{tag}: the loadtest of workshop {name} wrote no report (exit {codes[name]})")
        results[name] = {"run": tag, "workshop": name, "landing_path": landing, "spares_ready": ready,
                         "load_max": watch.load_max, "foreign_max": watch.foreign_max,
                         "spawn_p50": spawn.get(name, {}).get("p50"), "spawn_p95": spawn.get(name, {}).get("p95"),
                         **figures(path)}
    return results


def run_workshops(args, out: Path) -> int:
    """(a) one workshop's burst, then (b) two workshops' bursts at once; writes workshops-burst.md/.json."""
    note = machine_note()
    single = burst_workshops(args, {"solo": "tree"}, "single", out)
    time.sleep(5)
    double = burst_workshops(args, {"alpha": "tree", "beta": "lab"}, "double", out)
    time.sleep(5)
    # The control: the two workshops' load in one workshop (twice the attendees and spares). Against it,
    # the double run shows what splitting into workshops costs, apart from the work itself.
    both = argparse.Namespace(**{**vars(args), "users": 2 * args.users, "warm": 2 * args.warm, "cap": 2 * args.cap})
    control = burst_workshops(both, {"combined": "tree"}, "combined", out)
    reference = single["solo"]["result_p95"]
    same_load = control["combined"]["result_p95"]
    rows = [*single.values(), *double.values(), *control.values()]
    for r in rows:
        r["within_20pct"] = (reference is not None and r["result_p95"] is not None
                             and r["result_p95"] <= reference * (1 + WITHIN))
        r["vs_single"] = (r["result_p95"] / reference) if reference and r["result_p95"] is not None else None
        r["vs_same_load"] = (r["result_p95"] / same_load) if same_load and r["result_p95"] is not None else None
    lines = ["# Several workshops at once: burst", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores (os.cpu_count()), docker backend, "
             f"image nbpool/notebook:latest. Each workshop: {args.users} attendees arriving at once, "
             f"{args.warm} spares, cap {args.cap}, Pool.spawn_concurrency {args.concurrency}, each attendee running "
             + (f"{args.notebook}'s cells" if args.notebook else "print(6*7)")
             + f" every {args.think:g} s for {args.session_seconds:g} s. (a) one workshop alone on a fresh service; "
             "(b) two workshops on another fresh service, both bursts started at the same moment "
             "(two `python -m loadtest --workshop NAME` processes); (c) the same load in one workshop "
             f"({2 * args.users} attendees, {2 * args.warm} spares) on a third fresh service. "
             f"When it began: {note}.", "",
             "| run | workshop (landing) | ok / failed | from a spare / after waiting | notebook page p50 / p95 "
             "| first result p50 / p95 | p95 first result vs (a) | within 20% of (a) | vs (c), the same load |",
             "|---|---|---|---|---|---|---|---|---|"]
    names = {"single": "(a) one workshop", "double": "(b) two at once", "combined": "(c) both loads in one"}
    for r in rows:
        ratio = f"{r['vs_single']:.2f}x" if r["vs_single"] is not None else "–"
        same = f"{r['vs_same_load']:.2f}x" if r["vs_same_load"] is not None else "–"
        lines.append(f"| {names[r['run']]} | {r['workshop']} "
                     f"({r['landing_path']}) | {r['ok']} / {r['failed']} | {r['from_spare']} / {r['after_queue']} | "
                     f"{seconds(r['page_p50'])} / {seconds(r['page_p95'])} | {seconds(r['result_p50'])} / "
                     f"{seconds(r['result_p95'])} | {ratio} | {'yes' if r['within_20pct'] else 'NO'} | {same} |")
    failures = {f"{r['run']}/{r['workshop']}": (r["failures"], r["failure_examples"]) for r in rows if r["failed"]}
    if failures:
        lines += ["", "Failures:"]
        for key, (counts, examples) in failures.items():
            for kind, count in counts.items():
                lines.append(f"- {key}: {kind} x{count}, e.g. {examples[kind]}")
    lines += ["", "Container create → ready (nbpool's own launch times, per workshop): "
              + "; ".join(f"{r['run']}/{r['workshop']} p50 {seconds(r['spawn_p50'])}, p95 {seconds(r['spawn_p95'])}"
                          for r in rows) + ".",
              "", "Other work on the machine during the bursts (highest 1-minute load average, which includes "
              "the benchmark's own nbpool, containers and loadtests; most containers of other pools on the engine): "
              + "; ".join(f"{tag} {r['load_max']:.1f}, {r['foreign_max']} other containers"
                          for tag, r in {r["run"]: r for r in rows}.items()) + ".",
              "", "Per-attendee records and timelines: `workshops-burst-<run>-<workshop>.json` / `.svg`."]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "workshops-burst.md").write_text(text)
    (out / "workshops-burst.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "users": args.users,
         "warm": args.warm, "cap": args.cap, "concurrency": args.concurrency, "think": args.think,
         "session_seconds": args.session_seconds, "notebook": args.notebook or None, "within": WITHIN, "machine": note,
         "results": rows}, indent=1) + "\n")
    print(f"wrote {out / 'workshops-burst.md'} and {out / 'workshops-burst.json'}")
    return 0 if all(r["failed"] == 0 and r["within_20pct"] for r in rows) else 1


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def table(results: list[dict], args) -> str:
    lines = [f"{args.users} attendees at once, {args.warm} spares, cap {args.cap}, {os.cpu_count()} cores "
             f"({time.strftime('%Y-%m-%d')})", "",
             "| run | spares ready after start | create → ready p50 (p95) | hand-out from a spare p50 "
             "| notebook page p50 / p95 | first result p50 / p95 | ok / failed |"
             + (" static requests to containers | from the cache | static MB received |" if args.assets else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if args.assets else "")]
    for r in results:
        lines.append(f"| {r['backend']} | {seconds(r['spares_ready'])} | {seconds(r['spawn_p50'])} "
                     f"({seconds(r['spawn_p95'])}) | {seconds(r['handout_p50'])} | {seconds(r['page_p50'])} / "
                     f"{seconds(r['page_p95'])} | {seconds(r['result_p50'])} / {seconds(r['result_p95'])} | "
                     f"{r['ok']} / {r['failed']} |"
                     + (f" {r['relayed']:.0f} | {r['hits']:.0f} | {r['asset_bytes'] / 1e6:.1f} |"
                        if args.assets else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=None, help="attendees (default 50; 25 per workshop with "
                                                                  "--workshops)")
    parser.add_argument("--warm", type=int, default=None, help="spares (default 10; 5 per workshop with --workshops)")
    parser.add_argument("--cap", type=int, default=None,
                        help="max containers (default 60; users + warm per workshop with --workshops)")
    parser.add_argument("--concurrency", type=int, default=4, help="Pool.spawn_concurrency")
    parser.add_argument("--session-seconds", type=float, default=20)
    parser.add_argument("--think", type=float, default=2)
    parser.add_argument("--notebook", default="",
                        help="run this bundled notebook's cells (e.g. 01-python-introduction.ipynb) instead of "
                             "the default cell, print(6 * 7)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--set", action="append", default=[], metavar="Class.trait=VALUE",
                        help="one more config line for the service, e.g. DockerBackend.endpoint_mode='container-ip' "
                             "(repeatable)")
    parser.add_argument("--backend", choices=["docker", "swarm"], default="docker",
                        help="the engine: docker (this machine) or swarm (the cluster of `make cluster`)")
    parser.add_argument("--compare", action="store_true",
                        help="run docker then swarm in one sitting and write swarm-vs-docker.md")
    parser.add_argument("--name", default="", help="name of the result files (default burst-<users>u-<warm>w)")
    parser.add_argument("--assets", default="",
                        help="attendees also fetch the notebook page's static files (loadtest --assets): a "
                             "file of paths, or 'auto' to record them first with Chromium on a throwaway "
                             "container of the image")
    parser.add_argument("--static-compare", action="store_true",
                        help="with --assets (default auto): run the burst with the proxy's compression, its "
                             "static cache and the pre-started kernel off (as before issue 13), then on, in one "
                             "sitting; writes static-cache-burst.md")
    parser.add_argument("--collaboration-compare", action="store_true",
                        help="run the burst with DockerBackend.collaboration off, on, off, … (--repeat 'on' runs, "
                             "each between two 'off' runs), in one sitting; writes collaboration-burst.md")
    parser.add_argument("--repeat", type=int, default=1, help="with --collaboration-compare: how many 'on' runs")
    parser.add_argument("--workshops", action="store_true",
                        help="named workshops: one workshop's burst, then two workshops' bursts at once, in one "
                             "sitting; writes workshops-burst.md and .json")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.workshops:
        args.users = 25 if args.users is None else args.users
        args.warm = 5 if args.warm is None else args.warm
        args.cap = args.users + args.warm if args.cap is None else args.cap
        return run_workshops(args, out)
    args.users = 50 if args.users is None else args.users
    args.warm = 10 if args.warm is None else args.warm
    args.cap = 60 if args.cap is None else args.cap
    name = args.name or f"burst-{args.users}u-{args.warm}w" + ("-notebook" if args.notebook else "")
    if args.static_compare and not args.assets:
        args.assets = "auto"
    if args.assets == "auto":
        args.assets = record_assets("nbpool/notebook:latest", out)
    results = []
    if args.static_compare:
        off = ("Proxy.compress = False", "Proxy.cache_size = 0", "DockerBackend.prestart_kernel = False")
        for label, extra in (("off: no compression, no cache, no pre-started kernel", off),
                             ("on: compression, shared cache, pre-started kernel", ())):
            tag = "off" if extra else "on"
            results.append(run(args, args.backend, f"{name}-static-{tag}", out, extra, label))
    elif args.collaboration_compare:
        for i in range(2 * args.repeat + 1):  # off, on, off, …, off: each "on" run between two "off" runs
            value = bool(i % 2)
            label = ("on: collaboration and server-side execution" if value else "off: plain Jupyter") + \
                f" ({i // 2 + 1})"
            results.append(run(args, args.backend, f"{name}-collaboration-{i + 1}-{'on' if value else 'off'}", out,
                               (f"DockerBackend.collaboration = {value}",), label))
    else:
        for backend in ["docker", "swarm"] if args.compare else [args.backend]:
            results.append(run(args, backend, f"{name}-compare-{backend}" if args.compare else name, out))
    text = table(results, args)
    if args.collaboration_compare:
        on = statistics.mean(r["result_p95"] for r in results[1::2])
        off = statistics.mean(r["result_p95"] for r in results[0::2])
        text += (f"\nFirst result p95 with the notebook on the server: {on:.1f} s (mean of {len(results) // 2} runs) "
                 f"against {off:.1f} s without (mean of the {len(results) - len(results) // 2} runs around them): "
                 f"{(on / off - 1) * 100:+.0f}%.\n")
    print(text)
    for flag, file in ((args.compare, "swarm-vs-docker.md"), (args.static_compare, "static-cache-burst.md"),
                       (args.collaboration_compare, "collaboration-burst.md")):
        if flag:
            (out / file).write_text(text)
            print(f"wrote {out / file}")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
