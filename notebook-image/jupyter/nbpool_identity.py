"""Who is at the keyboard: the identity nbpool's proxy puts on every request.

With real-time collaboration more than one person can be in a notebook at once (the attendee, a
helper looking over their shoulder, the instructor), and JupyterLab shows each collaborator by the
identity the server gives them (``GET api/me``: name, initials, colour). Stock Jupyter Server gives
every token-authenticated browser a random "Anonymous <moon>" and keeps it in a cookie.

nbpool's proxy sets the request header ``X-Nbpool-User`` on every request it passes to a container
(HTTP and WebSocket alike), always replacing one a browser sent, so inside the container it can be
trusted. Its value is JSON (ASCII-escaped, at most MAX_HEADER_BYTES):

    {"name": "Ada", "role": "attendee"}
    {"name": "Sam", "role": "helper", "mode": "watch"}
    {"name": "Kim", "role": "instructor"}

``HeaderIdentityProvider`` authenticates a request exactly as the stock provider does (the token,
or the login cookie it sets); once that succeeded and the header is valid, the header decides who
the user is, on every request, whatever the cookie says. A missing or invalid header leaves the stock
behaviour. The user's ``username`` is stable per person ("attendee", "instructor",
"helper-<name>"), ``name`` is the name given, ``display_name`` adds the role for helpers and the
instructor ("Sam (helper)"), ``initials`` come from the name and ``color`` from the username.

Loaded by jupyter_server_config.py as ``c.ServerApp.identity_provider_class``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from jupyter_server.auth.identity import PasswordIdentityProvider, User
from tornado import web

HEADER = "X-Nbpool-User"
MAX_HEADER_BYTES = 300
MAX_NAME_CHARS = 60
ROLES = ("attendee", "helper", "instructor")
# Collaborator colours (JupyterLab's own collaborator palette, light theme) as hex values, so any
# client can use them: the attendee always has the first, the instructor the last, and a helper one
# of the others (by name), so the attendee and whoever looks over their shoulder never look alike.
COLOURS = ("#72dd76", "#ffad8e", "#dac83d", "#00e4d0", "#e2b1ff", "#ff9de6", "#45d4ff")
_SLUG = re.compile(r"[^a-z0-9]+")
_LETTER = re.compile(r"[^\W\d_]")


def _clean_name(value: Any) -> str | None:
    """The name without control characters and runs of spaces, at most MAX_NAME_CHARS; None if empty."""
    if not isinstance(value, str):
        return None
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in value)
    name = " ".join(kept.split())[:MAX_NAME_CHARS].strip()
    return name or None


def _slug(name: str) -> str:
    """A username-safe form of a name: ASCII letters and digits joined by '-', or a short hash."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _SLUG.sub("-", ascii_name.lower()).strip("-")[:40].strip("-")
    return slug or hashlib.sha256(name.encode()).hexdigest()[:10]


def _initials(name: str) -> str:
    """The first letters of the first and the last word ("Ada Lovelace": "AL")."""
    words = [w for w in name.split() if _LETTER.search(w)]
    letters = [_LETTER.search(w).group() for w in words[:1] + words[1:][-1:]]
    return "".join(letters).upper() or name[:1].upper()


def user_from_header(value: str | None) -> User | None:
    """The User a header value describes, or None if it is missing or not valid."""
    if not value or len(value.encode("latin-1", "replace")) > MAX_HEADER_BYTES:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name = _clean_name(data.get("name"))
    role = data.get("role")
    mode = data.get("mode")
    if name is None or role not in ROLES:
        return None
    if role == "attendee":
        username, display_name, colour = "attendee", name, COLOURS[0]
    elif role == "instructor":
        username, display_name, colour = "instructor", f"{name} (instructor)", COLOURS[-1]
    else:
        username = f"helper-{_slug(name)}"
        # Any mode but "watch" means the helper may edit.
        display_name = f"{name} (helper, watching)" if mode == "watch" else f"{name} (helper)"
        colour = COLOURS[1 + hashlib.sha256(username.encode()).digest()[0] % (len(COLOURS) - 2)]
    return User(username=username, name=name, display_name=display_name,
                initials=_initials(name), avatar_url=None, color=colour)


class HeaderIdentityProvider(PasswordIdentityProvider):
    """Jupyter Server's token/password identity provider; the user is the one X-Nbpool-User names."""

    async def _get_user(self, handler: web.RequestHandler) -> User | None:
        cached = getattr(handler, "_jupyter_current_user", None)
        if cached:
            return cached
        # Authentication stays the stock one: token (URL or Authorization header) or login cookie.
        # The cookie it may set holds the stock anonymous user; with the header present that user
        # is never used, so the cookie cannot pin an identity across requests.
        user = await super()._get_user(handler)
        if user is None:
            return None
        from_header = user_from_header(handler.request.headers.get(HEADER))
        if from_header is None:
            return user
        handler._nbpool_header_user = True  # type: ignore[attr-defined]
        return from_header

    def persist_user_model(self, handler: web.RequestHandler) -> None:
        # PATCH api/me: the header's user lives in the header, not in the login cookie.
        if getattr(handler, "_nbpool_header_user", False):
            return
        super().persist_user_model(handler)
