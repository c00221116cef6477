"""The route table: longest-prefix match by whole path segments.

Prefixes and paths are bytes, as they come off the wire, so matching a request
costs a few dict lookups and no decoding. Route changes are plain method calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .bearer import Bearer
from .http import Response, cookie_value, wants_json
from .origin import OriginPolicy

# authorize(request) -> None to allow, or a Response to send instead.
Authorize = Callable[["RequestHead"], "Response | None"]
# error_page(status, request) -> a Response replacing the proxy's own error page, or None.
ErrorPage = Callable[[int, "RequestHead"], "Response | None"]


class InvalidPath(ValueError):
    """A request path that cannot be normalised (e.g. '..' above the root)."""


def normalize_path(path: bytes) -> bytes:
    """Resolve dot segments and repeated slashes, the way a browser would.

    '%2e' counts as '.', so '/user/a/%2e%2e/b' is '/user/b'. Raises InvalidPath
    for a path that climbs above the root or does not start with '/'.
    """
    if not path.startswith(b"/"):
        raise InvalidPath("path must start with /")
    if b"/." not in path and b"//" not in path and b"%2" not in path:
        return path  # the common case: nothing to resolve
    out: list[bytes] = []
    segments = path[1:].split(b"/")
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        low = seg.lower()
        if b"%2e" in low:
            low = low.replace(b"%2e", b".")
            if low.strip(b".") == b"":
                seg = low  # an encoded '.' or '..' segment counts as one
        if seg == b".":
            if i == last:
                out.append(b"")
            continue
        if seg == b"..":
            if not out:
                raise InvalidPath("path climbs above the root")
            out.pop()
            if i == last:
                out.append(b"")
            continue
        if seg == b"" and i != last:
            continue  # '//' collapses to '/'
        out.append(seg)
    return b"/" + b"/".join(out)


def _prefix_key(prefix: str | bytes) -> bytes:
    raw = prefix.encode() if isinstance(prefix, str) else prefix
    key = normalize_path(raw)
    if b"?" in key or b"#" in key:
        raise ValueError(f"route prefix {prefix!r} must be a path, without query or fragment")
    return key.rstrip(b"/") or b"/"


class Target:
    """Where a route's requests go: a TCP host and port, or a unix socket."""

    __slots__ = ("host", "host_header", "key", "port", "unix_path", "url")

    def __init__(self, url: str):
        self.url = url
        self.host: str | None = None
        self.port: int | None = None
        self.unix_path: str | None = None
        if url.startswith("unix:"):
            self.unix_path = url[len("unix:"):]
            if not self.unix_path.startswith("/"):
                raise ValueError(f"unix socket target {url!r} needs an absolute path, e.g. unix:/run/app.sock")
        else:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"route target {url!r} must look like http://host:port or unix:/path/to.sock")
            if parts.path not in ("", "/") or parts.query:
                raise ValueError(f"route target {url!r} must not carry a path or query")
            self.host = parts.hostname
            self.port = parts.port or 80
        # Connections are pooled per key, so two routes to one target share them.
        self.key = url if self.unix_path else f"{self.host}:{self.port}"
        self.host_header = b"localhost" if self.unix_path else self.key.encode()

    def __repr__(self) -> str:
        return f"Target({self.url!r})"


class Route:
    """One prefix and where it goes, plus the activity seen through it.

    ``last_activity`` is a ``time.monotonic()`` timestamp of the last bytes in
    either direction of a request the route let through (set at creation;
    refused requests never count); the byte counters count bodies and
    tunnelled bytes, client to target (``bytes_in``) and back (``bytes_out``).
    """

    __slots__ = (
        "authorize",
        "bearer",
        "bytes_in",
        "bytes_out",
        "data",
        "error_page",
        "fill_ok",
        "header_names",
        "headers",
        "last_activity",
        "max_body",
        "origin_policy",
        "prefix",
        "requests",
        "share",
        "target",
        "untrusted",
        "websockets",
    )

    def __init__(self, prefix: bytes, target: Target, headers: list[tuple[bytes, bytes]],
                 authorize: Authorize | None, error_page: ErrorPage | None, data: Any,
                 origin_policy: OriginPolicy | None = None, max_body: int = 0, share: bytes | None = None,
                 fill_ok: bool = False, untrusted: bool = False):
        self.prefix = prefix
        self.target = target
        self.headers = headers
        # Injected headers replace any the client sent under the same name.
        self.header_names = frozenset(name.lower() for name, _ in headers)
        self.authorize = authorize
        self.error_page = error_page
        self.data = data
        # Set for routes that act for a visitor (their cookie is the credential):
        # state-changing requests and upgrades from other origins are refused.
        self.origin_policy = origin_policy
        # Set (a bearer.Bearer) once the container is handed to a page that embeds live code: its
        # credential from a trusted origin is a second way in, beside the cookie (see proxy.bearer).
        self.bearer: Bearer | None = None
        self.max_body = max_body  # largest request body in bytes; 0: no limit
        # The target is attacker-controlled (an attendee's container, whose owner runs any code in it):
        # the service's cookies are kept from it and its answers' headers are screened (proxy.untrusted).
        self.untrusted = untrusted
        # Routes with the same ``share`` serve the same static files (one image): the
        # shared static cache keys on it. ``fill_ok``: no request that can run code
        # (anything but GET and HEAD, or an upgrade) has gone through to this target,
        # so the cache may fetch from it. The proxy clears it at the first such request;
        # once cleared, it is never set again.
        self.share = share
        self.fill_ok = fill_ok
        self.last_activity = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        self.websockets = 0  # currently open

    def idle_seconds(self, now: float | None = None) -> float:
        """Seconds since the last traffic through this route."""
        return (time.monotonic() if now is None else now) - self.last_activity

    def __repr__(self) -> str:
        return f"Route({self.prefix.decode()!r} -> {self.target.url!r})"


