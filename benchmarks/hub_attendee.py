"""One attendee against JupyterHub + tmpauthenticator (jupyterhub_stack.py), doing what a browser does.

    results = asyncio.run(burst("http://127.0.0.1:8000", 10))   # every attendee at once
    print(summary(results))

The peer of loadtest's Attendee against nbpool, with the same cell (``print(6*7)``) and the same two
figures, measured from the attendee's first request:

- GET / and follow the redirects: the hub sends a visitor with no session to /hub/login, which (auto
  login) sends them to /hub/tmplogin: logged in as a new random user, on to /hub/spawn, which starts
  their container. A spawn not done within a second (the hub's SpawnHandler waits that long) shows
  /hub/spawn-pending/<user>, whose script listens to the spawn's progress (an EventSource on
  /hub/api/users/<user>/server/progress?_xsrf=…) and reloads the page once the server is ready; the
  reload leads through the single-user server's OAuth round trip (/hub/api/oauth2/authorize, then
  /user/<user>/oauth_callback) to the notebook page: ``time_to_page``.
- Start a kernel as the page's script does (POST /user/<user>/api/kernels, the ``_xsrf`` cookie's value
  in X-XSRFToken, the hub's origin in Origin), open its WebSocket, run the cell and check it printed 42:
  ``time_to_first_result``. The kernel is left running, as an open tab leaves it.

Requests carry the Sec-Fetch-* headers a browser sends (the page is on 127.0.0.1, a secure context):
JupyterHub decides from them which requests need an XSRF token (navigations and WebSockets do not,
fetches do), and warns in its log about every request without them.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from loadtest.cookies import add_cookie_header, cookie_header, extract_cookies  # noqa: E402
from loadtest.jupyter import KernelClient  # noqa: E402
from loadtest.report import percentile  # noqa: E402
from loadtest.settings import DEFAULT_CELL, DEFAULT_CELL_OUTPUT  # noqa: E402

USER_PATH = re.compile(r"^/user/(?P<user>[^/]+)/")
PENDING_PATH = re.compile(r"^/hub/spawn-pending/(?P<user>[^/]+)")
EVENT_SOURCE = re.compile(r'new EventSource\("(?P<url>[^"]+)"\)')
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 25  # 11 on the way in: /, /hub/, login, tmplogin, /hub/, spawn, pending, /user/<u>/, tree, OAuth x2
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) nbpool-loadtest/1"  # as loadtest's attendee
BROWSER_CONNECTIONS = 6  # a browser's connections per host over HTTP/1.1


class Failed(Exception):
    pass


class Browser:
    """One attendee's browser: its cookie jar and connections."""

    def __init__(self, url: str, timeout: float):
        self.origin = url.rstrip("/")
        self.timeout = timeout
        self.jar = CookieJar()
        self.http = AsyncHTTPClient(force_instance=True, max_clients=BROWSER_CONNECTIONS)
        self.site = "none"  # the first navigation is typed in (or a link from elsewhere)

    async def fetch(self, url: str, *, mode: str = "navigate", method: str = "GET", body: str | None = None,
                    headers: dict[str, str] | None = None, streaming_callback=None,
                    timeout: float | None = None) -> HTTPResponse:
        """One request with the jar's cookies, redirects not followed, HTTP errors returned."""
        sent = {"User-Agent": USER_AGENT, "Sec-Fetch-Mode": mode, "Sec-Fetch-Site": self.site,
                "Sec-Fetch-Dest": "document" if mode == "navigate" else "empty",
                "Accept": "text/html" if mode == "navigate" else "*/*", **(headers or {})}
        request = HTTPRequest(url, method=method, body=body, headers=sent, follow_redirects=False,
                              request_timeout=timeout or self.timeout, connect_timeout=min(self.timeout, 30.0),
                              streaming_callback=streaming_callback)
        add_cookie_header(self.jar, request)
        response = await self.http.fetch(request, raise_error=False)
        if response.code == 599:
            raise Failed(f"{method} {urlsplit(url).path}: no response ({response.error})")
        extract_cookies(self.jar, request, response)
        self.site = "same-origin"
        return response

    def cookie(self, name: str, url: str) -> str | None:
        """The value of the cookie ``name`` the browser sends to ``url`` (the one of the longest path)."""
        path = urlsplit(url).path
        found = [c for c in self.jar if c.name == name and path.startswith(c.path)]
        return max(found, key=lambda c: len(c.path)).value if found else None

    async def progress(self, page_url: str, page: str) -> None:
        """Listen to the spawn's progress as the pending page's EventSource does, until ready or failed.

        The hub ends the stream itself after its "ready" (or "failed") event."""
        found = EVENT_SOURCE.search(page)
        if not found:
            raise Failed(f"{urlsplit(page_url).path} has no progress stream (the spawn failed?)")
        url = urljoin(page_url, html.unescape(found.group("url")))
        events: list[dict] = []
        pending = [""]

        def chunk(data: bytes) -> None:
            pending[0] += data.decode(errors="replace")
            while "\n\n" in pending[0]:
                event, pending[0] = pending[0].split("\n\n", 1)
                events.extend(json.loads(line[5:]) for line in event.splitlines() if line.startswith("data:"))

        response = await self.fetch(url, mode="cors", headers={"Accept": "text/event-stream"},
                                    streaming_callback=chunk)
        if response.code != 200:
            raise Failed(f"{urlsplit(url).path} answered {response.code} {response.reason}")
        failed = [e for e in events if e.get("failed")]
        if failed:
            raise Failed(f"the spawn failed: {failed[-1].get('message', '')}")


