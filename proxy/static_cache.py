"""The shared static cache: the notebook UI's files, fetched once per image and served to every attendee from memory.

Every attendee's container serves the same few megabytes of JavaScript and
CSS from the same image. Routes that share an image carry the same ``share``
scope; a request under one of the static paths (``Policy.static_paths``,
after the route's prefix) is answered from here when the file is cached, and
otherwise goes to the visitor's own container as before while the cache
fetches the file in the background (when the fills in flight leave room for
one more: see FILLS_PER_ROUTE).

Where the bytes come from is the security of it: an attendee runs arbitrary
code in their container and could answer anything for any path, so a file is
fetched only from a route still marked ``fill_ok``: a container through which
no request that can run code has passed yet. Running code in a Jupyter server
(a kernel, a terminal, writing a file) takes a POST, PUT, PATCH or DELETE or
a WebSocket, and every request reaches a container through this proxy, which
clears the mark before it sends the first such request on, for good. So a
spare qualifies, and so does a container just handed out while its page
loads (which keeps the cache filling in a burst, when no spare lasts a
second). The fetch carries no token (so the server sets no cookie), and is
stored only if its route was still marked when the last byte arrived: the
bytes came from the image's own server, untouched. The request path's own checks (origin,
the visitor's cookie) run before the cache is consulted, so a refused visitor
gets their 403 and no cached byte.

What is stored: a 200 with no Set-Cookie, no Vary beyond Accept-Encoding, no
``no-store`` or ``private``, and a body under the entry cap; the identity body
and, for compressible types, gzip and brotli versions made once in a thread.
The proxy is the image's own front (a surrogate, as a CDN is), so files the
server marks ``no-cache`` (JupyterLab's extension bundles, content-hashed)
are stored too: within one image they cannot change, and browsers still
revalidate them, with the 304 answered from here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import threading
import time

from .cache_entry import Entry, Fetch, OverBudget, entry_of
from .encoding import BR, GZIP, Policy, encode_whole, route_rest
from .routes import Route, RouteTable

log = logging.getLogger("nbpool.proxy")

FILL_TIMEOUT = 30.0  # seconds for one background fetch, head to last byte
REFUSED_MEMORY = 4096  # paths remembered as not cacheable (then forgotten all at once)
REFUSED_RETRY = 300.0  # seconds before a path that was not cacheable is tried again
# Fills in flight. Every distinct query string is a distinct file, so a visitor's requests could
# start any number of them, each buffering up to cache_max_entry: a few per route (the visitor's
# whose request started it), a few in all, and their buffered bytes together within FILL_BUDGET
# entries' worth (a fill that would go past it is aborted). A miss beyond them waits in a short line
# of its own (FILLS_QUEUED_PER_ROUTE per route, FILLS_QUEUED in all: keys only, no bytes), started
# as fills in flight end, so one page load still fills the cache with all its files; beyond the line
# it starts no fill, and its request goes to the visitor's container as any miss does. An attendee
# alone gets two fills at a time, whatever they ask.
FILLS_PER_ROUTE = 2
FILLS_AT_ONCE = 8
FILLS_QUEUED_PER_ROUTE = 64  # a notebook page loads a few dozen static files
FILLS_QUEUED = 512
# The longest path and query (after the route's prefix) kept as a key: Jupyter's versioned URLs
# are under 200 bytes, and keys are also what the wanted and refused memories hold, by the thousand.
MAX_KEY = 1024
# What an entry costs beside its head and bodies (its key's bytes are added): Python's objects for
# it, measured near 500 bytes. Counted in its size, so that a flood of tiny files under distinct
# query strings cannot hold many times cache_size.
ENTRY_OVERHEAD = 512
def _lower_priority() -> None:
    """Run this thread at a lower CPU priority (Linux applies it per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENCODER_NICENESS)
    except (OSError, AttributeError):
        pass  # a nicety: without it the encoding only competes on equal terms


# Encoding a file for the cache (about 0.2 CPU-seconds per MB for gzip 9 and
# brotli 9) is done once per file and image, off the event loop, one file at a
# time, at a lower priority than everything else the machine runs at that
# moment: the first attendee's browser, and containers starting in a burst.
ENCODER_NICENESS = 10


