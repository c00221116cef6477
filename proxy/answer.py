"""The head a visitor gets for a target's response, and how its body is framed: the response side of ``head.py``.

``interim_head`` writes a 1xx the visitor may get; ``plan`` turns a final response head into a ``Plan``: the head
bytes, the body's framing (its length, re-chunked, until the target closes, or none), its coding (compressed
on the way, see ``encoding.plan``), the upgrade, and whether the visitor's connection closes after it. One pass
over the headers: hop-by-hop ones (and those the Connection header names) stay behind, an untrusted route's are
screened (``screen``), a trusted page's request gets nbpool's own CORS headers. ``target.TargetConnection``
runs them as the head arrives and keeps the plan's framing for the body.
"""

from __future__ import annotations

from collections.abc import Callable

from .encoding import Policy, encoded_headers
from .encoding import plan as coding_plan
from .exchange import Exchange
from .http import HOP_BY_HOP, connection_tokens

Headers = list[tuple[bytes, bytes]]


class Plan:
    """A final response's head and framing (``None`` from ``plan``: a 101 nobody asked for)."""

    __slots__ = ("close", "coding", "complete", "head", "length", "rechunk", "until_eof", "upgrading")

    def __init__(self) -> None:
        self.head = b""
        self.coding: bytes | None = None  # compress the body with this coding (then always re-chunked)
        self.rechunk = False  # the body goes to the visitor chunked
        self.until_eof = False  # the target's body ends when it closes
        self.length = -1  # Content-Length bytes to relay (-1: the parser frames the body, or there is none)
        self.complete = False  # no body follows, whatever Content-Length says
        self.upgrading = False  # 101: the two sockets are spliced next
        self.close = False  # the visitor's connection closes after this response


def interim_head(code: int, status: bytes, headers: Headers) -> bytes:
    """A 1xx (100 Continue, 103 Early Hints) as an HTTP/1.1 visitor gets it."""
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (code, status, b"".join(b"%s: %s\r\n" % h for h in headers))


def plan(ex: Exchange, code: int, status: bytes, headers: Headers, compress: Policy,
         screen: Callable[[Headers], Headers] | None) -> Plan | None:
    """The visitor's head and the body's framing for a final (or 101) response; None for a 101 not asked for.
    ``screen``: an untrusted route's filter of response headers (None: a trusted route)."""
    options: set[bytes] = set()
    length = None
    chunked = False
    kept = []
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == b"connection":
                options |= connection_tokens(value)
            elif low == b"transfer-encoding":
                chunked = True
            continue
        if low == b"content-length":
            length = value
        kept.append((name, value))
    extra = options - HOP_BY_HOP
    if extra:
        kept = [(n, v) for n, v in kept if n.lower() not in extra]
    if screen is not None:
        kept = screen(kept)
    if ex.cors is not None and code != 101:  # a trusted page's request (proxy.bearer): only ours count
        kept = [(n, v) for n, v in kept if not n.lower().startswith(b"access-control-")]
        kept += ((b"Access-Control-Allow-Origin", ex.cors), (b"Vary", b"Origin"))
    out = Plan()
    if code == 200 and ex.version == "1.1" and compress.enabled:
        out.coding = coding_plan(compress, ex.path, ex.route.prefix, ex.headers, kept, length)
        if out.coding is not None:
            kept = encoded_headers(kept, out.coding)
            if length is None and not chunked:
                out.until_eof = True  # the container's body ends at its close (ours is chunked)
            length = None
    head = [b"HTTP/1.1 %d %s\r\n" % (code, status)]
    for name, value in kept:
        head += (name, b": ", value, b"\r\n")
    if code == 101:
        if not ex.upgrade:
            return None
        out.upgrading = True
        for name, value in headers:
            if name.lower() == b"upgrade":
                head += (b"Upgrade: ", value, b"\r\n")
        if ex.set_cookie is not None:
            head += (b"Set-Cookie: ", ex.set_cookie, b"\r\n")
        head.append(b"Connection: Upgrade\r\n\r\n")
        out.head = b"".join(head)
        return out
    bodiless = ex.head_only or code == 204 or code == 304
    close = ex.close or ex.upgrade  # (after a refused upgrade the visitor's parser is past it: start afresh)
    if out.coding is not None and not bodiless:
        # The encoded length is known only at the end: chunked to the visitor,
        # however the container framed it (the parser frames that side).
        out.rechunk = True
        head.append(b"Transfer-Encoding: chunked\r\n")
    elif not bodiless and length is None:
        if chunked:
            out.rechunk = True
            head.append(b"Transfer-Encoding: chunked\r\n")
        else:
            out.until_eof = True
            close = True
    if close or not ex.keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    if bodiless:
        out.complete = True
    elif length is not None and not chunked:
        out.length = int(length)  # the parser has validated it; bytes in this read still come through on_body
    out.close = close
    out.head = b"".join(head)
    return out
