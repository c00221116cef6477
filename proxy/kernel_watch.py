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

When the notebook runs on the server (Jupyter's server-side execution: the
front end asks for a run over HTTP, and the server's own client talks to the
kernel), no ``execute_request`` or ``execute_reply`` crosses the WebSocket,
but the kernel's broadcasts still do, so three more are read:

- ``execute_input``: a run started (its request's id, its code's first line);
- ``error``: that run failed (an error's name and first line);
- ``status`` ``idle`` with that run's id: it ended (without an ``error``: well).

The run's request itself (``POST …/api/kernels/<id>/execute``, a small JSON
body: the code and the cell's id) passes through the proxy too: ``ExecuteTee``
reads its first ``EXECUTE_BODY`` bytes as they are relayed and tells the
observer which cell asked (``requested``); the kernel's runs start in the order
they were asked.

A run seen both ways (a front end that still sends its requests over the
WebSocket) is one run: the class view keys runs by their request's id.

Everything else (outputs, completions, widgets) streams past unread. Only the
few fields above reach the observer, cut to ``LINE`` characters: nothing else
of an attendee's code or outputs is kept. The watch observes: the bytes were
forwarded before it sees them, and a message it cannot read is simply not seen.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Protocol

from .wsframes import MessageReader, deflate_params

log = logging.getLogger("nbpool.proxy")

KERNEL_CHANNELS = re.compile(rb"/api/kernels/([0-9A-Za-z-]{1,64})/channels$")
KERNEL_EXECUTE = re.compile(rb"/api/kernels/([0-9A-Za-z-]{1,64})/execute$")
EXECUTE_BODY = 64 * 1024  # bytes of a run's request read at most (its code and cell id; a longer one is not read)
V1 = b"v1.kernel.websocket.jupyter.org"
LINE = 80  # characters kept of a first line (code, an error's message)
MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([A-Za-z_]{1,40})"')
FROM_VISITOR = frozenset({b"execute_request"})
FROM_KERNEL = frozenset({b"execute_reply", b"status", b"execute_input", b"error"})
PARENT_ID = re.compile(rb'"msg_id"\s*:\s*"([^"\\]{1,64})"')


class KernelObserver(Protocol):
    """Who is told (the class view); ``owner`` is the route's data (its container), ``kernel`` the kernel's id."""

    def ran(self, owner, kernel: str, msg_id: str, cell_id: str, first_line: str) -> None: ...

    def replied(self, owner, kernel: str, msg_id: str, status: str, ename: str, evalue: str) -> None: ...

    def requested(self, owner, kernel: str, cell_id: str, first_line: str) -> None: ...

    def started(self, owner, kernel: str, msg_id: str, first_line: str) -> None: ...

    def finished(self, owner, kernel: str, msg_id: str) -> None: ...

    def kernel_state(self, owner, kernel: str, state: str) -> None: ...

    def kernel_gone(self, owner, kernel: str) -> None: ...


def first_line(text, limit: int = LINE) -> str:
    """The first line with something on it, stripped and cut to ``limit`` characters."""
    if not isinstance(text, str):
        return ""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ""


def v1_part(data: bytes, k: int) -> bytes | None:
    """Part ``k`` of a v1 binary message (0 channel, 1 header, 2 parent header, 3 metadata, 4 content), when
    ``data`` holds it whole; None if it is not one."""
    if len(data) < 8:
        return None
    count = int.from_bytes(data[:8], "little")
    if not 3 <= count <= 1024 or k + 1 >= count or len(data) < 8 * (k + 3):
        return None
    start = int.from_bytes(data[8 * (k + 1):8 * (k + 2)], "little")
    end = int.from_bytes(data[8 * (k + 2):8 * (k + 3)], "little")
    if not 8 * (count + 1) <= start <= end <= len(data):
        return None
    return data[start:end]


def message_type(opcode: int, prefix: bytes, binary_v1: bool) -> bytes | None:
    if opcode == 1 and not binary_v1:
        found = MSG_TYPE.search(prefix)
        return found.group(1) if found else None
    if opcode == 2 and binary_v1:
        header = v1_part(prefix, 1)
        if header is None:
            return None  # the header is not in the first bytes: no kernel message we read is like that
        found = MSG_TYPE.search(header)
        return found.group(1) if found else None
    return None  # the JSON protocol's binary form carries buffers (widgets' data): never one we read


def parts(payload: bytes, binary_v1: bool, wanted: tuple[int, ...]) -> list[dict] | None:
    """The message's parts numbered in ``wanted`` (1 header, 2 parent header, 3 metadata, 4 content), each a
    dict ({} when it is not one), or None when the message cannot be read."""
    try:
        if binary_v1:
            found = [v1_part(payload, k) for k in wanted]
            if any(p is None for p in found):
                return None
            values = [json.loads(p) if p else {} for p in found]
        else:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                return None
            values = [msg.get(NAMES[k]) for k in wanted]
    except (ValueError, UnicodeDecodeError):
        return None
    return [v if isinstance(v, dict) else {} for v in values]


NAMES = {1: "header", 2: "parent_header", 3: "metadata", 4: "content"}
STATE = re.compile(rb'"execution_state"\s*:\s*"([a-z]{1,16})"')


def _text(value, limit: int = 64) -> str:
    return value[:limit] if isinstance(value, str) else ""


class KernelWatch:
    """The two readers of one kernel WebSocket and what they tell ``observer``."""

    __slots__ = ("binary_v1", "from_kernel", "from_visitor", "kernel", "kernel_kind", "observer", "owner")

    def __init__(self, kernel: str, owner, observer: KernelObserver, binary_v1: bool, deflate: tuple[bool, bool, bool]):
        self.kernel = kernel
        self.owner = owner
        self.observer = observer
        self.binary_v1 = binary_v1
        self.kernel_kind: bytes | None = None  # the type of the kernel's message being read
        agreed, server_reset, client_reset = deflate
        self.from_visitor = MessageReader(self._wanted_from_visitor, self._from_visitor, masked=True,
                                          deflate=agreed, reset_context=client_reset)
        self.from_kernel = MessageReader(self._wanted_from_kernel, self._from_kernel, masked=False,
                                         deflate=agreed, reset_context=server_reset)

    @classmethod
    def attach(cls, path: bytes, answer_headers: list[tuple[bytes, bytes]], owner,
               observer: KernelObserver) -> KernelWatch | None:
        """A watch for an upgrade of ``path`` the target accepted with ``answer_headers``, when it is a
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

    def gone(self) -> None:
        """The WebSocket closed: what it said of the kernel's state is no longer known."""
        self.observer.kernel_gone(self.owner, self.kernel)

    def _wanted_from_visitor(self, opcode: int, prefix: bytes) -> bool:
        return message_type(opcode, prefix, self.binary_v1) in FROM_VISITOR

    def _wanted_from_kernel(self, opcode: int, prefix: bytes) -> bool:
        self.kernel_kind = message_type(opcode, prefix, self.binary_v1)  # (its message is delivered next)
        return self.kernel_kind in FROM_KERNEL

    def _from_visitor(self, opcode: int, payload: bytes) -> None:
        """An execute_request: its id, cell and code's first line."""
        found = parts(payload, self.binary_v1, (1, 3, 4))
        if found is None:
            return
        header, metadata, content = found
        if content.get("silent") is True:  # a front end's own code (a variable inspector): not the attendee's
            return
        self.observer.ran(self.owner, self.kernel, _text(header.get("msg_id")), _text(metadata.get("cellId")),
                          first_line(content.get("code")))

    def _from_kernel(self, opcode: int, payload: bytes) -> None:
        """A status (its state read without parsing: two of them for every run), an execute_reply, or a run's
        broadcast start (execute_input) or failure (error)."""
        kind = self.kernel_kind
        if kind == b"status":
            content = v1_part(payload, 4) if self.binary_v1 else payload
            found = STATE.search(content) if content else None
            if found:
                state = found.group(1).decode()
                self.observer.kernel_state(self.owner, self.kernel, state)
                if state == "idle":
                    self._idle(payload)
            return
        found = parts(payload, self.binary_v1, (2, 4))
        if found is None:
            return
        parent, content = found
        msg_id = _text(parent.get("msg_id"))
        if kind == b"execute_input":
            self.observer.started(self.owner, self.kernel, msg_id, first_line(content.get("code")))
        elif kind == b"error":
            self.observer.replied(self.owner, self.kernel, msg_id, "error", _text(content.get("ename"), LINE),
                                  first_line(content.get("evalue")))
        else:
            self.observer.replied(self.owner, self.kernel, msg_id, _text(content.get("status"), 16),
                                  _text(content.get("ename"), LINE), first_line(content.get("evalue")))

    def _idle(self, payload: bytes) -> None:
        """The kernel went idle after the request named in the parent header: that run, if any, ended."""
        if self.binary_v1:
            parent = v1_part(payload, 2)
            found = PARENT_ID.search(parent) if parent else None
            msg_id = found.group(1).decode("utf-8", "replace") if found else ""
        else:
            got = parts(payload, False, (2,))
            msg_id = _text(got[0].get("msg_id")) if got else ""
        if msg_id:
            self.observer.finished(self.owner, self.kernel, msg_id)


class ExecuteTee:
    """A server-side run's request (``POST …/api/kernels/<id>/execute``), read as the proxy relays it: which cell."""

    __slots__ = ("chunks", "kernel", "observer", "owner", "size")

    def __init__(self, kernel: str, owner, observer: KernelObserver):
        self.kernel = kernel
        self.owner = owner
        self.observer = observer
        self.chunks: list[bytes] = []
        self.size = 0

    @classmethod
    def attach(cls, path: bytes, owner, observer: KernelObserver) -> ExecuteTee | None:
        found = KERNEL_EXECUTE.search(path)
        return cls(found.group(1).decode(), owner, observer) if found else None

    def feed(self, body: bytes) -> None:
        if self.size <= EXECUTE_BODY:
            self.chunks.append(body)
            self.size += len(body)

    def done(self) -> None:
        """The request is whole: tell which cell asked (never the proxy's trouble if that fails)."""
        if self.size > EXECUTE_BODY:
            return
        try:
            request = json.loads(b"".join(self.chunks))
            if not isinstance(request, dict):
                return
            metadata = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
            cell_id = metadata.get("cell_id") or metadata.get("cellId")
            self.observer.requested(self.owner, self.kernel, _text(cell_id), first_line(request.get("code")))
        except (ValueError, UnicodeDecodeError):
            return
        except Exception:
            log.exception("reading a run's request for %s failed", self.kernel)
