"""Benchmark: what a browser pulls to open a workshop notebook, through nbpool and straight to the container.

    .venv/bin/python benchmarks/page_weight.py [--out benchmarks/results/page-weight.md]

Real Chromium (Debian's, driven by Playwright) opens the deep link
``/spawn/notebooks/01-python-introduction.ipynb`` through nbpool, and, in a
fresh browser profile, the same notebook straight at a container's published
port with its token: what a proxy that neither compresses nor caches
delivers. For each network condition (none; 10 Mbit/s and 40 ms; 2 Mbit/s and
100 ms, by Chrome's own network emulation) it reports the requests, the bytes
on the wire (Chrome's encoded data length: after compression, if any), how
many were compressed, how many static files the visitor's own container
served (through nbpool: the proxy's count of static requests it relayed), and
the time until the notebook is visible. Every open gets a fresh container
from the pool, and the two paths take turns going first. The first open
through nbpool finds the shared static cache empty; later ones find it
filled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from running_service import ROOT, RunningService

sys.path.insert(0, str(ROOT))
from spawner.secret import ServerSecret

CHROMIUM = os.environ.get("NBPOOL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
NOTEBOOK = "notebooks/01-python-introduction.ipynb"
CONDITIONS = (("unthrottled", None), ("10 Mbit/s, 40 ms", (10e6, 40)), ("2 Mbit/s, 100 ms", (2e6, 100)))


def open_notebook(browser, url: str, throttle: tuple[float, float] | None) -> dict:
    """Open ``url`` in a fresh profile; the notebook visible, with what went over the wire."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    if throttle:
        bits, latency = throttle
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency,
                                                      "downloadThroughput": bits / 8, "uploadThroughput": bits / 8})
    responses: dict[str, dict] = {}
    wire = {"bytes": 0, "count": 0}

    def on_response(event: dict) -> None:
        headers = {k.lower(): v for k, v in event["response"].get("headers", {}).items()}
        responses[event["requestId"]] = {"url": event["response"]["url"],
                                         "encoding": headers.get("content-encoding", "")}

    def on_finished(event: dict) -> None:
        wire["bytes"] += event.get("encodedDataLength", 0)
        wire["count"] += 1
        if event["requestId"] in responses:
            responses[event["requestId"]]["bytes"] = event.get("encodedDataLength", 0)

    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.loadingFinished", on_finished)
    t0 = time.monotonic()
    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible")
    visible = time.monotonic() - t0
    page.wait_for_load_state("networkidle")
    final = page.url
    context.close()
    static = [r for r in responses.values() if "/static/" in r["url"]]
    return {"visible": visible, "requests": wire["count"], "bytes": wire["bytes"],
            "compressed": sum(1 for r in responses.values() if r["encoding"]), "static": len(static),
            "url": final}


def spawn_direct(service: RunningService, secret: ServerSecret) -> str:
    """A fresh container of the pool, opened straight at its published port with its token (no proxy)."""
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # the hand-out's Location is all we need

    try:
        urllib.request.build_opener(Keep).open(f"{service.url}/spawn/{NOTEBOOK}", timeout=120)
        raise RuntimeError("/spawn did not redirect")
    except urllib.error.HTTPError as exc:
        location = exc.headers["Location"]
    cid = location.split("/user/", 1)[1].split("/", 1)[0]
    endpoint = next(c["endpoint"] for c in service.containers() if c["id"] == cid)
    return f"{endpoint}/user/{cid}/{NOTEBOOK}?token={secret.token_for(cid)}"


def settle(service: RunningService) -> None:
    """Wait for every spare (the refill after the last hand-out, its kernel included), then a moment more:
    each open starts on a quiet machine, whichever path it takes."""
    service.wait_until(lambda: service.stats()["available"] >= service.warm, 180, "the spares")
    time.sleep(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "page-weight.md"))
    parser.add_argument("--repeat", type=int, default=3, help="opens per path and network (the median is shown)")
    parser.add_argument("--extra", action="append", default=[],
                        help="an extra config line for nbpool, e.g. 'Proxy.cache_size = 0' (repeatable)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    runs: dict[tuple[str, str], list[dict]] = {}
    with RunningService(warm=2, cap=8 + 2 * args.repeat * len(CONDITIONS), name="weight",
                        extra=args.extra) as service, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        secret = ServerSecret.load_or_create(service.dir / "data" / "secret")

        def through(label: str, throttle, who: str) -> None:
            settle(service)
            relayed = service.metric("nbpool_static_requests_to_containers_total")
            r = open_notebook(browser, f"{service.url}/spawn/{NOTEBOOK}", throttle)
            r["static"] = int(service.metric("nbpool_static_requests_to_containers_total") - relayed)
            add(label, f"through nbpool, {who}", r)

        def direct(label: str, throttle) -> None:
            settle(service)
            add(label, "straight to a container", open_notebook(browser, spawn_direct(service, secret), throttle))

        def add(label: str, path: str, r: dict) -> None:
            runs.setdefault((label, path), []).append(r)
            print(f"{label} | {path} | {r['bytes'] / 1e6:.2f} MB | {r['static']} static | {r['visible']:.2f} s",
                  file=sys.stderr, flush=True)

        # Each open gets a fresh container, and the two paths take turns going
        # first, so neither always runs on a machine the other has just warmed.
        through(*CONDITIONS[0], "first attendee (empty cache)")
        turn = 0
        for label, throttle in CONDITIONS:
            for _ in range(args.repeat):
                for via_nbpool in ([False, True] if turn % 2 == 0 else [True, False]):
                    if via_nbpool:
                        through(label, throttle, "next attendee")
                    else:
                        direct(label, throttle)
                turn += 1
        browser.close()
        cache = (service.metric("nbpool_static_cache_entries"), service.metric("nbpool_static_cache_bytes"))

    rows = []
    medians: dict[tuple[str, str], float] = {}
    for (label, path), rs in runs.items():
        times = sorted(r["visible"] for r in rs)
        mid = statistics.median(times)
        medians[label, path.split(",")[0]] = mid
        r = min(rs, key=lambda r: abs(r["visible"] - mid))
        rows.append(f"| {label} | {path} | {r['requests']} | {r['bytes'] / 1e6:.2f} MB | {r['compressed']} "
                    f"| {max(x['static'] for x in rs)} | {mid:.2f} s | {', '.join(f'{t:.2f}' for t in times)} |")
    ratios = "; ".join(f"{label}: {medians[label, 'through nbpool'] / medians[label, 'straight to a container']:.2f}x"
                       for label, _ in CONDITIONS)
    text = (f"Opening {NOTEBOOK} in a fresh browser profile (Chromium, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}){' with ' + ', '.join(args.extra) if args.extra else ''}; "
            f"{args.repeat} opens per path and network, each on a fresh container, the paths taking turns\n\n"
            "| network | path | requests | on the wire | compressed responses "
            "| static files from their own container (most in any open) | notebook visible (median) | every open (s) |"
            "\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + f"\n\nNotebook visible, through nbpool (next attendee) / straight, medians: {ratios}\n"
            f"\nThe shared static cache at the end: {cache[0]:.0f} files, {cache[1] / 2**20:.1f} MiB "
            "(each file plain, gzip and brotli).\n")
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
