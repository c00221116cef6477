"""A WebSocket echo backend (Tornado), for the proxy's WebSocket tests.

On any path:

- a WebSocket upgrade is accepted; the server first sends one text message,
  JSON ``{"subprotocol": <selected or null>, "path": ..., "headers": [[name,
  value], ...]}``, then echoes every text and binary message unchanged. There
  is no message size cap (a proxy must not impose one either). The selected
  subprotocol is the first one the client offers that is in
  ``ALLOWED_SUBPROTOCOLS``; none is selected otherwise.
- a plain GET (no upgrade) answers the same JSON minus the subprotocol, so a
  test can see which headers a proxy forwarded without speaking WebSocket.

Header names are as Tornado normalises them (``X-Forwarded-For``), grouped by
name in first-seen order. No compression is negotiated.

    python tests/resources/ws_echo.py --port 8082
"""

from __future__ import annotations

from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

if __package__:
    from ._runner import Running, run_main, serve_tornado
else:  # run as a script
    from _runner import Running, run_main, serve_tornado

ALLOWED_SUBPROTOCOLS = ["v1.kernel.websocket.jupyter.org", "chat"]
MAX_MESSAGE = 1 << 40  # effectively no cap: Tornado's default is 10 MiB


class EchoWebSocket(WebSocketHandler):
    def initialize(self, open_sockets: set[WebSocketHandler]) -> None:
        self.open_sockets = open_sockets  # so stop() can close upgraded connections too

    def describe(self) -> dict:
        return {"path": self.request.path, "headers": [list(pair) for pair in self.request.headers.get_all()]}

    async def get(self, *args, **kwargs) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            self.write(self.describe())
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        return True  # tests send browser-like Origins through a proxy; CSRF is not the point here

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return next((p for p in subprotocols if p in ALLOWED_SUBPROTOCOLS), None)

    def open(self, *args, **kwargs) -> None:
        self.open_sockets.add(self)
        self.write_message({"subprotocol": self.selected_subprotocol, **self.describe()})

    async def on_message(self, message: str | bytes) -> None:
        # Awaiting the write makes Tornado read the next message only after
        # this one is sent: backpressure instead of an unbounded queue.
        try:
            await self.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            pass

    def on_close(self) -> None:
        self.open_sockets.discard(self)


async def start(host: str = "127.0.0.1", port: int = 0, *, unix: str | None = None) -> Running:
    """Start the WebSocket echo server; returns a ``Running`` with the bound port."""
    open_sockets: set[WebSocketHandler] = set()
    app = Application(
        [(r"/.*", EchoWebSocket, {"open_sockets": open_sockets})], websocket_max_message_size=MAX_MESSAGE
    )
    def close_websockets() -> None:
        # Upgraded connections have left the HTTP server's books: close them here.
        for handler in list(open_sockets):
            handler.close()

    return serve_tornado(app, host, port, unix, before_close=close_websockets)


if __name__ == "__main__":
    run_main("ws_echo", start)
