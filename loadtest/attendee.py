"""One simulated workshop attendee, doing what a browser does, phase by phase.

landing page -> ``/spawn`` (redirects, and the waiting line when no spare is
ready) -> the notebook page under ``/user/<id>/`` -> start a kernel over REST
and open its WebSocket through the proxy -> run cells with think time until
the session is over -> shut the kernel down, or walk away.

Redirects are followed by hand so each one is timed and classified. Every
failure is recorded against the phase it happened in and ends only this
attendee's visit; nothing here raises past ``Attendee.visit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar
from urllib.parse import quote, urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from .cookies import add_cookie_header, cookie_header, extract_cookies
from .jupyter import KernelClient, KernelError
from .record import (
    EXECUTE,
    FROM_QUEUE,
    FROM_SPARE,
    KERNEL,
    LANDING,
    LEAVE,
    PAGE,
    SPAWN,
    AttendeeRecord,
    Failure,
    PhaseTiming,
)
from .settings import DEFAULT_CELL, DEFAULT_CELL_OUTPUT, Settings

log = logging.getLogger("loadtest")

USER_PATH = re.compile(r"^(?P<prefix>.*?/user/(?P<cid>[^/]+)/)")
WAIT_PATH = re.compile(r"/spawn/wait/(?P<ticket>[^/?#]+)")
REDIRECTS = (301, 302, 303, 307, 308)
MAX_HOPS = 10
# Browser-like, and free of the substrings nbpool treats as link-preview bots ("bot", "curl/", …),
# which get the landing page from /spawn instead of a container.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) nbpool-loadtest/1"
BROWSER_ENCODINGS = "gzip, deflate, br"  # what Chromium sends
BROWSER_CONNECTIONS = 6  # a browser's connections per host over HTTP/1.1


class PhaseFailed(Exception):
    """Raised inside a phase to end the visit; ``kind`` is what the failure is counted as."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Cell:
    code: str
    expect: str | None = None  # stripped output the cell must print, when known


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message) for an exception raised inside a phase."""
    if isinstance(exc, PhaseFailed):
        return exc.kind, str(exc)
    if isinstance(exc, KernelError):
        text = str(exc)
        if exc.status is not None:
            return f"http {exc.status}", text
        if "within" in text:
            return "timeout", text
        if "closed" in text or "websocket" in text:
            return "websocket", text
        return "kernel-error", text
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or (
        isinstance(exc, HTTPClientError) and exc.code == 599 and "Timeout" in str(exc)
    ):
        return "timeout", str(exc) or "timed out"
    if isinstance(exc, (OSError, HTTPClientError)):
        return "connection", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (ValueError, KeyError)):
        return "bad-response", f"{type(exc).__name__}: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


def retry_after(response: HTTPResponse, default: float = 5.0) -> float:
    """Seconds from a Retry-After header (delta-seconds form); ``default`` when absent or a date."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return default


