"""The standard library's cookie jar, adapted to Tornado's HTTP client (as ``requests`` adapts it).

Each simulated attendee owns one ``http.cookiejar.CookieJar``, so attendees
never see each other's cookies; the jar keeps the rules a browser keeps (host,
``Path`` scoping, ``Max-Age``/``Expires``, ``Secure`` only over HTTPS).
``http.cookiejar`` speaks ``urllib.request.Request`` and ``HTTPResponse``;
the two small shims below give it a Tornado request and response instead.
"""

from __future__ import annotations

from http.client import HTTPMessage
from http.cookiejar import CookieJar
from urllib.parse import urlsplit

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders

__all__ = ["add_cookie_header", "cookie_header", "extract_cookies"]


class RequestShim:
    """A Tornado ``HTTPRequest`` seen as the ``urllib.request.Request`` that ``CookieJar`` expects.

    The jar's ``Cookie`` header is collected in ``new_headers`` (the request itself is not changed).
    """

    def __init__(self, request: HTTPRequest):
        self.request = request
        self._parts = urlsplit(request.url)
        # Case-insensitive, as the jar asks for "Cookie" (a request may carry a plain dict).
        headers = request.headers
        self.headers = headers if isinstance(headers, HTTPHeaders) else HTTPHeaders(headers or {})
        self.new_headers: dict[str, str] = {}

    def get_full_url(self) -> str:
        return self.request.url

    def get_host(self) -> str:
        return self._parts.netloc

    def get_type(self) -> str:
        return self._parts.scheme

    @property
    def host(self) -> str:
        return self.get_host()

    @property
    def type(self) -> str:
        return self.get_type()

    @property
    def unverifiable(self) -> bool:
        return False  # every request is one the attendee chose to make (no third-party loads)

    @property
    def origin_req_host(self) -> str:
        return self._parts.hostname or ""

    def has_header(self, name: str) -> bool:
        return name in self.headers or name in self.new_headers

    def get_header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, self.new_headers.get(name, default))

    def header_items(self) -> list[tuple[str, str]]:
        return [*self.headers.get_all(), *self.new_headers.items()]

    def add_unredirected_header(self, name: str, value: str) -> None:
        self.new_headers[name] = value


class ResponseShim:
    """A Tornado ``HTTPResponse`` seen as the ``http.client.HTTPResponse`` that ``CookieJar`` expects."""

    def __init__(self, response: HTTPResponse):
        self.response = response

    def info(self) -> HTTPMessage:
        message = HTTPMessage()
        for name, value in self.response.headers.get_all():
            message[name] = value  # appends: every Set-Cookie is kept
        return message


def cookie_header(jar: CookieJar, url: str) -> str | None:
    """The ``Cookie`` header a browser with this jar would send to ``url`` (None when there is nothing to send)."""
    shim = RequestShim(HTTPRequest(url))
    jar.add_cookie_header(shim)
    return shim.new_headers.get("Cookie")


def add_cookie_header(jar: CookieJar, request: HTTPRequest) -> None:
    """Put the jar's ``Cookie`` header for ``request.url`` on ``request`` (unless it has one already)."""
    shim = RequestShim(request)
    jar.add_cookie_header(shim)
    if "Cookie" in shim.new_headers:
        request.headers["Cookie"] = shim.new_headers["Cookie"]


def extract_cookies(jar: CookieJar, request: HTTPRequest, response: HTTPResponse) -> None:
    """Store (or delete, for ``Max-Age=0`` or a past ``Expires``) the cookies ``response`` to ``request`` set."""
    jar.extract_cookies(ResponseShim(response), RequestShim(request))
