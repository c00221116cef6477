"""The class view's model: every attendee session of every workshop, live, for the teaching team.

The proxy's kernel watch (``proxy.kernel_watch``) tells this object of each
run, reply and kernel state as it passes; the attendee's page tells it a name,
a raised hand or "I'm done"; the pools say who is there. Each change bumps
``version``, which the class view's stream waits on. A session's details go
with the session: when it ends, what the record needs (counts, where it got
stuck, hands) is written to the workshop's record and the seat is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from traitlets import Bool, Float, Integer, validate
from traitlets.config import LoggingConfigurable

from ..backoff import every
from ..contents import ContentsError, NotebookFiles
from ..pool.slot import ASSIGNED, Slot
from ..secret import ServerSecret
from .changes import Changes
from .follow import EVERY as FOLLOW_EVERY
from .follow import Follow
from .helpers import NAME_CHARS, HelperAccess
from .outline import MAX_KERNELS, REFRESH, Outline, kernel_paths, read_outline
from .seat import HAND, STUCK, Seat, StuckRule
from .summary import summary

HAND_CHARS = 200
ASK_EVERY = 5.0  # seconds between two askings of one server which notebook a kernel serves
ASKED = 64  # kernels remembered per attendee as asked about


class ClassView(LoggingConfigurable):
    """The teaching team's view of the room (``/class``): who is stuck, who raised a hand, how far all are."""

    enabled = Bool(True, config=True,
                   help="Watch attendees' kernel WebSockets for the class view (cells run, their outcomes, busy or "
                        "idle). Off: the proxy reads nothing of them, and the view shows only names, hands and "
                        "memory.")
    stuck_errors = Integer(3, config=True,
                           help="An attendee is stuck after this many failed runs in a row (any cells: trying "
                                "variations in new cells is as stuck as re-running one). 0: never for this reason.")
    stuck_minutes = Float(10.0, config=True,
                          help="An attendee is also stuck when they ran cells in the last this many minutes, the "
                               "last one failed, and none succeeded for this long. 0: never for this reason.")
    idle_minutes = Float(5.0, config=True,
                         help="Minutes without a run (and no kernel busy) before an attendee's tile shows idle.")
    help_minutes = Float(30.0, config=True,
                         help="How long a helper's access to an attendee's notebook lasts (watch or help, from the "
                              "class view or the attendee's share link), renewable; the attendee and the teaching "
                              "team can end it at any time, and it ends with the session.")

    @validate("stuck_errors")
    def _validate_errors(self, proposal):
        if proposal.value < 0:
            raise ValueError(f"ClassView.stuck_errors must be 0 (never) or more, not {proposal.value}")
        return proposal.value

    @validate("help_minutes")
    def _validate_help(self, proposal):
        if not 0 < proposal.value <= 24 * 60:
            raise ValueError(f"ClassView.help_minutes must be more than 0 and at most 1440 minutes, not "
                             f"{proposal.value}")
        return proposal.value

    @validate("stuck_minutes", "idle_minutes")
    def _validate_minutes(self, proposal):
        if proposal.value < 0:
            raise ValueError(f"ClassView.{proposal.trait.name} must be 0 or more minutes, not {proposal.value}")
        return proposal.value

    def __init__(self, secret: ServerSecret, memory: Callable[[str], int | None],
                 close_tunnels: Callable[[str, object], int] = lambda prefix, tag: 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.memory = memory  # cid -> bytes its container uses (the abuse guard's last reading), or None
        self.pools: Callable[[], list] = lambda: []
        self.seats: dict[str, Seat] = {}
        self.outlines: dict[tuple[str, str], Outline] = {}  # (cid, notebook path) -> its outline
        self.changes = Changes()  # what the class view's streams wait on
        self.runs_seen = 0  # cells run the kernel watch told of (for /metrics)
        self.hands_raised = 0
        self._numbers: dict[str, int] = {}  # workshop -> attendees numbered so far
        self._reading: set[tuple[str, str]] = set()  # outlines being read
        self._tasks: set[asyncio.Task] = set()
        self._signature: tuple = ()
        self._ticker: asyncio.Task | None = None
        self._follower: asyncio.Task | None = None
        # Helpers inside attendees' notebooks; close_tunnels is the proxy's (a grant's end closes its WebSockets).
        self.helpers = HelperAccess(secret, close_tunnels, self.log, lambda: self.help_minutes)
        self.helpers.on_change = self.changed
        self.follow = Follow(lambda: self.pools(), self.seats.get, secret.token_for, self.log)

    @property
    def rule(self) -> StuckRule:
        return StuckRule(self.stuck_errors, self.stuck_minutes, self.idle_minutes)

    # --- running -------------------------------------------------------------------------------------

    def start(self, pools: Callable[[], list]) -> None:
        self.pools = pools
        self._ticker = asyncio.get_running_loop().create_task(every(lambda: 1.0, self.tick, self.log, "class view"))
        self._follower = asyncio.get_running_loop().create_task(
            every(lambda: FOLLOW_EVERY, self._follow_tick, self.log, "follow view"))

    async def _follow_tick(self) -> None:
        self.follow.tick()

    def stop(self) -> None:
        for task in (self._ticker, self._follower):
            if task is not None:
                task.cancel()
        for task in self._tasks:
            task.cancel()

    @property
    def version(self) -> int:
        return self.changes.version

    def changed(self) -> None:
        self.changes.bump()

    async def wait_change(self, version: int, timeout: float) -> None:
        """Returns once ``version`` is out of date, or after ``timeout`` seconds."""
        await self.changes.wait(version, timeout)

    async def tick(self) -> None:
        """Who is there (the pools' sessions), who became stuck or not, what the tiles show that time changes."""
        now = time.time()
        live: dict[str, tuple] = {}
        for pool in self.pools():
            for slot in list(pool.slots.values()):
                if slot.state == ASSIGNED and slot.nonce:
                    live[slot.cid] = (slot, pool)
        for cid in [c for c in self.seats if c not in live]:
            self.end(self.seats.pop(cid), now)
        self.helpers.sweep(set(live), now)
        rule = self.rule
        signature = []
        for cid, (slot, pool) in live.items():
            seat = self.seat(slot, pool)
            self._judge(seat, rule, now)
            memory = self.memory(cid)
            signature.append((cid, seat.state(rule, now), memory >> 22 if memory else 0))
        signature = tuple(signature)
        if signature != self._signature:
            self._signature = signature
            self.changed()

    # --- seats ---------------------------------------------------------------------------------------

    def seat(self, slot: Slot, pool=None) -> Seat:
        seat = self.seats.get(slot.cid)
        if seat is None:
            number = self._numbers.get(slot.workshop, 0) + 1
            self._numbers[slot.workshop] = number
            seat = self.seats[slot.cid] = Seat(slot.cid, slot.workshop, number, slot=slot)
            if pool is not None:
                seat.record = pool.record
        return seat

    def _judge(self, seat: Seat, rule: StuckRule, now: float) -> None:
        reason = seat.stuck_reason(rule, now)
        if reason is not None and seat.stuck_since is None:
            seat.stuck_since, seat.stuck_why = now, reason
            self._stuck_where(seat)
            self.log.info("class view: %s (%s) is stuck: %s", seat.display_name, seat.cid, reason[1])
        elif reason is not None:
            seat.stuck_why = reason
        elif seat.stuck_since is not None:
            self._unstuck(seat, now)

    def _stuck_where(self, seat: Seat) -> None:
        seat.stuck_where = (seat.notebook or "", self.section_of(seat) or "", seat.cell_index, seat.error)

    def _unstuck(self, seat: Seat, now: float) -> None:
        notebook, section, cell, error = seat.stuck_where
        seat.record("stuck", cid=seat.cid, notebook=notebook, section=section, cell=cell, rule=seat.stuck_why[0],
                    error=error, seconds=round(now - seat.stuck_since, 1))
        seat.stuck_since, seat.stuck_why = None, ("", "")

    def end(self, seat: Seat, now: float) -> None:
        """The session ended: what the record keeps of it, then nothing."""
        if seat.hand is not None:
            self._lowered(seat, "ended", now)
        if seat.stuck_since is not None:
            self._unstuck(seat, now)
        if seat.cells_run or seat.hands or seat.done:
            seat.record("class", cid=seat.cid, notebook=seat.notebook or "",
                        furthest=seat.furthest.get(seat.notebook or "") if seat.notebook else None,
                        cells_run=seat.cells_run, errors=seat.errors, hands=seat.hands, done=seat.done)
        for key in [k for k in self.outlines if k[0] == seat.cid]:
            del self.outlines[key]
        self.changed()

    # --- what the kernels say (proxy.kernel_watch.KernelObserver) ------------------------------------------

    def ran(self, slot, kernel: str, msg_id: str, cell_id: str, first_line: str) -> None:
        if not isinstance(slot, Slot) or slot.state != ASSIGNED:
            return
        seat = self.seat(slot)
        self.runs_seen += 1
        seat.ran(kernel, msg_id, cell_id, first_line, time.time())
        if kernel not in seat.paths:
            self._ask_paths(seat, slot)
        else:
            self._place(seat, slot)
        self.changed()

    def replied(self, slot, kernel: str, msg_id: str, status: str, ename: str, evalue: str) -> None:
        seat = self.seats.get(getattr(slot, "cid", ""))
        if seat is None:
            return
        now = time.time()
        if seat.replied(msg_id, status, ename, evalue, now) is not None:
            self._judge(seat, self.rule, now)
            self.changed()

    def requested(self, slot, kernel: str, cell_id: str, first_line: str) -> None:
        if isinstance(slot, Slot) and slot.state == ASSIGNED:
            self.seat(slot).requested(kernel, cell_id, first_line)

    def started(self, slot, kernel: str, msg_id: str, first_line: str) -> None:
        if not isinstance(slot, Slot) or slot.state != ASSIGNED:
            return
        seat = self.seat(slot)
        known = msg_id in seat.pending or msg_id in seat.answered
        seat.started(kernel, msg_id, first_line, time.time())
        if not known and msg_id in seat.pending:  # a run the server asked for (server-side execution)
            self.runs_seen += 1
            if kernel not in seat.paths:
                self._ask_paths(seat, slot)
            else:
                self._place(seat, slot)
            self.changed()

    def finished(self, slot, kernel: str, msg_id: str) -> None:
        seat = self.seats.get(getattr(slot, "cid", ""))
        if seat is not None and seat.finished(msg_id, time.time()) is not None:
            self._judge(seat, self.rule, time.time())
            self.changed()

    def kernel_state(self, slot, kernel: str, state: str) -> None:
        seat = self.seats.get(getattr(slot, "cid", ""))
        if seat is not None and state in ("busy", "idle", "starting", "restarting", "dead") and (
                kernel in seat.kernels or len(seat.kernels) < MAX_KERNELS):
            before = seat.busy
            seat.kernels[kernel] = state
            if seat.busy != before:
                self.changed()

    def kernel_gone(self, slot, kernel: str) -> None:
        """A kernel's WebSocket closed (a tab closed, a laptop asleep): its busy or idle is no longer known, so it
        is not shown busy forever; the next WebSocket to it says again."""
        seat = self.seats.get(getattr(slot, "cid", ""))
        if seat is not None and seat.kernels.pop(kernel, None) == "busy":
            self.changed()

    # --- where a run is -------------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _files(self, slot: Slot) -> NotebookFiles | None:
        if slot.endpoint is None:
            return None
        return NotebookFiles(slot.url("", slot.endpoint.url), self.secret.token_for(slot.cid), timeout=10)

    def _ask_paths(self, seat: Seat, slot: Slot) -> None:
        """Ask the server which notebook the last run's kernel serves (once every ASK_EVERY per kernel)."""
        mono = time.monotonic()
        if mono - seat.asked.get(seat.kernel, -ASK_EVERY) < ASK_EVERY:
            return
        if len(seat.asked) >= ASKED:
            seat.asked.pop(next(iter(seat.asked)))
        seat.asked[seat.kernel] = mono
        self._spawn(self._read_paths(seat, slot))

    async def _read_paths(self, seat: Seat, slot: Slot) -> None:
        files = self._files(slot)
        if files is None:
            return
        try:
            # What the server lists now (the kernels it runs), not all it ever listed: bounded by its answer.
            seat.paths = await kernel_paths(files)
        except ContentsError as exc:
            self.log.debug("class view: no sessions from %s: %s", seat.cid, exc)
            return
        if self.seats.get(seat.cid) is seat and seat.kernel in seat.paths:
            seat.notebook = seat.paths[seat.kernel]
            self._place(seat, slot)
            self.changed()

    def _place(self, seat: Seat, slot: Slot) -> None:
        """The last run's position in its notebook, from the outline (read when it does not know the cell)."""
        notebook = seat.notebook = seat.paths.get(seat.kernel)
        if notebook is None:
            return
        key = (seat.cid, notebook)
        outline = self.outlines.get(key)
        index = outline.cells.get(seat.cell_id) if outline is not None else None
        if index is None and seat.cell_id and key not in self._reading and (
                outline is None or time.monotonic() - outline.read_at >= REFRESH):
            self._reading.add(key)
            self._spawn(self._read_outline(seat, slot, notebook))
        seat.cell_index = index
        if index is not None and index > seat.furthest.get(notebook, -1) and (
                notebook in seat.furthest or len(seat.furthest) < MAX_KERNELS):
            seat.furthest[notebook] = index
        if seat.stuck_since is not None and (not seat.stuck_where[0] or seat.stuck_where[2] is None):
            self._stuck_where(seat)  # stuck before the server said where the run was

    async def _read_outline(self, seat: Seat, slot: Slot, notebook: str) -> None:
        key = (seat.cid, notebook)
        try:
            files = self._files(slot)
            outline = await read_outline(files, notebook) if files is not None else None
        finally:
            self._reading.discard(key)
        if outline is None or self.seats.get(seat.cid) is not seat:
            return
        mine = [k for k in self.outlines if k[0] == seat.cid and k != key]
        for old in mine[:max(0, len(mine) - MAX_KERNELS + 1)]:  # an attendee's many notebooks: the latest kept
            del self.outlines[old]
        self.outlines[key] = outline
        if seat.notebook == notebook:
            self._place(seat, slot)
            self.changed()

    def section_of(self, seat: Seat) -> str | None:
        outline = self.outlines.get((seat.cid, seat.notebook or ""))
        return outline.section(seat.cell_index) if outline is not None else None

    # --- what the attendee says ----------------------------------------------------------------------

    def raise_hand(self, slot: Slot, text: str) -> Seat:
        seat = self.seat(slot)
        text = " ".join(text.split())[:HAND_CHARS]
        if seat.hand is None:
            seat.hands += 1
            self.hands_raised += 1
            seat.record("hand", cid=seat.cid, action="raised", notebook=seat.notebook or "",
                        section=self.section_of(seat) or "")
            self.log.info("class view: %s (%s) raised a hand", seat.display_name, seat.cid)
        seat.hand = (seat.hand[0] if seat.hand is not None else time.time(), text)
        self.changed()
        return seat

    def lower_hand(self, cid: str, by: str) -> Seat | None:
        seat = self.seats.get(cid)
        if seat is not None and seat.hand is not None:
            self._lowered(seat, by, time.time())
            self.changed()
        return seat

    def _lowered(self, seat: Seat, by: str, now: float) -> None:
        seat.record("hand", cid=seat.cid, action="lowered", by=by, seconds=round(now - seat.hand[0], 1),
                    notebook=seat.notebook or "", section=self.section_of(seat) or "")
        seat.hand = None

    def set_name(self, slot: Slot, name: str) -> Seat:
        seat = self.seat(slot)
        seat.name = " ".join(name.split())[:NAME_CHARS]
        self.changed()
        return seat

    def set_done(self, slot: Slot, done: bool) -> Seat:
        seat = self.seat(slot)
        seat.done = done
        self.changed()
        return seat

    # --- views ---------------------------------------------------------------------------------------

    def me(self, seat: Seat) -> dict:
        """What the attendee's own page shows of their seat: also who has access to it now (helpers)."""
        instructor = bool(getattr(seat.slot, "instructor", False))
        return {"id": seat.cid, "name": seat.display_name, "named": bool(seat.name),
                "hand": {"raised_at": seat.hand[0], "text": seat.hand[1]} if seat.hand is not None else None,
                "done": seat.done, "viewer": "instructor" if instructor else "attendee",
                "helpers": [g.view() for g in self.helpers.of(seat.cid)]}

    def tile(self, seat: Seat, rule: StuckRule, now: float, memory_limit: int | None) -> dict:
        memory = self.memory(seat.cid)
        return {
            "id": seat.cid, "workshop": seat.workshop, "name": seat.display_name, "notebook": seat.notebook,
            "cell": {"index": seat.cell_index, "first_line": seat.first_line} if seat.last_run is not None else None,
            "outcome": seat.outcome, "error": seat.error, "error_line": seat.error_line,
            "cells_run": seat.cells_run, "errors_in_a_row": seat.errors_in_a_row,
            "since_success_s": round(now - seat.last_success, 1) if seat.last_success is not None else None,
            "busy": seat.busy, "memory_bytes": memory, "memory_limit_bytes": memory_limit,
            "hand": {"raised_at": seat.hand[0], "text": seat.hand[1]} if seat.hand is not None else None,
            "done": seat.done, "stuck": seat.stuck_since is not None,
            "stuck_reason": seat.stuck_why[1] if seat.stuck_since is not None else None,
            "state": seat.state(rule, now), "section": self.section_of(seat), "last_run_at": seat.last_run,
            "helpers": [g.view() for g in self.helpers.of(seat.cid)],
            "instructor": bool(getattr(seat.slot, "instructor", False)),
        }

    def snapshot(self, workshops: set[str] | None = None) -> dict:
        """The class (``workshops``: only these; None: all) as the view and /api/class show it."""
        now, rule = time.time(), self.rule
        limits = {pool.workshop: int(getattr(pool.backend, "mem_limit", 0) or 0) or None for pool in self.pools()}
        seats = [s for s in self.seats.values() if workshops is None or s.workshop in workshops]
        tiles = [self.tile(s, rule, now, limits.get(s.workshop)) for s in seats]
        order = {HAND: 0, STUCK: 1}
        tiles.sort(key=lambda t: (not t["instructor"], order.get(t["state"], 2),
                                  t["hand"]["raised_at"] if t["hand"] else 0,
                                  -(t["since_success_s"] or 0) if t["state"] == STUCK else 0,
                                  self.seats[t["id"]].number if t["id"] in self.seats else 0))
        attendees = [s for s in seats if not getattr(s.slot, "instructor", False)]
        return {"now": now, "sessions": tiles,
                "summary": summary(attendees, [t for t in tiles if not t["instructor"]], self.outlines)}
