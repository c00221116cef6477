"""The checks a request head passes on its way to a target, and the head the target gets.

Each ``check_*`` returns None to go on, or ``(answer, close)`` to stop there:
``check_target`` (the request line and its route), ``check_headers`` (framing,
hop-by-hop and forwarding headers, one pass), ``check_access`` (the route's
body limit, origin policy and authorize callback). ``forward_head`` writes
what the target receives. They read and fill the ``Exchange``; the client
side (``client.ClientConnection``) runs them in this order.
"""

from __future__ import annotations

import logging

from .bearer import check_bearer, embed_cookie, without_token
from .exchange import Exchange
from .http import FORWARDED, HOP_BY_HOP, Response, connection_tokens, error_response, wants_json
from .origin import SAFE_METHODS, own_origin
from .routes import InvalidPath, RouteTable, normalize_path
from .state import Limits
from .untrusted import strip_cookies

log = logging.getLogger("nbpool.proxy")

CROSS_ORIGIN = ("This request came from another site, so it was not passed on to your notebook server. "
                "Open the notebook from this site's own address.")


def check_target(ex: Exchange, limits: Limits, routes: RouteTable) -> tuple[Response, bool] | None:
    """The request line: size, version, method and target form; the normalised path and its route."""
    url = ex.url[0] if len(ex.url) == 1 else b"".join(ex.url)
    if ex.head_size > limits.max_head_size or len(ex.headers) > limits.max_headers:
        return error_response(431), True
    if ex.version != "1.1" and ex.version != "1.0":
        return error_response(400, message="Only HTTP/1.0 and HTTP/1.1 are served."), True
    if ex.method == b"CONNECT":
        return error_response(405, message="CONNECT is not served here."), True
    if url[:1] != b"/":
        return error_response(400, message="Only origin-form request targets (/path) are served."), True
    if b"#" in url:
        return error_response(400, message="A request target must not carry a fragment."), True
    q = url.find(b"?")
    path, ex.query = (url, b"") if q < 0 else (url[:q], url[q:])
    try:
        ex.path = path = normalize_path(path)
    except InvalidPath as exc:
        return error_response(400, message=f"Bad path: {exc}."), True
    route = ex.route = routes.longest_match(path)
    if route is None:
        return error_response(404, wants_json(ex.headers, path)), False
    return None

def check_headers(ex: Exchange, limits: Limits, client_ip: str) -> tuple[Response, bool] | None:
    """One pass over the headers: framing checks, hop-by-hop removal, forwarding (kept in ``ex``).

    Only what is forwarded changes: ``ex.headers`` stays as it came, for the
    route's own checks (its authorize callback reads the service's cookie,
    which an untrusted route's target never gets).
    """
    upgrade = ex.upgrade
    hosts = 0
    conn_opts = None
    kept = []
    route = ex.route
    injected = route.header_names
    private = limits.private_cookies if route.untrusted else ()
    trusted_fwd = ex.trusted_fwd = limits.trust_forwarded and limits.is_trusted(client_ip)
    prior_fwd = None
    for name, value in ex.headers:
        low = name.lower()
        if low == b"host":
            hosts += 1
            ex.host = value
            kept.append((name, value))
            continue
        elif low in HOP_BY_HOP:
            if low == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    return error_response(400, message="Only 'Transfer-Encoding: chunked' is accepted."), True
                ex.chunked = True
                ex.has_body = True
            elif low == b"connection":
                conn_opts = connection_tokens(value) if conn_opts is None else conn_opts | connection_tokens(value)
            elif low == b"upgrade" and upgrade:
                kept.append((name, value))
            continue
        elif low == b"content-length":
            ex.has_body = value != b"0"
            ex.length = value
        elif low in FORWARDED:
            if trusted_fwd:
                if low == b"x-forwarded-for":
                    prior_fwd = value if prior_fwd is None else prior_fwd + b", " + value
                    continue
                if low != b"x-real-ip":  # recomputed in forward() from the chain
                    kept.append((name, value))
            continue  # an untrusted client's X-Forwarded-* are dropped and set afresh
        elif private and low == b"cookie":
            value = strip_cookies(value, private)
            if not value:
                continue
        if low in injected:
            continue
        kept.append((name, value))
    if ex.chunked and ex.version == "1.0":
        return error_response(400, message="HTTP/1.0 has no chunked bodies."), True
    if hosts != 1 and (hosts > 1 or ex.version == "1.1"):
        return error_response(400, message="A request needs exactly one Host header."), True
    if conn_opts:
        extra = conn_opts - HOP_BY_HOP
        if extra:
            kept = [(n, v) for n, v in kept if n.lower() not in extra]
    ex.kept = kept
    ex.prior_fwd = prior_fwd
    ex.host_count = hosts
    return None

