"""A container's route in the proxy's table: added once it is ready (or adopted), taken away first when it goes."""

from __future__ import annotations

from collections.abc import Callable

from proxy.routes import RouteTable

from ..secret import ServerSecret
from .slot import ASSIGNED, Slot


class SlotRoutes:
    def __init__(self, table: Callable[[], RouteTable | None], secret: ServerSecret,
                 options: Callable[[Slot], dict], share_scope: Callable[[], str]):
        self.table = table  # the proxy's table (None: a pool without a proxy, in tests)
        self.secret = secret
        self.options = options  # (slot) -> extra RouteTable.add arguments (Pool.route_options)
        self.share_scope = share_scope

    def add(self, slot: Slot) -> None:
        routes = self.table()
        if routes is None:
            return
        options = dict(self.options(slot))
        headers = {"Authorization": f"token {self.secret.token_for(slot.cid)}", **options.pop("headers", {})}
        # A container that has run no visitor's code may serve the shared static cache its
        # image's files: a new one may (the proxy ends that at its first request that can
        # run code); one adopted after a restart with a visitor may not (its past is unknown).
        slot.route = routes.add(slot.prefix, slot.endpoint.url, headers=headers,
                                data=slot, share=self.share_scope(), fill_ok=slot.state != ASSIGNED, **options)

    def remove(self, slot: Slot) -> None:
        """Its route, if it is still the one in the table (first: nothing changes in it while it is saved)."""
        routes = self.table()
        if routes is not None and slot.route is not None and routes.get(slot.prefix) is slot.route:
            routes.remove(slot.prefix)
