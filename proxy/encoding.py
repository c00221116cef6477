"""Content-coding for responses on their way to the visitor: which ones, which coding, and the coders.

A response is compressed when the visitor accepts gzip or brotli, it is a
plain 200 of a compressible type, not already encoded, not a range, not
marked no-transform, and not known to be small (``plan``). What is compressed
when is a security decision as much as a speed one (BREACH): see ``Policy``.
"""

from __future__ import annotations

import zlib

import brotli

# Streaming coders run on the event loop, so they favour speed (measured on a
# 2.5 MB bundle: gzip 6 and brotli 4 cost ~20 ms/MB and reach within ~10% of
# their best ratios). The shared cache encodes once per file, in a thread,
# with the slower, tighter settings.
STREAM_GZIP_LEVEL = 6
STREAM_BROTLI_QUALITY = 4
# A streaming brotli coder holds its window: 2^22 bytes by default, about 6 MiB of
# memory per response in flight. 2^18 holds it near 2 MiB for under 1% in size
# (measured on 2.5 MB of source text); gzip's window is 32 KiB.
STREAM_BROTLI_WINDOW = 18
STORED_GZIP_LEVEL = 9
STORED_BROTLI_QUALITY = 9

GZIP, BR = b"gzip", b"br"

# Types worth compressing. Images, fonts (woff2 is compressed already),
# archives and media are not; event streams are not, since a coder holds
# back bytes that must reach the page as they come.
TEXT_TYPES = frozenset({
    b"application/javascript", b"application/x-javascript", b"application/ecmascript", b"application/json",
    b"application/xml", b"application/xhtml+xml", b"application/manifest+json", b"application/wasm",
    b"application/ld+json", b"application/x-ipynb+json", b"image/svg+xml", b"image/x-icon",
    b"application/vnd.ms-fontobject", b"font/ttf", b"font/otf", b"application/x-font-ttf",
})


def compressible(content_type: bytes) -> bool:
    """Whether a body of this Content-Type shrinks when compressed."""
    mime = content_type.split(b";", 1)[0].strip().lower()
    if mime.startswith(b"text/"):
        return mime != b"text/event-stream"
    return mime in TEXT_TYPES or mime.endswith((b"+json", b"+xml"))


