"""Benchmark: days, not hours, compressed: a trickle of visitors for half an hour, watching nbpool for growth.

    .venv/bin/python benchmarks/soak.py [--users 500] [--minutes 30] [--out benchmarks/results/soak.md]

Starts nbpool (warm 3, cap 40, cull_idle 60 s) and runs ``python -m loadtest``
with ``--users`` attendees arriving evenly over ``--minutes``: each opens a
notebook, runs a cell every few seconds for a short session, and most (80%)
walk away without closing their kernel, as people close a tab, so culling
does the cleaning. Every 10 s it samples nbpool's resident memory and open
file descriptors (from /proc). At the end it waits for culling to finish and
reports: the samples over time, growth after warm-up, the containers left
(only spares should be), and the load test's failures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from running_service import ROOT, RunningService


def sample(pid: int) -> tuple[float, int]:
    """(resident MiB, open file descriptors) of process ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--cull-idle", type=float, default=60)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.md"))
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    extra = [f"Pool.cull_idle = {args.cull_idle}", "Pool.cull_interval = 10", "WebApp.history_interval = 5"]
    with RunningService(warm=3, cap=40, extra=extra, name="soak") as service:
        samples: list[tuple[float, float, int]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def watch() -> None:
            while not stop.is_set():
                rss, fds = sample(service.proc.pid)
                samples.append((time.monotonic() - t0, rss, fds))
                stop.wait(10)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        print(f"soak: {args.users} attendees over {args.minutes:.0f} minutes, {os.cpu_count()} cores", file=sys.stderr)
        done = subprocess.run([
            sys.executable, "-m", "loadtest", service.url, "--users", str(args.users),
            "--arrival", f"ramp:{args.minutes * 60:.0f}", "--session-seconds", "20", "--think", "5",
            "--walk-away", "0.8", "--spawn-timeout", "300", "--quiet",
            "--json", str(out.with_suffix(".json")), "--plot", str(out.with_suffix(".svg")),
        ], cwd=ROOT, capture_output=True, text=True)
        # Those who walked away are culled after cull_idle (checked every 10 s): wait for it.
        service.wait_until(lambda: service.stats()["assigned"] == 0, args.cull_idle + 120, "culled", every=1)
        time.sleep(10)
        stop.set()
        watcher.join(20)
        left = service.containers()
        states = {s: sum(1 for c in left if c["state"] == s) for s in {c["state"] for c in left}}
        engine = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.nbpool.pool={service.pool}"],
                                capture_output=True, text=True).stdout.split()

    warm_up = [s for s in samples if s[0] >= 300] or samples  # the first five minutes fill caches and pools
    lines = [f"{args.users} attendees over {args.minutes:.0f} min (80% walk away), cull_idle {args.cull_idle:.0f} s, "
             f"warm 3, cap 40; {os.cpu_count()} cores", "",
             "| minute | nbpool RSS (MiB) | open fds |", "|---:|---:|---:|"]
    step = max(1, len(samples) // 16)
    for t, rss, fds in samples[::step] + samples[-1:]:
        lines.append(f"| {t / 60:.1f} | {rss:.1f} | {fds} |")
    rss_after = [s[1] for s in warm_up]
    fds_after = [s[2] for s in warm_up]
    lines += ["",
              f"After the first five minutes: RSS {min(rss_after):.1f}–{max(rss_after):.1f} MiB "
              f"(median {statistics.median(rss_after):.1f}), first {rss_after[0]:.1f}, last {rss_after[-1]:.1f}; "
              f"open fds {min(fds_after)}–{max(fds_after)}, first {fds_after[0]}, last {fds_after[-1]}.",
              f"Containers left at the end: {states or 'none'} (engine: {len(engine)}).",
              "", "Load test (python -m loadtest):", "", "```", done.stdout.strip()[-4000:], "```"]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
