"""The proxy's kernel watch (issue 26): a small real kernel-like WebSocket server behind the real proxy, in
Jupyter's JSON protocol and its binary v1 subprotocol, compressed or not; and the frame reader's edge cases.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
import zlib

import pytest
from tornado.httpclient import HTTPRequest
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

from loadtest.jupyter import V1_SUBPROTOCOL, decode_v1, encode_v1
from proxy.kernel_watch import KernelWatch, first_line
from proxy.server import Proxy
from proxy.wsframes import MessageReader
from spawner.classroom.seat import IDLE, STUCK, WORKING, Seat, StuckRule

BIG_OUTPUT = "x" * 300_000  # a cell printing a lot: streams past the watch unread


def message(msg_type: str, content: dict, channel: str, parent: dict | None = None, metadata: dict | None = None):
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "s", "username": "u",
                       "version": "5.3", "date": "2026-12-05T00:00:00Z"},
            "msg_id": "", "msg_type": msg_type, "parent_header": parent or {}, "metadata": metadata or {},
            "content": content, "buffers": [], "channel": channel}


class FakeKernel(WebSocketHandler):
    """Answers execute_request as a kernel does: busy, a large output, the reply (an error for code with 'fail'),
    idle; in the subprotocol the client chose."""

    sent: list = []

    def select_subprotocol(self, subprotocols):
        return V1_SUBPROTOCOL if V1_SUBPROTOCOL in subprotocols else None

    def get_compression_options(self):
        return {} if self.application.settings["compress"] else None

    def send(self, msg: dict) -> None:
        if self.selected_subprotocol == V1_SUBPROTOCOL:
            data, binary = encode_v1(msg["channel"], msg), True
        else:
            data, binary = json.dumps(msg), False
        FakeKernel.sent.append(data)
        self.write_message(data, binary=binary)

    def on_message(self, data):
        request = decode_v1(data) if isinstance(data, bytes) else json.loads(data)
        parent = request["header"]
        if parent["msg_type"] == "kernel_info_request":
            self.server_side_run(request["content"]["code"])
            return
        failing = "fail" in request["content"]["code"]
        self.send(message("status", {"execution_state": "busy"}, "iopub", parent))
        self.send(message("stream", {"name": "stdout", "text": BIG_OUTPUT}, "iopub", parent))
        reply = {"status": "error", "ename": "ValueError", "evalue": "bad value\nsecond line"} if failing else \
            {"status": "ok", "execution_count": 1}
        self.send(message("execute_reply", reply, "shell", parent))
        self.send(message("status", {"execution_state": "idle"}, "iopub", parent))


    def server_side_run(self, code: str) -> None:
        """A run the notebook server asked for itself (server-side execution): this WebSocket sees only the
        kernel's broadcasts, under a request id it never saw."""
        parent = message("execute_request", {"code": code}, "shell")["header"]
        self.send(message("status", {"execution_state": "busy"}, "iopub", parent))
        self.send(message("execute_input", {"code": code, "execution_count": 2}, "iopub", parent))
        if "fail" in code:
            self.send(message("error", {"ename": "NameError", "evalue": "name 'x' is not defined", "traceback": []},
                              "iopub", parent))
        self.send(message("status", {"execution_state": "idle"}, "iopub", parent))


class Observer:
    def __init__(self):
        self.events = []

    def ran(self, owner, kernel, msg_id, cell_id, line):
        self.events.append(("ran", owner, kernel, cell_id, line))

    def replied(self, owner, kernel, msg_id, status, ename, evalue):
        self.events.append(("replied", owner, kernel, status, ename, evalue))

    def started(self, owner, kernel, msg_id, line):
        self.events.append(("started", owner, kernel, msg_id, line))

    def finished(self, owner, kernel, msg_id):
        self.events.append(("finished", owner, kernel, msg_id))

    def kernel_state(self, owner, kernel, state):
        self.events.append(("state", owner, kernel, state))

    def kernel_gone(self, owner, kernel):
        self.events.append(("gone", owner, kernel))


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
async def kernel_server(request):
    app = Application([(r"/user/a/api/kernels/([^/]+)/channels", FakeKernel)], compress=request.param)
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def watching_proxy(kernel_server: str, observer: Observer) -> Proxy:
    """A started proxy whose route to the fake kernel is watched by ``observer``."""
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", kernel_server, data="seat-a")
    proxy.state.kernel_observer = observer
    await proxy.start()
    FakeKernel.sent = []
    return proxy


