"""The proxy's side of helpers' grants (issue 27), with small real servers behind the real proxy:

- an authorize callback names who a request is (``RequestHead.inject``), replacing the route's own header and
  anything the client sent under that name;
- a watcher's collaboration-room WebSocket passes only what reads (sync step 1, awareness): an edit never
  reaches the server, and no compression is agreed for it;
- ending a credential closes the WebSockets it opened at once (``ConnectionState.close_tunnels``), and only those;
- a server-side run's request (POST …/execute) tells the observer which cell asked.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

from proxy.server import Proxy
from proxy.ws_readonly import MAX_FRAME, ReadOnlyDoc

SYNC_STEP1, SYNC_STEP2, UPDATE, AWARENESS = b"\x00\x00\x01\x00", b"\x00\x01\x02\xaa\xbb", b"\x00\x02\x02\xcc\xdd", \
    b"\x01\x05hello"


class Echo(RequestHandler):
    def get(self):
        self.finish({"user": self.request.headers.get("X-Nbpool-User"),
                     "auth": self.request.headers.get("Authorization")})

    def post(self):
        self.application.settings["bodies"].append(self.request.body)
        self.set_status(202)
        self.finish({})


class Room(WebSocketHandler):
    """A collaboration room: records what reaches it; says whether compression was agreed."""

    def get_compression_options(self):
        return {}

    def open(self, *args):
        self.application.settings["rooms"].append(self)
        self.received = []
        self.write_message(json.dumps({"extensions": self.request.headers.get("Sec-WebSocket-Extensions")}))

    def on_message(self, message):
        self.received.append(message)
        self.write_message(b"ack:" + (message if isinstance(message, bytes) else message.encode()), binary=True)


@pytest.fixture
async def backend():
    settings = {"rooms": [], "bodies": []}
    app = Application([(r"/user/a/api/collaboration/room/(.*)", Room), (r"/user/a/api/kernels/k1/execute", Echo),
                       (r"/user/a/.*", Echo)], **settings)
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    yield f"http://127.0.0.1:{port}", settings
    server.stop()


def granting(read_only: bool, tag: str, name: bytes):
    """An authorize callback letting everyone in as ``name``, marking with ``tag``, read-only rooms or not."""
    def authorize(head):
        head.inject = [(b"X-Nbpool-User", name)]
        head.tag = tag
        head.read_only = read_only and head.upgrade
        return None
    return authorize


async def test_an_authorize_callback_names_the_person_in_place_of_the_routes_header_and_the_clients(backend):
    url, _ = backend
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, headers={"Authorization": "token t", "X-Nbpool-User": "nobody"},
                     authorize=granting(False, "g1", b'{"name": "Sam"}'))
    await proxy.start()
    try:
        answer = await asyncio.to_thread(requests.get, f"http://127.0.0.1:{proxy.bound_port}/user/a/api/me",
                                         headers={"X-Nbpool-User": '{"name": "forged"}'}, timeout=10)
    finally:
        await proxy.stop()
    assert answer.json() == {"user": '{"name": "Sam"}', "auth": "token t"}


async def test_without_a_callbacks_name_the_routes_own_header_goes_and_a_clients_never(backend):
    url, _ = backend
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, headers={"X-Nbpool-User": "the owner"})
    await proxy.start()
    try:
        answer = await asyncio.to_thread(requests.get, f"http://127.0.0.1:{proxy.bound_port}/user/a/x",
                                         headers={"X-Nbpool-User": "forged"}, timeout=10)
    finally:
        await proxy.stop()
    assert answer.json()["user"] == "the owner"


async def open_room(proxy: Proxy) -> tuple:
    conn = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{proxy.bound_port}/user/a/api/collaboration/room/r1"),
                                   compression_options={})
    hello = json.loads(await conn.read_message())
    return conn, hello


async def test_a_watchers_room_passes_reading_and_drops_every_edit(backend):
    url, settings = backend
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, authorize=granting(True, "g1", b"w"))
    await proxy.start()
    try:
        conn, hello = await open_room(proxy)
        assert hello["extensions"] is None  # no compression offered for it: frames are read one by one
        for message in (SYNC_STEP1, SYNC_STEP2, UPDATE, AWARENESS):
            await conn.write_message(message, binary=True)
        await conn.write_message("a text frame")
        await conn.write_message(b"", binary=True)
        await conn.write_message(SYNC_STEP1, binary=True)
        acks = [await conn.read_message() for _ in range(3)]
        conn.close()
    finally:
        await proxy.stop()
    (room,) = settings["rooms"]
    assert room.received == [SYNC_STEP1, AWARENESS, SYNC_STEP1]
    assert acks == [b"ack:" + m for m in (SYNC_STEP1, AWARENESS, SYNC_STEP1)]


async def test_an_editors_room_passes_everything_compressed_as_agreed(backend):
    url, settings = backend
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, authorize=granting(False, "g2", b"h"))
    await proxy.start()
    try:
        conn, hello = await open_room(proxy)
        assert "permessage-deflate" in hello["extensions"]
        for message in (SYNC_STEP1, SYNC_STEP2, UPDATE):
            await conn.write_message(message, binary=True)
        for _ in range(3):
            await conn.read_message()
        conn.close()
    finally:
        await proxy.stop()
    assert settings["rooms"][0].received == [SYNC_STEP1, SYNC_STEP2, UPDATE]


async def test_ending_a_credential_closes_its_websockets_at_once_and_no_others(backend):
    url, _ = backend
    proxy = Proxy(port=0)
    tags = iter(["helper", "owner"])
    proxy.routes.add("/user/a", url, authorize=lambda head: setattr(head, "tag", next(tags)))
    await proxy.start()
    try:
        helper, _ = await open_room(proxy)
        owner, _ = await open_room(proxy)
        assert proxy.state.close_tunnels("/user/b", "helper") == 0  # another route: nothing
        assert proxy.state.close_tunnels("/user/a", None) == 0  # unmarked tunnels are never ended this way
        assert proxy.state.close_tunnels("/user/a", "helper") == 1
        assert await asyncio.wait_for(helper.read_message(), 5) is None  # closed
        await owner.write_message(UPDATE, binary=True)
        assert await asyncio.wait_for(owner.read_message(), 5) == b"ack:" + UPDATE
        owner.close()
    finally:
        await proxy.stop()


async def test_a_server_side_runs_request_tells_which_cell_asked_and_reaches_the_server_unchanged(backend):
    url, settings = backend

    class Observer:
        def __init__(self):
            self.asked = []

        def requested(self, owner, kernel, cell_id, line):
            self.asked.append((owner, kernel, cell_id, line))

    observer = Observer()
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, data="seat-a")
    proxy.state.kernel_observer = observer
    await proxy.start()
    body = json.dumps({"code": "\n  x = 1\nprint(x)", "metadata": {"cell_id": "c-7", "document_id": "json:notebook:1"}})
    try:
        base = f"http://127.0.0.1:{proxy.bound_port}/user/a/api/kernels/k1/execute"
        answer = await asyncio.to_thread(requests.post, base, data=body, timeout=10)
        junk = await asyncio.to_thread(requests.post, base, data=b"\xff not json", timeout=10)
        big = await asyncio.to_thread(requests.post, base, data=json.dumps({"code": "y" * 100_000}), timeout=10)
    finally:
        await proxy.stop()
    assert (answer.status_code, junk.status_code, big.status_code) == (202, 202, 202)
    assert settings["bodies"][0] == body.encode()  # (relayed as it came)
    assert observer.asked == [("seat-a", "k1", "c-7", "x = 1")]  # junk and an over-long request: not read


def masked(payload: bytes, opcode: int = 2, fin: bool = True, rsv: int = 0) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else \
        bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_filter_reads_frames_split_anywhere_and_stops_on_what_it_cannot_read():
    frames = [masked(SYNC_STEP1), masked(UPDATE), masked(b"", opcode=9), masked(AWARENESS * 100),
              masked(SYNC_STEP2, fin=False), masked(b"\x00\x00", opcode=0)]
    stream = b"".join(frames)
    for cut in (1, 2, 3, 7, 64):
        doc = ReadOnlyDoc()
        out = b"".join(doc.feed(stream[i:i + cut]) for i in range(0, len(stream), cut))
        assert out == frames[0] + frames[2] + frames[3] and not doc.broken
        assert (doc.passed, doc.dropped) == (3, 3)
    unmasked = bytes([0x82, len(UPDATE)]) + UPDATE
    too_long = bytes([0x82, 0xFF]) + (MAX_FRAME + 1).to_bytes(8, "big")
    for bad, why in ((masked(UPDATE, rsv=0x40), "compressed"), (unmasked, "unmasked"), (too_long, "frame of")):
        doc = ReadOnlyDoc()
        first = masked(SYNC_STEP1)
        assert doc.feed(first + bad) == first  # (what came before the bad frame was whole, and went on)
        assert why in doc.broken and doc.feed(masked(SYNC_STEP1)) == b""


async def test_a_closed_room_after_a_broken_frame_ends_the_connection(backend):
    url, _ = backend
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", url, authorize=granting(True, "g1", b"w"))
    await proxy.start()
    try:
        conn, _ = await open_room(proxy)
        conn.protocol.stream.write(masked(UPDATE, rsv=0x40))  # a compressed frame nobody agreed to
        assert await asyncio.wait_for(conn.read_message(), 5) is None
        with pytest.raises(WebSocketClosedError):
            await conn.write_message(SYNC_STEP1, binary=True)
    finally:
        await proxy.stop()
