"""Scenario: a workshop's attendees all click the link at once.

    .venv/bin/python benchmarks/workshop_burst.py [--users 50] [--warm 10] [--cap 60] [--out benchmarks/results]

Starts nbpool (start.py, its own pool name, data dir and port) with ``--warm``
spares and a cap of ``--cap``, waits until the spares are ready, then runs
``python -m loadtest`` with ``--users`` attendees arriving in one burst, each
running a cell every ``--think`` seconds (the default cell, or ``--notebook``'s). Writes the loadtest's JSON and
plot into ``--out`` and prints its table. Run it twice (``--warm 10`` and
``--warm 0``) to see what pre-warming buys. Removes its containers afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from running_service import ROOT, RunningService


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
    parser.add_argument("--name", default="", help="name of the result files (default burst-<users>u-<warm>w)")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"burst-{args.users}u-{args.warm}w" + ("-notebook" if args.notebook else "")
    extra = [*args.set]
    with RunningService(warm=args.warm, cap=args.cap, concurrency=args.concurrency, extra=extra,
                        name="burst") as service:
        time.sleep(3)  # let the machine settle after warming the spares
        print(f"{name}: {args.users} attendees, {args.warm} spares, cap {args.cap}, {os.cpu_count()} cores",
              file=sys.stderr)
        done = subprocess.run([
            sys.executable, "-m", "loadtest", service.url, "--users", str(args.users), "--arrival", "burst",
            "--session-seconds", str(args.session_seconds), "--think", str(args.think),
            *(["--notebook", args.notebook] if args.notebook else []), "--spawn-timeout", "300",
            "--json", str(out / f"{name}.json"), "--plot", str(out / f"{name}.svg"),
        ], cwd=ROOT)
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
