"""``python -m loadtest URL --rehearse …``: the dress rehearsal's side of the command line."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from .progress import Progress
from .rehearsal import MaterialError, RehearsalSettings, read_material, rehearse
from .rehearsal.usage import UsageError
from .rehearsal.verdict import FITS
from .settings import Settings, SettingsError

REHEARSAL_RAMP = 30.0  # seconds over which the simulated class arrives, unless --arrival says otherwise


def admin_token(args: argparse.Namespace) -> str:
    if args.admin_token_file:
        try:
            return Path(args.admin_token_file).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"admin token file {args.admin_token_file!r}: {exc.strerror}") from None
    return args.admin_token.strip()


def rehearsal_main(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when the verdict is "fits", 1 when not (or interrupted), 2 for bad arguments or material."""
    try:
        options = RehearsalSettings(admin_token=admin_token(args), attendees_for=args.attendees_for,
                                    cell_timeout=args.cell_timeout, max_output=args.max_output,
                                    keep_containers=args.keep_containers,
                                    material=list(args.rehearse))
        notebooks = read_material(args.rehearse)
    except (SettingsError, MaterialError) as exc:
        print(f"python -m loadtest: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_rehearse(settings, options, notebooks, args))


async def _rehearse(settings: Settings, options: RehearsalSettings, notebooks, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C ends the run but still reports what was measured
        loop.add_signal_handler(sig, stop.set)
    cells = sum(len(nb.cells) for nb in notebooks)
    print(f"rehearsal: {len(notebooks)} notebooks ({cells} code cells) as {settings.users} attendees against "
          f"{settings.url}{settings.prefix} ({settings.arrival_text}, think {settings.think:g} s)", flush=True)
    try:
        result = await rehearse(settings, options, notebooks, progress=None if args.quiet else Progress(sys.stdout),
                                stop=stop)
    except UsageError as exc:
        print(f"python -m loadtest: error: the admin API cannot be used, so nothing was measured: {exc}",
              file=sys.stderr)
        return 2
    print()
    print(result.text())
    if args.json:
        result.write_json(args.json)
        print(f"wrote {args.json}")
    if args.html:
        result.write_html(args.html)
        print(f"wrote {args.html}")
    return 0 if result.verdict().verdict == FITS and not result.interrupted else 1
