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
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/stats", timeout=5) as resp:
        return json.load(resp)


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
    pool = f"nbpool-burst-{secrets.token_hex(3)}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="nbpool-burst-") as tmp:
        config = Path(tmp) / "config.py"
        config.write_text("\n".join([
            "c = get_config()  # noqa: F821",
            f"c.Pool.pool_name = {pool!r}", f"c.Pool.warm = {args.warm}", f"c.Pool.max_containers = {args.cap}",
            f"c.Pool.spawn_concurrency = {args.concurrency}", "c.Pool.start_timeout = 180",
            "c.Pool.queue_timeout = 300", f"c.Proxy.port = {port}", "c.Proxy.ip = '127.0.0.1'",
            "c.WebApp.spawn_rate_limit = 0", "c.DockerBackend.mem_limit = '512M'",
            *(f"c.{line}" for line in args.set), "",
        ]))
        log = open(Path(tmp) / "nbpool.log", "wb")
        service = subprocess.Popen([sys.executable, str(ROOT / "start.py"), "--config", str(config),
                                    "--data-dir", str(Path(tmp) / "data")], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if stats(url)["available"] >= args.warm:
                        break
                except OSError:
                    pass
                if service.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((Path(tmp) / "nbpool.log").read_text()[-3000:])
                time.sleep(0.5)
            time.sleep(3)  # let the machine settle after warming the spares
            print(f"{name}: {args.users} attendees, {args.warm} spares, cap {args.cap}, {os.cpu_count()} cores",
                  file=sys.stderr)
            done = subprocess.run([
                sys.executable, "-m", "loadtest", url, "--users", str(args.users), "--arrival", "burst",
                "--session-seconds", str(args.session_seconds), "--think", str(args.think),
                *(["--notebook", args.notebook] if args.notebook else []), "--spawn-timeout", "300",
                "--json", str(out / f"{name}.json"), "--plot", str(out / f"{name}.svg"),
            ], cwd=ROOT)
            return done.returncode
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(120)
            except subprocess.TimeoutExpired:
                service.kill()
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.nbpool.pool={pool}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
