"""HTTPS connections, counted from TCP accept: every connection cap holds before the handshake, which has a deadline.

``loop.create_server(ssl=...)`` calls a protocol's connection_made only once the
handshake is done, so connections that never send a ClientHello escaped
max_connections and the per-network cap, each held for asyncio's 60 s handshake
timeout (issue 24: 300 open against a cap of 10). For HTTPS the proxy accepts
TCP connections itself (``TlsListener``): it counts each at once
(``ConnectionState.admit``, refusing by closing), then hands the socket to
``loop.connect_accepted_socket(ssl=..., ssl_handshake_timeout=...)``, whose
``client.ClientConnection`` carries the count on once the handshake is done.

Why not a protocol that counts in connection_made and then calls
``loop.start_tls``: uvloop starts reading as soon as connection_made returns
(a pause_reading there does not hold), so the ClientHello reached that protocol
instead of the TLS layer. A socket that nothing has read from has no such race,
on either loop. Plain HTTP keeps ``create_server``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from .client import ClientConnection
from .state import ConnectionState
from .targets import TargetPool

log = logging.getLogger("nbpool.proxy")

ACCEPT_RETRY = 1.0  # seconds before accepting again when out of open files or memory (as asyncio's servers)


class Handshake:
    """One accepted HTTPS connection until its handshake is done; in ``state.handshakes`` meanwhile."""

    __slots__ = ("client", "sock", "started", "task")

    def __init__(self, sock: socket.socket, client: ClientConnection):
        self.sock = sock
        self.client = client  # admitted, with the network it is counted under
        self.started = False  # its task has run: connect_accepted_socket owns the socket
        self.task: asyncio.Task | None = None


class TlsListener:
    """The HTTPS listening sockets: counts each connection as it is accepted, then runs its TLS handshake."""

    def __init__(self, state: ConnectionState, targets: TargetPool, context: ssl.SSLContext):
        self.state = state
        self.targets = targets
        self.context = context
        self.sockets: list[socket.socket] = []
        self.accepting: list[asyncio.Task] = []

    def listen(self, host: str | None, port: int, backlog: int) -> None:
        """Bind every address of ``host`` (None: all interfaces) on ``port`` and listen. Raises OSError."""
        try:
            for family, kind, proto, _, address in dict.fromkeys(
                    socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                port = port or sock.getsockname()[1]  # port 0: every address on the one picked first
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            for sock in self.sockets:
                sock.close()
            raise

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.accepting = [loop.create_task(self.accept_forever(sock)) for sock in self.sockets]

    async def accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except ConnectionAbortedError:  # the visitor gave up while waiting in the backlog
                continue
            except OSError as exc:  # out of open files, memory or buffers: wait, rather than spin
                log.error("proxy cannot accept HTTPS connections for %.0f s: %s", ACCEPT_RETRY, exc)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            self.admit(sock, address[0])

    def admit(self, sock: socket.socket, ip: str) -> None:
        """Count a new connection from ``ip`` (closing it at once over a cap), then start its handshake."""
        state = self.state
        state.stats.connections_total += 1
        network, refusal = state.admit(ip)
        if refusal is not None:
            # No 503: answering takes a handshake, the very cost being refused.
            state.stats.rejected_connections += 1
            sock.close()
            return
        handshake = Handshake(sock, ClientConnection(state, self.targets, network))
        handshake.task = asyncio.get_running_loop().create_task(self.handshake(handshake))
        state.handshakes.add(handshake)

    async def handshake(self, handshake: Handshake) -> None:
        """Run the handshake under tls_handshake_timeout; its ClientConnection serves the connection after it.

        The connection's place in its network's count is the ClientConnection's once its connection_made
        has run (it gives it back when it closes), and given back here otherwise: exactly once, whether
        the handshake succeeds, fails, times out, the visitor leaves or the proxy stops.
        """
        state = self.state
        client = handshake.client
        handshake.started = True
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: client, handshake.sock, ssl=self.context,
                ssl_handshake_timeout=state.limits.tls_handshake_timeout)
        except ConnectionAbortedError:  # what the handshake timeout raises
            state.stats.timeouts += 1
        except OSError as exc:  # a failed handshake (ssl.SSLError), or the visitor gone during it
            log.debug("TLS handshake failed: %r", exc)
        except Exception:
            log.exception("proxy error in a TLS handshake")
        finally:
            self.release(handshake)

    def release(self, handshake: Handshake) -> None:
        """The handshake is over: out of ``handshakes``, and its count given back unless its client has it."""
        state = self.state
        state.handshakes.discard(handshake)
        client = handshake.client
        if client.transport is None and client.network:  # it never reached HTTP
            state.uncount_network(client.network)
            client.network = ""

    async def stop(self) -> None:
        """Stop accepting, and end the connections still in their handshake."""
        for task in self.accepting:
            task.cancel()
        await asyncio.gather(*self.accepting, return_exceptions=True)
        for sock in self.sockets:  # closed only now: the event loop no longer watches them
            sock.close()
        tasks = []
        for handshake in list(self.state.handshakes):
            if not handshake.started:  # cancelled before its first step, its task will not clean up
                handshake.sock.close()
                self.release(handshake)
            handshake.task.cancel()
            tasks.append(handshake.task)
        await asyncio.gather(*tasks, return_exceptions=True)