def _encode_headers(headers: dict[str, str] | list[tuple[str, str]] | None) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    out = []
    for name, value in items:
        bname, bvalue = name.encode("latin-1"), value.encode("latin-1")
        if not bname or any(c in bname for c in b" \t\r\n:") or any(c in bvalue for c in b"\r\n\0"):
            raise ValueError(f"invalid header to inject: {name!r}")
        out.append((bname, bvalue))
    return out


class RouteTable:
    """Routes by path prefix; ``longest_match`` picks the most specific whole-segment prefix.

    The route for ``/`` is the default route: it takes every path no other
    route matches. Without one, unmatched paths get a 404 page.
    """

    def __init__(self) -> None:
        self._routes: dict[bytes, Route] = {}
        self.default: Route | None = None
        self._depth = 0  # most segments in any prefix: deeper candidates need no lookup
        self.on_add: list[Callable[[Route], None]] = []  # called with each route added (the static cache)

    def add(self, prefix: str | bytes, target: str, *, headers: dict[str, str] | list[tuple[str, str]] | None = None,
            authorize: Authorize | None = None, error_page: ErrorPage | None = None, data: Any = None,
            origin_policy: OriginPolicy | None = None, max_body: int = 0, share: str | None = None,
            fill_ok: bool = False, bearer: Bearer | None = None, untrusted: bool = False) -> Route:
        """Add or replace the route for ``prefix``; returns it.

        ``authorize`` and ``origin_policy`` guard it (see Route), ``bearer`` opens a second way in
        (proxy.bearer); ``max_body``
        caps request bodies (413 beyond it, before anything is relayed);
        ``share`` and ``fill_ok`` let the shared static cache serve it (see
        proxy.static_cache); ``untrusted`` says its target is attacker-controlled
        (see proxy.untrusted).
        """
        key = _prefix_key(prefix)
        route = Route(key, Target(target), _encode_headers(headers), authorize, error_page, data,
                      origin_policy, max_body, None if share is None else share.encode(), fill_ok, untrusted)
        route.bearer = bearer
        if key == b"/":
            self.default = route
        else:
            self._routes[key] = route
            self._depth = max(self._depth, key.count(b"/"))
        for listener in self.on_add:
            listener(route)
        return route

    def remove(self, prefix: str | bytes) -> Route | None:
        """Remove the route for ``prefix``; returns it, or None if there was none."""
        key = _prefix_key(prefix)
        if key == b"/":
            route, self.default = self.default, None
            return route
        route = self._routes.pop(key, None)
        if route is not None and key.count(b"/") == self._depth:
            self._depth = max((k.count(b"/") for k in self._routes), default=0)
        return route

    def get(self, prefix: str | bytes) -> Route | None:
        key = _prefix_key(prefix)
        return self.default if key == b"/" else self._routes.get(key)

    def routes(self) -> list[Route]:
        """Every route, the default one first when there is one."""
        return ([self.default] if self.default else []) + list(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes) + (self.default is not None)

    def longest_match(self, path: bytes) -> Route | None:
        """The route whose prefix is the longest whole-segment prefix of ``path`` (normalised)."""
        routes = self._routes
        if routes:
            ends = []
            start = 0
            for _ in range(self._depth):
                cut = path.find(b"/", start + 1)
                if cut == -1:
                    ends.append(len(path))
                    break
                ends.append(cut)
                start = cut
            for end in reversed(ends):
                route = routes.get(path[:end])
                if route is not None:
                    return route
        return self.default


class RequestHead:
    """What an authorize or error-page callback sees of a request.

    An authorize callback that lets a request through may also say how, for
    the credential it found (someone the container's owner or the teaching
    team let in):

    - ``inject``: headers sent in place of the route's own of the same names
      (the person's identity for the notebook server); only names among the
      route's injected headers, so a client's own copy is already dropped;
    - ``tag``: the credential's mark, kept on a WebSocket it opens, so ending
      that credential can close its WebSockets at once
      (``ConnectionState.close_tunnels``);
    - ``read_only``: the WebSocket is a shared document's (a collaboration
      room) and may only read it: its edits are dropped (``ws_readonly``).
    """

    __slots__ = ("client_ip", "headers", "inject", "method", "path", "query", "read_only", "route", "tag",
                 "upgrade", "version")

    def __init__(self, method: bytes, path: bytes, query: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], client_ip: str, route: Route | None, upgrade: bool = False):
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.client_ip = client_ip
        self.route = route
        self.upgrade = upgrade
        self.inject: list[tuple[bytes, bytes]] | None = None
        self.tag: object = None
        self.read_only = False

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the Cookie header(s), or None."""
        value = cookie_value(self.headers, name.encode())
        return None if value is None else value.decode("latin-1")

    def wants_json(self) -> bool:
        return wants_json(self.headers, self.path)
