"""Simulated workshop attendees for load-testing an nbpool service.

From the command line: ``python -m loadtest URL --users N …`` (see ``--help``).
From Python (in a running event loop)::

    report = await loadtest.run("http://127.0.0.1:8000", users=3, session_seconds=0, think=0)
    assert report.ok, report.table()
    report.summary.row("time to notebook page").p50

``run`` never raises for an attendee's failure; ``report.summary`` counts them
by phase and kind, and ``report.attendees`` holds every attendee's record.
"""

from .runner import Report, run, run_settings
from .settings import Settings, SettingsError

__all__ = ["Report", "Settings", "SettingsError", "run", "run_settings"]
