"""A per-attendee cookie jar: what a browser keeps between requests, and no more.

Each simulated attendee owns one jar, so attendees never see each other's
cookies. The rules kept are the ones nbpool's front door relies on (RFC 6265,
simplified): a cookie belongs to the host that set it, ``Path`` scopes it
(defaulting to the directory of the request path), and ``Max-Age=0`` or an
``Expires`` in the past deletes it. ``Domain``, ``Secure`` and ``SameSite``
are not needed against a single host and are ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit


@dataclass
class Cookie:
    name: str
    value: str
    host: str
    path: str
    expires: float | None = None  # time.time() after which it is gone; None: until the session ends


def _default_path(request_path: str) -> str:
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[: request_path.rindex("/")]


def _path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


class CookieJar:
    """Cookies by (host, path, name); ``update`` from responses, ``header`` for requests."""

    def __init__(self, clock=time.time):
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self._clock = clock

    def update(self, url: str, set_cookie_headers: list[str]) -> None:
        """Store (or delete) the cookies of a response to ``url``."""
        parts = urlsplit(url)
        for header in set_cookie_headers:
            cookie = self._parse(header, parts.netloc, parts.path or "/")
            if cookie is None:
                continue
            key = (cookie.host, cookie.path, cookie.name)
            if cookie.expires is not None and cookie.expires <= self._clock():
                self._cookies.pop(key, None)
            else:
                self._cookies[key] = cookie

    def _parse(self, header: str, host: str, request_path: str) -> Cookie | None:
        first, *attributes = header.split(";")
        name, sep, value = first.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            return None  # RFC 6265 says: ignore the whole header
        # A quoted value is sent back quoted, as browsers do (the quotes are part of the value).
        path = None
        expires = max_age = None
        for attribute in attributes:
            key, _, arg = attribute.partition("=")
            key, arg = key.strip().lower(), arg.strip()
            if key == "path" and arg.startswith("/"):
                path = arg
            elif key == "max-age":
                try:
                    max_age = int(arg)
                except ValueError:
                    pass
            elif key == "expires":
                try:
                    expires = parsedate_to_datetime(arg).timestamp()
                except (TypeError, ValueError):
                    pass
        if max_age is not None:  # Max-Age wins over Expires
            expires = self._clock() + max_age
        return Cookie(name, value, host, path or _default_path(request_path), expires)

    def header(self, url: str) -> str | None:
        """The ``Cookie`` header a browser would send to ``url`` (None when there is nothing to send)."""
        parts = urlsplit(url)
        path = parts.path or "/"
        now = self._clock()
        matching = [
            c for c in self._cookies.values()
            if c.host == parts.netloc and _path_matches(path, c.path) and (c.expires is None or c.expires > now)
        ]
        if not matching:
            return None
        matching.sort(key=lambda c: len(c.path), reverse=True)  # longer paths first, as browsers do
        return "; ".join(f"{c.name}={c.value}" for c in matching)

    def names(self) -> set[str]:
        """Names of the cookies held (for a record; values are never logged)."""
        return {c.name for c in self._cookies.values()}
