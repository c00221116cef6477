"""Benchmark: faults mid-workshop, on the real service and engine, timed.

    .venv/bin/python benchmarks/faults.py [--out benchmarks/results/faults.md]

Each fault runs against its own nbpool (start.py, warm 3, cap 30, containers
at their bridge address, the engine with live restore as `make engine` starts
it), with one attendee holding a kernel with ``x = 41`` and, during the
fault, a new visitor arriving every second. Prints one table: the fault,
the time to detect it (the pool or the page saying so), the time to recover
(the pool at ``warm`` again, or serving again), whether the attendee's work
was kept (``x + 1`` is 42 in the same kernel), and how many of the visitors
arriving meanwhile were refused (an error instead of a container or a place
in line). Removes everything it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from running_service import ROOT, RunningService

sys.path.insert(0, str(ROOT))
from loadtest.jupyter import KernelClient

Row = tuple[str, str, str, str, str]


class Visitor:
    """A browser-like client of its own (cookies kept, redirects not followed)."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def get(self, url: str) -> tuple[int, str]:
        try:
            with self.opener.open(urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 faults"}),
                                  timeout=30) as resp:
                return resp.status, resp.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location", "")
        except OSError:
            return 0, ""  # nobody answered

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def spawn(service: RunningService, visitor: Visitor, timeout: float = 120) -> str:
    """Follow /spawn (and the waiting line) to a container's URL; '' if refused."""
    status, location = visitor.get(f"{service.url}/spawn")
    if status == 302 and location.startswith("/spawn/wait/"):
        line, deadline = location, time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, location = visitor.get(service.url + line)
            if status != 200:  # 302 to the container, or an answer other than "still in line"
                break
            time.sleep(0.3)
    return service.url + location if status == 302 and location.startswith("/user/") else ""


class Arrivals:
    """A new visitor every second while the fault lasts (the engine or nbpool away); counts those refused:
    an error page, or no answer at all. A place in line is not a refusal."""

    def __init__(self, service: RunningService):
        self.service = service
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Arrivals:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.codes.append(Visitor().get(f"{self.service.url}/spawn")[0])
            self.stop.wait(1.0)

    def refused(self) -> str:
        bad = sum(1 for code in self.codes if code not in (200, 302))
        return f"{bad} of {len(self.codes)}"


def attendee_with_state(service: RunningService) -> tuple[Visitor, str, KernelClient, asyncio.AbstractEventLoop, str]:
    visitor = Visitor()
    url = spawn(service, visitor)
    loop = asyncio.new_event_loop()
    base = url.rsplit("/tree", 1)[0] + "/"
    client = KernelClient(base, {"Cookie": visitor.cookie_header()})
    kernel = loop.run_until_complete(client.start("python3"))
    assert loop.run_until_complete(client.execute("x = 41")).status == "ok"
    return visitor, url, client, loop, kernel


def work_kept(loop, client: KernelClient, reattach: str | None = None) -> str:
    async def check() -> str:
        if reattach:
            client.detach()
            await client.attach(reattach)
        return (await asyncio.wait_for(client.execute("print(x + 1)"), 60)).output.strip()

    try:
        return "yes" if loop.run_until_complete(check()) == "42" else "no"
    except Exception as exc:  # the kernel or its connection is gone
        return f"no ({type(exc).__name__})"


def engine_container(pool: str, cid: str) -> str:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.nbpool.pool={pool}",
                          "--filter", f"label=org.nbpool.id={cid}"], capture_output=True, text=True).stdout
    return out.split()[0]


def spare_cids(service: RunningService) -> set[str]:
    return {r["id"] for r in service.containers() if r["state"] == "spare"}


def fault_spare_killed() -> Row:
    with RunningService(warm=3, cap=30, extra=["Pool.reconcile_interval = 3600"], name="faults") as service:
        victim = sorted(spare_cids(service))[0]
        subprocess.run(["docker", "kill", engine_container(service.pool, victim)], capture_output=True, check=True)
        t0 = time.monotonic()
        service.wait_until(lambda: victim not in {r["id"] for r in service.containers()}, 30, "noticed")
        detect = time.monotonic() - t0
        service.wait_until(lambda: len(spare_cids(service) - {victim}) >= 3, 60, "spares back")
        recover = time.monotonic() - t0
        return ("a spare `docker kill`ed", f"{detect:.2f} s", f"{recover:.2f} s (new spare ready)", "-",
                "0 (spares left)")


def fault_assigned_killed() -> Row:
    with RunningService(warm=3, cap=30, extra=["Pool.reconcile_interval = 3600"], name="faults") as service:
        visitor = Visitor()
        url = spawn(service, visitor)
        cid = re.search(r"/user/([0-9a-f]+)/", url).group(1)
        subprocess.run(["docker", "kill", engine_container(service.pool, cid)], capture_output=True, check=True)
        t0 = time.monotonic()
        service.wait_until(lambda: visitor.get(url)[0] == 404, 30, "the ended page")
        detect = time.monotonic() - t0
        service.wait_until(lambda: service.stats()["assigned"] == 0 and service.stats()["available"] >= 3,
                           60, "the slot freed, spares whole")
        recover = time.monotonic() - t0
        return ("an attendee's container `docker kill`ed", f"{detect:.2f} s (ended page, with why)",
                f"{recover:.2f} s (slot freed, pool whole)", "no (its container died)", "0 (spares left)")