class StaticCache:
    """Shared, bounded (LRU), per-image store of static files; see the module's notes for what and why."""

    def __init__(self, routes: RouteTable, policy: Policy, max_bytes: int, max_entry: int):
        self.routes = routes
        self.policy = policy
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self.entries: collections.OrderedDict[tuple[bytes, bytes], Entry] = collections.OrderedDict()
        self.bytes = 0
        self.filling: set[tuple[bytes, bytes]] = set()  # fills in flight, by key
        self.fills_from: dict[Route, int] = {}  # fills in flight by the route whose request started them
        # Misses waiting for a fill in flight to end (key -> (rest, the route whose request asked)), in order.
        self.queued: collections.OrderedDict[tuple[bytes, bytes], tuple[bytes, Route]] = collections.OrderedDict()
        self.queued_from: dict[Route, int] = {}
        self.fill_bytes = 0  # bytes the fills in flight hold, together
        self.unencoded: dict[tuple[bytes, bytes], None] = {}  # stored, compressible, waiting for the encoder
        self.encoding: asyncio.Task | None = None  # the one task feeding the encoder
        # Files asked for while no container could serve as a source (every one had run
        # code): fetched as soon as one can, so the cache completes itself when a spare is ready.
        self.wanted: dict[tuple[bytes, bytes], bytes] = {}
        routes.on_add.append(self._route_added)
        self.refused: dict[tuple[bytes, bytes], float] = {}
        self.epoch = 0  # bumped when scopes are emptied: a fetch begun before is not stored
        self.tasks: set[asyncio.Task] = set()
        self.encoder: concurrent.futures.ThreadPoolExecutor | None = None
        self.hits = self.misses = self.fills = self.fill_failures = self.evictions = 0
        self.fills_declined = 0  # misses that started no fill: the fills in flight were at their bounds
        self.bytes_served = 0
        self.static_relayed = 0  # static requests that went to a container (misses, ranges, no cache)

    # --- the request path ------------------------------------------------------------

    def lookup(self, route: Route, path: bytes, query: bytes, method: bytes,
               headers: list[tuple[bytes, bytes]]) -> Entry | None:
        """The entry for a request that passed its checks, or None to relay it (a fetch may start)."""
        rest = route_rest(path, route.prefix)
        if not self.policy.is_static(rest):
            return None
        if (method != b"GET" and method != b"HEAD") or self.max_bytes <= 0:
            self.static_relayed += 1
            return None
        for name, _ in headers:
            low = name.lower()
            if low == b"range" or low == b"if-range":
                self.static_relayed += 1
                return None  # the container answers ranges from the file itself
        if len(rest) + len(query) > MAX_KEY:
            self.static_relayed += 1
            return None  # never stored, nor remembered as wanted or refused
        key = (route.share, rest + query)
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
            self.hits += 1
            return entry
        self.misses += 1
        self.static_relayed += 1
        if key not in self.filling and key not in self.queued and self.refused.get(key, 0.0) < time.monotonic():
            self._start_fill(key, rest + query, route)
        return None

    # --- filling -----------------------------------------------------------------------

    def _source(self, share: bytes) -> Route | None:
        """A container of the image that has run no code, the least used first: a spare when there is one,
        rather than the container whose visitor's page is loading right now."""
        best = None
        for route in self.routes.routes():
            if route.share == share and route.fill_ok and (best is None or route.requests < best.requests):
                best = route
        return best

    def _route_added(self, route: Route) -> None:
        if route.fill_ok and route.share is not None and self.wanted:
            self._start_wanted()

    def _start_wanted(self) -> None:
        """Fetch files remembered as wanted from the sources now routed, as far as the fills in flight
        allow; the rest start as those end (a page load wants more files than FILLS_AT_ONCE)."""
        if not self.wanted or len(self.filling) >= FILLS_AT_ONCE:
            return
        shares = {route.share for route in self.routes.routes() if route.fill_ok and route.share is not None}
        if not shares:
            return
        for key, rest in [(k, r) for k, r in self.wanted.items() if k[0] in shares]:
            if len(self.filling) >= FILLS_AT_ONCE:
                return
            del self.wanted[key]
            if key not in self.filling and key not in self.entries and key not in self.queued:
                self._start_fill(key, rest, None)

    def _start_fill(self, key: tuple[bytes, bytes], rest: bytes, starter: Route | None) -> None:
        """Fetch ``key`` from a source in the background, if the fills in flight allow one more
        (``starter``: the route whose request asked, None for a file remembered as wanted)."""
        source = self._source(key[0])
        if source is None:
            # No container of this image that has not run code, right now: the next one routed fetches it.
            if len(self.wanted) >= REFUSED_MEMORY:
                self.wanted.clear()
            self.wanted[key] = rest
            return
        if len(self.filling) >= FILLS_AT_ONCE or (starter is not None
                                                   and self.fills_from.get(starter, 0) >= FILLS_PER_ROUTE):
            if (starter is not None and len(self.queued) < FILLS_QUEUED
                    and self.queued_from.get(starter, 0) < FILLS_QUEUED_PER_ROUTE):
                self.queued[key] = (rest, starter)
                self.queued_from[starter] = self.queued_from.get(starter, 0) + 1
            else:
                self.fills_declined += 1
            return
        self.filling.add(key)
        if starter is not None:
            self.fills_from[starter] = self.fills_from.get(starter, 0) + 1
        task = asyncio.get_running_loop().create_task(self._fill(key, rest, source, starter))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _start_queued(self) -> None:
        """Start the waiting misses the fills in flight now leave room for, in the order they came; then
        files remembered as wanted (a visitor's request waiting goes first)."""
        for key, (rest, starter) in list(self.queued.items()):
            if len(self.filling) >= FILLS_AT_ONCE:
                return
            if self.fills_from.get(starter, 0) >= FILLS_PER_ROUTE:
                continue
            del self.queued[key]
            left = self.queued_from.pop(starter) - 1
            if left:
                self.queued_from[starter] = left
            if key not in self.filling and key not in self.entries:
                self._start_fill(key, rest, starter)
        self._start_wanted()

    async def _fill(self, key: tuple[bytes, bytes], rest: bytes, source: Route, starter: Route | None) -> None:
        epoch = self.epoch
        try:
            entry = await asyncio.wait_for(self._fetch(source, rest), FILL_TIMEOUT)
        except OverBudget:
            self.fill_failures += 1  # not the file's fault: not refused, so a later request tries again
            return
        except (OSError, ValueError, TimeoutError) as exc:
            self.fill_failures += 1
            log.debug("static cache: could not fetch %s from %s: %s", rest.split(b"?")[0][:200], source, exc)
            self._refuse(key)
            return
        except Exception:  # a task boundary: a bug of ours must not go unseen
            self.fill_failures += 1
            log.exception("static cache: fetching %r failed", rest[:200])
            return
        finally:
            self.filling.discard(key)
            if starter is not None:
                left = self.fills_from.pop(starter) - 1
                if left:
                    self.fills_from[starter] = left
            self._start_queued()
        if entry is None:
            self._refuse(key)
            return
        # Stored only if its source was still unmarked at the last byte: the mark is
        # cleared before the first request that can run code, so nothing but the
        # image's own server can have written these bytes.
        if epoch != self.epoch:
            return
        if not source.fill_ok or self.routes.get(source.prefix) is not source:
            self.wanted[key] = rest  # its source ran code meanwhile: ask the next one
            self._start_wanted()
            return
        self.fills += 1
        self._store(key, entry)
        if entry.compressible and self.entries.get(key) is entry:
            self._queue_encoding(key)

    def _queue_encoding(self, key: tuple[bytes, bytes]) -> None:
        """Have a stored file encoded in its turn. The queue holds keys, not files: one evicted while it
        waits is let go (and never encoded), so waiting costs no memory beyond the cache's own."""
        self.unencoded[key] = None
        if self.encoding is None:
            task = self.encoding = asyncio.get_running_loop().create_task(self._encode_queued())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _encode_queued(self) -> None:
        try:
            while self.unencoded:
                key = next(iter(self.unencoded))
                del self.unencoded[key]
                entry = self.entries.get(key)
                if entry is None:
                    continue
                try:
                    await self._encode(key, entry)
                except Exception:  # a task boundary: a bug of ours must not go unseen, nor stop the queue
                    log.exception("static cache: encoding %r failed", key[1][:200])
        finally:
            self.encoding = None

    async def _encode(self, key: tuple[bytes, bytes], entry: Entry) -> None:
        """Add the gzip and brotli versions of a stored file; it is served as it is meanwhile.

        In a burst the machine is busy and the encoder's thread runs last (see
        ENCODER_NICENESS): serving the plain file from memory in the meantime
        costs bytes on the wire, never a container's work or the event loop's.
        """
        loop = asyncio.get_running_loop()
        if self.encoder is None:
            self.encoder = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="nbpool-cache-encoder", initializer=_lower_priority)
        body = entry.bodies[b""]
        for coding in (GZIP, BR):
            # zlib and brotli release the GIL: the event loop runs on meanwhile.
            encoded = await loop.run_in_executor(self.encoder, encode_whole, coding, body)
            if self.entries.get(key) is not entry:
                return  # evicted or let go meanwhile
            if len(encoded) < len(body) * 0.9:
                entry.bodies[coding] = encoded
                entry.size += len(encoded)
                self.bytes += len(encoded)
        self.shrink()

    async def _fetch(self, source: Route, rest: bytes) -> Entry | None:
        loop = asyncio.get_running_loop()
        target = source.target
        fetch = Fetch(self)
        try:
            if target.unix_path:
                transport, _ = await loop.create_unix_connection(lambda: fetch, target.unix_path)
            else:
                transport, _ = await loop.create_connection(lambda: fetch, target.host, target.port)
            prefix = b"" if source.prefix == b"/" else source.prefix
            # No token: the server's static files need none, and without one it sets no cookie.
            transport.write(b"GET %s/%s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: identity\r\n"
                            b"User-Agent: nbpool-static-cache\r\nConnection: close\r\n\r\n"
                            % (prefix, rest, target.host_header))
            status = await fetch.done
            return entry_of(status, fetch.headers, b"".join(fetch.body), self.policy.min_size)
        finally:
            fetch.release()  # also when the fill timed out or was cancelled

    def _refuse(self, key: tuple[bytes, bytes]) -> None:
        if len(self.refused) >= REFUSED_MEMORY:
            self.refused.clear()
        self.refused[key] = time.monotonic() + REFUSED_RETRY

    def _store(self, key: tuple[bytes, bytes], entry: Entry) -> None:
        entry.size += len(key[1]) + ENTRY_OVERHEAD
        if entry.size > self.max_entry or entry.size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self.entries[key] = entry
        self.bytes += entry.size
        self.shrink()

    # --- housekeeping -------------------------------------------------------------------

    def shrink(self) -> None:
        """Evict least recently used entries until the cache fits its size."""
        while self.bytes > self.max_bytes and self.entries:
            key, old = self.entries.popitem(last=False)
            self.unencoded.pop(key, None)
            self.bytes -= old.size
            self.evictions += 1

    def drop(self, keep: bytes | set[bytes] | None = None) -> int:
        """Empty every scope but ``keep`` (one, or a set: every workshop's current one); after a drain the old
        image's files go. Returns the bytes freed."""
        kept = keep if isinstance(keep, set) else {keep}
        freed = 0
        for key in [k for k in self.entries if k[0] not in kept]:
            freed += self.entries.pop(key).size
            self.unencoded.pop(key, None)
        self.bytes -= freed
        self.epoch += 1
        self.wanted = {k: v for k, v in self.wanted.items() if k[0] in kept}
        self.refused = {k: v for k, v in self.refused.items() if k[0] in kept}
        for key in [k for k in self.queued if k[0] not in kept]:
            _, starter = self.queued.pop(key)
            left = self.queued_from.pop(starter) - 1
            if left:
                self.queued_from[starter] = left
        return freed

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.encoder is not None:
            self.encoder.shutdown(wait=False, cancel_futures=True)
            self.encoder = None
