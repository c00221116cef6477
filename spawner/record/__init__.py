"""The workshop's record (``recorder``) and what fills it besides the pool's own events (``WorkshopRecord``)."""

from .recorder import Recorder, read_events
from .sampler import WorkshopRecord

__all__ = ["Recorder", "WorkshopRecord", "read_events"]
