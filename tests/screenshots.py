"""Pictures of the pages attendees and the teaching team see, taken by the browser tests as they pass.

They go to build/screenshots/ (never into the source tree during a test run); `make docs` copies those the
documentation shows over docs/screenshots/, so a `make docs` after `make test` shows the pages as they are now
(commit the changed pictures). tests/test_docs.py checks that every picture the documentation shows is one a
test takes.
"""

from __future__ import annotations

from pathlib import Path

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


def shoot(target, name: str) -> None:
    """Save a Playwright page or locator as build/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SHOTS / f"{name}.png"))
