"""A pool container as the pool tracks it, its states, and what its labels and name record."""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.routes import Route

from .backend import Endpoint

LAUNCHING, SPARE, ASSIGNED, REMOVING = "launching", "spare", "assigned", "removing"
CREATED_LABEL = "org.nbpool.created"
IMAGE_LABEL = "org.nbpool.image"
# Labels cannot change once a container exists, so hand-out is recorded in its
# name: <pool>-<cid>--a<assigned epoch>-<nonce>. The nonce binds the visitor's cookie.
ASSIGNED_NAME = re.compile(r"--a(\d+)-([0-9a-f]{16})$")
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
    route: Route | None = None
    assigned_at: float | None = None  # wall-clock seconds
    nonce: str = ""  # set at hand-out; the visitor's cookie carries it
    launch_started: float = 0.0  # monotonic, for the spawn-latency histogram

    @property
    def prefix(self) -> str:
        return f"/user/{self.cid}"

    @property
    def base_url(self) -> str:
        return f"/user/{self.cid}/"
