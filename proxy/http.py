"""HTTP/1.1 pieces the relay needs: header rules, status lines and the proxy's own responses."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

# Hop-by-hop headers (RFC 9110 7.6.1) plus the non-standard ones proxies must
# also drop. Framing (Transfer-Encoding, Content-Length) is decided per hop.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Forwarding headers: dropped from untrusted clients and set afresh. X-Scheme and
# X-Forwarded-Ssl count too: Tornado (and so Jupyter Server) believe X-Scheme.
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                       b"x-real-ip", b"forwarded", b"x-scheme", b"x-forwarded-ssl"})


def wants_json(headers: list[tuple[bytes, bytes]], path: bytes) -> bool:
    """Whether an error for this request should be JSON: the client asked for it, or it is an API path."""
    if b"/api/" in path:
        return True
    return any(name.lower() == b"accept" and b"application/json" in value for name, value in headers)


def cookie_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of cookie ``name`` from a request's Cookie header(s), or None."""
    want = name + b"="
    for key, value in headers:
        if key.lower() == b"cookie" and want in value:
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(want):
                    return part[len(want):]
    return None


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-case options listed in a Connection header."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class Response:
    """A complete response the proxy sends itself (an error page, a denial).

    ``headers`` must not carry framing: Content-Length and Connection are added
    when it is written.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes | str = b"", headers: list[tuple[str, str]] | None = None,
                 content_type: str = "text/html; charset=utf-8"):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = [("Content-Type", content_type)] + list(headers or [])

    def encode(self, keep_alive: bool, head_only: bool = False) -> bytes:
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, reason(self.status))]
        for name, value in self.headers:
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        lines.append(b"Content-Length: %d\r\n" % len(self.body))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head_only:
            lines.append(self.body)
        return b"".join(lines)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {phrase}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}}p{{line-height:1.5}}code{{color:#555}}</style></head>
<body><h1>{phrase}</h1><p>{message}</p><p><code>{status}</code></p></body></html>
"""

MESSAGES = {
    400: "The request could not be understood.",
    403: "You are not allowed to reach this address.",
    404: "Nothing is served at this address.",
    405: "This method is not allowed here.",
    408: "The request took too long to arrive.",
    413: "The request is too large.",
    431: "The request's headers are too large.",
    502: "The server behind this address answered in a way that could not be understood, or hung up.",
    503: "The server behind this address is not available right now. Please try again in a moment.",
    504: "The server behind this address took too long to answer.",
}


def error_response(status: int, wants_json: bool = False, message: str | None = None,
                   headers: list[tuple[str, str]] | None = None) -> Response:
    """The proxy's own small error page, HTML or JSON."""
    message = message or MESSAGES.get(status, "")
    phrase = reason(status).decode()
    if wants_json:
        body = json.dumps({"status": status, "error": phrase, "message": message})
        return Response(status, body, headers, content_type="application/json")
    return Response(status, _PAGE.format(status=status, phrase=html.escape(phrase), message=html.escape(message)),
                    headers)
