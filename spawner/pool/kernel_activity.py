"""When a container's kernels last did something, as the proxy's kernel watch sees it (for the embedded cull).

A web page's live code (Thebe, MyST, Jupyter Book) keeps its server busy with
polls (``GET api/kernels`` every 10 s while the tab is open), which
``cull_idle`` counts as activity: such a container would live until
``cull_max_age``. What matters for it is whether anyone runs code, so this
observer stamps the container (the route's data, a ``Slot``) whenever one of
its kernels is asked to run, starts a run, answers one or turns busy, and
keeps which kernels are busy (a long run is never cut short). Everything is
passed on to the class view when it watches too.
"""

from __future__ import annotations

from collections.abc import Callable

from .slot import Slot


class KernelActivity:
    """A ``proxy.kernel_watch.KernelObserver`` that stamps ``Slot.kernel_seen`` and ``Slot.busy_kernels``."""

    def __init__(self, clock: Callable[[], float], then=None):
        self.clock = clock  # the pool's monotonic clock
        self.then = then  # the class view, or None

    def _seen(self, owner) -> None:
        if isinstance(owner, Slot):
            owner.kernel_seen = self.clock()

    def ran(self, owner, kernel: str, msg_id: str, cell_id: str, first_line: str) -> None:
        self._seen(owner)
        if self.then is not None:
            self.then.ran(owner, kernel, msg_id, cell_id, first_line)

    def replied(self, owner, kernel: str, msg_id: str, status: str, ename: str, evalue: str) -> None:
        self._seen(owner)
        if self.then is not None:
            self.then.replied(owner, kernel, msg_id, status, ename, evalue)

    def requested(self, owner, kernel: str, cell_id: str, first_line: str) -> None:
        self._seen(owner)
        if self.then is not None:
            self.then.requested(owner, kernel, cell_id, first_line)

    def started(self, owner, kernel: str, msg_id: str, first_line: str) -> None:
        self._seen(owner)
        if self.then is not None:
            self.then.started(owner, kernel, msg_id, first_line)

    def finished(self, owner, kernel: str, msg_id: str) -> None:
        self._seen(owner)
        if self.then is not None:
            self.then.finished(owner, kernel, msg_id)

    def kernel_state(self, owner, kernel: str, state: str) -> None:
        if isinstance(owner, Slot):
            if state == "busy":
                owner.busy_kernels.add(kernel)
                owner.kernel_seen = self.clock()
            elif kernel in owner.busy_kernels:  # idle, or it died or restarts: not running anyone's code
                owner.busy_kernels.discard(kernel)
                owner.kernel_seen = self.clock()
        if self.then is not None:
            self.then.kernel_state(owner, kernel, state)

    def kernel_gone(self, owner, kernel: str) -> None:
        if isinstance(owner, Slot):
            owner.busy_kernels.discard(kernel)  # its busy state is no longer known (its tab closed)
        if self.then is not None:
            self.then.kernel_gone(owner, kernel)
