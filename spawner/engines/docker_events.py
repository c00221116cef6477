"""Docker's event stream for one pool, turned into ContainerEvents on the event loop, reconnecting by itself.

The SDK's ``events()`` is a blocking generator that may wait hours for the
next event, so it gets a thread of its own (never one of the backend's
executor threads, which serve calls with deadlines). The thread hands each
event to the loop; when the stream ends (the engine went away), the loop side
says so and tries again with backoff until the engine answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import docker

from .base import DIED, ID_LABEL, OOM, POOL_LABEL, REMOVED, ContainerEvent

# Docker's words for what the pool cares about: a container's main process ended, a
# process met the memory limit, the container is gone.
ACTIONS = {"die": DIED, "oom": OOM, "destroy": REMOVED}
_END = object()  # the stream ended: the engine went away (or we closed it)


def to_event(raw: dict) -> ContainerEvent | None:
    """The ContainerEvent for one decoded Docker event, or None for events the pool ignores."""
    kind = ACTIONS.get(raw.get("Action") or raw.get("status") or "")
    if kind is None or raw.get("Type", "container") != "container":
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    code = attributes.get("exitCode")
    return ContainerEvent(kind=kind, engine_id=actor.get("ID") or raw.get("id", ""),
                          cid=attributes.get(ID_LABEL, ""),
                          exit_code=int(code) if code is not None and code.lstrip("-").isdigit() else None)


class EventWatch:
    """Follows one pool's container events until cancelled (see ContainerBackend.watch)."""

    def __init__(self, client: Callable[[], docker.DockerClient], pool: str, log: logging.Logger,
                 retry_most: float = 2.0):
        self.client = client  # called in the stream's thread: it may talk to the engine
        self.pool = pool
        self.log = log
        self.retry_most = retry_most  # seconds between reconnection tries, at most

    async def run(self, on_event: Callable[[ContainerEvent], None], on_engine: Callable[[bool], None]) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.1
        up = True
        while True:
            queue: asyncio.Queue = asyncio.Queue()
            opened = loop.create_future()
            holder: list = []
            thread = threading.Thread(target=self._pump, args=(loop, queue, opened, holder), daemon=True,
                                      name=f"docker-events-{self.pool}")
            thread.start()
            try:
                ok = await opened
                if ok:
                    delay = 0.1
                    if not up:
                        up = True
                        on_engine(True)
                    while (raw := await queue.get()) is not _END:
                        event = to_event(raw)
                        if event is not None:
                            on_event(event)
            finally:
                if holder:  # cancelled (or done): end the blocking read so the thread can go
                    with contextlib.suppress(Exception):
                        holder[0].close()
            if up:
                up = False
                on_engine(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_most)

    def _pump(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, opened: asyncio.Future,
              holder: list) -> None:
        """The stream's thread: open it, hand every event to the loop, then _END."""
        def tell(fn, *args) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(fn, *args)

        try:
            stream = self.client().events(decode=True, filters={
                "type": "container", "label": f"{POOL_LABEL}={self.pool}"})
        except Exception as exc:  # the engine does not answer: the loop side retries
            self.log.debug("docker events for %s not available: %s", self.pool, exc)
            tell(lambda: opened.done() or opened.set_result(False))
            return
        holder.append(stream)
        tell(lambda: opened.done() or opened.set_result(True))
        try:
            for raw in stream:
                tell(queue.put_nowait, raw)
        except Exception as exc:  # a broken stream is an engine gone away, like its end
            self.log.debug("docker events for %s ended: %s", self.pool, exc)
        tell(queue.put_nowait, _END)
