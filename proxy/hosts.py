"""Origins of their own: with a wildcard host name, every container answers only at ``<id>.<subdomain_host>``.

Every attendee's server is attacker-controlled (its owner runs any code in
it). Served at paths of one shared origin (``/user/<id>/``), a page from one
container could script nbpool's pages and any other container open in the
same browser: path scoping is no boundary inside an origin. With
``Proxy.subdomain_host`` set (a wildcard DNS name and certificate for
``*.<subdomain_host>``), the proxy gives each container an origin of its own,
as JupyterHub's ``subdomain_host`` does, and keeps nbpool's pages on the main
host:

- a container's route answers only at its own host name, ``<id>.<subdomain_host>``;
  at another container's host name its paths are refused (404);
- at the main host (or any name outside the wildcard: an operator's
  ``localhost``), a container's paths go to nbpool's web app instead, which
  sends the container's owner on to its origin through an entry link (and
  tells anyone else the usual story);
- at a container's host name, nbpool's web app answers only that container's
  entry link, its opener (``/embedded/<id>``), its ended page and the
  attendee's own calls of the class view (``/api/me``, ``/api/hand``: the
  notebook's page raises a hand at its own origin); every other page of
  nbpool is sent to the main host (GET) or refused.

The container's paths stay ``/user/<id>/…`` on its own host, so its server
(started with that base URL), the route table and the shared static cache are
the same in both modes. Without a wildcard name nothing here runs.
"""

from __future__ import annotations

import re

from .exchange import Exchange
from .http import Response, error_response, wants_json
from .routes import RouteTable
from .state import Limits

CONTAINER_PREFIX = b"/user/"
WRONG_HOST = "This address belongs to another notebook server."
# nbpool's answers for the attendee at their container's own host (its session cookie lives there)
ATTENDEE_PATHS = (b"/api/me", b"/api/hand", b"/api/follow")
# … and under these: the attendee's helpers (/api/me/helpers/…, /api/me/share), a helper's link into this container
# (its grant's cookie lives on this host only), a workshop's instructor notebook (/w/<name>/api/follow).
ATTENDEE_PREFIXES = (b"/api/me/", b"/help/")
WORKSHOP_FOLLOW = re.compile(rb"/w/[^/]+/api/follow$")


def split_host(value: bytes) -> tuple[bytes, bytes]:
    """(name in lower case, ':port' or b'') of a Host header's value."""
    value = value.strip().lower()
    if value.startswith(b"["):  # an IPv6 literal: never a wildcard name
        end = value.find(b"]")
        return value[: end + 1], value[end + 1:]
    name, colon, port = value.rpartition(b":")
    if colon and port.isdigit():
        return name, b":" + port
    return value, b""


def container_label(name: bytes, subdomain_host: bytes) -> bytes | None:
    """The ``<id>`` of a host name ``<id>.<subdomain_host>``, or None for any other name."""
    if len(name) <= len(subdomain_host) + 1 or not name.endswith(subdomain_host):
        return None
    label = name[: -len(subdomain_host)]
    if not label.endswith(b".") or b"." in label[:-1]:
        return None
    return label[:-1]


def container_of(prefix: bytes) -> bytes | None:
    """The container id of a container route's prefix (``/user/<id>``), or None for other routes."""
    if prefix.startswith(CONTAINER_PREFIX) and prefix.count(b"/") == 2:
        return prefix[len(CONTAINER_PREFIX):]
    return None


def browser_host(ex: Exchange, limits: Limits, client_ip: str) -> tuple[bytes, bytes]:
    """(scheme, host) as the browser reached the service: behind a trusted balancer, as it forwarded them."""
    scheme, host = limits.scheme, b""
    trusted = limits.trust_forwarded and limits.is_trusted(client_ip)
    for name, value in ex.headers:
        low = name.lower()
        if low == b"host" and not host:
            host = value.strip()
        elif trusted and low == b"x-forwarded-proto":
            scheme = value.split(b",")[0].strip().lower()
        elif trusted and low == b"x-forwarded-host":
            host = value.split(b",")[0].strip()
    return scheme, host


def check_host(ex: Exchange, limits: Limits, routes: RouteTable, client_ip: str) -> tuple[Response, bool] | None:
    """The host-name rules of subdomain mode (see the module's notes); nothing when it is off.

    May point ``ex.route`` at the default route (nbpool's web app): run it
    before ``check_headers``, which reads the route to decide what is forwarded.
    """
    sub = limits.subdomain_host
    if not sub:
        return None
    scheme, host = browser_host(ex, limits, client_ip)
    name, port = split_host(host)
    label = container_label(name, sub)
    route = ex.route
    cid = container_of(route.prefix)
    if cid is not None:
        if label == cid:
            return None
        if label is None:  # the main host: the web app sends the owner on to the container's own origin
            if routes.default is None:
                return error_response(404, wants_json(ex.headers, ex.path)), ex.has_body
            ex.route = routes.default
            return None
        return error_response(404, wants_json(ex.headers, ex.path), message=WRONG_HOST), ex.has_body
    if label is None:
        return None
    path = ex.path
    own = CONTAINER_PREFIX + label
    if path in (b"/enter/" + label, b"/embedded/" + label, own) or path.startswith(own + b"/") or \
            path in ATTENDEE_PATHS or path.startswith(ATTENDEE_PREFIXES) or WORKSHOP_FOLLOW.match(path):
        return None
    if ex.method in (b"GET", b"HEAD") and not ex.upgrade:
        location = b"%s://%s%s%s%s" % (scheme, sub, port, path, ex.query)
        return Response(302, headers=[("Location", location.decode("latin-1")), ("Cache-Control", "no-store")]), \
            ex.has_body
    return error_response(404, wants_json(ex.headers, ex.path), message=WRONG_HOST), ex.has_body
