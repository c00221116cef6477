"""A server-sent-events backend (Tornado), to check that a proxy streams.

``GET <any path>?count=N&interval=MS`` answers ``text/event-stream`` and sends
N events (default 5), one every MS milliseconds (default 100), flushing each
one as it is written. Each event is ``id: <i>`` plus a JSON ``data:`` line
``{"i": i, "sent": <server time.time()>}``. A proxy that buffers the response
delivers them all at once at the end instead of spread out in time.

    python tests/resources/sse.py --port 8081
"""

from __future__ import annotations

import asyncio
import json
import time

from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

if __package__:
    from ._runner import Running, run_main, serve_tornado
else:  # run as a script
    from _runner import Running, run_main, serve_tornado


class EventsHandler(RequestHandler):
    async def get(self) -> None:
        count = int(self.get_argument("count", "5"))
        interval = int(self.get_argument("interval", "100")) / 1000
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        try:
            for i in range(count):
                if i:
                    await asyncio.sleep(interval)
                data = json.dumps({"i": i, "sent": time.time()})
                self.write(f"id: {i}\ndata: {data}\n\n")
                await self.flush()
        except StreamClosedError:
            return  # the client left early; nothing more to send


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None) -> Running:
    """Start the SSE server; returns a ``Running`` with the bound port."""
    return serve_tornado(Application([(r"/.*", EventsHandler)]), host, port, unix)


if __name__ == "__main__":
    run_main("sse", start)
