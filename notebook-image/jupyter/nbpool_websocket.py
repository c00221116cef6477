"""Kernel WebSockets that send each message at once (TCP_NODELAY).

Jupyter Server leaves Nagle's algorithm on for the kernel WebSocket: a kernel's
reply and the status message right behind it are two small writes, and the
second waits for the first one's acknowledgement, which the receiving side
delays by up to 40 ms (Linux's delayed ACK). Measured on an attendee's first
cell: about half of the runs took 40 ms longer (benchmarks/first_cell.py).
Tornado sets TCP_NODELAY for the end of every HTTP response already; a
WebSocket never ends, so it is set here once the socket is open. Browsers and
nbpool's proxy set it on their side of each connection.

Loaded by jupyter_server_config.py as ``c.ServerApp.kernel_websocket_connection_class``.
"""

from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayKernelConnection(ZMQChannelsWebsocketConnection):
    """Jupyter Server's kernel WebSocket connection, with TCP_NODELAY on its socket."""

    def connect(self) -> asyncio.Future[None] | None:
        self.websocket_handler.set_nodelay(True)
        return super().connect()
