"""Benchmark: a class opening the same nbgitpuller link at once, against a clone in every container.

    .venv/bin/python benchmarks/content.py [--attendees 40] [--notebooks 50] [--data-mb 20] [--warm 40] [--cap 45]
                                           [--pushes 5] [--out benchmarks/results]
    .venv/bin/python benchmarks/content.py --attendees 4 --notebooks 5 --data-mb 2 --warm 4 --cap 6 --pushes 2 \\
                                           --out /tmp/content-smoke                 # a smoke run, a few minutes

One sitting, in three parts, against a local ``git daemon`` (tests/gitserver.py) serving one repository of
realistic size: ``--notebooks`` notebooks of a few KB each (prose, code, printed outputs), ``--data-mb`` MB of
data files of random bytes (at most 5 MB each, so no compression makes them smaller) and a README.

1. **nbpool.** nbpool (start.py, its own pool, data dir and port) with ``--warm`` spares and a cap of ``--cap``,
   the git server's repositories allowed (``NbpoolApp.allowed_content``); once the spares are ready,
   ``--attendees`` attendees (threads, each its own cookies and a browser's User-Agent) open the same link at
   the same moment: ``GET /git-pull?repo=…&branch=main&urlpath=lab/tree/<repo>/<first notebook>``, through the
   waiting line if they are sent there, then the notebook page it lands on. Measured per attendee: the click
   to the link's answer (the fetch, a spare taken, the files copied into it) and to the notebook page answering
   200. Counted: the fetches that reached the git server (its log). Checked afterwards, as each attendee:
   the notebook is the repository's and every data file has its size. Only GETs are on that way (a browser
   sends no Origin on them); nothing is written by the attendees.
2. **Each container clones (nbgitpuller's way).** ``--attendees`` containers of the notebook image on Docker's
   default bridge, started at the same moment from threads (``containers.run``), each running
   ``git clone --depth 1 --branch main`` of the same repository from a second ``git daemon`` over the same
   folder, listening on the bridge's gateway address (no connection limit: a real git host has none that 40
   clients reach). Measured per container: ``containers.run`` called to the clone done (``date +%s.%N`` inside
   the container, the same clock), and the clone alone. This is generous to nbgitpuller: nothing else
   happens in those containers (no Jupyter server starts, nothing is waited for), and the clone's files are
   not looked at by anyone.
3. **From git push to a running container.** A fresh nbpool with a workshop ``course`` whose ``content`` is the
   repository (``warm`` 2, ``max_containers`` 4, ``NbpoolApp.content_interval = 0``); one attendee takes a
   container (``/w/course/spawn``). ``--pushes`` times: a commit changes the first notebook in the served
   repository (the push), then ``POST /api/admin/workshops/course/pull`` with the admin token, and the
   attendee's ``GET /user/<id>/api/contents/<path>?content=1`` every 0.1 s until the new version is there.
   Each push waits for the previous pour to end.

Writes ``content.md`` and ``content.json`` into ``--out`` and prints the Markdown. Removes every container it
started (labelled ``org.nbpool.bench=content``), stops both git daemons and nbpool, and says what, if anything,
was left behind. Percentiles interpolate linearly between closest ranks (numpy's default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import docker
import requests
from running_service import ROOT, RunningService
from workshop_burst import machine_note

sys.path.insert(0, str(ROOT))
from loadtest.report import percentile
from spawner.engines.firewall import ContainerFirewall, bridge_name
from tests.gitserver import GitServer
from tests.service import through_the_line

IMAGE = "nbpool/notebook:latest"
REPO = "course"
WORKSHOP = "course"
LABEL = "org.nbpool.bench"
LABEL_VALUE = "content"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) nbpool-content-bench/1"  # not a link-preview bot
MB = 2**20
DATA_FILE_MAX = 5 * MB
WORDS = ("data sample model mean variance plot table column value series filter group measure result error "
         "estimate figure python function list loop array index label axis range random test train").split()


def at_once(work, count: int) -> float:
    """``work(0)`` … ``work(count - 1)``, each in a thread of its own, started together: seconds until all ended."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - began

def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the repository --------------------------------------------------------------------------------------------


def notebook_path(i: int) -> str:
    return f"notebooks/{i + 1:02d}-lesson.ipynb"


