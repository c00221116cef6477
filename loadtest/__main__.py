"""``python -m loadtest URL --users N …``: simulate workshop attendees against an nbpool service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys

from .progress import Progress
from .rehearse_cli import REHEARSAL_RAMP, rehearsal_main
from .runner import run_settings
from .settings import Settings, SettingsError, parse_arrival

DESCRIPTION = """\
Simulate workshop attendees clicking the public link of an nbpool service.
Each attendee keeps its own cookies and does what a browser does: loads the
landing page, follows /spawn (or /spawn/notebooks/PATH) through the redirects
and the waiting line to its /user/<id>/, loads the notebook page, starts a
kernel over REST, opens the kernel WebSocket, runs cells with think time until
its session is over, then shuts its kernel down (or walks away). Failures are
classified by phase (landing, spawn, page, kernel, execute) and never stop the
run. At the end: a per-phase table (count, failures, p50/p95/p99/max), plus
time to notebook page and time to first cell result."""

EPILOG = """\
exit status:
  0  every attendee got through all phases (--rehearse: the verdict is "fits")
  1  at least one attendee failed, or the run was interrupted (--rehearse: "does not fit")
  2  bad arguments (--rehearse: unreadable notebooks, or the admin API cannot be used)

examples:
  python -m loadtest http://127.0.0.1:8000 --users 20
  python -m loadtest http://127.0.0.1:8000 --users 50 --arrival ramp:30 \\
      --notebook 01-python-introduction.ipynb --json run.json --plot run.html
  python -m loadtest http://127.0.0.1:8000 --rehearse notebook-image/workshops --attendees 10 \\
      --for 60 --admin-token-file data/admin_token --json rehearsal.json --html rehearsal.html"""


def _arrival(text: str) -> float:
    try:
        return parse_arrival(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="the service's public URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--users", "--attendees", dest="users", type=int, required=True, metavar="N",
                   help="number of simulated attendees")
    p.add_argument("--arrival", type=_arrival, default=None, metavar="burst|ramp:SECONDS",
                   help="burst: everyone clicks at t=0 (the default, except for --rehearse: ramp:30); "
                        "ramp:SECONDS: arrivals spread evenly, the first at 0 s and the last at SECONDS")
    p.add_argument("--session-seconds", type=float, default=30.0, metavar="S",
                   help="how long each attendee keeps running cells once its kernel is up; at least one "
                        "cell always runs (default: 30)")
    p.add_argument("--think", type=float, default=3.0, metavar="S",
                   help="seconds between one cell's result and the next cell (default: 3)")
    p.add_argument("--notebook", metavar="PATH",
                   help="a notebook in the container's home, e.g. 01-python-introduction.ipynb: attendees "
                        "open /spawn/notebooks/PATH and run its code cells in order (looping), with the "
                        "kernel its metadata names (the page phase then includes fetching the notebook "
                        "through the contents API); without it they open /spawn and run print(6*7), "
                        "expecting 42")
    p.add_argument("--assets", metavar="FILE",
                   help="a file listing the notebook page's static files, one path under the server's base "
                        "URL per line (e.g. static/notebook/main.js?v=...; '#' starts a comment), as "
                        "`python -m loadtest.assets` records them with a real browser: each attendee fetches "
                        "them after the page, six at a time, accepting gzip and brotli as a browser does (the "
                        "page phase then includes them)")
    p.add_argument("--workshop", metavar="NAME",
                   help="attend one named workshop of the service: its landing page /w/NAME/, its /w/NAME/spawn "
                        "(or /w/NAME/spawn/notebooks/PATH) and its own /w/NAME/api/stats (default: the service's "
                        "one workshop at /)")
    p.add_argument("--walk-away", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of attendees (0-1, spread evenly) that leave without shutting their "
                        "kernel down, as people close a tab; exercises culling (default: 0)")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="times an attendee retries /spawn after a 503 'full' or 429 answer, waiting "
                        "Retry-After (at most 30 s) each time; default 0: the first such answer is a "
                        "spawn failure")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                   help="timeout of each HTTP request (default: 30)")
    p.add_argument("--spawn-timeout", type=float, default=180.0, metavar="S",
                   help="timeout of the whole spawn phase, waiting line included (default: 180)")
    p.add_argument("--kernel-timeout", type=float, default=120.0, metavar="S",
                   help="timeout of the kernel start, and of each cell's execution (default: 120)")
    p.add_argument("--poll-interval", type=float, default=0.75, metavar="S",
                   help="seconds between polls of /api/queue/<ticket> while in line (default: 0.75)")
    p.add_argument("--json", metavar="OUT", help="write every attendee's record, the pool samples and the "
                                                 "summary as JSON to OUT")
    p.add_argument("--plot", metavar="OUT", default="loadtest-plot.html",
                   help="write a self-contained timeline of the run (no CDN, no scripts): an SVG file if "
                        "OUT ends in .svg, else an HTML page with inline SVG (default: loadtest-plot.html; "
                        "--plot '' writes none)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    rehearsal = p.add_argument_group(
        "dress rehearsal", "--rehearse runs the workshop's own notebooks, every code cell in order, as each "
        "simulated attendee (uploading those its container lacks), measures each attendee's container through "
        "the admin API, and says whether the service carries the workshop and with which settings")
    rehearsal.add_argument("--rehearse", nargs="+", metavar="FOLDER_OR_NOTEBOOK",
                           help="notebooks, or folders of them (their subfolders kept in the home folder)")
    rehearsal.add_argument("--for", dest="attendees_for", type=int, metavar="N",
                           help="the workshop's size the verdict and advice are for (default: --attendees)")
    rehearsal.add_argument("--admin-token", metavar="TOKEN", default=os.environ.get("NBPOOL_ADMIN_TOKEN", ""),
                           help="the service's admin token (default: $NBPOOL_ADMIN_TOKEN)")
    rehearsal.add_argument("--admin-token-file", metavar="FILE",
                           help="read the admin token from FILE, e.g. data/admin_token of `make run`")
    rehearsal.add_argument("--cell-timeout", type=float, default=300.0, metavar="S",
                           help="a cell still running after S seconds is a problem, and ends its notebook "
                                "(default: 300)")
    rehearsal.add_argument("--max-output", type=int, default=2 * 2**20, metavar="BYTES",
                           help="a cell printing more than BYTES of output is a problem (default: 2 MiB)")
    rehearsal.add_argument("--keep-containers", action="store_true",
                           help="leave the attendees' containers to the service's idle cull (default: each one "
                                "is ended through the admin API when its attendee is done)")
    rehearsal.add_argument("--html", metavar="OUT", help="write the rehearsal's report as an HTML page to OUT")
    return p


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C stops the run but still prints the report of what happened so far.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress = None if args.quiet else Progress(sys.stdout)
    print(f"loadtest: {settings.users} attendees against {settings.url}{settings.prefix} ({settings.arrival_text})",
          flush=True)
    result = await run_settings(settings, progress=progress, stop=stop)
    print()
    print(result.table())
    if stop.is_set():
        print("the run was interrupted")
    if result.service.get("stats_samples") == 0:
        print(f"note: no /api/stats samples ({result.service.get('stats_last_error')})")
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        result.write_plot(args.plot)
        print(f"wrote {args.plot}")
    return 0 if result.ok and not stop.is_set() else 1


def read_assets(path: str) -> tuple[str, ...]:
    try:
        lines = open(path).read().splitlines()
    except OSError as exc:
        raise SettingsError(f"assets file {path!r}: {exc.strerror}") from None
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def raise_open_files_limit(users: int) -> None:
    """Each attendee holds up to seven sockets (HTTP, assets, kernel WebSocket): lift the soft limit if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8 * users + 64  # the page's static files come six connections at a time
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            print(f"warning: only {new} open files allowed (ulimit -n); {users} attendees may need {wanted}",
                  file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings(
            url=args.url, users=args.users,
            ramp=args.arrival if args.arrival is not None else REHEARSAL_RAMP if args.rehearse else 0.0,
            session_seconds=args.session_seconds,
            think=args.think, notebook=args.notebook, walk_away=args.walk_away, retries=args.retries,
            request_timeout=args.request_timeout, spawn_timeout=args.spawn_timeout,
            kernel_timeout=args.kernel_timeout, poll_interval=args.poll_interval,
            assets=read_assets(args.assets) if args.assets else (), workshop=args.workshop,
        )
    except SettingsError as exc:
        parser().error(str(exc))
    raise_open_files_limit(settings.users)
    if args.rehearse:
        return rehearsal_main(settings, args)
    return asyncio.run(_main(settings, args))


if __name__ == "__main__":
    sys.exit(main())
