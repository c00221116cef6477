"""One attendee's session as the teaching team sees it: where they are, how it goes, a raised hand.

Built from what the kernel WebSockets say (``ran``, ``replied``, kernel states)
and what the attendee tells (a name, a hand, "I'm done"). Holds no code but a
cell's first line, and no output but an error's name and first line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PENDING = 256  # runs awaiting their reply, at most (a 'Run all' of a long notebook queues many)

# States of a tile, in the order the view lists them.
HAND, STUCK, WORKING, IDLE, DONE = "hand", "stuck", "working", "idle", "done"


@dataclass
class StuckRule:
    """When an attendee counts as stuck (ClassView's settings)."""

    errors: int = 3  # failed runs in a row (0: never for this reason)
    minutes: float = 10.0  # minutes with runs but no success (0: never for this reason)
    idle_minutes: float = 5.0  # minutes with no run before a tile shows idle


@dataclass
class Run:
    kernel: str
    cell_id: str
    first_line: str
    started: bool = False  # the kernel said it began (execute_input): an idle after it means it ended well


@dataclass
class Seat:
    cid: str
    workshop: str
    number: int  # the default name's number, in order of arrival
    name: str = ""  # chosen by the attendee ('' : "Attendee <number>")
    notebook: str | None = None
    kernel: str = ""  # the kernel of the last run
    cell_id: str = ""
    cell_index: int | None = None
    first_line: str = ""
    outcome: str | None = None  # of the last run: 'ok', 'error', or None (running, or none yet)
    error: str | None = None
    error_line: str | None = None
    cells_run: int = 0
    errors: int = 0
    errors_in_a_row: int = 0
    first_run: float | None = None  # wall-clock
    last_run: float | None = None
    last_success: float | None = None
    kernels: dict[str, str] = field(default_factory=dict)  # kernel id -> 'busy' / 'idle' / ...
    paths: dict[str, str] = field(default_factory=dict)  # kernel id -> notebook path, once known
    asked: dict[str, float] = field(default_factory=dict)  # kernel id -> when its server was asked (monotonic)
    pending: dict[str, Run] = field(default_factory=dict)  # msg id -> the run it asked for
    answered: dict[str, None] = field(default_factory=dict)  # msg ids of the last runs that ended (seen twice: once)
    asking: list[tuple[str, str, str]] = field(default_factory=list)  # server-side runs asked: (kernel, cell, line)
    furthest: dict[str, int] = field(default_factory=dict)  # notebook -> furthest cell index run
    hand: tuple[float, str] | None = None  # (raised at, text)
    hands: int = 0
    done: bool = False
    stuck_since: float | None = None
    stuck_why: tuple[str, str] = ("", "")  # (rule, in words)
    stuck_where: tuple[str, str, int | None, str | None] = ("", "", None, None)  # notebook, section, cell, error
    record: Callable[..., None] = field(default=lambda event, /, **fields: None, repr=False)  # its workshop's record
    slot: Any = field(default=None, repr=False)  # its pool's Slot

    @property
    def display_name(self) -> str:
        return self.name or f"Attendee {self.number}"

    @property
    def busy(self) -> bool:
        return any(state == "busy" for state in self.kernels.values())

    # --- what the kernels say ---------------------------------------------------------------------

    def ran(self, kernel: str, msg_id: str, cell_id: str, first_line: str, now: float) -> None:
        if len(self.pending) >= PENDING:
            self.pending.pop(next(iter(self.pending)))
        self.pending[msg_id] = Run(kernel, cell_id, first_line)
        self.kernel, self.notebook = kernel, self.paths.get(kernel)
        self.cell_id, self.first_line, self.cell_index = cell_id, first_line, None
        self.outcome = self.error = self.error_line = None
        self.last_run = now
        if self.first_run is None:
            self.first_run = now

    def requested(self, kernel: str, cell_id: str, first_line: str) -> None:
        """A server-side run was asked for (its HTTP request): its cell, told when the kernel starts it."""
        if len(self.asking) >= PENDING:
            self.asking.pop(0)
        self.asking.append((kernel, cell_id, first_line))

    def started(self, kernel: str, msg_id: str, first_line: str, now: float) -> None:
        """The kernel began a run: one asked for over this WebSocket (known), or by the server itself (new: its
        cell is the oldest asked on that kernel with that first line, as the server runs them in order)."""
        run = self.pending.get(msg_id)
        if run is not None:
            run.started = True
        elif msg_id not in self.answered:
            cell_id = ""
            for i, (asked_kernel, asked_cell, line) in enumerate(self.asking):
                if asked_kernel == kernel and line == first_line:
                    cell_id = asked_cell
                    del self.asking[i]
                    break
            self.ran(kernel, msg_id, cell_id, first_line, now)
            self.pending[msg_id].started = True

    def finished(self, msg_id: str, now: float) -> Run | None:
        """The kernel went idle after ``msg_id``: a run that began and did not fail ended well."""
        run = self.pending.get(msg_id)
        if run is None or not run.started:
            return None  # (a request aborted behind a failure never began: its idle says nothing)
        return self.replied(msg_id, "ok", "", "", now)

    def replied(self, msg_id: str, status: str, ename: str, evalue: str, now: float) -> Run | None:
        """The run a reply answers (None: not one seen, or aborted behind a failure: neither counts)."""
        run = self.pending.pop(msg_id, None)
        if run is None or status not in ("ok", "error"):
            return None
        self.answered[msg_id] = None
        if len(self.answered) > PENDING:
            self.answered.pop(next(iter(self.answered)))
        self.cells_run += 1
        if run.cell_id == self.cell_id:
            self.outcome = status
            self.error, self.error_line = (ename or "Error", evalue) if status == "error" else (None, None)
        if status == "ok":
            self.last_success = now
            self.errors_in_a_row = 0
        else:
            self.errors += 1
            self.errors_in_a_row += 1
        return run

    # --- the rule ------------------------------------------------------------------------------------

    def stuck_reason(self, rule: StuckRule, now: float) -> tuple[str, str] | None:
        """(rule, in words) when the attendee is stuck now, else None."""
        if rule.errors and self.errors_in_a_row >= rule.errors:
            return "errors", f"{self.errors_in_a_row} errors in a row"
        window = rule.minutes * 60
        if window and self.errors_in_a_row and self.last_run is not None and now - self.last_run < window:
            since = self.last_success if self.last_success is not None else self.first_run
            if since is not None and now - since >= window:
                return "no_success", f"no success for {int((now - since) // 60)} min"
        return None

    def state(self, rule: StuckRule, now: float) -> str:
        if self.hand is not None:
            return HAND
        if self.stuck_since is not None:
            return STUCK
        if self.done:
            return DONE
        last = self.last_run if self.last_run is not None else None
        if not self.busy and (last is None or now - last >= rule.idle_minutes * 60):
            return IDLE
        return WORKING
