"""A shared document's WebSocket that may only read: the visitor's edits never reach the server.

JupyterLab's real-time collaboration keeps each open notebook as a shared
document (Yjs) in a "room" on the notebook server, reached by a WebSocket.
Whoever is in the room may change the document: the server applies every
update a client sends. A helper who only watches an attendee's notebook must
see it live (the attendee's unsaved typing included) and change nothing,
whatever their page does. So the proxy reads what the watcher's browser sends
on that WebSocket, frame by frame, before passing it on, and lets through only:

- control frames (close, ping, pong);
- y-websocket's "sync step 1" (``[0, 0, …]``: "here is what I have, send me
  the rest"), which asks and changes nothing;
- awareness (``[1, …]``): who is in the room and where their cursor is, which is
  how the attendee sees the helper as a named collaborator.

Everything else is dropped: sync step 2 and updates (``[0, 1]``, ``[0, 2]``:
edits), any other message type, text frames and fragmented messages. The
handshake for such a WebSocket is sent without ``Sec-WebSocket-Extensions``, so
no compression is agreed and each frame can be read and dropped on its own
(a compressed stream's frames depend on each other). A frame that breaks the
framing, is compressed anyway, comes unmasked, or is longer than ``MAX_FRAME``
ends the connection: the watcher's browser reconnects and asks again.
"""

from __future__ import annotations

MAX_FRAME = 1 << 20  # bytes of one frame's payload, at most (an awareness or sync-step-1 message is far smaller)
SYNC, AWARENESS = 0, 1
SYNC_STEP1 = 0


class ReadOnlyDoc:
    """Filters one client-to-server direction of a collaboration room's WebSocket (``feed``)."""

    __slots__ = ("broken", "buffer", "dropped", "passed")

    def __init__(self) -> None:
        self.buffer = b""
        self.broken = ""  # why the stream cannot go on ('' while it can)
        self.dropped = 0  # messages kept from the server
        self.passed = 0

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` (after what came before) that may go on: whole allowed frames only."""
        if self.broken:
            return b""
        buf = self.buffer + data if self.buffer else data
        out = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if not b1 & 0x80:
                self.broken = "an unmasked frame from the browser"
                break
            if b0 & 0x70:
                self.broken = "a compressed frame (no compression was agreed)"
                break
            size = b1 & 0x7F
            head = 2
            if size == 126:
                if end - pos < 4:
                    break
                size = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif size == 127:
                if end - pos < 10:
                    break
                size = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if size > MAX_FRAME:
                self.broken = f"a frame of {size} bytes"
                break
            total = head + 4 + size
            if end - pos < total:
                break
            if self.allowed(b0, buf, pos + head, size):
                out.append(buf[pos:pos + total])
                self.passed += 1
            else:
                self.dropped += 1
            pos += total
        self.buffer = b"" if self.broken else buf[pos:]
        return b"".join(out)

    @staticmethod
    def allowed(b0: int, buf: bytes, at: int, size: int) -> bool:
        """Whether the frame whose mask starts at ``at`` (``size`` payload bytes) may reach the server."""
        opcode = b0 & 0x0F
        if opcode >= 8:
            return True  # close, ping, pong
        if opcode != 2 or not b0 & 0x80 or size < 1:
            return False  # text, a fragment or continuation, an empty message: never a reader's
        mask = buf[at:at + 4]
        kind = buf[at + 4] ^ mask[0]
        if kind == AWARENESS:
            return True
        return kind == SYNC and size >= 2 and buf[at + 5] ^ mask[1] == SYNC_STEP1
