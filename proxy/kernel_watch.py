"""What a kernel WebSocket says, seen as it passes: cells run, their outcomes, the kernel busy or idle.

Every Jupyter front end speaks to its kernel over ``<base>api/kernels/<id>/channels``,
in one of two forms: JSON text messages (the original protocol), or, when both
ends offer ``v1.kernel.websocket.jupyter.org`` (JupyterLab 4 and Jupyter Server
2 do), binary messages made of an offset table, the channel's name, then the
header, parent header, metadata and content as separate JSON parts. Either way
the header comes first, so a message's type is known from its first bytes, and
only three kinds are ever read whole:

- ``execute_request`` (visitor to kernel): its id, the cell's id (which
  Jupyter's front ends put in its metadata as ``cellId``) and its code's first line;
- ``execute_reply`` (kernel to visitor): the outcome (``ok``, ``error``,
  ``aborted``) of the request it answers, and an error's name and first line;
- ``status``: ``busy`` or ``idle``.

Everything else (outputs, completions, widgets) streams past unread. Only the
few fields above reach the observer, cut to ``LINE`` characters: nothing else
of an attendee's code or outputs is kept. The watch observes: the bytes were
forwarded before it sees them, and a message it cannot read is simply not seen.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Protocol

from .wsframes import MessageReader, deflate_params

KERNEL_CHANNELS = re.compile(rb"/api/kernels/([0-9A-Za-z-]{1,64})/channels$")
V1 = b"v1.kernel.websocket.jupyter.org"
LINE = 80  # characters kept of a first line (code, an error's message)
MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([A-Za-z_]{1,40})"')
FROM_VISITOR = frozenset({b"execute_request"})
FROM_KERNEL = frozenset({b"execute_reply", b"status"})


class KernelObserver(Protocol):
    """Who is told (the class view); ``owner`` is the route's data (its container), ``kernel`` the kernel's id."""

    def ran(self, owner, kernel: str, msg_id: str, cell_id: str, first_line: str) -> None: ...

    def replied(self, owner, kernel: str, msg_id: str, status: str, ename: str, evalue: str) -> None: ...

    def kernel_state(self, owner, kernel: str, state: str) -> None: ...


def first_line(text, limit: int = LINE) -> str:
    """The first line with something on it, stripped and cut to ``limit`` characters."""
    if not isinstance(text, str):
        return ""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ""


def v1_parts(data: bytes) -> list[bytes] | None:
    """The parts of a v1 binary message (channel, header, parent header, metadata, content, buffers...), as far
    as ``data`` holds them whole; None if it is not one."""
    if len(data) < 8:
        return None
    count = int.from_bytes(data[:8], "little")
    if not 3 <= count <= 1024 or len(data) < 8 * (count + 1):
        return None
    offsets = [int.from_bytes(data[8 * k:8 * k + 8], "little") for k in range(1, count + 1)]
    if offsets[0] != 8 * (count + 1) or any(b < a for a, b in itertools.pairwise(offsets)):
        return None
    return [data[a:b] for a, b in itertools.pairwise(offsets) if b <= len(data)]


def message_type(opcode: int, prefix: bytes, binary_v1: bool) -> bytes | None:
    if opcode == 1 and not binary_v1:
        found = MSG_TYPE.search(prefix)
        return found.group(1) if found else None
    if opcode == 2 and binary_v1:
        parts = v1_parts(prefix)
        if parts is None or len(parts) < 2:
            return None  # the header is not in the first bytes: no kernel message we read is like that
        found = MSG_TYPE.search(parts[1])
        return found.group(1) if found else None
    return None  # the JSON protocol's binary form carries buffers (widgets' data): never one we read


def decode(opcode: int, payload: bytes, binary_v1: bool) -> tuple[dict, dict, dict, dict] | None:
    """(header, parent_header, metadata, content) of a whole message, or None."""
    try:
        if binary_v1:
            parts = v1_parts(payload)
            if parts is None or len(parts) < 5:
                return None
            header, parent, metadata, content = (json.loads(p) if p else {} for p in parts[1:5])
        else:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                return None
            header, parent = msg.get("header"), msg.get("parent_header")
            metadata, content = msg.get("metadata"), msg.get("content")
    except (ValueError, UnicodeDecodeError):
        return None
    fields = tuple(x if isinstance(x, dict) else {} for x in (header, parent, metadata, content))
    return fields  # type: ignore[return-value]


def _text(value, limit: int = 64) -> str:
    return value[:limit] if isinstance(value, str) else ""


class KernelWatch:
    """The two readers of one kernel WebSocket and what they tell ``observer``."""

    __slots__ = ("binary_v1", "from_kernel", "from_visitor", "kernel", "observer", "owner")

    def __init__(self, kernel: str, owner, observer: KernelObserver, binary_v1: bool, deflate: tuple[bool, bool, bool]):
        self.kernel = kernel
        self.owner = owner
        self.observer = observer
        self.binary_v1 = binary_v1
        agreed, server_reset, client_reset = deflate
        self.from_visitor = MessageReader(self._wanted_from_visitor, self._delivered, masked=True,
                                          deflate=agreed, reset_context=client_reset)
        self.from_kernel = MessageReader(self._wanted_from_kernel, self._delivered, masked=False,
                                         deflate=agreed, reset_context=server_reset)

    @classmethod
    def attach(cls, path: bytes, answer_headers: list[tuple[bytes, bytes]], owner,
               observer: KernelObserver) -> KernelWatch | None:
        """A watch for an upgrade of ``path`` the backend accepted with ``answer_headers``, when it is a
        kernel's channels; else None."""
        found = KERNEL_CHANNELS.search(path)
        if found is None:
            return None
        protocol, extensions = b"", b""
        for name, value in answer_headers:
            low = name.lower()
            if low == b"sec-websocket-protocol":
                protocol = value.strip()
            elif low == b"sec-websocket-extensions":
                extensions += value + b","
        return cls(found.group(1).decode(), owner, observer, protocol == V1,
                   deflate_params(extensions.decode("latin-1")))

    def _wanted_from_visitor(self, opcode: int, prefix: bytes) -> bool:
        return message_type(opcode, prefix, self.binary_v1) in FROM_VISITOR

    def _wanted_from_kernel(self, opcode: int, prefix: bytes) -> bool:
        return message_type(opcode, prefix, self.binary_v1) in FROM_KERNEL

    def _delivered(self, opcode: int, payload: bytes) -> None:
        fields = decode(opcode, payload, self.binary_v1)
        if fields is None:
            return
        header, parent, metadata, content = fields
        kind = header.get("msg_type")
        observer, owner, kernel = self.observer, self.owner, self.kernel
        if kind == "execute_request":
            if content.get("silent") is True:  # a front end's own code (a variable inspector): not the attendee's
                return
            observer.ran(owner, kernel, _text(header.get("msg_id")), _text(metadata.get("cellId")),
                         first_line(content.get("code")))
        elif kind == "execute_reply":
            observer.replied(owner, kernel, _text(parent.get("msg_id")), _text(content.get("status"), 16),
                             _text(content.get("ename"), LINE), first_line(content.get("evalue")))
        elif kind == "status":
            observer.kernel_state(owner, kernel, _text(content.get("execution_state"), 16))
