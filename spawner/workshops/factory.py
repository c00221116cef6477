"""How a workshop's pool is made: wired to the service's parts (the proxy's routes and cache, the secret, the
pages' route options, why sessions ended, kept work, the record) once, at construction, whatever the workshop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traitlets.config import Config, Configurable

from ..pool.ended import EndedSessions
from ..pool.pool import Pool
from ..secret import ServerSecret


class PoolFactory:
    def __init__(self, *, service: Configurable, log, routes, static_cache, secret: ServerSecret,
                 route_options: Callable, ended: EndedSessions, keeper: Any, record: Callable[..., None]):
        self.service = service  # whose own Pool settings the unnamed workshop's pool has (its config parent)
        self.log = log
        self.routes = routes
        self.static_cache = static_cache
        self.secret = secret
        self.route_options = route_options
        self.ended = ended
        self.keeper = keeper
        self.record = record

    def __call__(self, *, backend, config: Config | None = None, workshop: str = "", **hooks) -> Pool:
        """A pool on ``backend`` with ``config``'s Pool settings (None: the service's own), for ``workshop``
        (its record's events carry the name), with the workshop's ``hooks`` (Pool's settings and callbacks)."""
        record = self.record if not workshop else (
            lambda event, /, **fields: self.record(event, workshop=workshop, **fields))
        where = {"config": config} if config is not None else {"parent": self.service}
        return Pool(log=self.log, routes=self.routes, static_cache=self.static_cache, secret=self.secret,
                    route_options=self.route_options, ended=self.ended, keeper=self.keeper, record=record,
                    backend=backend, workshop=workshop, **where, **hooks)
