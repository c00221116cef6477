"""Why recent sessions ended, in words for their visitors: what the ended page tells them."""

from __future__ import annotations

import collections


class EndedSessions:
    """A bounded record of ended sessions by container id: the pool writes, the web app's pages read.

    Only the newest ``keep`` are remembered; an older (or unknown) id has no
    reason, and the ended page then says what usually happens.
    """

    def __init__(self, keep: int = 5000):
        self.keep = keep
        self._reasons: collections.OrderedDict[str, str] = collections.OrderedDict()

    def record(self, cid: str, reason: str) -> None:
        self._reasons[cid] = reason
        self._reasons.move_to_end(cid)
        while len(self._reasons) > self.keep:
            self._reasons.popitem(last=False)

    def reason(self, cid: str) -> str | None:
        return self._reasons.get(cid)
