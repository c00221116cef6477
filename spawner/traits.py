"""Custom trait types for nbpool's settings."""

from __future__ import annotations

import ipaddress
import re

from traitlets import TraitError, TraitType

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_memory(value: str | int | float) -> int:
    """Bytes from a size like ``512M``, ``1.5G``, ``2GiB`` or a plain number of bytes.

    Raises ValueError naming the value when it is not one.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory size")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is not a memory size: it is negative")
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a memory size like 512M, 1.5G or 2147483648")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


class MemorySize(TraitType):
    """A memory size in bytes, settable as ``512M``, ``2G``, ``1.5GiB`` or a number of bytes."""

    default_value = 0
    info_text = "a memory size such as 512M, 2G or a number of bytes"

    def validate(self, obj, value):
        try:
            return parse_memory(value)
        except ValueError as exc:
            name = f"{type(obj).__name__}.{self.name}" if obj is not None else self.name
            raise TraitError(f"{name}: {exc}") from None

    def from_string(self, s: str):
        return s


def format_memory(size: int) -> str:
    """``536870912`` -> ``512M``: the largest unit that divides evenly."""
    for unit in ("T", "G", "M", "K"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def require(proposal, ok: bool, rule: str):
    """The proposed value if ``ok``; else a TraitError naming the setting, the rule and the bad value."""
    if not ok:
        raise TraitError(f"{type(proposal.owner).__name__}.{proposal.trait.name} must be {rule}, "
                         f"not {proposal.value!r}")
    return proposal.value


def require_networks(proposal, example: str) -> list[str]:
    """The proposed list if every item is a network (CIDR, IPv4 or IPv6); else a TraitError naming the first
    that is not, and ``example`` of one that is."""
    for net in proposal.value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            require(proposal, False, f"a list of networks like {example} ({net!r} is not one)")
    return proposal.value
