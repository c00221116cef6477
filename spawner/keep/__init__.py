"""Attendees' work, kept after their session ends (see keeper.WorkKeeper)."""

from .keeper import WorkKeeper
from .store import Kept, KeptStore

__all__ = ["Kept", "KeptStore", "WorkKeeper"]
