"""Server-sent events: one stream loop for every live view (the class view, the follow view)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

KEEPALIVE = 15.0  # seconds of silence after which a stream sends a comment (proxies and browsers keep it open)


async def stream_changes(handler: RequestHandler, version: Callable[[], int], data: Callable[[], str],
                         wait: Callable[[int, float], Awaitable[None]], gap: float) -> None:
    """Send ``data()`` as an event now and after every change of ``version()`` (``wait(version, timeout)``
    returns once it changed or the timeout passed), at most one event every ``gap`` seconds, until the client
    goes away."""
    handler.set_header("Content-Type", "text/event-stream")
    handler.set_header("Cache-Control", "no-store")
    handler.set_header("X-Accel-Buffering", "no")
    handler.write("retry: 2000\n\n")  # (a dropped stream is taken up again after two seconds)
    try:
        while True:
            seen = version()
            handler.write(f"data: {data()}\n\n")
            await handler.flush()
            await asyncio.sleep(gap)
            while version() == seen:
                await wait(seen, KEEPALIVE)
                if version() == seen:
                    handler.write(": still here\n\n")
                    await handler.flush()
    except StreamClosedError:
        return