async def open_channels(proxy: Proxy, binary: bool):
    """The kernel's channels WebSocket through ``proxy``, offering the v1 subprotocol when ``binary``."""
    url = f"ws://127.0.0.1:{proxy.bound_port}/user/a/api/kernels/k-1/channels?session_id=s"
    return await websocket_connect(HTTPRequest(url), subprotocols=[V1_SUBPROTOCOL] if binary else None,
                                   compression_options={}, max_message_size=1 << 24)


@pytest.mark.parametrize("binary", [True, False], ids=["v1-binary", "json"])
async def test_the_watch_sees_runs_outcomes_and_states_and_passes_every_byte_unchanged(kernel_server, binary):
    observer = Observer()
    proxy = await watching_proxy(kernel_server, observer)
    try:
        conn = await open_channels(proxy, binary)
        assert (conn.selected_subprotocol == V1_SUBPROTOCOL) == binary
        received = []
        for cell, code in (("c1", "x = 1\ny = 2"), ("c2", "\n\n  fail()  \nmore"), ("c3", "print('s')")):
            request = message("execute_request", {"code": code, "silent": False}, "shell",
                              metadata={"cellId": cell})
            await conn.write_message(encode_v1("shell", request) if binary else json.dumps(request), binary=binary)
            for _ in range(4):
                received.append(await conn.read_message())
        silent = message("execute_request", {"code": "inspect()", "silent": True}, "shell")
        await conn.write_message(encode_v1("shell", silent) if binary else json.dumps(silent), binary=binary)
        for _ in range(4):
            received.append(await conn.read_message())
        conn.close()
        for _ in range(100):  # the tunnel closes both ways: the watch says its kernel's state is unknown now
            if observer.events[-1][0] == "gone":
                break
            await asyncio.sleep(0.02)
    finally:
        await proxy.stop()
    assert received == FakeKernel.sent  # observed, never altered (outputs of 300 kB included)
    runs = [e for e in observer.events if e[0] == "ran"]
    assert runs == [("ran", "seat-a", "k-1", "c1", "x = 1"), ("ran", "seat-a", "k-1", "c2", "fail()"),
                    ("ran", "seat-a", "k-1", "c3", "print('s')")]  # (the silent one is a front end's, not theirs)
    replies = [e[3:] for e in observer.events if e[0] == "replied"]
    assert replies == [("ok", "", ""), ("error", "ValueError", "bad value"), ("ok", "", ""), ("ok", "", "")]
    # (the fake kernel broadcasts no execute_input for these; every idle still names the run it ends)
    assert len([e for e in observer.events if e[0] == "finished"]) == 4
    assert [e[3] for e in observer.events if e[0] == "state"] == ["busy", "idle"] * 4
    assert observer.events[-1] == ("gone", "seat-a", "k-1")
    assert "more" not in repr(observer.events) and "y = 2" not in repr(observer.events)


async def test_a_websocket_that_is_no_kernels_is_not_watched(kernel_server):
    observer = Observer()
    proxy = Proxy(port=0)
    proxy.routes.add("/user/a", kernel_server, data="seat-a")
    proxy.state.kernel_observer = observer
    assert KernelWatch.attach(b"/user/a/terminals/websocket/1", [], "seat-a", observer) is None
    assert KernelWatch.attach(b"/user/a/api/kernels/k/channels", [], "seat-a", observer) is not None


