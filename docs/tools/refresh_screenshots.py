"""Copy the pictures the browser tests took in their last run (build/screenshots/) over those the documentation
shows (docs/screenshots/), so `make docs` after `make test` shows the pages as they are now; commit the ones
that changed. Only pictures the documentation already has are copied: to add one, copy it there once.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    fresh = ROOT / "build" / "screenshots"
    shown = ROOT / "docs" / "screenshots"
    copied = []
    for shot in sorted(fresh.glob("*.png")) if fresh.is_dir() else []:
        target = shown / shot.name
        if target.exists() and target.read_bytes() != shot.read_bytes():
            shutil.copyfile(shot, target)
            copied.append(shot.name)
    print(f"screenshots: {', '.join(copied) if copied else 'none newer'} from build/screenshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
