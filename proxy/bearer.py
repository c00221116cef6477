"""A route's second way in: a bearer credential from pages on trusted origins (Thebe, MyST, Jupyter Book).

A page that embeds live code talks to its container from the page's own
origin, with ``fetch`` (no cookies: ``credentials: same-origin``) and
WebSockets. It proves itself with the credential the service gave it
(``Authorization: token <t>`` on REST calls, ``?token=<t>`` on WebSockets),
and the browser tells the proxy which page is asking (``Origin``). A route
with a ``Bearer`` lets such a request through when both hold: the credential
is the route's own, and the origin is one the operator trusts (or the
service's own). Then the proxy:

- answers CORS preflights itself (they carry no credential, and reveal nothing);
- takes ``token`` out of the query before the container sees it (Jupyter
  believes a query token before the header the proxy injects, and would
  refuse this one), while the route's injected ``Authorization`` replaces the
  page's;
- adds ``Access-Control-Allow-Origin`` (and ``Vary: Origin``) to the answer.

A request with no credential goes the cookie's way (the route's authorize
callback), unchanged. The credential is bound to one container's hand-out and
never the server's secret; it dies with the route.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from .http import Response, cookie_value, error_response
from .origin import OriginPolicy, normalize_origin, origin_of

# Set on the kernel WebSocket's handshake (path-scoped to the container): a page on the same host name as
# nbpool (another port: localhost:3000 beside localhost:8000) reconnects after a reload without ?token=
# (@jupyterlab/services appends it only across host names) and this cookie carries the credential instead.
# It goes only where the token went already, and the page's Origin is still checked.
EMBED_COOKIE = b"nbpool-embedded"
PREFLIGHT_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
PREFLIGHT_HEADERS = "authorization, content-type, x-xsrftoken, x-requested-with"
PREFLIGHT_MAX_AGE = "600"
WRONG_ORIGIN = ("This notebook server's credential works only from the pages it was handed out to "
                "(an origin the service trusts).")


class Bearer:
    """The credential of one route, and who may present it (``origins``: the operator's trusted ones)."""

    __slots__ = ("opener", "origins", "token")

    def __init__(self, token: str, origins: OriginPolicy, opener: str = ""):
        self.token = token.encode()
        self.origins = origins
        # Where a top-level visit carrying the credential goes (e.g. MyST's "Open in Jupyter" link,
        # '{url}lab/tree/x?token=…'): the service turns it into the visitor's cookie there, since the
        # notebook UI it opens sends no credential of its own. Empty: such visits go the cookie's way.
        self.opener = opener


def credential(headers: list[tuple[bytes, bytes]], query: bytes) -> bytes | None:
    """The credential a request carries: ``Authorization: token|Bearer <t>``, else ``token=`` in the query,
    else the EMBED_COOKIE."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, given = value.strip().partition(b" ")
            if scheme.lower() in (b"token", b"bearer") and given.strip():
                return given.strip()
    if b"token=" in query:
        for part in query[1:].split(b"&"):
            if part.startswith(b"token="):
                return part[len(b"token="):]
    return cookie_value(headers, EMBED_COOKIE)


def embed_cookie(bearer: Bearer, prefix: bytes, own: bytes) -> bytes:
    """The Set-Cookie value that carries ``bearer``'s credential for the route at ``prefix``."""
    secure = b"; Secure" if own.startswith(b"https:") else b""
    return EMBED_COOKIE + b"=" + bearer.token + b"; Path=" + prefix + b"/; HttpOnly; SameSite=Lax" + secure


def without_token(query: bytes) -> bytes:
    """The query (with its '?') minus its ``token`` parameters."""
    if b"token=" not in query:
        return query
    kept = [p for p in query[1:].split(b"&") if p and not p.startswith(b"token=")]
    return b"?" + b"&".join(kept) if kept else b""


def cors_headers(origin: bytes) -> list[tuple[str, str]]:
    return [("Access-Control-Allow-Origin", origin.decode("latin-1")), ("Vary", "Origin")]


def check_bearer(bearer: Bearer, method: bytes, headers: list[tuple[bytes, bytes]], query: bytes, own: bytes,
                 wants_json: bool, rest: bytes = b"") -> tuple[str, Response | bytes | None]:
    """What to do with a request to a route that has a bearer credential.

    Returns ("cookie", None): no preflight and no credential of this route's, so the cookie's way decides;
    ("answer", response): answer it from the proxy (a preflight, or a refusal);
    ("pass", origin): let it through (``origin``: to echo in CORS headers, or None for the service's own).
    ``rest``: the request's path inside the route (for a top-level visit's redirect).
    """
    origin, site = origin_of(headers)
    if method == b"OPTIONS" and origin is not None and any(n.lower() == b"access-control-request-method"
                                                          for n, _ in headers):
        if not bearer.origins.trusts(origin, own):
            return "cookie", None  # not ours to answer: no CORS headers, so the browser stops there
        response = Response(204, headers=cors_headers(origin) + [
            ("Access-Control-Allow-Methods", PREFLIGHT_METHODS),
            ("Access-Control-Allow-Headers", PREFLIGHT_HEADERS),
            ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)])
        return "answer", response
    given = credential(headers, query)
    if given is None or not hmac.compare_digest(given, bearer.token):
        return "cookie", None  # none, or not this route's: the cookie's way decides (and refuses a stranger)
    if (origin is None and method == b"GET" and bearer.opener
            and any(n.lower() == b"sec-fetch-mode" and v.strip().lower() == b"navigate" for n, v in headers)):
        # A person opening the server in a tab: the credential is the proof (a stranger cannot know it),
        # and the service's own page makes it their cookie, then sends them on without it in the address.
        location = f"{bearer.opener}?token={given.decode('latin-1')}&path={quote(rest.decode('latin-1'), safe='')}"
        return "answer", Response(302, headers=[("Location", location), ("Cache-Control", "no-store"),
                                                ("Referrer-Policy", "no-referrer")])
    if origin is not None:
        trusted = bearer.origins.trusts(origin, own)
    else:  # a browser leaves Origin off its own same-origin GETs; then Sec-Fetch-Site says so
        trusted = site == b"same-origin"
    if not trusted:
        return "answer", error_response(403, wants_json, message=WRONG_ORIGIN)
    return "pass", origin if origin is not None and normalize_origin(origin) != own else None
