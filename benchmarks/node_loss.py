"""Benchmark: a Swarm worker lost mid-workshop, on the local cluster of `make cluster`, timed.

    .venv/bin/python benchmarks/node_loss.py [--out benchmarks/results/node-loss.md]

nbpool with ``--backend swarm`` (warm 4, cap 20), one attendee on each of the
two workers holding a kernel with ``x = 41``, and a new visitor arriving every
second. Then ``docker stop nbpool-node-2`` (the machine gone, as far as the
swarm can tell), and the clock runs: when the manager marks the node down,
when that attendee's page says their machine stopped answering, when the
spares are back to ``warm`` on the worker that remains, whether the other
attendee's work is kept, how many arrivals were refused. Then the node comes
back (`make cluster`) and the pool and the swarm must agree (nothing
duplicated). Removes everything it starts; the cluster stays up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from faults import Arrivals, Visitor, attendee_with_state, work_kept
from running_service import ROOT, RunningService

LOST, KEPT = "nbpool-node-2", "nbpool-node-1"
HOST_ENGINE = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}  # the nodes are the host's containers


def manager(*args: str) -> str:
    endpoint = (ROOT / ".cluster" / "endpoint").read_text().strip()
    return subprocess.run(["docker", "-H", endpoint, *args], capture_output=True, text=True, timeout=60).stdout.strip()


def page(visitor: Visitor, url: str) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 node-loss",
                                                   "Cookie": visitor.cookie_header()})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace")
    except OSError:  # no answer in time (the proxy still trying the lost machine): not ended yet
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "node-loss.md"))
    args = parser.parse_args()
    with RunningService(warm=4, cap=40, name="nodeloss", backend="swarm",
                        extra=["SwarmBackend.poll_interval = 2.0"]) as service:
        attendees: dict[str, tuple] = {}
        for _ in range(8):  # spares alternate between the workers: two or three hand-outs cover both
            if len(attendees) == 2:
                break
            held = attendee_with_state(service)
            node = next(c["node"] for c in service.containers() if held[1].startswith(f"{service.url}/user/{c['id']}"))
            attendees.setdefault(node, held)
        if len(attendees) < 2:
            raise SystemExit(f"no attendee landed on each worker: {sorted(attendees)} (is {LOST} up?)")
        lost_visitor, lost_url = attendees[LOST][0], attendees[LOST][1]
        _, _, kept_client, kept_loop, _ = attendees[KEPT]
        try:
            with Arrivals(service) as arrivals:  # while the node is being lost
                t0 = time.monotonic()
                subprocess.run(["docker", "stop", "-t", "2", LOST], check=True, capture_output=True, env=HOST_ENGINE)
                stopped = time.monotonic() - t0
                marked = service.wait_until(
                    lambda: manager("node", "inspect", "-f", "{{.Status.State}}", LOST) == "down",
                    60, "the manager marking the node down", every=0.2) + stopped
                lost_cid = lost_url.split("/user/", 1)[1].split("/", 1)[0]
                let_go = service.wait_until(lambda: all(c["id"] != lost_cid for c in service.containers()), 120,
                                            "the pool ending the lost attendee's session", every=0.2) + marked
                ended = service.wait_until(lambda: "stopped answering" in page(lost_visitor, lost_url), 120,
                                           "the lost attendee's ended page", every=0.2) + let_go
            refilled = service.wait_until(
                lambda: sum(1 for c in service.containers() if c["state"] == "spare" and c["node"] == KEPT) >= 4,
                180, "spares back to warm on the remaining worker", every=0.5) + ended
            kept = work_kept(kept_loop, kept_client)
        finally:
            t1 = time.monotonic()
            back = subprocess.run(["bash", str(ROOT / "arch-base" / "cluster.sh"), "up", "2"], capture_output=True,
                                  text=True, env=HOST_ENGINE)
            returned = time.monotonic() - t1
        assert back.returncode == 0, back.stderr

        def agreed() -> bool:
            ids = set(manager("service", "ls", "-q", "--filter", f"label=org.nbpool.pool={service.pool}").split())
            return len(ids) == len(service.containers())
        settled = service.wait_until(agreed, 120, "the pool and the swarm agreeing", every=0.5)
        failed = service.logs().count("failed to start")
        for line in service.logs().splitlines():
            if any(words in line for words in ("failed to start", "stopped answering", "no room")):
                print(line, file=sys.stderr)
    rows = [
        ("docker stop of the worker returned", f"{stopped:.1f} s"),
        ("the manager marks it down", f"{marked:.1f} s"),
        ("nbpool ends that attendee's session (the pool lets the container go)", f"{let_go:.1f} s"),
        ("their next page load says their machine stopped answering", f"{ended:.1f} s"),
        ("spares back to warm (4) on the remaining worker", f"{refilled:.1f} s"),
        ("the other worker's attendee: `x + 1`", kept),
        ("visitors arriving meanwhile (one a second) refused", arrivals.refused()),
        ("failed starts logged", str(failed)),
        ("the worker back (`make cluster`)", f"{returned:.1f} s"),
        ("then pool and swarm agree (no duplicates)", f"{settled:.1f} s"),
    ]
    text = (f"Swarm worker lost mid-workshop (local cluster, 2 workers, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}); times from the `docker stop`\n\n| what | measured |\n|---|---|\n"
            + "".join(f"| {a} | {b} |\n" for a, b in rows))
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
