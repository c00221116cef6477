"""``python -m spawner.report``: write the post-workshop report of a recording as one HTML file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spawner.record.recorder import read_events
from spawner.report.analysis import of_workshop

from . import render

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # start.py's default data_dir

DESCRIPTION = """\
Turn the workshop's recording (<data-dir>/record/events.jsonl, written while
nbpool runs) into a self-contained HTML report: a summary, charts of attendees,
hand-out latency, memory and failures, where the class got stuck (notebook
sections, raised hands, how far attendees got), and sizing advice (warm,
max_containers, mem_limit) for the next workshop, each number with the
recorded figures it came from.

exit status: 0 written, 1 the report could not be written, 2 no recording
(or bad arguments)"""


def _attendees(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spawner.report", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, metavar="DIR",
                   help=f"nbpool's data directory; the events are in DIR/record (default: {DATA_DIR})")
    p.add_argument("--attendees", type=_attendees, metavar="N",
                   help="size the advice for N attendees (default: the recorded peak of concurrent attendees)")
    p.add_argument("--workshop", metavar="NAME",
                   help="the report of one workshop of a service with several (its hand-outs, culls, memory and "
                        "advice for its own pool; default: the whole service)")
    p.add_argument("--out", metavar="FILE",
                   help="where to write the HTML; '-' prints it (default: DIR/record/report.html)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Write the report and print where; 1 or 2 with a one-line message on stderr (see DESCRIPTION)."""
    args = parser().parse_args(argv)
    folder = args.data_dir / "record"
    events = of_workshop(read_events(folder), args.workshop)
    if not events:
        why = "no events recorded in" if folder.is_dir() else "no such folder:"
        print(f"spawner.report: nothing to report, {why} {folder}", file=sys.stderr)
        return 2
    page = render(events, args.attendees)
    if args.out == "-":
        sys.stdout.write(page)
        return 0
    out = Path(args.out) if args.out else folder / "report.html"
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"spawner.report: could not write the report: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
