"""Benchmark: a course page's live code with Thebe, from the reader's "Activate" to the cell's first output
(issue 16), through nbpool as the page's Binder, beside the same page on a bare Jupyter server.

    .venv/bin/python benchmarks/thebe_activation.py [--runs 10] [--out benchmarks/results/thebe-activation.md]

Needs `make browser` (Chromium and Thebe 0.9.3) and `make images`. One static site on
``http://localhost:<port>`` serves Thebe and two pages with the same cell
(``print("answer", 6 * 7)``):

- **nbpool**: ``useBinder`` with nbpool as ``binderUrl``, the site in ``WebApp.cors_origin``,
  spares with their pre-started kernels (its default). Two services: 3 spares with room for
  more, so the hand-out starts a replacement at once, which boots on the same cores while the
  page works (what a workshop sees); and 1 spare at a cap of 1, so nothing else starts meanwhile.
  Each run is a fresh browser (no saved session), so it asks ``/build`` for a fresh container;
  the container is removed after the run and the pool refilled before the next.
- **bare Jupyter**: ``useBinder: false`` with ``serverSettings`` (the server's URL and token),
  a container of the same image started beforehand, straight on a published port, with
  ``--ServerApp.allow_origin`` set to the site: what an author runs without nbpool. Each run's
  session is deleted afterwards, so every run starts its kernel. Two variants: stock
  (the kernel starts when the page asks: ``NBPOOL_PRESTART_KERNEL=0``), and with the image's
  pre-started kernel, a fresh container for each run so one is always waiting (what nbpool's
  spares add, without the pool).

Both containers have nbpool's limits (1 core, 512 MiB). Times are taken in the page: a
capture-phase listener notes the click on Activate; once Thebe says "Kernel Connected" and has
attached the cell to the session, the page notes it and clicks Run at once (no harness delay),
then notes the output. Runs rotate the order.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import statistics
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import requests
from running_service import ROOT, RunningService

sys.path.insert(0, str(ROOT))
from loadtest.report import percentile

IMAGE = "nbpool/notebook:latest"
THEBE = ROOT / "tests" / ".cache" / "thebe-0.9.3" / "lib"
CHROMIUM = os.environ.get("NBPOOL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
CODE = 'print("answer", 6 * 7)'
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>live code</title>
<link rel="stylesheet" href="thebe/thebe.css">
<script type="text/x-thebe-config">{config}</script>
<script src="thebe/index.js"></script>
</head><body>
<div class="thebe-activate"></div><div class="thebe-status"></div>
<pre data-executable="true" data-language="python">{code}</pre>
</body></html>
"""
# Times in the page, from performance.now(): the click on Activate, "Kernel Connected", the first output.
PROBE = """
window.__t = {};
document.addEventListener("click", e => {
  if (e.target.closest && e.target.closest(".thebe-activate-button") && !window.__t.activate)
    window.__t.activate = performance.now();
}, true);
// "Kernel Connected" shows a moment before Thebe attaches the cells to the session: Run waits for that.
const attached = () => window.thebe && window.thebe.notebook && window.thebe.notebook.cells[0].isAttached;
const run = () => {
  if (!attached()) { setTimeout(run, 2); return; }
  window.__t.connected = performance.now();
  document.querySelector(".thebe-run-button").click();
};
new MutationObserver(() => {
  const status = document.querySelector(".thebe-status-field");
  if (!window.__t.seen && status && status.textContent.includes("Kernel Connected")) { window.__t.seen = 1; run(); }
  const out = document.querySelector(".jp-OutputArea-output");
  if (!window.__t.output && out && out.textContent.includes("answer 42")) window.__t.output = performance.now();
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def site(root: Path) -> tuple[ThreadingHTTPServer, str]:
    (root / "thebe").symlink_to(THEBE, target_is_directory=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{server.server_address[1]}"


def bare_jupyter(client, origin: str, prestart: bool):
    token = secrets.token_hex(24)
    container = client.containers.run(
        IMAGE, ["start-notebook", f"--ServerApp.allow_origin={origin}"], detach=True,
        environment={"JUPYTER_TOKEN": token, "NBPOOL_BASE_URL": "/",
                     "NBPOOL_PRESTART_KERNEL": "1" if prestart else "0"},
        ports={"8888/tcp": ("127.0.0.1", None)}, labels={"org.nbpool.pool": "nbpool-bench-thebe"},
        mem_limit="512m", nano_cpus=1_000_000_000)
    container.reload()
    url = f"http://127.0.0.1:{container.ports['8888/tcp'][0]['HostPort']}/"
    ready(url, token)
    return container, url, token


def ready(url: str, token: str, timeout: float = 90) -> None:
    """Until the server answers (polled with requests: Playwright's sync API holds an event loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "api/status", headers={"Authorization": f"token {token}"}, timeout=5).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.25)


def write_direct_page(work: Path, name: str, url: str, token: str) -> None:
    direct = {"requestKernel": True, "useBinder": False, "mathjaxUrl": "",
              "serverSettings": {"baseUrl": url, "token": token, "appendToken": True},
              "kernelOptions": {"kernelName": "python3"}}
    (work / f"{name}.html").write_text(PAGE.format(config=json.dumps(direct), code=CODE))


def run_page(browser, url: str) -> dict:
    context = browser.new_context()
    context.add_init_script(PROBE)
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(url)
        page.locator(".thebe-activate-button").click()
        page.wait_for_function("() => window.__t.output")
        t = page.evaluate("window.__t")
        return {"connected": (t["connected"] - t["activate"]) / 1000, "output": (t["output"] - t["activate"]) / 1000}
    finally:
        context.close()


def end_sessions(url: str, token: str) -> None:
    auth = {"Authorization": f"token {token}"}
    for session in requests.get(url + "api/sessions", headers=auth, timeout=10).json():
        requests.delete(url + f"api/sessions/{session['id']}", headers=auth, timeout=30)


def row(name: str, runs: list[dict]) -> str:
    con = [r["connected"] for r in runs]
    out = [r["output"] for r in runs]
    return (f"| {name} | {len(runs)} | {statistics.median(con):.2f} s | {statistics.median(out):.2f} s | "
            f"{percentile(out, 95):.2f} s | {min(out):.2f} s | {max(out):.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "thebe-activation.md"))
    args = parser.parse_args()
    if not (THEBE / "index.js").exists():
        sys.exit("Thebe is missing: run `make browser` first")
    from playwright.sync_api import sync_playwright

    client = docker.from_env()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"nbpool-thebe-bench-{secrets.token_hex(3)}"
    work.mkdir()
    server, origin = site(work)
    bare = {}
    results: dict[str, list[dict]] = {"nbpool": [], "nbpool-at-cap": [], "bare": [], "bare-prestart": []}
    # "nbpool": 3 spares, room for more, so the hand-out starts a replacement at once, which boots on the same
    # cores while the page works; "nbpool-at-cap": one spare and a cap of one, so nothing else starts meanwhile.
    services = {"nbpool": RunningService(warm=3, cap=8, name="thebe", extra=[f"WebApp.cors_origin = [{origin!r}]"]),
                "nbpool-at-cap": RunningService(warm=1, cap=1, name="thebecap",
                                                extra=[f"WebApp.cors_origin = [{origin!r}]"])}
    try:
        with contextlib.ExitStack() as stack:
            for name, service in services.items():
                stack.enter_context(service)
                binder = {"requestKernel": True, "useBinder": True, "savedSessionOptions": {"enabled": False},
                          "binderOptions": {"binderUrl": service.url, "repo": "teach/course", "ref": "main"},
                          "kernelOptions": {"kernelName": "python3"}, "mathjaxUrl": ""}
                (work / f"{name}.html").write_text(PAGE.format(config=json.dumps(binder), code=CODE))
            for name, prestart in (("bare", False), ("bare-prestart", True)):
                bare[name] = bare_jupyter(client, origin, prestart)
                write_direct_page(work, name, *bare[name][1:])
            time.sleep(10)  # the pre-started kernels come up, the spares settle
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                run_page(browser, f"{origin}/bare.html")  # the browser's first start and Thebe's bundle, uncounted
                end_sessions(bare["bare"][1], bare["bare"][2])
                order = list(results)
                for i in range(args.runs):
                    for name in order[i % len(order):] + order[:i % len(order)]:
                        if name in services:
                            service = services[name]
                            service.wait_until(lambda s=service: s.stats()["available"] >= s.warm, what="spares ready")
                            time.sleep(2)
                            results[name].append(run_page(browser, f"{origin}/{name}.html"))
                            for row_ in service.containers():
                                if row_.get("embedded"):
                                    requests.delete(f"{service.url}/api/admin/containers/{row_['id']}", timeout=30,
                                                    headers={"Authorization": f"token {service.admin_token}"})
                        else:
                            _, url, token = bare[name]
                            time.sleep(2)
                            results[name].append(run_page(browser, f"{origin}/{name}.html"))
                            end_sessions(url, token)
                            if name == "bare-prestart":  # the next run gets a fresh server with its kernel waiting
                                bare[name][0].remove(force=True)
                                bare[name] = bare_jupyter(client, origin, True)
                                write_direct_page(work, name, *bare[name][1:])
                                time.sleep(8)
                    print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]['output']:.2f}s" for k, v in results.items()),
                          flush=True)
                browser.close()
    finally:
        for container, _, _ in bare.values():
            container.remove(force=True)
        server.shutdown()
    cores = os.cpu_count()
    table = "\n".join([
        f"Thebe 0.9.3 in Chromium, page on another origin, {args.runs} runs each, {cores} cores "
        f"({time.strftime('%Y-%m-%d')}); times from the click on Activate.",
        "",
        "| server | runs | → cell attached to a kernel, p50 | → first output, p50 | p95 | min | max |",
        "|---|---|---|---|---|---|---|",
        row("nbpool as binderUrl, 3 spares ready (pre-started kernels); a replacement boots meanwhile",
            results["nbpool"]),
        row("nbpool as binderUrl, 1 spare at a cap of 1 (nothing else starts meanwhile)", results["nbpool-at-cap"]),
        row("bare Jupyter with a token, started beforehand (stock: kernel on request)", results["bare"]),
        row("bare Jupyter, the image's pre-started kernel", results["bare-prestart"]),
    ])
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
