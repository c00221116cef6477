"""Same-origin rules for requests that act on a visitor's behalf.

The proxy injects each container's token, so Jupyter Server treats every
request it relays as token-authenticated and skips its own XSRF and Origin
checks. The browser still sends the visitor's cookie on requests that other
origins of the same site start (another port on the same host, a sibling
subdomain: SameSite=Lax does not separate them), so the proxy makes the check
Jupyter dropped: a state-changing request or a WebSocket upgrade must come
from the service's own origin, or from one the operator allowed.

What counts as the request's origin, in order:
- ``Origin`` (every browser sends it on POST, PUT, DELETE and WebSocket
  handshakes); ``Origin: null`` (sandboxed frames, file: pages) is refused;
- else ``Sec-Fetch-Site`` (sent by current browsers on every request):
  ``same-origin`` and ``none`` (typed by the user) pass, anything else is refused;
- else neither header: not a browser (curl, scripts, the load generator),
  which cannot be tricked into sending the visitor's cookie: allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_DEFAULT_PORTS = {b"http": b":80", b"https": b":443", b"ws": b":80", b"wss": b":443"}


def normalize_origin(origin: bytes | str) -> bytes:
    """``scheme://host[:port]`` in lower case, without the scheme's default port.

    ``HTTP://Example.org:80`` and ``http://example.org`` are the same origin.
    """
    value = (origin.encode("latin-1") if isinstance(origin, str) else origin).strip().lower()
    scheme, sep, host = value.partition(b"://")
    if not sep:
        return value
    host = host.rstrip(b"/")
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return scheme + b"://" + host


def own_origin(scheme: bytes, host: bytes) -> bytes:
    """The service's origin as this request reached it: its scheme and its Host (or X-Forwarded-Host)."""
    return normalize_origin(scheme + b"://" + host)


def origin_of(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """(Origin, Sec-Fetch-Site) of a request, each None when absent."""
    origin = site = None
    for name, value in headers:
        low = name.lower()
        if low == b"origin":
            origin = value
        elif low == b"sec-fetch-site":
            site = value.strip().lower()
    return origin, site


class OriginPolicy:
    """Which origins may act for a visitor: the service's own, plus ``allowed`` ones.

    ``allowed`` holds origins the operator trusts to embed nbpool (e.g. a
    workshop site calling the API from its pages); ``*`` allows any origin,
    which turns the check off.
    """

    __slots__ = ("allow_any", "allowed")

    def __init__(self, allowed: Iterable[str] = ()):
        self.allowed: frozenset[bytes] = frozenset()
        self.allow_any = False
        self.set_allowed(allowed)

    def set_allowed(self, allowed: Iterable[str]) -> None:
        """Replace the allowed origins (e.g. after the operator's config changed)."""
        values = list(allowed)
        self.allow_any = "*" in values
        self.allowed = frozenset(normalize_origin(v) for v in values if v != "*")

    def trusts(self, origin: bytes | str, own: bytes) -> bool:
        """Whether a page on ``origin`` may act here: the service's own origin, or an allowed one."""
        seen = normalize_origin(origin)
        return seen == own or self.allow_any or seen in self.allowed

    def refusal(self, method: bytes, upgrade: bool, headers: list[tuple[bytes, bytes]],
                own: bytes) -> str | None:
        """Why this request may not act for the visitor, or None when it may.

        Safe methods (GET, HEAD, OPTIONS) that are not upgrades always may.
        """
        if (method in SAFE_METHODS and not upgrade) or self.allow_any:
            return None
        origin, fetch_site = origin_of(headers)
        if origin is not None:
            seen = normalize_origin(origin)
            if seen == own or seen in self.allowed:
                return None
            return f"cross-origin request from {origin.decode('latin-1')[:100]!r}"
        if fetch_site is not None:
            if fetch_site in (b"same-origin", b"none"):
                return None
            return f"cross-site request (Sec-Fetch-Site: {fetch_site.decode('latin-1')[:20]})"
        return None
