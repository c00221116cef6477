"""What crosses a route whose target is attacker-controlled (``Route.untrusted``: an attendee's container).

Every attendee's server shares the service's origin (``/user/<id>/`` on one
host), so two things must not cross such a route:

- the service's own cookies, on the way in (``strip_cookies``): the browser
  sends every cookie of the origin whose path matches, and a server that logs
  its requests would learn the visitor's session, kept-work or admin cookie;
- response headers whose effect reaches past the route's prefix, on the way
  out (``screen_response``): a cookie for ``/`` (or a domain) would reach the
  service's pages and every other container, a cookie named like the
  service's would stand in for it, and some headers act on the whole origin
  (a service worker's scope, wiping the site's data, transport policy).

Both run only for untrusted routes; the service's own routes relay as they are.
"""

from __future__ import annotations

from .routes import InvalidPath, normalize_path

# Response headers whose effect is the whole origin (or host), never one response:
# Service-Worker-Allowed widens a worker's scope past its script's folder (to '/': every
# page of the service), Clear-Site-Data wipes the origin's cookies and storage, NEL and
# Report-To (Reporting API v0) make the browser report other requests of the origin to
# the server's chosen address, Alt-Svc and Strict-Transport-Security set how the
# browser reaches the host itself. A notebook server needs none of them.
ORIGIN_WIDE = frozenset({b"service-worker-allowed", b"clear-site-data", b"nel", b"report-to", b"alt-svc",
                         b"strict-transport-security"})
SCREENED = ORIGIN_WIDE | {b"set-cookie"}


def strip_cookies(value: bytes, private: tuple[bytes, ...]) -> bytes:
    """A request's Cookie value minus the pairs whose name starts with a ``private`` prefix (b"" if none is left).

    Names are compared as sent (cookie names are case-sensitive, and the
    service reads its own by their exact names). The common case, no private
    name in the header, returns ``value`` itself.
    """
    for prefix in private:
        if prefix in value:
            break
    else:
        return value
    pairs = (pair.strip() for pair in value.split(b";"))
    return b"; ".join(pair for pair in pairs if pair and not pair.startswith(private))


def cookie_refusal(value: bytes, prefix: bytes, private: tuple[bytes, ...]) -> str | None:
    """Why a ``Set-Cookie`` value from the route at ``prefix`` may not reach the browser, or None if it may.

    It may when it is scoped to the route (RFC 6265 path-match: its Path is
    ``prefix`` or under ``prefix + '/'``; a missing Path defaults to the
    request's folder, which for the prefix itself is its parent, so it is
    refused too), names no Domain, and its name is not one of the service's
    (compared without case: the browser keeps ``NBPOOL-x`` beside
    ``nbpool-x``, and nothing is lost refusing both).
    """
    first, *attributes = value.split(b";")
    name = first.split(b"=", 1)[0].strip().lower()
    if name.startswith(tuple(p.lower() for p in private)):
        return "a cookie named like the service's"
    path = None
    for attribute in attributes:
        key, _, given = attribute.partition(b"=")
        key = key.strip().lower()
        if key == b"domain":
            return "a cookie with a Domain"
        if key == b"path":
            path = given.strip()  # the last Path counts (RFC 6265 5.3, step 11)
    if path is None:
        return "a cookie without a Path"
    if not (path == prefix or path.startswith(prefix.rstrip(b"/") + b"/")):
        return "a cookie for a path outside the route"
    try:
        if normalize_path(path) != path:
            return "a cookie whose path has dot segments"
    except InvalidPath:
        return "a cookie for a path outside the route"
    return None


def screen_response(headers: list[tuple[bytes, bytes]], prefix: bytes,
                    private: tuple[bytes, ...]) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """(the headers that may reach the browser, why each other one may not) for a response from ``prefix``."""
    for name, _ in headers:
        if name.lower() in SCREENED:
            break
    else:
        return headers, []  # the common case, nothing to look at: the same list
    kept = []
    refused = []
    for name, value in headers:
        low = name.lower()
        if low == b"set-cookie":
            why = cookie_refusal(value, prefix, private)
            if why is not None:
                refused.append(why)
                continue
        elif low in ORIGIN_WIDE:
            refused.append(name.decode("latin-1"))
            continue
        kept.append((name, value))
    return kept, refused
