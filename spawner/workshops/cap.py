"""The service-wide cap across workshops (``NbpoolApp.total_containers``), and each workshop's share of it.

The rule: workshop *i*'s share is ``floor(total * max_i / sum of every
workshop's max_containers)`` (never above its own ``max_containers``). Places
beyond the shares go to whoever asks first, but the unused part of every
other workshop's share is held back for it: a workshop may start a container
while ``free - sum of the others' unused shares`` is above zero. So each
workshop can always reach its share, however busy the others are, and none
waits while places nobody is owed stand empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class TotalCap:
    """Consulted by every workshop's pool before it starts a container (Pool.shared_room)."""

    def __init__(self, total: int, pools: Callable[[], list]):
        self.total = total  # 0: no service-wide cap
        self.pools = pools  # every pool holding containers (retiring workshops' too)

    def shares(self) -> dict[object, int]:
        """Each live (not retired) pool's share of the total."""
        live = [p for p in self.pools() if not p.retired]
        asked = sum(p.max_containers for p in live)
        if not self.total or not asked:
            return {p: p.max_containers for p in live}
        return {p: min(p.max_containers, math.floor(self.total * p.max_containers / asked)) for p in live}

    def room(self, pool) -> int:
        """Containers ``pool`` may start under the total now (its own max_containers is checked apart)."""
        if not self.total:
            return 1 << 30
        pools = self.pools()
        free = self.total - sum(len(p.slots) for p in pools)
        shares = self.shares()
        owed = sum(max(0, shares[p] - len(p.slots)) for p in shares if p is not pool)
        return max(0, free - owed)

    def freed(self, pool) -> None:
        """A container of ``pool`` is gone: the others may start theirs now (waiting visitors first)."""
        if self.total:
            for other in self.pools():
                if other is not pool and not other.closing:
                    other.refill()
