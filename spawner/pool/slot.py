"""A pool container as the pool tracks it, its states, and what its labels and name record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proxy.routes import Route

from ..engines.base import Endpoint

LAUNCHING, SPARE, ASSIGNED, REMOVING = "launching", "spare", "assigned", "removing"
# Labels cannot change once a container exists, so hand-out is recorded in its
# name: <pool>-<cid>--a<assigned epoch>-<nonce> ('--e' for one handed to a page's live
# code, so a restart gives its page's credential back). The nonce binds the visitor's cookie.
# The rename is done (and the engine has it) before the visitor is redirected,
# so a restart never takes a container someone used for a spare.
ASSIGNED_NAME = re.compile(r"--([aei])(\d+)-([0-9a-f]{16})$")
NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}$")


@dataclass(eq=False)
class Slot:
    """One pool container, as the pool tracks it."""

    cid: str
    state: str
    generation: int
    created: float  # wall-clock seconds
    engine_id: str = ""
    name: str = ""
    endpoint: Endpoint | None = None
    node: str = ""  # the machine it runs on, when the engine has several
    route: Route | None = None
    assigned_at: float | None = None  # wall-clock seconds
    nonce: str = ""  # set at hand-out; the visitor's cookie carries it
    launch_started: float = 0.0  # monotonic, for the spawn-latency histogram
    owner: str = ""  # the client address it was handed out to (memory only: never in labels or names)
    exited: bool = False  # the engine said its main process ended (while it was launching)
    lost: str = ""  # why it ended without its own fault (its machine went away), when the engine says
    oom_kills: int = 0  # processes killed at its memory limit (its kernels, most often)
    last_oom: float = 0.0  # monotonic time of the last of them
    handout_requests: int = 0  # route.requests at hand-out; -1 when unknown (adopted after a restart)
    workshop: str = ""  # the workshop whose pool it belongs to ('' without named workshops)
    image: str = ""  # the image it runs (kept work compares its files with that image's own)
    embedded: bool = False  # handed to a web page's live code (/build), which reaches it with a credential
    instructor: bool = False  # the instructor's session (the instructor key): attendees follow its notebook
    kernel_seen: float = 0.0  # monotonic: its hand-out (or adoption), or the last time a kernel of it ran code
    busy_kernels: set[str] = field(default_factory=set)  # kernels of it busy now, as their WebSockets said

    @property
    def opened(self) -> bool:
        """Whether a request of its visitor's has gone through the proxy since the hand-out."""
        return self.handout_requests < 0 or self.route is None or self.route.requests > self.handout_requests

    @property
    def prefix(self) -> str:
        """Its route's prefix in the proxy."""
        return f"/user/{self.cid}"

    @property
    def base_url(self) -> str:
        """Its notebook server's base URL (the server is started with it)."""
        return f"/user/{self.cid}/"

    def url(self, path: str = "", origin: str = "") -> str:
        """``path`` inside its server: '/user/<cid>/<path>', after ``origin`` (an endpoint's or the site's)."""
        return f"{origin}{self.base_url}{path.lstrip('/')}"


def spare_name(pool: str, cid: str) -> str:
    """The engine's name of a container nobody has been given."""
    return f"{pool}-{cid}"


def assigned_name(pool: str, slot: Slot) -> str:
    """The engine's name of a container handed out: it records when, and the nonce its cookie binds."""
    kind = "e" if slot.embedded else "i" if slot.instructor else "a"
    return f"{pool}-{slot.cid}--{kind}{int(slot.assigned_at)}-{slot.nonce}"


def split_user_path(path: str) -> tuple[str, str]:
    """'/user/<cid>/notebooks/x.ipynb' -> ('<cid>', 'notebooks/x.ipynb'); ('', '') for other paths."""
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[0] != "" or parts[1] != "user":
        return "", ""
    return parts[2], parts[3] if len(parts) > 3 else ""
