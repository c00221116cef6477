"""Who may take a container: one rule for /spawn and /api/spawn.

A public link faces strangers. ``Admission.admit`` stands between a request
and a container, in this order, each check with its own answer for the visitor:

- the **path** asked for must stay inside the notebook server (400);
- the service must be **accepting** (503 while it stops);
- the **workshop key** (optional): the published link carries it
  (``/?key=…``); once seen it is remembered in a signed cookie, so the
  visitor's later links (a fresh notebook from the ended page) need no key;
- the **share per network**: one client network (the address as the proxy
  sees it, ``X-Real-IP`` behind trusted balancers; an IPv6 address by its /64,
  which one subscriber holds whole: ``proxy.addresses``) holds at most a share
  of the cap, so a script cannot take every container; and the last places
  (``newcomer_reserve``) go only to networks that hold none yet, so a few
  greedy networks together still cannot take them all and a visitor from
  elsewhere is served; this machine's own addresses are exempt (load tests,
  operators);
- the **spawn rate** per address (a token bucket), which slows loops.

The key and the share are skipped for integrators holding the api_token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from ..guard.bans import Ban
from ..guard.guard import AbuseGuard
from ..pool.pool import Pool
from ..secret import WORKSHOP_KEY, ServerSecret
from .pages import PATH_SAFE
from .ratelimit import RateLimiter

KEY_COOKIE = "nbpool-key"
SHARE_WARNING_EVERY = 60.0  # seconds between operator warnings about one address at its share


class Refused(Exception):
    """A visitor may not have a container now: what to tell them, and with which status."""

    def __init__(self, status: int, title: str, message: str, log_message: str, retry_after: int | None = None,
                 page: str = "error.html", ban: Ban | None = None):
        super().__init__(log_message)
        self.ban = ban  # the ban that refused it: its browser is marked with it (a cookie)
        self.status = status
        self.title = title
        self.message = message
        self.log_message = log_message
        self.retry_after = retry_after
        self.page = page


class Settings(Protocol):
    """The WebApp's settings admission reads (live: a reload applies at the next request)."""

    log: logging.Logger
    secret: ServerSecret
    accepting: bool
    landing_path: str
    workshop_key: str
    address_share: float
    address_share_exempt: list[str]
    spawn_rate_limit: int
    spawn_rate_period: float
    network_of: Callable[[str], str]
    guard: AbuseGuard | None


