"""What changed on the cluster between two looks (Swarm has no task events, so the backend compares)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import DIED, GONE, POOL_LABEL, REMOVED, RUNNING, ContainerEvent, ContainerInfo
from .swarm_cluster import Snapshot, task_words


def changes(pool: str, seen: dict[str, tuple[str, str]], snap: Snapshot,
            info_of: Callable[[dict, Snapshot], ContainerInfo],
            log: logging.Logger) -> tuple[dict[str, tuple[str, str]], list[ContainerEvent]]:
    """``pool``'s services now (service id -> (cid, state)) and the events since ``seen``: a running task that
    ended (or lost its node) is DIED, with the reason when the cluster gives one; a vanished service REMOVED."""
    now: dict[str, tuple[str, str]] = {}
    events = []
    for sid, svc in snap.services.items():
        info = info_of(svc, snap)
        if info.labels.get(POOL_LABEL) != pool:
            continue
        now[sid] = (info.cid, info.state)
        before = seen.get(sid)
        if before is not None and before[1] == RUNNING and info.state == GONE:
            status = (snap.tasks.get(sid) or {}).get("Status") or {}
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            if not info.reason:
                log.info("swarm: service %s (%s) on %s: %s", sid[:12], info.name, info.node or "?",
                         task_words(snap.tasks.get(sid) or {}))
            events.append(ContainerEvent(DIED, sid, info.cid, exit_code=code if code else None, reason=info.reason))
    events += [ContainerEvent(REMOVED, sid, cid) for sid, (cid, _) in seen.items() if sid not in now]
    return now, events
