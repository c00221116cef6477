"""The server secret: one file, created on first start, from which visitor
cookies are signed and notebook tokens derived.

Because tokens are derived (never stored), a restarted orchestrator can rebuild
every route from container labels plus this file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32

# What a signed value is for (ServerSecret.sign): each kind verifies only as itself.
SESSION = "session"  # a visitor's key to their container: "<cid>:<nonce>"
KEPT = "kept"  # the session before the current one, whose kept work stays reachable: "<cid>:<nonce>"
TICKET = "ticket"  # a place in the waiting line
CLAIM = "claim"  # an /api/spawn link's one-time key
WORKSHOP_KEY = "workshop-key"  # the workshop key, remembered
ADMIN = "admin"  # the status page's login: "admin:<epoch>"
ENTRY = "entry"  # subdomain mode: a link into a container's own origin: "<cid>:<nonce>:<expires>:<browser>"
BROWSER = "browser"  # subdomain mode: which browser entry links are made for
HELPER = "helper"  # the class view's sign-in of a helper: "<scope>:<key digest>" (spawner.web.classview)
GRANT_LINK = "grant-link"  # a one-use link into an attendee's notebook for a helper: "<cid>:<nonce>:<grant>:<until>"
GRANT = "grant"  # a helper's key to one container, in their browser: "<cid>:<nonce>:<grant>" (classroom.helpers)
INSTRUCTOR = "instructor"  # the instructor key, remembered: "<workshop>:<key digest>"
BAN = "ban"  # a browser the abuse guard banned: "<ban id>" (spawner.guard.bans)


class ServerSecret:
    """A 32-byte secret kept in ``path`` (mode 0600)."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("the server secret must be at least 16 bytes")
        self._key = key

    @classmethod
    def load_or_create(cls, path: str | os.PathLike) -> ServerSecret:
        """Read the secret file, or create it (mode 0600) on first start.

        Raises ValueError when the file exists but is unusable (too short, or
        readable by others), naming the file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting at once cannot both write a secret.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise ValueError(f"{path} is readable by others (mode {mode:o}); chmod 600 it") from None
            key = bytes.fromhex(path.read_text().strip())
            if len(key) < 16:
                raise ValueError(f"{path} holds too short a secret; delete it to make a new one") from None
            return cls(key)
        key = secrets.token_bytes(SECRET_BYTES)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return cls(key)

    def derive(self, purpose: str, value: str) -> str:
        """A hex HMAC of ``value`` for one ``purpose`` (purposes never share a digest)."""
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def token_for(self, container_id: str) -> str:
        """The notebook token of a pool container (the visitor never sees it)."""
        return self.derive("notebook-token", container_id)

    def sign(self, value: str, purpose: str) -> str:
        """``value.signature``, for a cookie or a link, valid for ``purpose`` only: a value signed as one
        kind ('kept', say) never verifies as another ('session'), so no signed value can be replayed as
        a different credential."""
        return f"{value}.{self._signature(value, purpose)}"

    def verify(self, signed: str | None, purpose: str) -> str | None:
        """The value inside ``signed`` if it was signed for ``purpose``, else None (constant-time compare)."""
        if not signed or "." not in signed or not signed.isascii():
            return None  # anything but a signature of ours, including stray bytes, is simply invalid
        value, _, signature = signed.rpartition(".")
        if hmac.compare_digest(signature, self._signature(value, purpose)):
            return value
        return None

    def _signature(self, value: str, purpose: str) -> str:
        if not purpose or "\0" in purpose:
            raise ValueError("a signed value needs a purpose")
        return self.derive(f"signed:{purpose}", value)[:32]