async def attend(url: str, index: int, clock: Callable[[], float], timeout: float = 300.0) -> dict:
    """One attendee's visit; never raises. Times are seconds from its first request (None when not reached)."""
    result = {"index": index, "ok": False, "error": "", "user": None, "time_to_page": None,
              "time_to_first_result": None}
    browser = Browser(url, timeout)
    kernel = None
    start = clock()
    try:
        async with asyncio.timeout(timeout):
            # To the notebook page, following redirects and the pending page's reloads.
            page_url, redirects = browser.origin + "/", 0
            while True:
                response = await browser.fetch(page_url)
                path = urlsplit(page_url).path
                if response.code in REDIRECTS:
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise Failed(f"more than {MAX_REDIRECTS} redirects, the last to {path}")
                    page_url = urljoin(page_url, response.headers.get("Location", ""))
                    continue
                if response.code == 200 and PENDING_PATH.match(path):
                    result["user"] = PENDING_PATH.match(path).group("user")
                    await browser.progress(page_url, response.body.decode(errors="replace"))
                    continue  # the page reloads itself: the hub now redirects to the server
                if response.code == 200 and USER_PATH.match(path):
                    break
                raise Failed(f"{path} answered {response.code} {response.reason}")
            result["time_to_page"] = clock() - start
            user = result["user"] = USER_PATH.match(path).group("user")
            base = f"{browser.origin}/user/{user}/"

            # The page's script starts a kernel: a fetch with the _xsrf cookie's value echoed in a header.
            xsrf = browser.cookie("_xsrf", base + "api/kernels")
            if not xsrf:
                raise Failed(f"no _xsrf cookie for /user/{user}/ after the page")
            response = await browser.fetch(
                base + "api/kernels", mode="cors", method="POST", body=json.dumps({"name": "python3"}),
                headers={"Content-Type": "application/json", "X-XSRFToken": xsrf, "Origin": browser.origin})
            if response.code != 201:
                raise Failed(f"POST /user/{user}/api/kernels answered {response.code} {response.reason}: "
                             f"{response.body[:200].decode(errors='replace')}")
            kernel_id = json.loads(response.body)["id"]
            # Its WebSocket (KernelClient sends Origin: the hub's); no XSRF token on a WebSocket.
            cookie = cookie_header(browser.jar, f"{base}api/kernels/{kernel_id}/channels")
            kernel = KernelClient(base, {"Cookie": cookie or "", "Sec-Fetch-Mode": "websocket",
                                         "Sec-Fetch-Site": "same-origin", "User-Agent": USER_AGENT},
                                  timeout=timeout, http_client=browser.http)
            await kernel.attach(kernel_id)
            executed = await kernel.execute(DEFAULT_CELL)
            result["time_to_first_result"] = clock() - start
            if executed.status != "ok" or executed.output.strip() != DEFAULT_CELL_OUTPUT:
                raise Failed(f"the cell gave {executed.status} {executed.error or executed.output.strip()[:80]!r}")
            result["ok"] = True
    except TimeoutError:
        result["error"] = f"timeout: not done within {timeout:g}s"
    except Exception as exc:  # every failure is this attendee's result, never the run's
        result["error"] = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
    finally:
        if kernel is not None:
            kernel.detach()  # the tab stays open: the kernel keeps running
        browser.http.close()
    return result


async def burst(url: str, n: int, timeout: float = 300.0) -> list[dict]:
    """``n`` attendees starting at the same moment; their results in order."""
    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    return list(await asyncio.gather(*(attend(url, i, clock, timeout) for i in range(n))))


def summary(results: list[dict]) -> str:
    """p50/p95 of both figures over the attendees who got there, and the failures by message."""
    ok = sum(r["ok"] for r in results)
    lines = [f"{len(results)} attendees: {ok} ok, {len(results) - ok} failed"]
    for key in ("time_to_page", "time_to_first_result"):
        values = [r[key] for r in results if r[key] is not None]
        if values:
            lines.append(f"  {key:<21} p50 {percentile(values, 50):6.2f}s  p95 {percentile(values, 95):6.2f}s  "
                         f"max {max(values):6.2f}s  mean {statistics.fmean(values):6.2f}s  (n={len(values)})")
    for error, count in Counter(r["error"] for r in results if not r["ok"]).most_common():
        lines.append(f"  failed x{count}: {error[:300]}")
    return "\n".join(lines)
