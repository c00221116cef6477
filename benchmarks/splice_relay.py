"""Benchmark: what a zero-copy path for large bodies would give the proxy, measured on a bare relay.

    .venv/bin/python benchmarks/splice_relay.py [--mib 100] [--repeat 5]

The proxy relays a body through user space: each read from the target is a bytes object written to the
visitor's socket (uvloop's transports). For a large body that is neither compressed nor cached, the kernel
could move it instead: ``os.splice`` from the target's socket into a pipe and from the pipe into the visitor's
socket, never copying it into Python. This measures that ceiling without changing the proxy: one origin (the
file sent with ``socket.sendfile``, so the origin is never the limit), and three ways to reach it, each
downloaded ``--repeat`` times with curl (the median MiB/s is reported):

- ``direct``: curl from the origin;
- ``copy``: a relay on uvloop doing what the proxy's body path does (``data_received`` -> ``transport.write``,
  reading paused while the visitor's buffer is full);
- ``splice``: a relay that forwards the head, then splices the body socket -> pipe -> socket in a thread.

Prints a Markdown table. Everything runs on this machine's loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

CHUNK = 1 << 20


def serving(server: socket.socket, handle) -> tuple[int, socket.socket]:
    """Accept on ``server`` in a thread, each connection handled by ``handle`` in a thread of its own; its port."""
    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], server


def origin(path: Path) -> tuple[int, socket.socket]:
    """A server that answers every request with the file, sent by the kernel (sendfile)."""
    size = path.stat().st_size
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, open(path, "rb") as body:
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
            conn.sendfile(body)

    return serving(server, serve)


def splice_relay(upstream_port: int) -> tuple[int, socket.socket]:
    """Head forwarded through Python, body spliced by the kernel (socket -> pipe -> socket)."""
    server = socket.create_server(("127.0.0.1", 0))

    def relay(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", upstream_port)) as up:
            request = b""
            while b"\r\n\r\n" not in request:
                request += client.recv(65536)
            up.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                head += up.recv(65536)
            head, _, early = head.partition(b"\r\n\r\n")
            client.sendall(head + b"\r\n\r\n" + early)
            read_end, write_end = os.pipe()
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)  # a 1 MiB pipe: each splice moves up to 1 MiB, not 64 KiB
            try:
                while True:
                    moved = os.splice(up.fileno(), write_end, CHUNK)
                    if moved == 0:
                        return
                    while moved:
                        moved -= os.splice(read_end, client.fileno(), moved)
            finally:
                os.close(read_end)
                os.close(write_end)

    return serving(server, relay)


class Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport, request: bytes):
        self.client, self.request = client, request

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:  # the proxy's body path: bytes in, bytes out
        self.client.write(data)

    def connection_lost(self, exc) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, port: int):
        self.port, self.buffer, self.upstream = port, b"", None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.upstream is None and b"\r\n\r\n" in self.buffer:
            loop = asyncio.get_running_loop()
            self.upstream = loop.create_task(loop.create_connection(
                lambda: Upstream(self.transport, self.buffer), "127.0.0.1", self.port))

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.done():
            self.upstream.result()[0].pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.done():
            self.upstream.result()[0].resume_reading()


def copy_relay(upstream_port: int) -> int:
    """The proxy's way, on uvloop in a thread of its own."""
    import uvloop

    ready = threading.Event()
    found: list[int] = []

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: Client(upstream_port), "127.0.0.1", 0)
        found.append(server.sockets[0].getsockname()[1])
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: uvloop.run(main()), daemon=True).start()
    ready.wait(10)
    return found[0]


def download(port: int, size: int) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
                          f"http://127.0.0.1:{port}/big"], capture_output=True, text=True, check=True).stdout.split()
    if int(out[0]) != size:
        raise RuntimeError(f"got {out[0]} of {size} bytes")
    return float(out[1]) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big"
        path.write_bytes(os.urandom(1 << 20) * args.mib)
        size = path.stat().st_size
        origin_port, origin_server = origin(path)
        splice_port, splice_server = splice_relay(origin_port)
        ways = {"direct": origin_port, "copy": copy_relay(origin_port), "splice": splice_port}
        speeds: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeat):  # interleaved: drift on the machine hits every way alike
            for way, port in ways.items():
                speeds[way].append(download(port, size))
        origin_server.close()
        splice_server.close()
    print(f"{args.mib} MiB downloads over loopback, median of {args.repeat}, {os.cpu_count()} cores\n")
    print("| path | MiB/s (median) | runs |\n|---|---:|---|")
    for way, values in speeds.items():
        print(f"| {way} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