def lesson(i: int, revision: int = 0) -> str:
    """Lesson ``i``'s notebook (a few KB: prose, code, printed outputs); ``revision`` > 0 marks a later push."""
    rng = random.Random(i)

    def prose(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    title = f"# Lesson {i + 1}\n\n{prose(90)}\n"
    if revision:
        title += f"\n*Revision {revision}: fixed after the instructor's push.*\n"
    cells = [{"cell_type": "markdown", "id": f"l{i}-title", "metadata": {}, "source": title}]
    for k in range(4):
        code = "\n".join(f"values_{j} = [x ** {j} / {rng.randint(2, 99)} for x in range({rng.randint(5, 50)})]"
                         for j in range(5)) + "\nfor row in zip(*[values_0, values_1]):\n    print(row)\n"
        printed = "\n".join(" ".join(f"{rng.random():.6f}" for _ in range(8)) for _ in range(10)) + "\n"
        cells.append({"cell_type": "markdown", "id": f"l{i}-m{k}", "metadata": {}, "source": prose(40)})
        cells.append({"cell_type": "code", "execution_count": k + 1, "id": f"l{i}-c{k}", "metadata": {},
                      "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}], "source": code})
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"}}
    return json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def repository_files(notebooks: int, data_mb: float) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {notebook_path(i): lesson(i) for i in range(notebooks)}
    remaining, part = int(data_mb * MB), 1
    while remaining > 0:
        size = min(remaining, DATA_FILE_MAX)
        files[f"data/part-{part}.bin"] = os.urandom(size)
        remaining -= size
        part += 1
    files["README.md"] = f"# Course material\n\n{notebooks} lessons in `notebooks/`, their data in `data/`.\n"
    return files


def packed_bytes(repo: Path) -> int:
    """The repository's objects once packed (what a clone of its one commit roughly carries)."""
    subprocess.run(["git", "-C", str(repo), "gc", "-q"], check=True)
    out = subprocess.run(["git", "-C", str(repo), "count-objects", "-v"], check=True, capture_output=True,
                         text=True).stdout
    sizes = dict(line.split(": ") for line in out.splitlines())
    return (int(sizes.get("size", 0)) + int(sizes.get("size-pack", 0))) * 1024


def upload_packs(log_path: Path, name: str) -> int:
    """Fetches of ``name`` a git daemon logged (one 'upload-pack' request each)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return sum(1 for line in text.splitlines() if "upload-pack" in line and f"/{name}" in line)


# --- figures ---------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values) if values else None}


def secs(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def mib(n: int) -> str:
    return f"{n / MB:.1f} MB"


# --- 1. nbpool --------------------------------------------------------------------------------------------------


def browser() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def user_base(url: str) -> str:
    """http://host:port/user/<id>/ of a URL in a container."""
    match = re.match(r"^(https?://[^/]+/user/[0-9a-f]+/)", url)
    if not match:
        raise RuntimeError(f"not a container URL: {url}")
    return match.group(1)


def contents(session: requests.Session, base: str, path: str, content: bool = True) -> dict | None:
    query = {"content": 1, "type": "file", "format": "text"} if content else {"content": 0}
    resp = session.get(f"{base}api/contents/{quote(path)}", params=query, timeout=60)
    return resp.json() if resp.status_code == 200 else None


def run_nbpool(server: GitServer, files: dict, args) -> dict:
    extra = [f"NbpoolApp.allowed_content = ['git://127.0.0.1:{server.port}/*']"]
    service = RunningService(warm=args.warm, cap=args.cap, extra=extra, name="content")
    first = notebook_path(0)
    link = "/git-pull?" + urlencode({"repo": server.url(REPO), "branch": "main",
                                     "urlpath": f"lab/tree/{REPO}/{first}"})
    try:
        log(f"nbpool: starting, waiting for {args.warm} spares")
        ready = service.start(timeout=args.warm_timeout)
        log(f"nbpool: {args.warm} spares ready after {ready:.0f} s")
        fetches_before = server.fetches(REPO)
        sessions = [browser() for _ in range(args.attendees)]
        results: list[dict] = [{} for _ in sessions]
        barrier = threading.Barrier(len(sessions))

        def attendee(i: int) -> None:
            session, out = sessions[i], results[i]
            barrier.wait()
            t0 = time.monotonic()
            try:
                resp = session.get(service.url + link, allow_redirects=False, timeout=600)
                if resp.status_code not in (302, 303):
                    raise RuntimeError(f"the link answered {resp.status_code}: {resp.text[:200]!r}")
                out["link"] = time.monotonic() - t0
                out["queued"] = "/spawn/wait/" in resp.headers.get("Location", "")
                landed = through_the_line(session, service.url, resp, timeout=600)
                page = session.get(landed, timeout=300)
                if page.status_code != 200:
                    raise RuntimeError(f"the notebook page answered {page.status_code}")
                out["page"] = time.monotonic() - t0
                out["url"] = landed
            except Exception as exc:  # reported per attendee
                out["error"] = f"{type(exc).__name__}: {exc}"[:300]

        log(f"nbpool: {len(sessions)} attendees open the link at once")
        burst = at_once(attendee, len(sessions))
        fetches = server.fetches(REPO) - fetches_before
        log(f"nbpool: burst over in {burst:.1f} s, {fetches} fetch(es) reached the git server")

        # Checked as each attendee, after the burst (not timed): the repository's files are there.
        data_sizes = {p: len(d) for p, d in files.items() if p.startswith("data/")}
        for session, out in zip(sessions, results, strict=True):
            if "error" in out:
                continue
            base = user_base(out["url"])
            out["cid"] = base.rstrip("/").rsplit("/", 1)[1]
            problems = []
            model = contents(session, base, f"{REPO}/{first}")
            if model is None or json.loads(model["content"]) != json.loads(files[first]):
                problems.append(f"{first} is not the repository's")
            for path, size in data_sizes.items():
                model = contents(session, base, f"{REPO}/{path}", content=False)
                if model is None or model.get("size") != size:
                    problems.append(f"{path}: {model and model.get('size')} bytes, not {size}")
            if problems:
                out["error"] = "files: " + "; ".join(problems)[:300]
        ok = [r for r in results if "error" not in r]
        cids = {r["cid"] for r in ok}
        status, material = service.get_json("/api/admin/content", token=True)
        return {"attendees": len(results), "failed": len(results) - len(ok), "own_containers": len(cids),
                "queued": sum(1 for r in ok if r.get("queued")), "fetches": fetches,
                "nbpool_fetches": material.get("fetches") if status == 200 else None,
                "spares_ready_seconds": ready, "burst_seconds": burst,
                "link": spread([r["link"] for r in ok]), "page": spread([r["page"] for r in ok]),
                "errors": sorted({r["error"] for r in results if "error" in r})[:10],
                "per_attendee": [{k: v for k, v in r.items() if k != "url"} for r in results]}
    finally:
        log("nbpool: stopping")
        service.__exit__(None, None, None)


# --- 2. each container clones --------------------------------------------------------------------------------------


class BridgeGitDaemon:
    """A second ``git daemon`` over the same folder, on the default bridge's gateway: reachable from containers."""

    def __init__(self, root: Path, address: str, log_path: Path):
        self.root, self.address, self.log_path = root, address, log_path
        with socket.socket() as s:
            s.bind((address, 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BridgeGitDaemon:
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--base-path={self.root}", "--export-all", f"--port={self.port}",
             f"--listen={self.address}", "--max-connections=0", "--verbose", str(self.root)],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"git daemon on {self.address}:{self.port} did not start: "
                                       f"{self.log_path.read_text(errors='replace')[-1000:]}") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def remove_bench_containers(client: docker.DockerClient, run_id: str) -> int:
    found = client.containers.list(all=True, filters={"label": f"{LABEL}={LABEL_VALUE}-{run_id}"})
    for container in found:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    return len(found)


def run_peer(server: GitServer, args, run_id: str, tmp: Path) -> dict:
    client = docker.from_env(timeout=600)
    gateway = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    results: list[dict] = [{} for _ in range(args.attendees)]
    try:
        with BridgeGitDaemon(server.root, gateway, tmp / "git-daemon-bridge.log") as daemon:
            url = f"git://{gateway}:{daemon.port}/{REPO}"
            script = ('a=$(date +%s.%N); git clone -q --depth 1 --branch main "$0" /tmp/x || exit 3; '
                      'b=$(date +%s.%N); echo "TIMES $a $b"')
            barrier = threading.Barrier(args.attendees)

            def clone(i: int) -> None:
                out, own = results[i], docker.from_env(timeout=600)
                barrier.wait()
                t0 = time.time()
                try:
                    container = own.containers.run(
                        IMAGE, entrypoint=["sh", "-c", script, url], detach=True, mem_limit="512m",
                        labels={LABEL: f"{LABEL_VALUE}-{run_id}"}, name=f"nbpool-bench-content-{run_id}-{i}")
                    out["started"] = time.time() - t0
                    status = container.wait(timeout=600)
                    out["exited"] = time.time() - t0
                    text = container.logs().decode(errors="replace")
                    if status.get("StatusCode") != 0:
                        raise RuntimeError(f"exit {status.get('StatusCode')}: {text.strip()[-300:]}")
                    times = re.search(r"TIMES (\d+\.\d+) (\d+\.\d+)", text)
                    if not times:
                        raise RuntimeError(f"no times in the output: {text.strip()[-300:]}")
                    began, done = float(times.group(1)), float(times.group(2))
                    out["clone_began"], out["done"], out["clone"] = began - t0, done - t0, done - began
                except Exception as exc:  # reported per container
                    out["error"] = f"{type(exc).__name__}: {exc}"[:300]
                finally:
                    own.close()

            log(f"peer: {args.attendees} containers clone {url} at once")
            burst = at_once(clone, args.attendees)
            time.sleep(0.5)  # the daemon's last log lines
            fetches = upload_packs(daemon.log_path, REPO)
            refused = sum(1 for line in daemon.log_path.read_text(errors="replace").splitlines()
                          if "Too many children" in line)
            log(f"peer: over in {burst:.1f} s, {fetches} fetch(es) reached the git server")
    finally:
        removed = remove_bench_containers(client, run_id)
        log(f"peer: removed {removed} container(s)")
        client.close()
    ok = [r for r in results if "error" not in r]
    return {"attendees": len(results), "failed": len(results) - len(ok), "fetches": fetches,
            "dropped_by_daemon": refused, "gateway": gateway, "burst_seconds": burst,
            "done": spread([r["done"] for r in ok]), "clone": spread([r["clone"] for r in ok]),
            "started": spread([r["started"] for r in ok]), "clone_began": spread([r["clone_began"] for r in ok]),
            "errors": sorted({r["error"] for r in results if "error" in r})[:10], "per_container": results}


# --- 3. from git push to a running container --------------------------------------------------------------------------


def run_push(server: GitServer, files: dict, args) -> dict:
    workshops = {WORKSHOP: {"warm": 2, "max_containers": 4, "content": {"repo": server.url(REPO), "ref": "main"}}}
    service = RunningService(warm=2, cap=4, name="content-push",
                             extra=[f"NbpoolApp.workshops = {workshops!r}", "NbpoolApp.content_interval = 0"])
    head = subprocess.run(["git", "-C", str(server.root / REPO), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    first = notebook_path(0)
    path = f"{REPO}/{first}"

    def content_status() -> dict:
        status, body = service.get_json("/api/admin/content", token=True)
        return body if status == 200 else {}

    def poured_since(wall: float) -> bool:
        return content_status().get("pours", {}).get(WORKSHOP, {}).get("at", 0) >= wall

    def available() -> int:
        return service.get_json(f"/w/{WORKSHOP}/api/stats")[1].get("available", 0)

    try:
        log("push: starting nbpool with workshop 'course' (content from the git server)")
        service.start(wait_warm=False, timeout=300)
        service.wait_until(lambda: (content_status().get("sources") or [{}])[0].get("commit") == head, 300,
                           "the first fetch", every=0.5)
        service.wait_until(lambda: available() >= 2, 600, "2 spares of the workshop", every=0.5)
        attendee = browser()
        resp = attendee.get(f"{service.url}/w/{WORKSHOP}/spawn", allow_redirects=False, timeout=120)
        base = user_base(through_the_line(attendee, f"{service.url}/w/{WORKSHOP}", resp, timeout=300))
        service.wait_until(lambda: available() >= 2, 600, "2 spares beside the attendee", every=0.5)
        service.wait_until(lambda: (contents(attendee, base, path) or {}).get("content") == files[first], 300,
                           "the material in the attendee's container", every=0.5)
        log(f"push: the attendee has {base}; {args.pushes} pushes")
        pushes = []
        for k in range(1, args.pushes + 1):
            text = lesson(0, revision=k)
            commit = server.commit(REPO, {first: text}, f"Lesson 1, revision {k}")
            pushed, pushed_wall = time.monotonic(), time.time()
            pull = requests.post(f"{service.url}/api/admin/workshops/{WORKSHOP}/pull", timeout=300,
                                 headers={"Authorization": f"token {service.admin_token}"})
            answered = time.monotonic() - pushed
            sources = pull.json().get("sources", []) if pull.status_code == 200 else []
            if not sources or sources[0].get("commit") != commit or sources[0].get("error"):
                raise RuntimeError(f"the pull answered {pull.status_code}: {pull.text[:300]}")
            deadline = pushed + 120
            while (contents(attendee, base, path) or {}).get("content") != text:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"push {k}: not in the attendee's container after 120 s")
                time.sleep(0.1)
            visible = time.monotonic() - pushed
            service.wait_until(lambda since=pushed_wall: poured_since(since), 300, "the pour's end", every=0.2)
            pour = content_status()["pours"][WORKSHOP]
            pushes.append({"commit": commit, "pull_answered": answered, "visible": visible, "pour": pour})
            log(f"push {k}: pull answered after {secs(answered)}, visible after {secs(visible)}, "
                f"pour of {pour['containers']} containers {secs(pour['seconds'])}")
        return {"pushes": pushes, "visible": spread([p["visible"] for p in pushes]),
                "pull_answered": spread([p["pull_answered"] for p in pushes]),
                "pour_seconds": spread([p["pour"]["seconds"] for p in pushes]),
                "pour_containers": pushes[-1]["pour"]["containers"] if pushes else 0,
                "pour_failed": sum(p["pour"].get("failed", 0) for p in pushes)}
    finally:
        log("push: stopping nbpool")
        service.__exit__(None, None, None)


# --- what was left behind -------------------------------------------------------------------------------------------


def networks() -> set[str]:
    out = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    return set(out.stdout.split())


def nbpool_chains() -> set[str]:
    """nbpool's firewall chains on this host (NBPOOL-FWD-<bridge>, NBPOOL-IN-<bridge>); empty if unreadable."""
    try:
        out = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N NBPOOL-")}


def leftovers(run_id: str, networks_before: set[str], chains_before: set[str]) -> list[str]:
    """What this run left on the engine: its containers, the networks it created (removed when empty) and
    their firewall chains. nbpool keeps a network's chains while containers are on it when it stops (the
    attendees' stay running for a restart to adopt); RunningService removes those containers afterwards, so
    the chains of a network this run created are removed here too, by nbpool's own ContainerFirewall."""
    left = []
    ours = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label={LABEL}={LABEL_VALUE}-{run_id}"],
                          capture_output=True, text=True).stdout.split()
    if ours:
        left.append(f"{len(ours)} benchmark container(s)")
    firewall = ContainerFirewall()
    for name in sorted(networks() - networks_before):
        inspected = subprocess.run(["docker", "network", "inspect", name], capture_output=True, text=True)
        attrs = (json.loads(inspected.stdout) or [{}])[0] if inspected.returncode == 0 else {}
        if name.startswith("nbpool") and attrs and not attrs.get("Containers"):
            bridge = bridge_name(attrs)
            try:
                firewall.remove(bridge)
                cleaned = f"its firewall chains for {bridge} removed"
            except Exception as exc:  # reported, not raised: the report still gets written
                cleaned = f"its firewall chains for {bridge} NOT removed: {exc}"
            removed = subprocess.run(["docker", "network", "rm", name], capture_output=True).returncode == 0
            log(f"network {name} (created by this run, empty): {'removed' if removed else 'NOT removed'}, {cleaned}")
            if not removed:
                left.append(f"network {name} (empty, could not be removed)")
        else:
            left.append(f"network {name} ({len(attrs.get('Containers') or {})} containers)")
    left += [f"iptables chain {chain}" for chain in sorted(nbpool_chains() - chains_before)]
    return left


# --- the report -----------------------------------------------------------------------------------------------------


def report(meta: dict, nbpool: dict | None, peer: dict | None, push: dict | None) -> str:
    lines = [
        "# Workshop material from git: one fetch on the host against a clone in every container",
        "",
        f"{meta['date']}, {meta['cores']} cores (os.cpu_count()), docker backend, image {IMAGE}, one sitting "
        f"({meta['minutes']:.0f} min in all). {meta['machine']}.",
        "",
        f"Repository `{REPO}` on a local `git daemon` (git://, this machine): {meta['notebooks']} notebooks "
        f"({meta['notebook_bytes'] / 1024:.0f} KB, {meta['notebook_bytes'] / 1024 / max(meta['notebooks'], 1):.1f} "
        f"KB each), {meta['data_files']} data file{'s' if meta['data_files'] != 1 else ''} of random bytes "
        f"({mib(meta['data_bytes'])}) and a README: "
        f"{meta['files']} files, {mib(meta['tree_bytes'])} in its tree, {mib(meta['packed_bytes'])} packed.",
        "",
    ]
    if nbpool or peer:
        n = (nbpool or peer)["attendees"]
        lines += [
            f"## {n} attendees open the same link at once",
            "",
            "| | attendees | failed | fetches that reached the git server | time to notebook page (nbpool) / "
            "clone done (containers) p50 | p95 | max |",
            "|---|---|---|---|---|---|---|",
        ]
        if nbpool:
            p = nbpool["page"]
            lines.append(f"| nbpool: one fetch on the host, files copied into warm spares | {nbpool['attendees']} | "
                         f"{nbpool['failed']} | {nbpool['fetches']} | {secs(p['p50'])} | {secs(p['p95'])} | "
                         f"{secs(p['max'])} |")
        if peer:
            d = peer["done"]
            lines.append(f"| each container clones (nbgitpuller's way) | {peer['attendees']} | {peer['failed']} | "
                         f"{peer['fetches']} | {secs(d['p50'])} | {secs(d['p95'])} | {secs(d['max'])} |")
        lines += ["", "Where the time goes:", "", "| | p50 | p95 | max |", "|---|---|---|---|"]
        if nbpool:
            for key, what in (("link", "nbpool: click → the link's redirect (fetch, a spare taken, files copied in)"),
                              ("page", "nbpool: click → the notebook page (200)")):
                s = nbpool[key]
                lines.append(f"| {what} | {secs(s['p50'])} | {secs(s['p95'])} | {secs(s['max'])} |")
        if peer:
            for key, what in (("started", "containers: `containers.run` called → returned (created, started)"),
                              ("clone_began", "containers: `containers.run` called → the clone begins"),
                              ("clone", "containers: the clone alone (inside the container)"),
                              ("done", "containers: `containers.run` called → the clone done")):
                s = peer[key]
                lines.append(f"| {what} | {secs(s['p50'])} | {secs(s['p95'])} | {secs(s['max'])} |")
        lines.append("")
        if nbpool:
            lines.append(f"nbpool: {nbpool['own_containers']} attendees in containers of their own, "
                         f"{nbpool['queued']} sent to the waiting line; {nbpool['spares_ready_seconds']:.0f} s "
                         f"from start until its {meta['warm']} spares were ready (cap {meta['cap']}); the burst "
                         f"took {nbpool['burst_seconds']:.1f} s; nbpool's own fetch count "
                         f"(`/api/admin/content`): {nbpool['nbpool_fetches']}. Each attendee was checked "
                         "afterwards: the notebook is the repository's, every data file has its size.")
            lines.append("")
        if peer:
            lines.append(f"Containers: the second git daemon listened on the bridge's gateway {peer['gateway']} "
                         f"with no connection limit ({peer['dropped_by_daemon']} connections dropped); the "
                         f"burst took {peer['burst_seconds']:.1f} s. This side is generous to nbgitpuller: its "
                         "containers only start and clone (no Jupyter server starts, nothing waits for one), so "
                         "its times are a floor for a JupyterHub spawn plus nbgitpuller's clone; it is the "
                         "git server's load (one clone per attendee) that it shows.")
            lines.append("")
        for side, res in (("nbpool", nbpool), ("containers", peer)):
            if res and res["errors"]:
                lines += [f"{side}: errors: " + "; ".join(f"`{e}`" for e in res["errors"]), ""]
    if push:
        v, a, o = push["visible"], push["pull_answered"], push["pour_seconds"]
        lines += [
            "## From `git push` to the new commit in a running attendee's container",
            "",
            f"Workshop `{WORKSHOP}` with `content` = the repository, one attendee holding a container, 2 spares "
            f"beside it; a commit changes `{notebook_path(0)}`, then `POST /api/admin/workshops/{WORKSHOP}/pull`; "
            "the attendee's contents API polled every 0.1 s.",
            "",
            "| pushes | push → visible to the attendee p50 | max | push → pull answered (the fetch) p50 | "
            "pour into every container (nbpool's `seconds`) p50 | containers poured into | failed |",
            "|---|---|---|---|---|---|---|",
            f"| {v['n']} | {secs(v['p50'])} | {secs(v['max'])} | {secs(a['p50'])} | {secs(o['p50'])} | "
            f"{push['pour_containers']} | {push['pour_failed']} |",
            "",
            "Without the admin pull, the schedule fetches every `NbpoolApp.content_interval` seconds (default 300; "
            "0 in this run, the schedule off): a push is then in the containers at most that long plus the "
            "figures above after it lands.",
            "",
        ]
    lines.append(f"Command: `{meta['command']}`")
    lines.append("")
    if "left" in meta:
        lines.append("Left behind: " + ("; ".join(meta["left"]) if meta["left"]
                                        else "nothing (containers, networks, firewall chains)."))
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=40)
    parser.add_argument("--notebooks", type=int, default=50)
    parser.add_argument("--data-mb", type=float, default=20.0)
    parser.add_argument("--warm", type=int, default=40, help="nbpool's spares (Pool.warm)")
    parser.add_argument("--cap", type=int, default=45, help="nbpool's cap (Pool.max_containers)")
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--warm-timeout", type=float, default=1800, help="seconds to wait for the spares")
    parser.add_argument("--parts", default="nbpool,peer,push", help="which parts to run (comma-separated)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if args.warm < args.attendees:
        log(f"note: {args.warm} spares for {args.attendees} attendees: some will wait for a container")

    started = time.monotonic()
    run_id = secrets.token_hex(3)
    networks_before, chains_before = networks(), nbpool_chains()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(), "machine": machine_note(),
            "notebooks": args.notebooks, "warm": args.warm, "cap": args.cap,
            "command": " ".join([".venv/bin/python", "benchmarks/content.py", *sys.argv[1:]])}
    nbpool = peer = push = None
    with tempfile.TemporaryDirectory(prefix="nbpool-content-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = GitServer(tmp / "git")
        try:
            files = repository_files(args.notebooks, args.data_mb)
            server.start()
            server.create(REPO, files)
            encoded = {p: d.encode() if isinstance(d, str) else d for p, d in files.items()}
            meta.update(files=len(files), tree_bytes=sum(len(d) for d in encoded.values()),
                        notebook_bytes=sum(len(d) for p, d in encoded.items() if p.endswith(".ipynb")),
                        data_bytes=sum(len(d) for p, d in encoded.items() if p.startswith("data/")),
                        data_files=sum(1 for p in files if p.startswith("data/")),
                        packed_bytes=packed_bytes(server.root / REPO))
            log(f"repository: {meta['files']} files, {mib(meta['tree_bytes'])}, {mib(meta['packed_bytes'])} packed")
            if "nbpool" in parts:
                nbpool = run_nbpool(server, files, args)
            if "peer" in parts:
                peer = run_peer(server, args, run_id, tmp)
            if "push" in parts:
                push = run_push(server, files, args)
        finally:
            server.stop()
            log("git server stopped")
    meta["minutes"] = (time.monotonic() - started) / 60
    meta["left"] = leftovers(run_id, networks_before, chains_before)
    text = report(meta, nbpool, peer, push)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "content.md").write_text(text)
    (args.out / "content.json").write_text(json.dumps({"meta": meta, "nbpool": nbpool, "containers": peer,
                                                       "push": push}, indent=1, default=str) + "\n")
    print(text)
    failed = any(r and r.get("failed") for r in (nbpool, peer))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
