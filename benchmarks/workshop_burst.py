"""Scenario: a workshop's attendees all click the link at once.

    .venv/bin/python benchmarks/workshop_burst.py [--users 50] [--warm 10] [--cap 60] [--out benchmarks/results]
    .venv/bin/python benchmarks/workshop_burst.py --backend swarm      # on the cluster of `make cluster`
    .venv/bin/python benchmarks/workshop_burst.py --compare            # docker, then swarm, in one sitting
    .venv/bin/python benchmarks/workshop_burst.py --static-compare     # proxy compression/cache off, then on

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
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
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
    parser.add_argument("--assets", default="",
                        help="attendees also fetch the notebook page's static files (loadtest --assets): a "
                             "file of paths, or 'auto' to record them first with Chromium on a throwaway "
                             "container of the image")
    parser.add_argument("--static-compare", action="store_true",
                        help="with --assets (default auto): run the burst with the proxy's compression, its "
                             "static cache and the pre-started kernel off (as before issue 13), then on, in one "
                             "sitting; writes static-cache-burst.md")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    else:
        for backend in ["docker", "swarm"] if args.compare else [args.backend]:
            results.append(run(args, backend, f"{name}-compare-{backend}" if args.compare else name, out))
    text = table(results, args)
    print(text)
    for flag, file in ((args.compare, "swarm-vs-docker.md"), (args.static_compare, "static-cache-burst.md")):
        if flag:
            (out / file).write_text(text)
            print(f"wrote {out / file}")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