def check_access(ex: Exchange, limits: Limits, client_ip: str) -> tuple[Response, bool] | None:
    """The route's own rules: its body limit, a bearer credential, its origin policy, its authorize callback.

    A refused request never reaches the target and is not the visitor's
    activity: it never touches the route's last_activity.
    """
    route = ex.route
    if route.max_body and (ex.pending_size > route.max_body or (ex.length and int(ex.length) > route.max_body)):
        return error_response(413, wants_json(ex.headers, ex.path)), True
    if route.bearer is not None:
        own = service_origin(ex, limits)
        way, answer = check_bearer(route.bearer, ex.method, ex.headers, ex.query, own,
                                   wants_json(ex.headers, ex.path), ex.path[len(route.prefix) + 1:])
        if way == "answer":
            return answer, ex.has_body
        if way == "pass":  # the credential and its origin were checked: neither cookie nor origin policy
            ex.cors = answer
            ex.query = without_token(ex.query)
            if ex.upgrade:
                ex.set_cookie = embed_cookie(route.bearer, route.prefix, own)
            route.requests += 1
            return None
    policy = route.origin_policy
    if policy is not None and (ex.upgrade or ex.method not in SAFE_METHODS):
        why = policy.refusal(ex.method, ex.upgrade, ex.headers, service_origin(ex, limits))
        if why is not None:
            log.info("refused %s %s from %s: %s", ex.method.decode(), ex.path[:200].decode("latin-1"),
                     client_ip, why)
            return error_response(403, wants_json(ex.headers, ex.path), message=CROSS_ORIGIN), ex.has_body
    if route.authorize is not None:
        denial = route.authorize(ex.request_head(ex.path, ex.query))
        if denial is not None:
            return denial, ex.has_body
    route.requests += 1
    return None

def forward_head(ex: Exchange, limits: Limits, client_ip: str, forwarded: bytes) -> bytes:
    """The head the target gets: the kept headers, the route's injected ones, forwarding set afresh."""
    route = ex.route
    host = ex.host
    out = [ex.method, b" ", ex.path, ex.query, b" HTTP/1.1\r\n"]
    granted = ex.head
    if granted is not None and granted.read_only:  # no compression, so its frames can be read one by one
        kept = [(n, v) for n, v in ex.kept if n.lower() != b"sec-websocket-extensions"]
    else:
        kept = ex.kept
    for name, value in kept:
        out += (name, b": ", value, b"\r\n")
    inject = granted.inject if granted is not None else None
    if inject:  # the authorize callback's values replace the route's own of the same names
        names = {name.lower() for name, _ in inject}
        out.extend(part for name, value in route.headers if name.lower() not in names
                   for part in (name, b": ", value, b"\r\n"))
        for name, value in inject:
            out += (name, b": ", value, b"\r\n")
    else:
        for name, value in route.headers:
            out += (name, b": ", value, b"\r\n")
    if ex.trusted_fwd:
        kept = ex.kept
        prior_fwd = ex.prior_fwd
        out += (b"X-Forwarded-For: ", (prior_fwd + b", " if prior_fwd else b""),
                client_ip.encode(), b"\r\n",
                # The web app rate-limits by this, so it must be the visitor, not the balancer.
                b"X-Real-IP: ", limits.real_client(prior_fwd or b"", client_ip), b"\r\n")
        if not any(n.lower() == b"x-forwarded-proto" for n, _ in kept):
            out.append(limits.proto_line)
        if not any(n.lower() == b"x-forwarded-host" for n, _ in kept):
            out += (b"X-Forwarded-Host: ", host, b"\r\n")
        if not any(n.lower() == b"x-forwarded-port" for n, _ in kept):
            out.append(limits.port_line)
    else:
        out += (forwarded, b"X-Forwarded-Host: ", host, b"\r\n")
    if not ex.host_count:  # an HTTP/1.0 request without Host: name the target, as HTTP/1.1 requires
        out += (b"Host: ", route.target.host_header, b"\r\n")
    if ex.chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if ex.upgrade:
        out.append(b"Connection: Upgrade\r\n")
    out.append(b"\r\n")
    return b"".join(out)

def service_origin(ex: Exchange, limits: Limits) -> bytes:
    """The service's origin as the browser sees it: behind a trusted balancer, as it forwarded it."""
    scheme = limits.scheme
    host = ex.host
    if ex.trusted_fwd:
        for name, value in ex.kept:
            low = name.lower()
            if low == b"x-forwarded-proto":
                scheme = value.split(b",")[0].strip()
            elif low == b"x-forwarded-host":
                host = value.split(b",")[0].strip()
    return own_origin(scheme, host)
