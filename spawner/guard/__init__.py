"""The abuse guard: miners, CPU hogs and scanners on a public link, and the bans that follow (issue 25)."""

from .bans import Ban, Bans
from .guard import AbuseGuard

__all__ = ["AbuseGuard", "Ban", "Bans"]