# --- the frame reader alone -------------------------------------------------------------------------

def frame(payload: bytes, opcode: int = 1, fin: bool = True, masked: bool = False, rsv1: bool = False) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n, bit = len(payload), 0x80 if masked else 0
    head += bytes([bit | n]) if n < 126 else bytes([bit | 126]) + n.to_bytes(2, "big") if n < 65536 else \
        bytes([bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def reader(masked: bool, **kwargs):
    got: list[bytes] = []
    r = MessageReader(lambda op, prefix: prefix.startswith(b"want"), lambda op, payload: got.append(payload),
                      masked=masked, **kwargs)
    return r, got


def test_messages_split_anywhere_fragmented_and_between_control_frames_are_read_whole():
    r, got = reader(masked=True)
    stream = (frame(b"want one", masked=True) + frame(b"skip" + os.urandom(200_000), masked=True)
              + frame(b"want frag ", masked=True, fin=False) + frame(b"ping", opcode=9, masked=True)
              + frame(b"and end", opcode=0, masked=True) + frame(b"want " + b"y" * 70_000, masked=True))
    for i in range(0, len(stream), 5):
        r.feed(stream[i:i + 5])
    assert got == [b"want one", b"want frag and end", b"want " + b"y" * 70_000] and not r.broken


def test_a_message_not_wanted_is_never_held_and_one_too_large_is_dropped():
    r, got = reader(masked=False, max_message=10_000)
    r.feed(frame(b"skip" + b"z" * 100_000)[:50_000])
    assert r.message == [] and r.want is False  # mid-message: skipping, nothing kept
    r.feed(frame(b"skip" + b"z" * 100_000)[50_000:])
    r.feed(frame(b"want" + b"w" * 20_000) + frame(b"want small"))
    assert got == [b"want small"]


@pytest.mark.parametrize("reset", [False, True], ids=["context-takeover", "no-context-takeover"])
def test_compressed_messages_are_inflated_with_or_without_context_takeover(reset):
    r, got = reader(masked=False, deflate=True, reset_context=reset)
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    messages = [b"want " + b"a" * 5000, b"skip " + os.urandom(10_000), b"want " + b"a" * 5000 + b"!"]
    for m in messages:
        if reset:
            compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = compressor.compress(m) + compressor.flush(zlib.Z_SYNC_FLUSH)
        r.feed(frame(data[:-4], opcode=2, rsv1=True))
    assert got == [messages[0], messages[2]] and not r.broken


def test_broken_framing_stops_the_reading_not_the_caller():
    r, got = reader(masked=True)
    r.feed(frame(b"want unmasked", masked=False))  # a visitor's frame must be masked
    assert r.broken and got == []
    r.feed(frame(b"want later", masked=True))
    assert got == []
    r2, _ = reader(masked=False)
    r2.feed(frame(b"continuation first", opcode=0))
    assert r2.broken


def test_first_line_keeps_eighty_characters_of_the_first_line_with_something_on_it():
    assert first_line("\n   \n  import numpy as np  \nsecret = 1") == "import numpy as np"
    assert first_line("a" * 200) == "a" * 80
    assert first_line(None) == "" and first_line(["x"]) == ""


# --- the stuck rule, on a fake clock --------------------------------------------------------------------

def test_stuck_after_errors_in_a_row_or_long_without_success_while_trying():
    rule = StuckRule(errors=3, minutes=10, idle_minutes=5)
    seat = Seat("c", "", 1)
    for i in range(2):
        seat.ran("k", f"m{i}", "cell", "x", 100.0 + i)
        seat.replied(f"m{i}", "error", "NameError", "x", 100.5 + i)
    assert seat.stuck_reason(rule, 102) is None and seat.state(rule, 102) == WORKING
    seat.ran("k", "m2", "cell", "x", 103)
    seat.replied("m2", "error", "NameError", "x", 103.5)
    assert seat.stuck_reason(rule, 104) == ("errors", "3 errors in a row")
    seat.ran("k", "m3", "cell", "x", 105)
    seat.replied("m3", "ok", "", "", 105.5)
    assert seat.stuck_reason(rule, 106) is None and seat.errors_in_a_row == 0

    # Ten minutes of runs, the last one failing, none succeeding: stuck; once they stop trying, idle.
    seat.ran("k", "m4", "cell2", "y", 105 + 9 * 60)
    seat.replied("m4", "error", "TypeError", "y", 105 + 9 * 60)
    assert seat.stuck_reason(rule, 105 + 9.9 * 60) is None
    assert seat.stuck_reason(rule, 106 + 10 * 60) == ("no_success", "no success for 10 min")
    assert seat.stuck_reason(rule, 105 + 19.5 * 60) is None  # (no run for ten minutes: no longer trying)
    seat.stuck_since = 1.0
    assert seat.state(rule, 2000) == STUCK
    seat.stuck_since = None
    assert seat.state(rule, 105 + 9 * 60 + 5 * 60) == IDLE


def test_aborted_runs_and_unknown_replies_do_not_count():
    seat = Seat("c", "", 1)
    seat.ran("k", "m1", "cell", "x", 1)
    assert seat.replied("m1", "aborted", "", "", 2) is None and seat.cells_run == 0
    assert seat.replied("never-sent", "ok", "", "", 2) is None and seat.cells_run == 0


@pytest.mark.parametrize("binary", [True, False], ids=["v1-binary", "json"])
async def test_runs_the_server_asks_for_are_seen_from_the_kernels_broadcasts(kernel_server, binary):
    """Server-side execution: no execute_request or execute_reply crosses the WebSocket; execute_input, error and
    the idle after the run do, and say when it began, that it failed, and when it ended."""
    observer = Observer()
    proxy = await watching_proxy(kernel_server, observer)
    try:
        conn = await open_channels(proxy, binary)
        for code, count in (("x = 1\nmore", 3), ("fail()", 4)):
            poke = message("kernel_info_request", {"code": code}, "shell")
            await conn.write_message(encode_v1("shell", poke) if binary else json.dumps(poke), binary=binary)
            for _ in range(count):
                await conn.read_message()
        conn.close()
    finally:
        await proxy.stop()
    started = [e for e in observer.events if e[0] == "started"]
    assert [e[4] for e in started] == ["x = 1", "fail()"]
    finished = [e for e in observer.events if e[0] == "finished"]
    assert [e[3] for e in finished] == [e[3] for e in started]  # each idle names the run it ends
    failed = [e for e in observer.events if e[0] == "replied"]
    assert [e[3:] for e in failed] == [("error", "NameError", "name 'x' is not defined")]


def test_a_seat_counts_a_run_seen_both_ways_once_and_an_aborted_one_never():
    seat = Seat("c", "", 1)
    seat.ran("k", "m1", "cell-1", "x = 1", 1.0)  # over the WebSocket
    seat.started("k", "m1", "x = 1", 1.1)  # and its broadcast start
    assert seat.replied("m1", "ok", "", "", 1.2) is not None
    seat.started("k", "m1", "x = 1", 1.3)  # (a late broadcast of the same run: not a new one)
    assert seat.finished("m1", 1.4) is None and seat.cells_run == 1
    seat.ran("k", "m2", "cell-2", "y", 2.0)  # aborted behind a failure: it never began
    assert seat.finished("m2", 2.1) is None and seat.cells_run == 1
    seat.started("k", "s1", "z = 2", 3.0)  # asked for by the server: known only from the broadcasts
    assert seat.pending["s1"].started and seat.first_line == "z = 2"
    seat.replied("s1", "error", "NameError", "bad", 3.1)
    assert seat.finished("s1", 3.2) is None  # (its idle after the error: already counted)
    assert (seat.cells_run, seat.errors, seat.errors_in_a_row) == (2, 1, 1)
