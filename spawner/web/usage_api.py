"""GET /api/admin/usage: what given attendees' containers use, and what the workshop they are in may use.

The dress rehearsal (``python -m loadtest URL --rehearse …``) samples it
while its simulated attendees run the workshop's notebooks: memory, CPU and
disk per container as the engine measures them, and the settings and machines
its verdict compares them with. Admin only: a container's use says what its
attendee is doing.
"""

from __future__ import annotations

import re

from ..engines.base import BackendError
from ..report.analysis import percentile
from .api import AdminHandler

CID = re.compile(r"^[0-9a-f]{1,64}$")
MAX_CIDS = 500  # one request per sample: a rehearsal of a few hundred attendees at most


class UsageHandler(AdminHandler):
    """``?cid=<id>`` (repeated), ``&disk=1`` to measure each one's writable layer too (the engine lists
    sizes for the whole pool: slower, so asked for once per attendee, at its end), ``&workshop=<name>`` for
    the limits of a named workshop when no cid names it."""

    async def get(self) -> None:
        cids = self.get_arguments("cid")
        bad = next((c for c in cids if not CID.match(c)), None)
        if bad is not None or len(cids) > MAX_CIDS:
            self.set_status(400)
            self.finish({"error": f"cid must be a container id such as 3f2a9c (at most {MAX_CIDS}), not {bad!r}"
                         if bad is not None else f"at most {MAX_CIDS} cid at once, not {len(cids)}"})
            return
        found = {cid: ws for cid in cids if (ws := self.workshops.of_cid(cid)) is not None and cid in ws.pool.slots}
        name = self.get_argument("workshop", None)
        ws = self.workshops.get(name) if name is not None else next(iter(found.values()), self.workshops.default)
        if ws is None:
            self.set_status(404 if name is not None else 400)
            self.finish({"error": f"no workshop {name!r}" if name is not None else
                         "name the workshop: ?workshop=<name>", "workshops": sorted(self.workshops.active)})
            return
        containers = {cid: {"ended": True} for cid in cids if cid not in found}
        try:
            containers.update(await self._measure(found, disk=self.get_argument("disk", "") in ("1", "true")))
        except BackendError as exc:
            # The engine is away (restarting, stopping): not a bug of nbpool's, and the caller samples again.
            self.set_status(503)
            self.set_header("Retry-After", "5")
            self.finish({"error": f"the container engine could not measure them: {exc}"})
            return
        self.finish({"containers": containers, "workshop": self.limits(ws)})

    async def _measure(self, found: dict, disk: bool) -> dict:
        by_engine = {ws.pool.slots[cid].engine_id: (cid, ws) for cid, ws in found.items()
                     if ws.pool.slots[cid].engine_id}
        out = {cid: {"ended": False, "state": ws.pool.slots[cid].state, "oom_kills": ws.pool.slots[cid].oom_kills,
                     "memory_bytes": None, "memory_peak_bytes": None, "cpu_seconds": None, "disk_bytes": None}
               for cid, ws in found.items()}
        backends = {id(ws.pool.backend): ws.pool.backend for ws in found.values()}
        for backend in backends.values():
            mine = [e for e, (_, ws) in by_engine.items() if ws.pool.backend is backend]
            for engine_id, use in (await backend.usage(mine)).items():
                row = out[by_engine[engine_id][0]]
                row.update(memory_bytes=use.memory, memory_peak_bytes=use.memory_peak, cpu_seconds=use.cpu_seconds)
        if disk:
            for ws in {id(ws): ws for ws in found.values()}.values():
                sizes = await ws.pool.backend.disk_usage(ws.pool.pool_name)
                for engine_id, size in sizes.items():
                    if engine_id in by_engine and by_engine[engine_id][1] is ws:
                        out[by_engine[engine_id][0]]["disk_bytes"] = size
        return out

    @staticmethod
    def limits(ws) -> dict:
        """What a container of this workshop may use, how many there may be, and the machines they share."""
        pool, engine = ws.pool, ws.pool.backend
        starts = list(pool.stats.spawn_seconds)
        return {"name": ws.name or None, "warm": pool.warm, "max_containers": pool.max_containers,
                "spawn_concurrency": pool.spawn_concurrency,
                "mem_limit_bytes": int(getattr(engine, "mem_limit", 0) or 0),
                "cpu_limit": float(getattr(engine, "cpu_limit", 0) or 0),
                "start_seconds_p50": percentile(starts, 50) if starts else None,
                "start_seconds_p95": percentile(starts, 95) if starts else None,
                "nodes": [{"name": n["name"], "cores": n["cores"], "memory_bytes": n["memory_bytes"]}
                          for n in pool.nodes()]}


def usage_handlers() -> list:
    return [(r"/api/admin/usage", UsageHandler)]
