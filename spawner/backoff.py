"""Waiting: one exponential backoff helper, an HTTP readiness wait, and a step repeated at intervals."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


async def exponential_backoff(check: Callable[[], Awaitable[bool]], *, timeout: float, first: float = 0.05,
                              factor: float = 1.6, most: float = 1.0, what: str = "condition") -> None:
    """Call ``check`` until it returns True; sleep first, then longer (with jitter) between tries.

    Raises TimeoutError naming ``what`` when ``timeout`` seconds pass first:
    a timeout never reads as success.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = first
    while True:
        if await check():
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"{what} not reached within {timeout:.1f}s")
        await asyncio.sleep(min(remaining, delay * random.uniform(0.8, 1.2)))
        delay = min(delay * factor, most)


async def every(interval: Callable[[], float], step: Callable[[], Awaitable[object]], log, what: str) -> None:
    """Run ``step`` every ``interval()`` seconds (read each time: a reload changes it) until cancelled.

    A task boundary: a failed step is logged with its traceback and the loop
    goes on, so one bad pass never ends culling, checkpoints or sampling.
    """
    while True:
        await asyncio.sleep(interval())
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.0fs", what, interval())


class GaveUp(Exception):
    """A wait stopped early: what it waited for can no longer happen (``give_up`` said why)."""


async def wait_for_http(url: str, *, headers: dict[str, str] | None = None, timeout: float,
                        ok: Callable[[int], bool] = lambda code: code == 200, most: float = 0.25,
                        give_up: Callable[[], str | None] = lambda: None) -> None:
    """Wait until ``url`` answers a status that ``ok`` accepts; TimeoutError otherwise.

    ``give_up()`` is asked before every try: a reason (say, the server's
    container has exited) ends the wait at once with GaveUp.
    """
    client = AsyncHTTPClient()
    last = ["no answer yet"]

    async def answered() -> bool:
        reason = give_up()
        if reason:
            raise GaveUp(reason)
        try:
            resp = await client.fetch(HTTPRequest(url, headers=headers, request_timeout=5, connect_timeout=2,
                                                  follow_redirects=False), raise_error=False)
        except (OSError, HTTPClientError) as exc:
            last[0] = str(exc)
            return False
        last[0] = f"HTTP {resp.code}"
        return ok(resp.code)

    try:
        # Polls are cheap next to a container start; a short ceiling notices readiness promptly.
        await exponential_backoff(answered, timeout=timeout, most=most, what=f"a ready answer from {url}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} (last: {last[0]})") from None


async def warm_up(url: str, headers: dict[str, str]) -> None:
    """GET ``url`` once, ignoring the answer: a first render of a page is slow, later ones are not."""
    try:
        await AsyncHTTPClient().fetch(HTTPRequest(url, headers=headers, request_timeout=20, follow_redirects=False),
                                      raise_error=False)
    except (OSError, HTTPClientError):
        pass
