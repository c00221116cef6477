"""Scenario: a workshop's attendees all click the link at once.

    .venv/bin/python benchmarks/workshop_burst.py [--users 50] [--warm 10] [--cap 60] [--out benchmarks/results]
    .venv/bin/python benchmarks/workshop_burst.py --backend swarm      # on the cluster of `make cluster`
    .venv/bin/python benchmarks/workshop_burst.py --compare            # docker, then swarm, in one sitting

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
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from running_service import ROOT, RunningService


def run(args, backend: str, name: str, out: Path) -> dict:
    """One burst on ``backend``; the figures the comparison table shows."""
    with RunningService(warm=args.warm, cap=args.cap, concurrency=args.concurrency, extra=[*args.set],
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
            "--json", str(out / f"{name}.json"), "--plot", str(out / f"{name}.svg"),
        ], cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"{name}: the loadtest failed ({done.returncode})")
    summary = json.loads((out / f"{name}.json").read_text())["summary"]
    rows = {row["name"]: row for row in summary["rows"]}
    return {"backend": backend, "spares_ready": ready, "spawn_p50": spawn["p50"], "spawn_p95": spawn["p95"],
            "handout_p50": rows["spawn/spare"]["p50"] if "spawn/spare" in rows else None,
            "page_p50": rows["time to notebook page"]["p50"], "page_p95": rows["time to notebook page"]["p95"],
            "result_p50": rows["time to first result"]["p50"], "result_p95": rows["time to first result"]["p95"],
            "ok": summary["ok"], "failed": summary["failed"], "duration": summary["duration"]}


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def table(results: list[dict], args) -> str:
    lines = [f"{args.users} attendees at once, {args.warm} spares, cap {args.cap}, {os.cpu_count()} cores "
             f"({time.strftime('%Y-%m-%d')})", "",
             "| backend | spares ready after start | create → ready p50 (p95) | hand-out from a spare p50 "
             "| notebook page p50 / p95 | first result p50 / p95 | ok / failed |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['backend']} | {seconds(r['spares_ready'])} | {seconds(r['spawn_p50'])} "
                     f"({seconds(r['spawn_p95'])}) | {seconds(r['handout_p50'])} | {seconds(r['page_p50'])} / "
                     f"{seconds(r['page_p95'])} | {seconds(r['result_p50'])} / {seconds(r['result_p95'])} | "
                     f"{r['ok']} / {r['failed']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--cap", type=int, default=60)
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
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"burst-{args.users}u-{args.warm}w" + ("-notebook" if args.notebook else "")
    backends = ["docker", "swarm"] if args.compare else [args.backend]
    results = []
    for backend in backends:
        results.append(run(args, backend, f"{name}-compare-{backend}" if args.compare else name, out))
    text = table(results, args)
    print(text)
    if args.compare:
        (out / "swarm-vs-docker.md").write_text(text)
        print(f"wrote {out / 'swarm-vs-docker.md'}")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
