"""Benchmark: following the instructor: how soon 50 follow pages show a cell the instructor ran, and what it costs.

    .venv/bin/python benchmarks/follow_view.py [--followers 50] [--rounds 20] [--gap 3] [--idle 30]
                                               [--out benchmarks/results/follow-view.md]
    .venv/bin/python benchmarks/follow_view.py --followers 5 --rounds 3     # a quick run for development

One nbpool (start.py, warm 2), collaboration and server-side execution on (the
image's default). The instructor opens their session with the instructor key
in Chromium (JupyterLab, the workshop's first notebook), as an instructor
would; ``--followers`` follow pages (``/follow``, no container of their own)
are open in the same Chromium, each in a browser context of its own (as on
its own device: one profile keeps at most six connections to a host), each watching its own DOM with a
MutationObserver that notes the wall-clock time at which a ``tick-<n>`` output
first shows in it.

1. **Idle CPU.** ``--idle`` seconds with every follow page connected and the
   instructor doing nothing: nbpool's CPU time (utime + stime of the start.py
   process, ``/proc/<pid>/stat``) as a share of one core.
2. **Delay.** ``--rounds`` times, every ``--gap`` seconds: the instructor adds a
   cell ``print("tick-<n>")`` at the end of the notebook and runs it
   (Shift+Enter). Delay: from the key press (wall clock, just before it) to
   when each follow page showed the output. The path: the cell runs on the
   server (jupyter-server-nbmodel), its output lands in the shared document,
   which the server writes to the file half a second after the last change;
   nbpool looks at the file's last change every half second while someone
   follows, reads the notebook when it moved, and pushes one encoded event to
   every page's stream; the page updates the changed cells. p50, p95 and the
   largest over every (round, page).
3. **CPU while following.** nbpool's CPU over phase 2's window, as a share of one core.

Chromium's own work (50 pages rendering) runs on the same 2 cores and is part of
the delay, as it would be on a workshop's laptop. Writes a Markdown table to
``--out`` and prints it; everything is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from running_service import ROOT, RunningService

NOTEBOOK = "01-python-introduction.ipynb"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
# Each follow page notes when each tick first shows (wall clock, ms).
OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  const now = Date.now();
  for (const out of document.querySelectorAll('.follow-output')) {
    const found = (out.textContent || '').match(/tick-(\\d+)/g);
    for (const tick of found || []) { if (!(tick in window.__seen)) window.__seen[tick] = now; }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def settle(service: RunningService) -> None:
    """No container starting (Chromium aborts page loads when a container's interface appears)."""
    service.wait_until(lambda: service.stats()["launching"] == 0 and service.stats()["available"] >= 1, 120,
                       "a still pool", every=0.2)
    time.sleep(1)


def run_cell(page, code: str) -> None:
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between two instructor runs")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle following measured")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "follow-view.md"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    delays: list[float] = []
    missed = 0
    with RunningService(warm=2, cap=4, name="follow") as service, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            links = service.get_json("/api/admin/class-links", token=True)[1]
            key = links["instructor"][""].split("instructor=", 1)[1]
            teach = browser.new_context().new_page()
            teach.set_default_timeout(120_000)
            teach.goto(f"{service.url}/spawn/lab/tree/{NOTEBOOK}?instructor={key}")
            teach.wait_for_url("**/user/*/lab/**")
            settle(service)
            teach.reload()
            teach.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
            pages = []
            for _ in range(args.followers):
                # One browser context each: a follower is a device of its own (and a browser holds at most 6
                # connections per host: one profile could not keep 50 event streams open at once).
                follower = browser.new_context()
                follower.add_init_script(OBSERVER)
                page = follower.new_page()
                page.goto(f"{service.url}/follow")
                pages.append(page)
            for page in pages:
                page.locator("#follow-notebook").filter(has_text=".ipynb").wait_for(timeout=60_000)
            pid = service.proc.pid
            time.sleep(3)

            before = cpu_seconds(pid)
            time.sleep(args.idle)
            idle_share = (cpu_seconds(pid) - before) / args.idle

            start, before = time.monotonic(), cpu_seconds(pid)
            pressed: dict[str, float] = {}
            for n in range(1, args.rounds + 1):
                tick = f"tick-{n}"
                run_cell(teach, f'print("{tick}")')
                pressed[tick] = time.time() * 1000
                teach.keyboard.press("Shift+Enter")
                deadline = time.monotonic() + max(args.gap, 15)
                while time.monotonic() < deadline:
                    seen = pages[-1].evaluate(f"window.__seen['{tick}'] || 0")
                    if seen:
                        break
                    time.sleep(0.1)
                time.sleep(max(0.0, args.gap - 0.5))
            time.sleep(5)  # the last tick's stragglers
            busy_share = (cpu_seconds(pid) - before) / (time.monotonic() - start)
            for page in pages:
                seen = page.evaluate("window.__seen")
                for tick, at in pressed.items():
                    if tick in seen:
                        delays.append((seen[tick] - at) / 1000)
                    else:
                        missed += 1
        finally:
            browser.close()

    cores = os.cpu_count()
    lines = [
        "# Following the instructor — `benchmarks/follow_view.py`", "",
        f"{args.followers} follow pages in one Chromium, the instructor in JupyterLab (collaboration and "
        f"server-side execution on), {args.rounds} runs {args.gap:.0f} s apart; {cores} cores, "
        f"{time.strftime('%Y-%m-%d')}.", "",
        "| figure | value |", "|---|---|",
        f"| instructor runs a cell → every follow page shows its output: p50 | {statistics.median(delays):.2f} s |",
        f"| … p95 | {percentile(delays, 0.95):.2f} s |",
        f"| … largest | {max(delays):.2f} s |",
        f"| outputs not shown within the run's window | {missed} of {args.followers * args.rounds} |",
        f"| nbpool's CPU, {args.followers} pages following, nothing changing | {idle_share * 100:.1f} % of a core |",
        f"| nbpool's CPU, {args.followers} pages following a run every {args.gap:.0f} s | "
        f"{busy_share * 100:.1f} % of a core |", ""]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)
    return 0 if delays and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
