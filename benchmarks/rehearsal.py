"""Benchmark: the dress rehearsal of the bundled workshop, and of the same workshop with a heavier notebook.

    .venv/bin/python benchmarks/rehearsal.py [--attendees 10] [--for 40] [--out benchmarks/results]

One sitting, one nbpool (start.py, its own pool; ``--attendees`` + 2 spares, cap ``--attendees`` + 4,
``mem_limit`` 512M). Two rehearsals through its public link, each ``python -m loadtest URL --rehearse …
--attendees N --for M`` exactly as an organiser runs it (arrivals over 30 s, 3 s of thought between cells):

1. ``notebook-image/workshops``: the four bundled notebooks (Python, R, Octave, Bash), already in the image.
2. The same four and ``extra/arrays.ipynb``, a notebook each container lacks (uploaded by the rehearsal): it
   builds a 200 MB NumPy array and sums it, twice. Its memory and CPU move the advice.

Writes ``rehearsal.md`` (both verdicts, the advice with its reasons, the slowest and failing cells, per-attendee
use), ``rehearsal-bundled.json``/``.html`` and ``rehearsal-heavier.json``/``.html`` into ``--out``, prints the
Markdown, and removes the service's containers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.running_service import ROOT, RunningService

HEAVY = ["import numpy as np", "big = np.ones(25_000_000)  # 200 MB", "print(big.sum())",
         "again = np.arange(25_000_000, dtype=float)\nprint(again.mean())", "del big, again"]
MIB = 2**20


def heavier_material(folder: Path) -> Path:
    (folder / "extra").mkdir(parents=True)
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate(HEAVY)]
    notebook = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}}}
    (folder / "extra" / "arrays.ipynb").write_text(json.dumps(notebook))
    return folder


def rehearse(service: RunningService, material: list[str], attendees: int, size: int, out: Path, name: str) -> dict:
    command = [sys.executable, "-m", "loadtest", service.url, "--rehearse", *material, "--attendees", str(attendees),
               "--for", str(size), "--quiet", "--json", str(out / f"rehearsal-{name}.json"),
               "--html", str(out / f"rehearsal-{name}.html")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NBPOOL_ADMIN_TOKEN": service.admin_token})
    print(done.stdout, done.stderr, sep="\n", flush=True)
    report = json.loads((out / f"rehearsal-{name}.json").read_text())
    report["printed"] = done.stdout
    return report


def markdown(runs: list[tuple[str, dict]], attendees: int, size: int) -> str:
    lines = [f"Dress rehearsals, one sitting, {os.cpu_count()} cores: {attendees} simulated attendees each, "
             f"the verdict for a workshop of {size}; nbpool with mem_limit 512M, cap {attendees + 4}.", ""]
    lines += ["| material | verdict | mem_limit | warm | max_containers | cores | machines | peak memory p50 / max "
              "| CPU-s per attendee p50 | failing cells |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in runs:
        peaks = sorted(a["peak_memory_bytes"] or 0 for a in r["attendees"])
        cpu = sorted(a["cpu_seconds"] or 0 for a in r["attendees"])
        bad = sum(1 for c in r["cells"] if c["problems"] or c["not_run"])
        a = r["advice"]
        lines.append(f"| {name} | {r['verdict']} | {a['mem_limit_bytes'] // MIB} MiB | {a['warm']} | "
                     f"{a['max_containers']} | {a['cores']} | {a['nodes']} | {peaks[len(peaks) // 2] / MIB:.0f} / "
                     f"{peaks[-1] / MIB:.0f} MiB | {cpu[len(cpu) // 2]:.1f} | {bad} |")
    for name, r in runs:
        lines += ["", f"**{name}**: why", ""]
        lines += [f"- `{key}`: {why}" for key, why in r["reasons"].items()]
        lines += [f"- problem: {p}" for p in r["problems"]]
        slow = sorted(r["cells"], key=lambda c: c["seconds_p95"] or 0, reverse=True)[:3]
        lines += [f"- slow cell: {c['notebook']} cell {c['index']} p50 {c['seconds_p50']:.2f} s, "
                  f"p95 {c['seconds_p95']:.2f} s" for c in slow]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attendees", type=int, default=10)
    p.add_argument("--for", dest="size", type=int, default=40)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundled = str(ROOT / "notebook-image" / "workshops")
    runs = []
    with tempfile.TemporaryDirectory() as tmp, RunningService(warm=args.attendees + 2, cap=args.attendees + 4,
                                                              name="rehearsal") as service:
        runs.append(("bundled", rehearse(service, [bundled], args.attendees, args.size, out, "bundled")))
        service.wait_until(lambda: service.stats()["available"] >= args.attendees, 300, "spares back")
        extra = str(heavier_material(Path(tmp)))
        runs.append(("bundled + 200 MB arrays", rehearse(service, [bundled, extra], args.attendees, args.size, out,
                                                         "heavier")))
    text = markdown(runs, args.attendees, args.size)
    (out / "rehearsal.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
