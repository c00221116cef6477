"""Reading a WebSocket's messages as they pass by, one direction of a tunnel, without holding a byte back.

``splice`` forwards every read first; a ``MessageReader`` is then fed the same
bytes and finds the messages in them (RFC 6455 framing, unmasking, and
permessage-deflate (RFC 7692) when the two ends agreed on it). It is built for
a watcher that wants only a few kinds of small messages among many large ones
(a kernel's output): for each message it first offers the opening bytes
(``PREFIX``) to ``wanted``; a message not wanted is skipped as it streams by,
never copied, and only a wanted one is collected whole (up to ``max_message``)
and given to ``deliver``. Unparsable framing stops the reading for good
(``broken``), never the tunnel.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

PREFIX = 4096  # opening bytes of a message on which ``wanted`` decides
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692: the end of each compressed message, which senders strip


def unmask(data: bytes, mask: bytes, offset: int) -> bytes:
    """``data`` XOR the repeating 4-byte ``mask``, starting ``offset`` bytes into the frame's payload."""
    if not data:
        return b""
    shift = offset % 4
    key = mask[shift:] + mask[:shift]
    n = len(data)
    stream = key * (n // 4 + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")).to_bytes(n, "little")


def deflate_params(extensions: str) -> tuple[bool, bool, bool]:
    """(agreed, server_no_context_takeover, client_no_context_takeover) from the server's
    Sec-WebSocket-Extensions answer."""
    for offer in extensions.split(","):
        params = [p.strip().lower() for p in offer.split(";")]
        if params and params[0] == "permessage-deflate":
            return True, "server_no_context_takeover" in params, "client_no_context_takeover" in params
    return False, False, False


class MessageReader:
    """One direction's messages: ``wanted(opcode, prefix) -> bool`` picks; ``deliver(opcode, payload)`` takes.

    ``masked``: the visitor's direction (clients mask every frame). ``deflate``:
    permessage-deflate was agreed; ``reset_context``: this direction's sender
    starts each message afresh (no_context_takeover).
    """

    __slots__ = (
        "broken",
        "collect",
        "control",
        "deflate",
        "deliver",
        "fin",
        "head",
        "inflater",
        "mask",
        "masked",
        "max_message",
        "message",
        "opcode",
        "pos",
        "remaining",
        "reset_context",
        "rsv1",
        "size",
        "want",
        "wanted",
    )

    def __init__(self, wanted: Callable[[int, bytes], bool], deliver: Callable[[int, bytes], None], *,
                 masked: bool, deflate: bool = False, reset_context: bool = False, max_message: int = 1 << 20):
        self.wanted = wanted
        self.deliver = deliver
        self.masked = masked
        self.deflate = deflate
        self.reset_context = reset_context
        self.max_message = max_message
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflate else None
        self.broken = False
        self.head = b""  # a frame header split between reads
        self.remaining = 0  # payload bytes of the current frame still to come
        self.pos = 0  # payload bytes of the current frame seen so far (for the mask's phase)
        self.mask = b""
        self.opcode = 0  # the current message's opcode (1 text, 2 binary); 0 between messages
        self.rsv1 = False  # the current message is compressed
        self.message: list[bytes] = []  # its (decoded) bytes so far, while it is collected
        self.size = 0
        self.want: bool | None = None  # None: not decided yet (fewer than PREFIX bytes so far)
        self.collect = False  # the current frame's payload belongs to a data message (not a control frame)
        self.fin = False  # the current frame ends its message
        self.control = False  # the current frame is a control frame (close, ping, pong)

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._feed(data)
        except (ValueError, zlib.error):
            self.stop()

    def stop(self) -> None:
        self.broken = True
        self.message = []
        self.inflater = None

    def _feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self.remaining:
                take = min(self.remaining, n - i)
                if self.collect:
                    self._payload(data, i, take)
                self.remaining -= take
                self.pos += take
                i += take
                if not self.remaining:
                    self._frame_end()
                continue
            if self.head:
                data, i, n = self.head + data[i:], 0, len(self.head) + n - i
                self.head = b""
            used = self._header(data, i)
            if used == 0:
                self.head = data[i:]
                return
            i += used
            size = self.remaining
            if self.collect and self.fin and not self.message and not self.rsv1 and size <= n - i:
                # The common case, a whole small message in one read: decided and delivered from one slice.
                self._whole(data[i:i + size])
                self.remaining = 0
                i += size
                continue
            if not self.remaining:
                self._frame_end()

    def _header(self, data: bytes, i: int) -> int:
        """Parses a frame header at ``data[i:]``; returns its length, 0 when it is not all there yet."""
        avail = len(data) - i
        if avail < 2:
            return 0
        b0, b1 = data[i], data[i + 1]
        length = b1 & 0x7F
        need = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
        if avail < need:
            return 0
        if bool(b1 & 0x80) != self.masked:
            raise ValueError("masking does not match the direction")
        at = i + 2
        if length == 126:
            length = int.from_bytes(data[at:at + 2], "big")
            at += 2
        elif length == 127:
            length = int.from_bytes(data[at:at + 8], "big")
            at += 8
        self.mask = data[at:at + 4] if self.masked else b""
        opcode = b0 & 0x0F
        self.fin = bool(b0 & 0x80)
        self.remaining, self.pos = length, 0
        if opcode >= 8:  # a control frame (close, ping, pong): between or inside a message's frames
            self.collect = False
            self.control = True
            return need
        self.control = False
        if opcode == 0:
            if not self.opcode:
                raise ValueError("a continuation frame outside a message")
        elif self.opcode:
            raise ValueError("a new message inside another")
        else:
            self.opcode = opcode
            self.rsv1 = bool(b0 & 0x40)
            if self.rsv1 and not self.deflate:
                raise ValueError("a compressed message without permessage-deflate")
            self.message, self.size, self.want = [], 0, None
        self.collect = True
        return need

    def _whole(self, payload: bytes) -> None:
        """A whole, uncompressed message in one frame (``collect``, ``fin``, nothing collected before)."""
        if self.masked:
            payload = unmask(payload, self.mask, 0)
        if len(payload) <= self.max_message and self.wanted(self.opcode, payload[:PREFIX]):
            self.deliver(self.opcode, payload)
        self.opcode, self.size, self.want = 0, 0, None

    def _payload(self, data: bytes, i: int, take: int) -> None:
        chunk = data[i:i + take]
        if self.masked:
            chunk = unmask(chunk, self.mask, self.pos)
        if self.rsv1:
            if self.want is False and self.reset_context:
                return  # its bytes matter to no later message
            self._inflate(chunk)
        else:
            self._take(chunk)

    def _inflate(self, chunk: bytes) -> None:
        """Decompressed in bounded steps: a few compressed bytes may stand for very many."""
        inflater = self.inflater
        piece = inflater.decompress(chunk, 1 << 20)
        self._take(piece)
        while inflater.unconsumed_tail:
            self._take(inflater.decompress(inflater.unconsumed_tail, 1 << 20))

    def _take(self, chunk: bytes) -> None:
        if self.want is False or not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_message:
            self.want, self.message = False, []
            return
        self.message.append(chunk)
        if self.want is None and self.size >= PREFIX:
            self._decide()

    def _decide(self) -> None:
        prefix = b"".join(self.message)
        self.message = [prefix]
        self.want = bool(self.wanted(self.opcode, prefix[:PREFIX]))
        if not self.want:
            self.message = []

    def _frame_end(self) -> None:
        if self.control or not self.fin:
            return
        if self.rsv1:
            if self.reset_context:
                if self.want is not False:
                    self._inflate(DEFLATE_TAIL)
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            else:
                self._inflate(DEFLATE_TAIL)
        if self.want is None:
            self._decide()
        if self.want:
            self.deliver(self.opcode, b"".join(self.message))
        self.opcode, self.message, self.size, self.want = 0, [], 0, None
