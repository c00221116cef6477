"""Several workshops on one service: their settings, pools, schedules and pushed updates."""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .registry import Workshop, Workshops
from .spec import WorkshopError, WorkshopSpec, parse_workshops

__all__ = ["Workshop", "WorkshopError", "WorkshopSpec", "Workshops", "parse_workshops", "service_zone"]


def service_zone(name: str) -> tzinfo:
    """The time zone schedule times are read in: ``name`` (IANA, e.g. 'Europe/Berlin'), or this machine's."""
    if not name:
        from datetime import datetime
        return datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone such as 'Europe/Berlin' or 'UTC'") from None
