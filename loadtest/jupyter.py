"""A small async client for a Jupyter server's REST and kernel WebSocket APIs.

Used by the load generator (each simulated attendee starts a kernel and runs
cells, as a browser would) and by the tests that check the workshop image.
Like JupyterLab, it asks for the ``v1.kernel.websocket.jupyter.org``
subprotocol (binary frames with offsets) and falls back to the legacy JSON
messages when the server does not select it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"


def encode_v1(channel: str, msg: dict) -> bytes:
    """A message in the v1 kernel WebSocket format: offsets, channel, then JSON parts."""
    parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
    chan = channel.encode()
    offsets = [8 * (len(parts) + 3)]
    offsets.append(offsets[-1] + len(chan))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + chan + b"".join(parts)


def decode_v1(data: bytes) -> dict:
    """The inverse of ``encode_v1`` (buffers, if any, are left out)."""
    count = int.from_bytes(data[:8], "little")
    offsets = [int.from_bytes(data[8 * (i + 1): 8 * (i + 2)], "little") for i in range(count)]
    offsets.append(len(data))
    channel = data[offsets[0]:offsets[1]].decode()
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(1, min(count, 5))]
    header, parent, metadata, content = (json.loads(p) if p else {} for p in parts)
    return {"channel": channel, "header": header, "parent_header": parent, "metadata": metadata,
            "content": content, "msg_type": header.get("msg_type")}


DIED = ("restarting", "dead")  # execution states the server reports when a kernel process ends
OUTPUTS = ("stream", "execute_result", "display_data", "error")


def output_size(kind: str, content: dict) -> int:
    """Bytes one output adds to the notebook: its text, its data (base64 images as they are), its traceback."""
    if kind == "stream":
        return len(str(content.get("text", "")).encode())
    if kind == "error":
        return sum(len(str(line).encode()) for line in content.get("traceback") or ())
    data = content.get("data") or {}
    return sum(len(v.encode()) if isinstance(v, str) else len(json.dumps(v).encode()) for v in data.values())


class KernelError(Exception):
    """A kernel could not be started, reached or run; the message says which.

    ``status`` is the HTTP status when a REST call was answered with an error
    (for example 500 from ``POST api/kernels``), else None.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class KernelDied(KernelError):
    """The kernel process ended while a request ran (the server restarts it, its state gone)."""


@dataclass
class ExecutionResult:
    """What one execute_request produced."""

    status: str  # "ok" or "error" (from execute_reply)
    stdout: str = ""
    stderr: str = ""
    # text/plain of execute_result and display_data, in order
    text: list[str] = field(default_factory=list)
    # MIME types of rich outputs seen (e.g. "image/png" from a plot)
    mimetypes: set[str] = field(default_factory=set)
    error: str = ""  # "ename: evalue" when status is "error"
    output_bytes: int = 0  # the outputs' size as the notebook would store them (text and data, UTF-8)
    # time.monotonic() when the first output (stream, result, display, error) and the reply arrived
    first_output_at: float | None = None
    reply_at: float | None = None

    @property
    def output(self) -> str:
        """All text output: the stream, then each result's text/plain."""
        return self.stdout + "".join(self.text)


def _ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


