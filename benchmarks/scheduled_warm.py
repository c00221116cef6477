"""Scenario: a workshop's schedule raises its spares ahead of a window; are they ready when it opens?

    .venv/bin/python benchmarks/scheduled_warm.py [--ahead 180] [--until 600] [--warm-to 10] [--out benchmarks/results]

Starts nbpool with one named workshop (warm ``--base-warm`` = 1, cap
``--cap`` = 20) and a schedule window from ``--ahead`` seconds after the
start to ``--until`` seconds after it, warm ``--warm-to`` (written as ISO
8601 with this machine's UTC offset). Waits for the base spare (the first
measured launch, which the lead is computed from), then polls
``/w/<name>/api/stats`` every second (and the admin view of the schedule
every five) until the window has opened and the spares are ready. Records
when the raise began (nbpool's log line, quoted verbatim), when ``available
>= --warm-to`` was first seen, and the window's start. Reports nbpool's lead,
the measured time to get the spares ready, and the margin (window start minus
the moment they were ready; it must be positive). Writes
``scheduled-warm.md`` and ``scheduled-warm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from running_service import ROOT, RunningService
from workshop_burst import machine_note

WORKSHOP = "sched-demo"
RAISE = re.compile(r"^\[\w (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[^\]]*\] workshop " + WORKSHOP
                   + r": raising spares to (?P<warm>\d+) for the window .*, (?P<ahead>\d+)s ahead \((?P<how>.*)\); "
                     r"ready expected by (?P<expected>.*)$")


def local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%H:%M:%S")



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ahead", type=float, default=180, help="window start, seconds after nbpool starts")
    parser.add_argument("--until", type=float, default=600, help="window end, seconds after nbpool starts")
    parser.add_argument("--warm-to", type=int, default=10, help="the window's warm")
    parser.add_argument("--base-warm", type=int, default=1)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="Pool.spawn_concurrency")
    parser.add_argument("--after", type=float, default=10, help="seconds to keep watching after the window opened")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="scheduled-warm", help="result files' name")
    args = parser.parse_args()
    note = machine_note()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now().astimezone().replace(microsecond=0)
    start_dt, end_dt = now + timedelta(seconds=args.ahead), now + timedelta(seconds=args.until)
    start_iso, end_iso = start_dt.isoformat(), end_dt.isoformat()
    start = start_dt.timestamp()
    spec = {WORKSHOP: {"display_name": "Scheduled warming", "warm": args.base_warm, "max_containers": args.cap,
                       "landing_path": "tree",
                       "schedule": [{"start": start_iso, "end": end_iso, "warm": args.warm_to}]}}
    service = RunningService(warm=args.base_warm, cap=args.cap, concurrency=args.concurrency,
                             extra=[f"NbpoolApp.workshops = {spec!r}"], name="sched")
    return run(service, args, note, now, start, start_iso, end_iso, out)


def run(service: RunningService, args, note: str, now: datetime, start: float, start_iso: str, end_iso: str,
        out: Path) -> int:
    samples: list[dict] = []
    states: list[dict] = []  # the admin view's schedule row, each time its state changed
    launched = time.time()
    with service:
        answered = launched + service.start_seconds
        admin = service.get_json("/api/admin/workshops", token=True)[1]["workshops"][0]
        measured = admin["spawn_seconds"]
        row = admin["schedule"][0] if admin["schedule"] else {}
        print(f"nbpool up with its base spare {service.start_seconds:.1f}s after the start; launches measured: "
              f"{measured['count']} (p50 {measured['p50']}s); window {start_iso} to {end_iso}, warm {args.warm_to}; "
              f"schedule state {row.get('state')!r}, lead {row.get('lead_seconds')}s ({row.get('lead_reason')})",
              file=sys.stderr)
        if measured["count"] < 1:
            raise SystemExit("no launch measured before the window: the lead would be the assumed one")
        if time.time() >= row.get("raise_at", 0):
            print("warning: the raise is due already at the first look (the window is too close for the lead)",
                  file=sys.stderr)
        raise_line = None
        raise_seen = None
        ready_at = None
        last_admin = 0.0
        while True:
            t = time.time()
            code, stats = service.get_json(f"/w/{WORKSHOP}/api/stats")
            if code == 200:
                samples.append({"t": round(t, 3), **{k: stats[k] for k in ("available", "assigned", "launching",
                                                                              "capacity", "queue")}})
                if ready_at is None and stats["available"] >= args.warm_to:
                    ready_at = t
                    print(f"{args.warm_to} spares ready at {local(t)} ({start - t:.0f}s before the window)",
                          file=sys.stderr)
            if raise_line is None:
                for line in service.logs().splitlines():
                    if RAISE.match(line):
                        raise_line, raise_seen = line, t
                        print(f"raise seen at {local(t)}: {line}", file=sys.stderr)
                        break
            if t - last_admin >= 5:
                last_admin = t
                rows = service.get_json("/api/admin/workshops", token=True)[1]["workshops"][0]["schedule"]
                if rows and (not states or states[-1]["state"] != rows[0]["state"]):
                    states.append({"t": round(t, 3), "state": rows[0]["state"], "note": rows[0]["note"],
                                   "lead_seconds": rows[0]["lead_seconds"], "lead_reason": rows[0]["lead_reason"],
                                   "raise_at": rows[0]["raise_at"]})
                    print(f"{local(t)} schedule: {rows[0]['state']} ({rows[0]['note']}; lead "
                          f"{rows[0]['lead_seconds']}s)", file=sys.stderr)
            if t >= start + args.after and (ready_at is not None or t >= start + 120):
                break
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
        log = [line for line in service.logs().splitlines() if f"workshop {WORKSHOP}" in line or "window" in line]
        final = service.get_json("/api/admin/workshops", token=True)[1]["workshops"][0]

    match = RAISE.match(raise_line) if raise_line else None
    raised = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S").astimezone().timestamp() if match else None
    ahead_logged = float(match["ahead"]) if match else None  # the window's start minus the moment of the raise
    computed = re.search(r"= (\d+)s$", match["how"]) if match else None
    lead_logged = float(computed[1]) if computed else None  # the lead nbpool computed
    to_ready = ready_at - raised if ready_at is not None and raised is not None else None
    margin = start - ready_at if ready_at is not None else None
    passed = margin is not None and margin > 0
    data = {"date": now.isoformat(), "cpu_count": os.cpu_count(), "machine": note,
            "window": {"start": start_iso, "end": end_iso,
                       "warm": args.warm_to},
            "base_warm": args.base_warm, "cap": args.cap, "concurrency": args.concurrency,
            "nbpool_started": launched, "nbpool_ready_seconds": answered - launched,
            "launches_measured_before": measured, "raise_line": raise_line, "raise_logged_at": raised,
            "raise_seen_at": raise_seen, "lead_logged": lead_logged, "ahead_logged": ahead_logged,
            "lead_status": states[0] if states else None,
            "ready_at": ready_at, "time_to_ready": to_ready, "margin": margin, "passed": passed,
            "states": states, "samples": samples, "log": log, "final_spawn_seconds": final["spawn_seconds"]}
    (out / f"{args.name}.json").write_text(json.dumps(data, indent=1) + "\n")

    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f} s"

    def at(epoch: float | None) -> str:
        return "–" if epoch is None else f"{local(epoch)} (start + {epoch - launched:.0f}s)"

    lines = ["# Scheduled warming: spares raised ahead of a window", "",
             f"{now:%Y-%m-%d %H:%M}, {os.cpu_count()} cores (os.cpu_count()), docker backend, image "
             f"nbpool/notebook:latest. One workshop, warm {args.base_warm}, max_containers {args.cap}, "
             f"Pool.spawn_concurrency {args.concurrency}; schedule window `{start_iso}` to `{end_iso}` "
             f"(start {args.ahead:.0f}s after nbpool was started), warm {args.warm_to}. Before the window "
             f"{measured['count']} launch(es) had been measured (p50 {measured['p50']}s). "
             f"`/w/{WORKSHOP}/api/stats` polled every second. The machine is shared: {note}.", "",
             "| nbpool started | raise began (log) | lead computed by nbpool (raised ahead of start) | "
             f"available ≥ {args.warm_to} first seen | measured time to get {args.warm_to} ready | window start "
             "| margin (start − ready) | pass |",
             "|---|---|---|---|---|---|---|---|",
             f"| {local(launched)} | {at(raised)} | {num(lead_logged)} ({num(ahead_logged)}) | {at(ready_at)} | "
             f"{num(to_ready)} | "
             f"{at(start)} | {num(margin)} | {'yes' if passed else 'NO'} |"]
    lines += ["", "The raise, as nbpool logged it:", "", "```", raise_line or "(no raise line in the log)", "```", "",
              "The schedule's state on the admin API (`GET /api/admin/workshops`), as it changed:", "",
              "| time | state | note | lead_seconds | lead_reason |", "|---|---|---|---|---|"]
    for s in states:
        lines.append(f"| {at(s['t'])} | {s['state']} | {s['note']} | {s['lead_seconds']} | {s['lead_reason']} |")
    lines += ["", "nbpool's log lines about the schedule:", "", "```", *log, "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / f"{args.name}.md").write_text(text)
    print(f"wrote {out / (args.name + '.md')} and {out / (args.name + '.json')}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
