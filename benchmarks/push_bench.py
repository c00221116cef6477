"""Scenario: the instructor pushes an updated notebook into every running container of a workshop.

    .venv/bin/python benchmarks/push_bench.py [--containers 40] [--edited 4] [--spares 2] [--out benchmarks/results]

Starts nbpool with one named workshop (``--containers`` spares, a cap of
``--containers`` + ``--spares``), waits until the spares are ready, then
``--containers`` attendees (each with its own cookie jar, as separate
browsers) take one each through ``/w/<name>/spawn``; the pool refills up to
its cap, so ``--spares`` spares run beside the attendees. ``--edited`` of the
attendees first change the target notebook through the proxy (``PUT
/user/<id>/api/contents/<path>`` with their session cookie and an Origin
header, as the notebook page does when it saves). Then it pushes a modified
copy of the notebook (``POST /api/admin/workshops/<name>/push``, JSON) and
polls ``GET`` on the same URL until the push has finished.

Reports the push's own ``seconds`` and the time measured here (POST sent to
the first answer showing it finished), done / failed, and how many containers
had the notebook replaced, got the new version beside the attendee's
(``<name> (updated).ipynb``), got it new or had it already. Then checks, through the
contents API as the attendees: an untouched container has the new content;
an edited one kept the attendee's version and has the new one beside it; a
spare has the new content. Writes ``push.md`` and ``push.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from running_service import ROOT, RunningService
from workshop_burst import machine_note

WORKSHOP = "push-demo"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) nbpool-benchmark/1"  # not a link-preview bot
PUSHED_MARK = "Pushed by the instructor"
ATTENDEE_MARK = "Edited by attendee"


class Attendee:
    """One browser: its own cookie jar; follows /w/<name>/spawn to its container."""

    def __init__(self, service: RunningService):
        self.service = service
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.user_url = ""  # http://…/user/<id>/
        self.cid = ""

    def request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"User-Agent": USER_AGENT, **(headers or {})})
        return self.opener.open(req, timeout=60)

    def take(self) -> None:
        with self.request("GET", f"{self.service.url}/w/{WORKSHOP}/spawn") as r:
            final = r.geturl()
        path = final.split("/user/", 1)
        if len(path) != 2:
            raise RuntimeError(f"/w/{WORKSHOP}/spawn ended at {final}, not a container")
        self.cid = path[1].split("/", 1)[0]
        self.user_url = f"{self.service.url}/user/{self.cid}/"

    def contents(self, path: str) -> dict | None:
        try:
            with self.request("GET", f"{self.user_url}api/contents/{quote(path)}?content=1",
                              headers={"Accept": "application/json"}) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def save(self, path: str, notebook: dict) -> None:
        body = json.dumps({"type": "notebook", "format": "json", "content": notebook}).encode()
        with self.request("PUT", f"{self.user_url}api/contents/{quote(path)}", body,
                          {"Content-Type": "application/json", "Origin": self.service.url}) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"PUT {path} answered {r.status}")


def with_cell(notebook: dict, text: str) -> dict:
    """A copy of ``notebook`` with a markdown cell saying ``text`` at the top."""
    copy = json.loads(json.dumps(notebook))
    cell = {"cell_type": "markdown", "metadata": {}, "source": [text]}
    if copy.get("nbformat", 4) >= 4 and copy.get("nbformat_minor", 0) >= 5:
        cell["id"] = f"bench-{abs(hash(text)) % 10**8}"
    copy["cells"].insert(0, cell)
    return copy


def first_text(model: dict | None) -> str:
    """The first cell's source of a notebook model from the contents API ('' if none)."""
    if not model:
        return ""
    cells = (model.get("content") or {}).get("cells") or []
    if not cells:
        return ""
    src = cells[0].get("source", "")
    return src if isinstance(src, str) else "".join(src)


