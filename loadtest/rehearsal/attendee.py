"""One simulated attendee of a rehearsal: arrive as a browser does, then work through the notebooks.

For each notebook, in order: upload it if the container lacks it, open it as
the notebook page does (a session, its kernel in the notebook's folder), run
each code cell and think a while before the next. Kernels stay open until the
attendee is done, as tabs do in a classroom. A cell that fails is recorded
and the next one runs (an attendee carries on); a kernel that dies or a cell
that runs past the timeout ends that notebook (the rest is "not run") and the
attendee goes on to the next one.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient

from ..attendee import Attendee, PhaseFailed
from ..cookies import cookie_header
from ..jupyter import KernelClient, KernelDied, KernelError
from ..record import AttendeeRecord
from ..settings import Settings
from .material import Notebook
from .usage import ContainerUse, UsageSampler

# The warning a notebook server prints (to the cell's stderr) instead of output past its rate limits.
RATE_LIMITED = re.compile(r"IOPub (data|message) rate exceeded")
OK, ERROR, TIMEOUT, DIED, NOT_RUN, TOO_MUCH = "ok", "error", "timeout", "kernel died", "not run", "too much output"


@dataclass
class CellRun:
    """One cell as one attendee ran it."""

    notebook: str
    index: int
    status: str  # OK, ERROR, TIMEOUT, DIED, NOT_RUN or TOO_MUCH
    seconds: float | None = None
    error: str = ""  # "NameError: name 'x' is not defined", or why it did not run
    output_bytes: int = 0


@dataclass
class Rehearsed:
    """What one attendee did: its arrival (the load test's record), its cells, its container's use."""

    record: AttendeeRecord
    runs: list[CellRun] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)  # notebooks its container lacked
    use: ContainerUse | None = None
    active_seconds: float | None = None  # from its first notebook opened to its last cell's end
    ended: bool = False  # its container was ended at the end (the rehearsal's containers take no capacity)

    @property
    def arrived(self) -> bool:
        return self.record.failure is None and self.record.container is not None


class RehearsalAttendee:
    def __init__(self, rehearsed: Rehearsed, settings: Settings, http: AsyncHTTPClient, clock: Callable[[], float],
                 notebooks: list[Notebook], usage: UsageSampler, *, cell_timeout: float, max_output: int,
                 end_containers: bool = True):
        self.rehearsed = rehearsed
        self.settings = settings
        self.http = http
        self.clock = clock
        self.notebooks = notebooks
        self.usage = usage
        self.cell_timeout = cell_timeout
        self.max_output = max_output
        self.end_containers = end_containers
        self.kernels: list[KernelClient] = []
        # The same attendee thinks as long on every run: two rehearsals of the same class can be compared.
        self.pace = random.Random(rehearsed.record.index)

    async def visit(self) -> Rehearsed:
        record = self.rehearsed.record
        attendee = Attendee(record, self.settings, self.http, self.clock)
        try:
            user_url = await attendee.arrive()
        except PhaseFailed:
            return self.rehearsed
        base = Attendee.user_base(user_url)
        cookie = cookie_header(attendee.jar, base + "api/contents")
        headers = {"Cookie": cookie} if cookie else {}
        self.usage.track(record.container)
        await self.usage.sample_now(record.container)
        start = self.clock()
        try:
            for notebook in self.notebooks:
                await self._notebook(base, headers, notebook)
        finally:
            self.rehearsed.active_seconds = round(self.clock() - start, 3)
            await asyncio.shield(self._leave())
        return self.rehearsed

    async def _leave(self) -> None:
        self.rehearsed.use = await self.usage.finish(self.rehearsed.record.container)
        for kernel in self.kernels:
            try:
                await asyncio.wait_for(kernel.shutdown(), self.settings.request_timeout)
            except Exception:  # best effort: the container is culled anyway
                kernel.detach()
        if self.end_containers:
            self.rehearsed.ended = await self.usage.end(self.rehearsed.record.container)

    def _not_run(self, notebook: Notebook, cells, why: str) -> None:
        self.rehearsed.runs += [CellRun(notebook.path, cell.index, NOT_RUN, error=why) for cell in cells]

    async def _notebook(self, base: str, headers: dict, notebook: Notebook) -> None:
        kernel = KernelClient(base, headers, timeout=self.settings.kernel_timeout, http_client=self.http)
        try:
            await self._upload(kernel, notebook)
            await kernel.start_session(notebook.path, notebook.kernel)
        except Exception as exc:  # KernelError, or the connection failing under it
            self._not_run(notebook, notebook.cells, f"the notebook did not open: {exc}")
            return
        self.kernels.append(kernel)
        kernel.timeout = self.cell_timeout
        for number, cell in enumerate(notebook.cells):
            if number:
                await asyncio.sleep(self.settings.think * self.pace.uniform(0.5, 1.5))
            run = CellRun(notebook.path, cell.index, OK)
            sent = self.clock()
            try:
                result = await kernel.execute(cell.code, cell_id=cell.cell_id)
            except KernelDied as exc:
                run.status, run.error = DIED, str(exc)
            except KernelError as exc:
                late = "within" in str(exc)
                run.status = TIMEOUT if late else DIED
                run.error = f"still running after {self.cell_timeout:g} s" if late else str(exc)
            except Exception as exc:  # the connection itself failed (the container went away, …)
                run.status, run.error = DIED, f"{type(exc).__name__}: {exc}"
            else:
                run.output_bytes = result.output_bytes
                if result.status != "ok":
                    run.status, run.error = ERROR, result.error
                elif RATE_LIMITED.search(result.stderr):
                    # The notebook server cut the output off at its IOPub rate limit: the attendee sees this
                    # warning instead of what the cell printed.
                    run.status = TOO_MUCH
                    run.error = "the notebook server dropped its output (IOPub rate limit exceeded)"
                elif result.output_bytes > self.max_output:
                    run.status = TOO_MUCH
                    run.error = f"{result.output_bytes} bytes of output, over {self.max_output}"
            run.seconds = round(self.clock() - sent, 3)
            self.rehearsed.runs.append(run)
            if run.status in (DIED, TIMEOUT):
                self._not_run(notebook, notebook.cells[number + 1:], f"after cell {cell.index} ({run.status})")
                return

    async def _upload(self, kernel: KernelClient, notebook: Notebook) -> None:
        """Put the notebook where the attendee would open it, unless the container has it already."""
        path = quote(notebook.path)
        try:
            await kernel.request("GET", f"api/contents/{path}?content=0")
            return
        except KernelError as exc:
            if exc.status != 404:
                raise
        folders = notebook.path.split("/")[:-1]
        for depth in range(1, len(folders) + 1):
            await kernel.request("PUT", f"api/contents/{quote('/'.join(folders[:depth]))}", {"type": "directory"})
        await kernel.request("PUT", f"api/contents/{path}",
                             {"type": "notebook", "format": "json", "content": notebook.content})
        self.rehearsed.uploaded.append(notebook.path)