def restart_engine() -> float:
    """SIGTERM dockerd and start it again as `make engine` does; return the seconds until it answered."""
    t0 = time.monotonic()
    subprocess.run(["bash", str(ROOT / "arch-base" / "engine.sh"), "--restart"], check=True, capture_output=True,
                   timeout=180)
    return time.monotonic() - t0


def fault_engine_restart() -> Row:
    with RunningService(warm=3, cap=30, name="faults") as service:
        _, _, client, loop, _ = attendee_with_state(service)
        failed_before = failed_starts(service)
        with Arrivals(service) as arrivals:
            t0 = time.monotonic()
            noticed: list[float] = []

            def watch() -> None:
                while not noticed and time.monotonic() - t0 < 30:
                    if not service.get_json("/healthz")[1].get("engine_up", True):
                        noticed.append(time.monotonic() - t0)
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            answering = restart_engine()
            watcher.join(30)
        back = service.wait_until(lambda: service.get_json("/healthz")[0] == 200
                                  and service.stats()["available"] >= 3, 120, "pool whole again")
        kept = work_kept(loop, client)
        failed = failed_starts(service) - failed_before
        detect = f"{noticed[0]:.2f} s (/healthz: engine down)" if noticed else "not seen"
        return ("Docker engine restarted (SIGTERM, `make engine`)", detect,
                f"{back:.2f} s after the engine answered ({answering:.1f} s restart); {failed} failed starts",
                kept, arrivals.refused())


def failed_starts(service: RunningService) -> int:
    request = urllib.request.Request(f"{service.url}/metrics",
                                     headers={"Authorization": f"token {service.admin_token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read().decode()
    return int(float(re.search(r"^nbpool_pool_failed_starts_total (\S+)$", text, re.M).group(1)))


def fault_nbpool_killed() -> Row:
    with RunningService(warm=3, cap=30, name="faults") as service:
        _, _, client, loop, kernel = attendee_with_state(service)
        with Arrivals(service) as arrivals:
            service.kill()
            t0 = time.monotonic()
            time.sleep(1)  # (an operator's, or a supervisor's, reaction time)
            service.start(wait_warm=False)
        service.wait_until(lambda: service.stats()["available"] >= 3, 120, "spares whole")
        recover = time.monotonic() - t0
        kept = work_kept(loop, client, reattach=kernel)
        return ("nbpool `SIGKILL`ed, started again after 1 s", "-", f"{recover:.2f} s (serving, spares whole)",
                kept, arrivals.refused())


def fault_nbpool_killed_in_burst() -> Row:
    with RunningService(warm=0, cap=30, name="faults") as service:
        visitors = [Visitor() for _ in range(20)]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            arrivals = [pool.submit(spawn, service, v, 60) for v in visitors]
            service.wait_until(lambda: service.stats()["assigned"] >= 5, 120, "a few served")
            service.kill()
            concurrent.futures.wait(arrivals, timeout=120)
        served = [(v, f.result()) for v, f in zip(visitors, arrivals, strict=True) if f.result()]
        t0 = time.monotonic()
        service.start(wait_warm=False)
        recover = time.monotonic() - t0
        engine = set(subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter",
                                     f"label=org.nbpool.pool={service.pool}"],
                                    capture_output=True, text=True).stdout.split())
        time.sleep(2)
        ids = {r["id"] for r in service.containers()}
        labels = subprocess.run(["docker", "inspect", "--format", '{{index .Config.Labels "org.nbpool.id"}}',
                                 *engine], capture_output=True, text=True).stdout.split() if engine else []
        orphans = len([cid for cid in labels if cid not in ids])
        lost = sum(1 for v, url in served if v.get(url)[0] != 200)
        return (f"nbpool `SIGKILL`ed during a 20-visitor burst ({len(served)} served by then)", "-",
                f"{recover:.2f} s; {orphans} orphans", f"{len(served) - lost} of {len(served)} kept their container",
                "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.md"))
    args = parser.parse_args()
    rows = []
    for fault in (fault_spare_killed, fault_assigned_killed, fault_engine_restart, fault_nbpool_killed,
                  fault_nbpool_killed_in_burst):
        print(f"{fault.__name__} ...", file=sys.stderr)
        rows.append(fault())
    head = (f"{os.cpu_count()} cores; warm 3, cap 30, containers at their bridge address, engine with live restore; "
            "one new visitor a second during each fault")
    table = ["| fault | time to detect | time to recover | attendee's work kept | visitors refused meanwhile |",
             "|---|---|---|---|---|", *("| " + " | ".join(row) + " |" for row in rows)]
    text = head + "\n\n" + "\n".join(table) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