def admin_push(service: RunningService, files: dict[str, str]) -> tuple[int, dict]:
    body = json.dumps({"files": files}).encode()
    req = urllib.request.Request(f"{service.url}/api/admin/workshops/{WORKSHOP}/push", data=body, method="POST",
                                 headers={"Authorization": f"token {service.admin_token}", "Origin": service.url,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40, help="attendees holding a container (default 40)")
    parser.add_argument("--edited", type=int, default=4,
                        help="attendees who change the notebook before the push (default 4)")
    parser.add_argument("--spares", type=int, default=2, help="room above the attendees: spares running beside them")
    parser.add_argument("--concurrency", type=int, default=4, help="Pool.spawn_concurrency")
    parser.add_argument("--notebook", default="01-python-introduction.ipynb",
                        help="the notebook pushed (a bundled one, in the attendees' home)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="push", help="result files' name (default push: push.md, push.json)")
    args = parser.parse_args()
    note = machine_note()
    if not 0 < args.edited < args.containers:
        parser.error("--edited must be at least 1 and fewer than --containers (one untouched container is checked)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    original = json.loads((ROOT / "notebook-image" / "workshops" / args.notebook).read_text())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    pushed = with_cell(original, f"**{PUSHED_MARK}** at {stamp}: exercise 3 now has a hint.")
    pushed_text = json.dumps(pushed, indent=1) + "\n"
    beside = str(PurePosixPath(args.notebook).with_name(f"{PurePosixPath(args.notebook).stem} (updated)"
                                                         f"{PurePosixPath(args.notebook).suffix}"))
    cap = args.containers + args.spares
    spec = {WORKSHOP: {"display_name": "Push benchmark", "warm": args.containers, "max_containers": cap,
                       "landing_path": "tree"}}
    extra = [f"NbpoolApp.workshops = {spec!r}"]
    service = RunningService(warm=args.containers, cap=cap, concurrency=args.concurrency, extra=extra, name="push")
    return run(service, args, original, pushed_text, beside, cap, stamp, note, out)


def run(service: RunningService, args, original: dict, pushed_text: str, beside: str, cap: int, stamp: str,
        note: str, out: Path) -> int:
    with service:
        print(f"{args.containers} spares ready {service.start_seconds:.1f}s after the start; "
              f"{args.containers} attendees take one each", file=sys.stderr)
        attendees = [Attendee(service) for _ in range(args.containers)]
        t0 = time.monotonic()
        for a in attendees:
            a.take()
        taken = time.monotonic() - t0
        if len({a.cid for a in attendees}) != len(attendees):
            raise SystemExit("two attendees got the same container")
        edited, untouched = attendees[:args.edited], attendees[args.edited:]
        for i, a in enumerate(edited):
            a.save(args.notebook, with_cell(original, f"{ATTENDEE_MARK} {i}: my notes."))
            if ATTENDEE_MARK not in first_text(a.contents(args.notebook)):
                raise SystemExit(f"attendee {i}'s edit of {args.notebook} did not stick")
        # Let the pool refill its spares up to the cap, so the push meets spares too (as it would on the day).
        service.wait_until(lambda: service.stats()["available"] >= args.spares, 300, "spares refilled", every=0.5)
        time.sleep(2)
        before = service.stats()["workshops"][WORKSHOP]
        print(f"before the push: {before['assigned']} assigned, {before['available']} spares; "
              f"{args.edited} attendees edited {args.notebook}", file=sys.stderr)

        sent = time.monotonic()
        status, answer = admin_push(service, {args.notebook: pushed_text})
        if status != 202:
            raise SystemExit(f"push answered {status}: {answer}")
        first = answer["push"]
        job = first
        while job.get("finished") is None:
            time.sleep(0.1)
            code, body = service.get_json(f"/api/admin/workshops/{WORKSHOP}/push", token=True)
            if code != 200:
                raise SystemExit(f"push progress answered {code}: {body}")
            job = body["push"]
        measured = time.monotonic() - sent
        if job["id"] != first["id"]:
            raise SystemExit(f"the progress shows push {job['id']}, not {first['id']}")

        results = job["results"]
        counts = {k: sum(1 for r in results if args.notebook in r[k]) for k in ("replaced", "beside", "new",
                                                                                   "current")}
        by_state = {}
        for r in results:
            row = by_state.setdefault(r["state"], {"containers": 0, "replaced": 0, "beside": 0, "new": 0,
                                                   "current": 0, "failed": 0})
            row["containers"] += 1
            row["failed"] += r["result"] == "failed"
            for k in ("replaced", "beside", "new", "current"):
                row[k] += args.notebook in r[k]
        edited_ids = {a.cid for a in edited}
        wrong = [r["cid"] for r in results if (r["cid"] in edited_ids) != (args.notebook in r["beside"])]

        # Check a few containers through the contents API, as their attendees.
        checks = []
        for label, a in (("untouched", untouched[0]), ("untouched", untouched[-1]), ("edited", edited[0]),
                         ("edited", edited[-1])):
            own = first_text(a.contents(args.notebook))
            new = first_text(a.contents(beside))
            if label == "untouched":
                ok = PUSHED_MARK in own and not new
                seen = f"{args.notebook}: pushed version" if PUSHED_MARK in own else f"{args.notebook}: {own[:60]!r}"
                seen += f"; {beside}: " + ("absent" if not new else "present")
            else:
                ok = ATTENDEE_MARK in own and PUSHED_MARK in new
                seen = (f"{args.notebook}: " + ("attendee's version" if ATTENDEE_MARK in own else repr(own[:60]))
                        + f"; {beside}: " + ("pushed version" if PUSHED_MARK in new else repr(new[:60] or "absent")))
            checks.append({"container": a.cid, "kind": label, "ok": ok, "seen": seen})
        spare_cids = [r["cid"] for r in results if r["state"] == "spare"]
        if args.spares:  # a new attendee takes a spare: its notebook must be the pushed one
            late = Attendee(service)
            late.take()
            late_own = first_text(late.contents(args.notebook))
            checks.append({"container": late.cid, "kind": "spare taken after the push"
                           + (" (was a spare during the push)" if late.cid in spare_cids else " (started after)"),
                           "ok": PUSHED_MARK in late_own,
                           "seen": f"{args.notebook}: " + ("pushed version" if PUSHED_MARK in late_own
                                                          else repr(late_own[:60]))})
        log_lines = [line for line in service.logs().splitlines() if f"push {job['id']}" in line]

    data = {"date": stamp, "cpu_count": os.cpu_count(), "machine": note, "containers": args.containers,
            "edited": args.edited,
            "spares": args.spares, "notebook": args.notebook, "bytes": len(pushed_text.encode()),
            "take_seconds": taken, "push_seconds": job["seconds"], "measured_seconds": measured,
            "push_containers": job["containers"], "done": job["done"], "failed": job["failed"],
            "pending": job["pending"], "counts": counts, "by_state": by_state, "misclassified": wrong,
            "checks": checks, "log": log_lines, "failures": [r for r in results if r["result"] == "failed"]}
    (out / f"{args.name}.json").write_text(json.dumps(data, indent=1) + "\n")

    lines = ["# Pushing an updated notebook into a running workshop", "",
             f"{stamp}, {os.cpu_count()} cores (os.cpu_count()), docker backend, image nbpool/notebook:latest. "
             f"One workshop, {args.containers} attendees holding a container (taken through `/w/{WORKSHOP}/spawn`, "
             f"one cookie jar each), {args.spares} spares beside them (cap {cap}); {args.edited} attendees first "
             f"saved their own change of `{args.notebook}` through the proxy. Pushed: `{args.notebook}` with a "
             f"new first cell ({len(pushed_text.encode()) / 1024:.0f} KiB), JSON body, "
             "`POST /api/admin/workshops/<name>/push`, then `GET` every 0.1 s until `finished`. "
             f"The machine is shared: {note}.", "",
             "| containers | done / failed | push's own `seconds` | measured here (POST → finished seen) "
             "| replaced | put beside (attendee's kept) | new | already current |",
             "|---|---|---|---|---|---|---|---|",
             f"| {job['containers']} | {job['done']} / {job['failed']} | {seconds(job['seconds'])} | "
             f"{seconds(measured)} | {counts['replaced']} | {counts['beside']} | {counts['new']} | "
             f"{counts['current']} |", "",
             "| state when the push began | containers | replaced | beside | new | current | failed |",
             "|---|---|---|---|---|---|---|"]
    for state, row in sorted(by_state.items()):
        lines.append(f"| {state} | {row['containers']} | {row['replaced']} | {row['beside']} | {row['new']} | "
                     f"{row['current']} | {row['failed']} |")
    lines += ["", "Edited containers got the new version beside the attendee's, and only they: "
              + ("yes" if not wrong else f"NO ({len(wrong)} containers misclassified: {', '.join(wrong)})"), "",
              "Checked through the contents API, as each container's attendee:", "",
              "| container | kind | what is there | ok |", "|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['container']} | {c['kind']} | {c['seen']} | {'yes' if c['ok'] else 'NO'} |")
    if log_lines:
        lines += ["", "nbpool's log:", "", "```", *log_lines, "```"]
    if data["failures"]:
        lines += ["", "Failed containers:", *[f"- {r['cid']} ({r['state']}): {r['error']}" for r in data["failures"]]]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / f"{args.name}.md").write_text(text)
    print(f"wrote {out / (args.name + '.md')} and {out / (args.name + '.json')}")
    ok = job["failed"] == 0 and job["pending"] == 0 and not wrong and all(c["ok"] for c in checks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