class Attendee:
    """Visit the service once; the outcome is in ``self.record``.

    ``clock`` returns seconds since the run started; ``http`` is the run's
    shared client (its ``max_clients`` sized for every attendee at once).
    """

    def __init__(self, record: AttendeeRecord, settings: Settings, http: AsyncHTTPClient,
                 clock: Callable[[], float]):
        self.record = record
        self.settings = settings
        self.http = http
        self.clock = clock
        self.jar = CookieJar()  # this attendee's alone, as a browser profile's
        self.kernel: KernelClient | None = None
        self._phase: str | None = None

    # -- bookkeeping ------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a phase; an exception inside it becomes this attendee's failure, then ``PhaseFailed``."""
        timing = PhaseTiming(start=self.clock())
        self.record.phases[name] = timing
        self._phase = name
        try:
            yield timing
        except asyncio.CancelledError:
            self._fail(name, timing, "interrupted", "the run was interrupted")
            raise
        except PhaseFailed as exc:
            self._fail(name, timing, exc.kind, str(exc))
            raise
        except Exception as exc:
            kind, message = classify(exc)
            if kind == "error":
                log.exception("attendee %d: unexpected error in %s", self.record.index, name)
            self._fail(name, timing, kind, message)
            raise PhaseFailed(kind, message) from exc
        timing.end, timing.ok = self.clock(), True

    def _fail(self, name: str, timing: PhaseTiming, kind: str, message: str) -> None:
        timing.end, timing.ok = self.clock(), False
        self.record.failure = Failure(name, kind, message, timing.end)

    async def fetch(self, url: str, *, method: str = "GET", timeout: float | None = None,
                    accept: str = "text/html", encoded: bool = False) -> HTTPResponse:
        """One request with this attendee's cookies; no redirect following, no raise on HTTP errors.

        ``encoded``: accept gzip and brotli as a browser does, and keep the body as it came.
        """
        timeout = self.settings.request_timeout if timeout is None else max(0.1, timeout)
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if encoded:
            headers["Accept-Encoding"] = BROWSER_ENCODINGS
        request = HTTPRequest(url, method=method, headers=headers, decompress_response=not encoded,
                              follow_redirects=False, request_timeout=timeout, connect_timeout=min(timeout, 10.0))
        add_cookie_header(self.jar, request)
        start = self.clock()
        try:
            response = await self.http.fetch(request, raise_error=False)
        except Exception:
            self._event(start, f"{method} {urlsplit(url).path} -> no response")
            raise
        extract_cookies(self.jar, request, response)
        self._event(start, f"{method} {urlsplit(url).path} -> {response.code}")
        return response

    def _event(self, t: float, text: str) -> None:
        self.record.events.append((round(t, 6), self._phase or "", text))

    # -- the visit --------------------------------------------------------

    async def visit(self) -> AttendeeRecord:
        """Run every phase in order; returns the record (never raises, except when cancelled)."""
        try:
            user_url = await self.arrive()
            cells = await self._start_kernel(user_url)
            await self._execute(cells)
            await self._leave()
        except PhaseFailed:
            await self._cleanup()
        except asyncio.CancelledError:
            await asyncio.shield(self._cleanup())
            raise
        return self.record

    async def arrive(self) -> str:
        """Click the link and get the notebook page: landing, spawn (the waiting line included), page.
        Returns the /user/<id>/… URL; a failure is recorded and raised as ``PhaseFailed``."""
        await self._landing()
        user_url = await self._spawn()
        await self._page(user_url)
        return user_url

    async def _follow(self, url: str, what: str) -> tuple[str, HTTPResponse]:
        """GET ``url`` following redirects (bounded); returns the final URL and response."""
        for _ in range(MAX_HOPS):
            response = await self.fetch(url)
            if response.code not in REDIRECTS:
                return url, response
            url = urljoin(url, response.headers.get("Location", ""))
        raise PhaseFailed("redirect-loop", f"{what}: more than {MAX_HOPS} redirects, last to {urlsplit(url).path}")

    async def _landing(self) -> None:
        with self.phase(LANDING):
            url, response = await self._follow(f"{self.settings.url}{self.settings.prefix}/", "landing page")
            if response.code != 200:
                raise PhaseFailed(f"http {response.code}",
                                  f"landing page {urlsplit(url).path} answered {response.code}")

    def _spawn_url(self) -> str:
        if self.settings.notebook:
            return f"{self.settings.url}{self.settings.prefix}/spawn/notebooks/{quote(self.settings.notebook)}"
        return f"{self.settings.url}{self.settings.prefix}/spawn"

    async def _spawn(self) -> str:
        """Through /spawn to the container; returns the /user/<id>/… URL it redirected to."""
        settings = self.settings
        with self.phase(SPAWN) as timing:
            deadline = timing.start + settings.spawn_timeout
            url = self._spawn_url()
            wait_url: str | None = None  # set once /spawn put us in line
            use_api = True  # poll /api/queue; fall back to the HTML waiting page if it is missing
            hops = 0
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise PhaseFailed("timeout", self._timeout_message())
                response = await self.fetch(url, timeout=min(settings.request_timeout, remaining))
                code = response.code
                if code in REDIRECTS:
                    target = urljoin(url, response.headers.get("Location", ""))
                    path = urlsplit(target).path
                    user = USER_PATH.match(path)
                    if user:
                        self.record.container = user.group("cid")
                        self.record.served = FROM_QUEUE if wait_url else FROM_SPARE
                        return target
                    wait = WAIT_PATH.search(path)
                    if wait and wait_url is None:
                        wait_url = target
                        self.record.queued_at = self.clock()
                    if wait and use_api:
                        url, use_api = await self._wait_in_line(wait.group("ticket"), target, deadline)
                        continue
                    hops += 1
                    if hops > MAX_HOPS:
                        raise PhaseFailed("redirect-loop", f"more than {MAX_HOPS} redirects, last to {path}")
                    url = target
                elif code == 200 and wait_url is not None:
                    # The HTML waiting page (it refreshes itself, as a browser would reload it).
                    await asyncio.sleep(min(settings.poll_interval, max(0.0, deadline - self.clock())))
                elif code in (503, 429):
                    kind = "full" if code == 503 else "rate-limited"
                    pause = retry_after(response)
                    path = urlsplit(url).path
                    if self.record.retries >= settings.retries:
                        tried = f" after {self.record.retries} retries" if self.record.retries else ""
                        raise PhaseFailed(kind, f"{path} answered {code} ({kind}, Retry-After {pause:g}s){tried}")
                    if self.clock() + min(pause, settings.max_retry_after) >= deadline:
                        raise PhaseFailed(kind, f"{path} answered {code} ({kind}); Retry-After {pause:g}s "
                                                f"is past the {settings.spawn_timeout:g}s spawn timeout")
                    self.record.retries += 1
                    await asyncio.sleep(min(pause, settings.max_retry_after))
                    url, wait_url, use_api = self._spawn_url(), None, True
                elif code == 200:
                    raise PhaseFailed("http 200", f"{urlsplit(url).path} answered 200 instead of a redirect "
                                                  "(does the service take this User-Agent for a bot?)")
                elif code == 410:
                    raise PhaseFailed("expired", f"{urlsplit(url).path} answered 410: the place in line expired")
                else:
                    raise PhaseFailed(f"http {code}", f"{urlsplit(url).path} answered {code} {response.reason}")

    def _timeout_message(self) -> str:
        where = "in the waiting line" if self.record.queued_at is not None else "without a container"
        position = self.record.queue_position
        seen = f" (first position {position})" if position is not None else ""
        return f"still {where} after {self.settings.spawn_timeout:g}s{seen}"

    async def _wait_in_line(self, ticket: str, wait_url: str, deadline: float) -> tuple[str, bool]:
        """Poll /api/queue/<ticket> until ready; returns (URL to GET next, keep using the API)."""
        api = f"{self.settings.url}/api/queue/{quote(ticket)}"
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise PhaseFailed("timeout", self._timeout_message())
            # Long poll, as the waiting page's script does: the answer comes when the container is ready.
            long_poll = int(min(20.0, max(0.0, remaining - 1.0)))
            asked = self.clock()
            response = await self.fetch(f"{api}?wait={long_poll}", timeout=min(remaining, long_poll + 10.0),
                                        accept="application/json")
            self.record.queue_polls += 1
            if response.code in (503, 429):
                kind = "full" if response.code == 503 else "rate-limited"
                raise PhaseFailed(kind, f"{urlsplit(api).path} answered {response.code} while in line")
            if response.code != 200:
                # No JSON API (or it forgot the ticket): let the waiting page itself decide.
                return wait_url, False
            state = json.loads(response.body)
            if state.get("ready"):
                return urljoin(api, state.get("url") or wait_url), True
            if self.record.queue_position is None and state.get("position") is not None:
                self.record.queue_position = int(state["position"])
            # A server that does not hold the answer (no long poll) is polled at poll_interval.
            pause = self.settings.poll_interval - (self.clock() - asked)
            await asyncio.sleep(min(max(0.0, pause), max(0.0, deadline - self.clock())))

    async def _page(self, user_url: str) -> None:
        """Load the notebook page: the HTML a browser gets when it lands (what "time to notebook page" ends with),
        and with ``assets``, the page's static files as a browser fetches them (six at a time)."""
        with self.phase(PAGE):
            url, response = await self._follow(user_url, "notebook page")
            if response.code != 200:
                raise PhaseFailed(*self.user_error(url, response))
            if self.settings.assets:
                await self._assets(self.user_base(url))

    async def _assets(self, base: str) -> None:
        todo = list(self.settings.assets)

        async def worker() -> None:
            while todo:
                path = todo.pop(0)
                response = await self.fetch(base + path, accept="*/*", encoded=True)
                if response.code != 200:
                    raise PhaseFailed(*self.user_error(base + path, response))
                self.record.asset_requests += 1
                self.record.asset_bytes += len(response.body)

        await asyncio.gather(*(worker() for _ in range(min(BROWSER_CONNECTIONS, len(todo)))))

    async def _cells(self, user_url: str) -> tuple[list[Cell], str]:
        """The notebook's code cells and kernel name, fetched as the page's script does (contents API)."""
        if not self.settings.notebook:
            return [Cell(DEFAULT_CELL, DEFAULT_CELL_OUTPUT)], "python3"
        contents = f"{self.user_base(user_url)}api/contents/{quote(self.settings.notebook)}?content=1"
        response = await self.fetch(contents, accept="application/json")
        if response.code != 200:
            raise PhaseFailed(*self.user_error(contents, response))
        model = json.loads(response.body)
        notebook = model.get("content") or {}
        cells = [Cell(src if isinstance(src, str) else "".join(src))
                 for src in (c.get("source", "") for c in notebook.get("cells", [])
                             if c.get("cell_type") == "code")]
        cells = [c for c in cells if c.code.strip()]
        if not cells:
            raise PhaseFailed("bad-response", f"{self.settings.notebook} has no code cells")
        kernel_name = (notebook.get("metadata", {}).get("kernelspec") or {}).get("name") or "python3"
        return cells, kernel_name

    @staticmethod
    def user_error(url: str, response: HTTPResponse) -> tuple[str, str]:
        path = urlsplit(url).path
        if response.code == 403:
            return "forbidden", f"{path} answered 403: the session cookie was not accepted"
        if response.code == 404:
            return "session-ended", f"{path} answered 404 (session ended, or no such page)"
        return f"http {response.code}", f"{path} answered {response.code} {response.reason}"

    @staticmethod
    def user_base(user_url: str) -> str:
        parts = urlsplit(user_url)
        prefix = USER_PATH.match(parts.path).group("prefix")
        return f"{parts.scheme}://{parts.netloc}{prefix}"

    async def _start_kernel(self, user_url: str) -> list[Cell]:
        """Open the notebook (its contents) and start its kernel, as the notebook page's script does."""
        with self.phase(KERNEL):
            cells, kernel_name = await self._cells(user_url)
            base = self.user_base(user_url)
            cookie = cookie_header(self.jar, base + "api/kernels")
            self.record.kernel_name = kernel_name
            self.kernel = KernelClient(base, {"Cookie": cookie} if cookie else {},
                                       timeout=self.settings.kernel_timeout, http_client=self.http)
            await self.kernel.start(kernel_name)
        return cells

    async def _execute(self, cells: list[Cell]) -> None:
        """Run cells in order (looping) with think time; at least one, then while the session lasts."""
        settings = self.settings
        with self.phase(EXECUTE) as timing:
            session_end = timing.start + settings.session_seconds
            for number in itertools.count():
                cell = cells[number % len(cells)]
                sent = self.clock()
                result = await self.kernel.execute(cell.code)
                done = self.clock()
                self.record.cell_results.append(round(done, 6))
                self.record.cell_durations.append(round(done - sent, 6))
                label = f"cell {number % len(cells) + 1} (run {number + 1})"
                if result.status != "ok":
                    raise PhaseFailed("cell-error", f"{label} raised {result.error}")
                if cell.expect is not None and result.output.strip() != cell.expect:
                    raise PhaseFailed("wrong-output", f"{label} printed {result.output.strip()[:80]!r}, "
                                                      f"expected {cell.expect!r}")
                if self.clock() + settings.think >= session_end:
                    break
                await asyncio.sleep(settings.think)

    async def _leave(self) -> None:
        with self.phase(LEAVE):
            if self.settings.walks_away(self.record.index):
                self.record.walked_away = True
                self.kernel.detach()
            else:
                await self.kernel.shutdown()
            self.kernel = None

    async def _cleanup(self) -> None:
        """After a failure: close the kernel as the attendee would (unless it walks away)."""
        if self.kernel is None:
            return
        kernel, self.kernel = self.kernel, None
        if self.settings.walks_away(self.record.index):
            kernel.detach()
            return
        try:
            await asyncio.wait_for(kernel.shutdown(), self.settings.request_timeout)
        except Exception:  # best effort: the failure is already recorded
            kernel.detach()


def monotonic_clock() -> Callable[[], float]:
    """A clock reading seconds since this call."""
    t0 = time.monotonic()
    return lambda: time.monotonic() - t0