def accepted(accept_encoding: bytes | None) -> bytes | None:
    """The coding to use for a request's Accept-Encoding: brotli, then gzip, or None (RFC 9110 12.5.3)."""
    if not accept_encoding:
        return None
    qualities: dict[bytes, float] = {}
    for item in accept_encoding.lower().split(b","):
        name, _, params = item.partition(b";")
        name = name.strip()
        q = 1.0
        params = params.strip()
        if params.startswith(b"q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        qualities[name] = q
    star = qualities.get(b"*", 0.0)
    for coding in (BR, GZIP):
        if qualities.get(coding, star) > 0:
            return coding
    if qualities.get(b"x-gzip", 0.0) > 0:
        return GZIP
    return None


def request_coding(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The coding to use for a request: ``accepted`` of all its Accept-Encoding fields together."""
    accept = None
    for name, value in headers:
        if name.lower() == b"accept-encoding":
            accept = value if accept is None else accept + b"," + value
    return accepted(accept)


def weak_etag(etag: bytes) -> bytes:
    """An encoded body is not byte-identical to the original: its validator becomes weak (as nginx does)."""
    return etag if etag.startswith(b"W/") else b"W/" + etag


def add_vary(vary: bytes | None) -> bytes:
    """The Vary value once Accept-Encoding is added to it."""
    if not vary:
        return b"Accept-Encoding"
    if b"accept-encoding" in vary.lower() or vary.strip() == b"*":
        return vary
    return vary + b", Accept-Encoding"


class Encoder:
    """A streaming coder: ``process`` bytes as they arrive, ``finish`` at the end (each may return b'')."""

    __slots__ = ("_flush", "_process")

    def __init__(self, coding: bytes):
        if coding == BR:
            coder = brotli.Compressor(quality=STREAM_BROTLI_QUALITY, lgwin=STREAM_BROTLI_WINDOW)
            self._process, self._flush = coder.process, coder.finish
        else:
            coder = zlib.compressobj(STREAM_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
            self._process, self._flush = coder.compress, coder.flush

    def process(self, data: bytes) -> bytes:
        return self._process(data)

    def finish(self) -> bytes:
        return self._flush()


def encode_whole(coding: bytes, body: bytes) -> bytes:
    """A whole body, encoded with the tighter stored settings (for the shared cache: once per file)."""
    if coding == BR:
        return brotli.compress(body, quality=STORED_BROTLI_QUALITY)
    coder = zlib.compressobj(STORED_GZIP_LEVEL, zlib.DEFLATED, 31)
    return coder.compress(body) + coder.flush()


class Policy:
    """What the proxy compresses (the ``Proxy.compress*`` settings, copied for the hot path).

    BREACH recovers a secret from a compressed response's size when the same
    body also reflects text an attacker chose, and the attacker can make the
    victim's browser send many requests and watch their sizes. So:

    - static files (``static_paths`` under a container's prefix, and the
      service's own static files) carry no secret: always compressed;
    - any other response is compressed only when the browser says the
      request came from the page itself (``Sec-Fetch-Site: same-origin``)
      or from the visitor typing the address (``none``): a page on another
      site cannot cause either, and a cross-site request reaching a
      container is refused anyway (the cookie is SameSite). ``dynamic``
      'always' and 'never' override this.
    """

    __slots__ = ("dynamic", "enabled", "min_size", "static_paths")

    def __init__(self, enabled: bool = True, min_size: int = 1024, dynamic: str = "same-origin",
                 static_paths: tuple[bytes, ...] = ()):
        self.enabled = enabled
        self.min_size = min_size
        self.dynamic = dynamic
        self.static_paths = static_paths

    def is_static(self, rest: bytes) -> bool:
        """Whether ``rest`` (the path after a route's prefix, '/'-less) is one of the server's static paths."""
        return rest.startswith(self.static_paths)

    def dynamic_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.dynamic == "always":
            return True
        if self.dynamic == "never":
            return False
        for name, value in headers:
            if name.lower() == b"sec-fetch-site":
                return value.strip().lower() in (b"same-origin", b"none")
        return False


def route_rest(path: bytes, prefix: bytes) -> bytes:
    """The path after a route's prefix, without its leading '/' ('' for the prefix itself)."""
    if prefix == b"/":
        return path[1:]
    return path[len(prefix) + 1:]


def plan(policy: Policy, path: bytes, prefix: bytes, request_headers: list[tuple[bytes, bytes]],
         response_headers: list[tuple[bytes, bytes]], length: bytes | None) -> bytes | None:
    """The coding for a 200 response to a HTTP/1.1 request, or None to relay it as it is.

    GET and HEAD alike: a HEAD's headers are the ones its GET would get.
    """
    if length is not None and len(length) < 6 and int(length) < policy.min_size:
        return None
    ctype = None
    for name, value in response_headers:
        low = name.lower()
        if low == b"content-type":
            ctype = value
        elif low == b"content-encoding":
            if value.strip().lower() != b"identity":
                return None
        elif low == b"content-range":
            return None
        elif low == b"cache-control":
            if b"no-transform" in value.lower():
                return None
    if ctype is None or not compressible(ctype):
        return None
    if any(name.lower() == b"range" for name, _ in request_headers):
        return None  # a range of the identity body was asked for: never change what it indexes
    coding = request_coding(request_headers)
    if coding is None:
        return None
    if not policy.is_static(route_rest(path, prefix)) and not policy.dynamic_ok(request_headers):
        return None
    return coding


def encoded_headers(headers: list[tuple[bytes, bytes]], coding: bytes) -> list[tuple[bytes, bytes]]:
    """A response's headers once its body is encoded: no length or ranges, a weak ETag, Vary and the coding."""
    out = []
    vary = None
    for name, value in headers:
        low = name.lower()
        if low == b"content-length" or low == b"accept-ranges" or low == b"content-encoding":
            continue
        if low == b"vary":
            vary = value if vary is None else vary + b", " + value
            continue
        if low == b"etag":
            value = weak_etag(value)
        out.append((name, value))
    out += ((b"Vary", add_vary(vary)), (b"Content-Encoding", coding))
    return out