class KernelClient:
    """One kernel on one Jupyter server, driven over REST and the WebSocket.

    ``base_url`` is the server's root as the client reaches it, for example
    ``http://127.0.0.1:8000/user/abc/``; ``headers`` go on every request
    (an ``Authorization: token …`` header, or a ``Cookie`` header when a proxy
    injects the token on the visitor's behalf). ``http_client`` is the
    ``AsyncHTTPClient`` for the REST calls; by default the event loop's shared
    one (which runs at most 10 requests at once: a load generator passes its
    own, with a larger ``max_clients``).
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, *, timeout: float = 60.0,
                 http_client: AsyncHTTPClient | None = None, ws_query: str = "", binary: bool = True):
        self.base_url = base_url.rstrip("/") + "/"
        self.headers = dict(headers or {})
        # More of the channels WebSocket's query, e.g. "token=…" as Thebe and JupyterLab add it (a browser
        # cannot set headers on a WebSocket).
        self.ws_query = ws_query
        # Offer Jupyter's binary v1 subprotocol (as JupyterLab 4 does); False: the JSON protocol only.
        self.binary = binary
        # A browser sends its page's origin on every POST and WebSocket handshake, and
        # nbpool's proxy refuses those from other origins: send the server's own.
        if not any(name.lower() == "origin" for name in self.headers):
            parts = urlsplit(self.base_url)
            self.headers["Origin"] = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.kernel_id: str | None = None
        self.session_id: str | None = None  # the server's session, when started by start_session
        self.session = uuid.uuid4().hex
        self._ws: WebSocketClientConnection | None = None
        self._http = http_client or AsyncHTTPClient()
        self.subprotocol: str | None = None  # what the server selected

    async def request(self, method: str, path: str, body: dict | None = None) -> dict | None:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        req = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else None,
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        resp = await self._http.fetch(req, raise_error=False)
        if resp.code >= 400 or resp.code == 599:
            reason = resp.error if resp.code == 599 else resp.reason
            raise KernelError(f"{method} {path} answered {resp.code} {reason}", status=resp.code)
        return json.loads(resp.body) if resp.body else None

    async def start(self, kernel_name: str = "python3") -> str:
        """Start a kernel and open its channels WebSocket; returns the kernel id."""
        model = await self.request("POST", "api/kernels", {"name": kernel_name})
        await self.attach(model["id"])
        return self.kernel_id

    async def start_session(self, path: str, kernel_name: str = "python3") -> str:
        """Open a notebook as the notebook page does: POST api/sessions, then the kernel's WebSocket.

        ``path`` is the notebook's path relative to the server's root. Returns the kernel id
        (the server starts a kernel for the session in the notebook's directory).
        """
        body = {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook", "kernel": {"name": kernel_name}}
        model = await self.request("POST", "api/sessions", body)
        self.session_id = model["id"]
        await self.attach(model["kernel"]["id"])
        return self.kernel_id

    async def attach(self, kernel_id: str) -> None:
        """Open the channels WebSocket of a kernel that already runs (its state intact)."""
        self.kernel_id = kernel_id
        url = _ws_url(f"{self.base_url}api/kernels/{self.kernel_id}/channels?session_id={self.session}"
                      + (f"&{self.ws_query}" if self.ws_query else ""))
        try:
            self._ws = await websocket_connect(
                HTTPRequest(url, headers=self.headers, request_timeout=self.timeout),
                max_message_size=64 * 1024 * 1024,
                subprotocols=[V1_SUBPROTOCOL] if self.binary else None,
            )
        except Exception as exc:
            raise KernelError(f"kernel websocket did not open: {exc}") from exc
        self.subprotocol = self._ws.selected_subprotocol
        # The kernel may still be starting: kernel_info answers once it is ready.
        await self._send_and_collect("kernel_info_request", {}, channel="shell")

    async def kernels(self) -> list[dict]:
        """The server's running kernels (REST)."""
        return await self.request("GET", "api/kernels")

    @property
    def connected(self) -> bool:
        """Whether its channels WebSocket is open (the server has not closed it)."""
        # Tornado keeps the client's protocol object after the server closes the connection (only our own
        # close() drops it): ask the protocol whether either side ended it or the stream went away.
        ws = self._ws
        return ws is not None and ws.protocol is not None and not ws.protocol.is_closing()

    def detach(self) -> None:
        """Close the WebSocket but leave the kernel running."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def _message(self, msg_type: str, content: dict, channel: str, metadata: dict | None = None) -> dict:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "username": "nbpool",
                "session": self.session,
                "msg_type": msg_type,
                "version": "5.3",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "parent_header": {},
            "metadata": metadata or {},
            "content": content,
            "buffers": [],
            "channel": channel,
        }

    async def _send_and_collect(self, msg_type: str, content: dict, channel: str,
                                metadata: dict | None = None) -> ExecutionResult:
        if self._ws is None:
            raise KernelError("kernel is not started")
        msg = self._message(msg_type, content, channel, metadata)
        msg_id = msg["header"]["msg_id"]
        try:
            if self.subprotocol == V1_SUBPROTOCOL:
                await self._ws.write_message(encode_v1(channel, msg), binary=True)
            else:
                await self._ws.write_message(json.dumps(msg))
        except WebSocketClosedError:
            raise KernelError("kernel websocket closed") from None
        result = ExecutionResult(status="ok")
        reply_seen = idle_seen = False
        deadline = asyncio.get_running_loop().time() + self.timeout
        # Done when both the shell reply and the iopub "idle" for this request have arrived.
        while not (reply_seen and idle_seen):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise KernelError(f"no reply to {msg_type} within {self.timeout:.0f}s")
            try:
                raw = await asyncio.wait_for(self._ws.read_message(), remaining)
            except TimeoutError:
                raise KernelError(f"no reply to {msg_type} within {self.timeout:.0f}s") from None
            if raw is None:
                raise KernelError("kernel websocket closed")
            if isinstance(raw, bytes):
                if self.subprotocol != V1_SUBPROTOCOL:
                    continue  # legacy binary messages carry buffers we do not need
                reply = decode_v1(raw)
            else:
                reply = json.loads(raw)
            kind = reply.get("msg_type") or reply["header"]["msg_type"]
            body = reply["content"]
            if kind == "status" and body.get("execution_state") in DIED:
                # The server's own word, parent-less: the kernel process died (its memory limit, a crash)
                # and is being restarted, so no reply to this request will ever come.
                raise KernelDied(f"the kernel died while running ({body['execution_state']}): "
                                 "its container's memory limit, or a crash")
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind in OUTPUTS:
                result.output_bytes += output_size(kind, body)
            if kind in ("stream", "execute_result", "display_data", "error") and result.first_output_at is None:
                result.first_output_at = time.monotonic()
            if reply.get("channel") == "shell" and kind.endswith("_reply"):
                reply_seen = True
                result.reply_at = time.monotonic()
                if body.get("status") == "error":
                    result.status = "error"
                    result.error = result.error or f"{body.get('ename')}: {body.get('evalue')}"
            elif kind == "status" and body.get("execution_state") == "idle":
                idle_seen = True
            elif kind == "stream":
                if body.get("name") == "stderr":
                    result.stderr += body.get("text", "")
                else:
                    result.stdout += body.get("text", "")
            elif kind in ("execute_result", "display_data"):
                data = body.get("data", {})
                result.mimetypes.update(data)
                if "text/plain" in data:
                    result.text.append(data["text/plain"])
            elif kind == "error":
                result.status = "error"
                result.error = f"{body.get('ename')}: {body.get('evalue')}"
        return result

    async def execute(self, code: str, cell_id: str | None = None) -> ExecutionResult:
        """Run ``code`` and wait for its reply and outputs; ``cell_id``: the notebook cell it is, as Jupyter's
        front ends tell the kernel (its metadata's cellId)."""
        return await self._send_and_collect(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
            channel="shell",
            metadata={"cellId": cell_id} if cell_id else None,
        )

    async def shutdown(self) -> None:
        """Close the WebSocket and delete the session or kernel (errors ignored: best effort at exit)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self.session_id is not None:  # deleting a session shuts its kernel down
            try:
                await self.request("DELETE", f"api/sessions/{self.session_id}")
            except KernelError:
                pass
            self.session_id = self.kernel_id = None
        if self.kernel_id is not None:
            try:
                await self.request("DELETE", f"api/kernels/{self.kernel_id}")
            except KernelError:
                pass
            self.kernel_id = None