class Admission:
    """The checks a request passes before nbpool takes a container for it (settings: the WebApp's)."""

    def __init__(self, web: Settings):
        self.web = web
        self.limiter = RateLimiter(web.spawn_rate_limit or 1, web.spawn_rate_period)
        self._warned: dict[str, float] = {}

    def new_rate(self) -> None:
        """The rate settings changed: start counting afresh."""
        self.limiter = RateLimiter(self.web.spawn_rate_limit or 1, self.web.spawn_rate_period)

    # --- the rule -------------------------------------------------------------------------

    def spawn_path(self, path: str, landing_path: str | None = None) -> str:
        """Where in the new server the visitor wants to land, URL-encoded (the landing path when none).

        Raises Refused (400) for a path that climbs out of the notebook server.
        """
        path = path.lstrip("/") or (self.web.landing_path if landing_path is None else landing_path)
        if ".." in path.split("/"):
            raise Refused(400, "Bad request", "That address points outside the notebook server.",
                          f"path {path[:100]!r} climbs out")
        return quote(path, safe=PATH_SAFE)

    def admit(self, address: str, pool: Pool, *, key: str | None, key_cookie: str | None = None,
              trusted: bool = False, workshop_key: str | None = None, marks: BanMarks | None = None) -> None:
        """Raise Refused unless ``address`` may take a container now.

        ``trusted`` (an integrator with the api_token, who serves many people)
        skips the key and the share. Everyone else shows the key, a visitor
        continuing their kept work too (its remembered cookie normally covers
        it: a kept-work cookie is no workshop key). Bans (``marks``: what the
        browser holds) and the spawn rate apply to everyone.
        """
        self.check_ban(address, marks or BanMarks())
        if not self.web.accepting or self.web.starting:
            # Starting: a returning visitor's container may not be adopted yet; a new one would orphan it.
            raise Refused(503, "Restarting", "The workshop server is restarting. Please try again in a moment.",
                          "not accepting: " + ("starting" if self.web.starting else "stopping"), retry_after=10)
        if not trusted:
            self.check_key(key, key_cookie, workshop_key)
            self.check_share(address, pool)
        self.check_rate(address)

    # --- bans ---------------------------------------------------------------------------------

    def check_ban(self, address: str, marks: BanMarks) -> None:
        """Refuse a banned browser or network (spawner.guard.bans), and an address the operator banned."""
        guard = self.web.guard
        if guard is None:
            return
        if guard.banned_addresses and _in_networks(address, guard.banned_addresses):
            raise Refused(403, "Notebooks are not available to you",
                          "This service does not give notebooks to your network.",
                          "address in AbuseGuard.banned_addresses", page="banned.html")
        if guard.bans is None:
            return
        ban = guard.bans.find(network=self.owner_of(address), containers=marks.containers, ban_ids=marks.bans)
        if ban is None:
            return
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ban.until))
        raise Refused(403, "Notebooks are not available to you for now",
                      f"A notebook session of yours was ended because {_what(ban.rule)}. New notebooks are "
                      f"refused to this {'browser and network' if ban.network else 'browser'} until {until}.",
                      f"banned ({ban.id}, {ban.rule})", page="banned.html", ban=ban)

    # --- the workshop key -----------------------------------------------------------------

    def key_mark(self, workshop_key: str | None = None) -> str:
        """What the key's cookie holds (signed): a digest of the key, so a new key voids old cookies."""
        key = self.web.workshop_key if workshop_key is None else workshop_key
        return "key:" + self.web.secret.derive("workshop-key", key)[:24]

    def key_ok(self, given: str | None, cookie: str | None, workshop_key: str | None = None) -> bool:
        """Whether the request carries the workshop key (or its cookie); always True without a key.

        ``workshop_key``: a named workshop's own key (None: WebApp.workshop_key)."""
        key = self.web.workshop_key if workshop_key is None else workshop_key
        if not key:
            return True
        if given and given.isascii() and hmac.compare_digest(given.encode(), key.encode()):
            return True
        held = self.web.secret.verify(cookie, WORKSHOP_KEY)
        return held is not None and hmac.compare_digest(held.encode(), self.key_mark(key).encode())

    def check_key(self, given: str | None, cookie: str | None, workshop_key: str | None = None) -> None:
        if not self.key_ok(given, cookie, workshop_key):
            raise Refused(403, "This workshop needs its link",
                          "Notebooks here open only from the link the workshop's organisers shared (it carries "
                          "a key). Please open that link again, or ask them for it.",
                          "no or wrong workshop key", page="key.html")

    # --- one address's share ----------------------------------------------------------------

    def exempt(self, address: str) -> bool:
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(net, strict=False) for net in self.web.address_share_exempt)

    def exempt_network(self, network: str) -> bool:
        """Whether a network key (network_of's: an address, or an IPv6 /64) lies in address_share_exempt."""
        try:
            net = ipaddress.ip_network(network, strict=False)
        except ValueError:
            return False
        for exempt in self.web.address_share_exempt:
            other = ipaddress.ip_network(exempt, strict=False)
            if net.version == other.version and net.subnet_of(other):
                return True
        return False

    def owner_of(self, address: str) -> str:
        """What a container handed to ``address`` counts against, and its spawn rate: its network (an IPv6
        address by its /64, as the proxy counts connections)."""
        return self.web.network_of(address)

    def share_limit(self, pool: Pool) -> int:
        """Most containers one network may hold (or wait for) at once."""
        return max(1, math.floor(self.web.address_share * pool.max_containers))

    def reserve_floor(self, pool: Pool) -> int:
        """Containers (assigned or waited for) past which only networks holding none may take one."""
        if self.web.address_share >= 1 or not self.web.newcomer_reserve:
            return pool.max_containers
        return math.floor((1 - self.web.newcomer_reserve) * pool.max_containers)

    def check_share(self, address: str, pool: Pool) -> None:
        if self.exempt(address):
            return
        owner = self.owner_of(address)
        limit = self.share_limit(pool)
        held = pool.holdings(owner)
        if held and pool.holdings() >= self.reserve_floor(pool):
            raise Refused(429, "The last notebooks are kept for newcomers",
                          "Almost every notebook server is in use, and the last ones are kept for people who have "
                          "none yet. Please use the notebook you already have, or try again when others have "
                          "been closed.", f"{held} held, reserve reached", retry_after=30)
        if held < limit:
            return
        now = time.monotonic()
        if now - self._warned.get(address, -SHARE_WARNING_EVERY) >= SHARE_WARNING_EVERY:
            self._warned[address] = now
            if len(self._warned) > 10000:
                self._warned.clear()
            self.web.log.warning(
                "address %s holds %d of %d containers, its share (WebApp.address_share=%s): further spawns from "
                "it are refused. If a whole room shares one NAT address, raise the share "
                "(docs/explanation/security.md).",
                address, held, pool.max_containers, self.web.address_share)
        raise Refused(429, "Too many notebooks from your network",
                      f"{held} notebook servers are already open from your network address, as many as one "
                      "address may have. Please use the notebook you already have, or try again when one of "
                      "them has been closed.", f"{held} held, share {limit}", retry_after=30)

    # --- the spawn rate ---------------------------------------------------------------------

    def check_rate(self, address: str) -> None:
        if not self.web.spawn_rate_limit:
            return
        wait = self.limiter.check(self.owner_of(address))
        if wait:
            raise Refused(429, "Too many requests",
                          "Too many notebooks were started from your address just now. Please try again in a "
                          "moment.", "spawn rate limit", retry_after=int(wait) + 1)


class BanMarks:
    """What a browser holds that a ban may name: the pool ids its session cookies name, its ban cookies."""

    def __init__(self, containers: set[str] | None = None, bans: set[str] | None = None):
        self.containers = containers or set()
        self.bans = bans or set()


def _in_networks(address: str, networks: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net, strict=False) for net in networks)


def _what(rule: str) -> str:
    return {"banned_command": "it ran a program this service does not allow",
            "cpu_budget": "it used all the computing time a session may have",
            "destinations": "it connected to many machines on the internet at once, as miners and scanners do",
            }.get(rule, "of how it was used")
