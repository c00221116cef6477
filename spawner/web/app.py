"""The web app's settings and its own state: who is waiting in line, open claim links, the chart's history.

The web app listens only internally (a unix socket) and is reached through
the proxy's default route, so every path no container route claims ends up
there: the landing page, /spawn, the waiting line, the "session ended" page,
the JSON API, /healthz, /metrics and the operators' status page. Its Tornado
application is built in ``application``; its handlers in ``visitor`` and ``api``.

``WebApp`` is built before the pool and needs none: the pool is given its
``access.route_options`` (who may reach a container) and the shared record of
ended sessions; what needs the pool (expiring claims, sampling the chart)
takes it as an argument.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import secrets
import time
from pathlib import Path

from traitlets import Any, Bool, Callable, Float, Instance, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from proxy.addresses import network_of
from proxy.origin import OriginPolicy

from ..content import Delivery
from ..keep.store import Kept
from ..pool.ended import EndedSessions
from ..pool.pool import Pool, Ticket
from ..pool.slot import Slot
from ..pool.stats import add_up
from ..secret import CLAIM, ServerSecret
from ..traits import require, require_networks
from .access import RouteAccess
from .admission import Admission
from .pages import Pages

# The largest request body the web app takes. Its biggest legitimate one (an
# admin resize, the status page's login) is well under 1 KiB; anything larger
# is refused by the proxy (413) before a byte of it is buffered.
MAX_BODY = 64 * 1024
# Secrets that can appear in the web app's URLs, hidden in its request log.
_LOGGED_SECRETS = re.compile(r"((?:^|[?&;])(?:key|token|instructor)=)[^&;]*|(/spawn/claim/|/help/)[^/?]+")


class WebApp(LoggingConfigurable):
    """What visitors and operators see: pages, links, API and admin settings."""

    workshop_name = Unicode("Workshop notebooks", config=True,
                            help="Shown in the title and heading of nbpool's own pages.")
    landing_path = Unicode("tree", config=True,
                           help="Where a visitor lands in their notebook server, relative to /user/<id>/: "
                                "'tree' (the file browser), 'lab', or a workshop's first notebook such as "
                                "'notebooks/01-python-introduction.ipynb'. /spawn/<path> overrides it per link.")
    spawn_rate_limit = Integer(300, config=True,
                               help="Spawns allowed per client address per spawn_rate_period; beyond it the "
                                    "answer is 429 with Retry-After. Generous by default: a whole workshop may "
                                    "share one NAT address. 0 disables the limit.")
    workshop_key = Unicode("", config=True,
                           help="If set, a new notebook needs this key: publish the link as "
                                "https://<host>/?key=<workshop_key> (deep links: /spawn/<path>?key=...). Without "
                                "it, /spawn answers a page asking for the workshop's link; once seen, a signed "
                                "cookie remembers it. POST /api/spawn then needs the key ('key' in the JSON body "
                                "or ?key=) or the api_token. For services on the open internet. Empty: anyone "
                                "with the address may start a notebook.")
    helper_key = Unicode("", config=True,
                         help="The class view's key for the teaching team: /class?key=<helper_key> shows every "
                              "workshop's attendees live (who is stuck, raised hands, progress), and nothing else; "
                              "GET /api/class takes it as 'Authorization: token <key>'. A named workshop's own "
                              "helper_key shows that workshop only. Empty: a key derived from the service's "
                              "secret (stable across restarts); the status page shows the links.")
    instructor_key = Unicode("", config=True,
                             help="The instructor's key: /?instructor=<key> (or a deep link /spawn/<path>?"
                                  "instructor=<key>) opens a session like any other, marked as the instructor's, "
                                  "whose current notebook attendees follow live at /follow (GET /api/follow) and "
                                  "copy with 'Catch me up'. A named workshop's own instructor_key is that "
                                  "workshop's. Empty: a key derived from the service's secret (stable across "
                                  "restarts); GET /api/admin/class-links shows the links. It gives no other power.")
    address_share = Float(0.5, config=True,
                          help="Largest share of Pool.max_containers one client network may hold (assigned, "
                               "or waiting in line) at once, so one network cannot take every container; an IPv4 "
                               "address is a network, an IPv6 address counts by its /64 (one subscriber holds a "
                               "whole /64). 0.5 with a cap of 60: 30 per network. A room whose attendees all "
                               "reach nbpool through one NAT address needs 1.0 (then set a workshop_key); see "
                               "docs/explanation/security.md ('Exposing nbpool to the internet').")
    newcomer_reserve = Float(0.2, config=True,
                             help="Share of Pool.max_containers kept for visitors from networks that hold no "
                                  "notebook yet: once the rest is in use (or waited for), a network that already "
                                  "holds one is told so, while a newcomer from elsewhere is still served. So a few "
                                  "greedy networks together cannot take the whole pool. 0: no reserve. Not applied "
                                  "with address_share 1.0 (a room behind one NAT address).")
    address_share_exempt = List(Unicode(), ["127.0.0.0/8", "::1/128"], config=True,
                                help="Networks (CIDR) exempt from address_share: by default this machine itself "
                                     "(load tests, the operator). Behind a reverse proxy on this machine, set "
                                     "Proxy.trust_forwarded so visitors are told apart by their own address.")
    spawn_rate_period = Float(60.0, config=True, help="Seconds over which spawn_rate_limit is counted.")
    api_token = Unicode("", config=True,
                        help="If set, POST /api/spawn needs 'Authorization: token <api_token>'. Empty: open, "
                             "as tmpnb's was (the rate limit still applies).")
    cors_origin = List(Unicode(), [], config=True,
                       help="Other origins trusted to embed nbpool, e.g. ['https://workshop.example.org']: their "
                            "pages may call POST /api/spawn (CORS), start servers for their live code through "
                            "/build (the BinderHub API: Thebe, MyST) and use them with the token they get, and "
                            "send state-changing requests and WebSockets to attendees' notebook servers. ['*'] "
                            "allows any origin, which turns the proxy's cross-site check off. Empty: nbpool's "
                            "own origin only, no CORS headers.")
    admin_token = Unicode("", config=True,
                          help="Token for the admin API and the status page. Empty: one is generated on first "
                               "start and kept in <data_dir>/admin_token (mode 0600); it is never logged.")
    admin_allow_remote = Bool(False, config=True,
                              help="Answer admin endpoints (/api/admin/*, /status, /metrics) from other machines "
                                   "too. Off: only from this machine (127.0.0.1/::1), token or not.")
    admin_hosts = List(Unicode(), ["localhost", "127.0.0.1", "::1"], config=True,
                       help="Host names (the Host header, without port) that admin endpoints and /metrics answer "
                            "to, so a web page cannot reach them through a rebound DNS name. With "
                            "admin_allow_remote, add the names operators use, e.g. ['nbpool.example.org']; "
                            "['*'] allows any.")
    metrics_need_token = Bool(True, config=True,
                              help="/metrics needs the admin token, as the admin API does (Prometheus: "
                                   "'authorization: {credentials_file: <data_dir>/admin_token}'). False: it answers "
                                   "this machine without one, which is safe only when no web server on this machine "
                                   "forwards other machines' requests to nbpool (they would all come from here).")
    claim_timeout = Float(60.0, config=True,
                          help="Seconds a container started for a waiting visitor, or for an /api/spawn "
                               "link, stays reserved before it is released if nobody claims it.")
    history_interval = Float(5.0, config=True, help="Seconds between samples of the status page's chart.")
    bot_user_agents = List(Unicode(), [
        "bot", "crawler", "spider", "slurp", "preview", "facebookexternalhit", "embedly", "whatsapp",
    ], config=True,
        help="Substrings (case-insensitive) of User-Agent headers that never get a container from GET /spawn: "
             "link previews and crawlers (Slackbot, Twitterbot, Discordbot, Googlebot, ...) get the landing page "
             "instead, so sharing a link does not drain the pool. Chat apps' own browsers are not matched; "
             "neither are curl, scripts or headless browsers.")

    secret = Instance(ServerSecret)
    network_of = Callable(network_of, help="network_of(address) -> the network it counts under (the proxy's "
                                           "rule: proxy.addresses, with Proxy.ipv6_prefix).")
    keeper = Any(None, allow_none=True, help="The WorkKeeper (attendees' kept work), or None.")
    guard = Any(None, allow_none=True, help="The AbuseGuard (its bans and banned addresses), or None.")
    classroom = Any(None, allow_none=True, help="The ClassView (helpers' grants, attendees' names), or None.")
    ended = Instance(EndedSessions, help="Why sessions ended (written by the pool, shown on the ended page).")
    material = Any(None, allow_none=True, help="Workshop material from git (content.Material), or None.")
    display_name = Callable(lambda workshop: None,
                            help="display_name(workshop) -> a named workshop's display name (the proxy's own pages "
                                 "for its containers carry it), or None.")
    data_dir = Unicode()

    @validate("spawn_rate_limit")
    def _validate_rate(self, proposal):
        return require(proposal, proposal.value >= 0, "0 (off) or more")

    @validate("spawn_rate_period", "claim_timeout", "history_interval")
    def _validate_seconds(self, proposal):
        return require(proposal, proposal.value > 0, "a positive number of seconds")

    @default("ended")
    def _default_ended(self) -> EndedSessions:
        return EndedSessions()

    @validate("address_share")
    def _validate_share(self, proposal):
        return require(proposal, 0 < proposal.value <= 1, "a fraction above 0 and at most 1 (1: no limit)")

    @validate("newcomer_reserve")
    def _validate_reserve(self, proposal):
        return require(proposal, 0 <= proposal.value < 1, "a fraction from 0 (no reserve) up to, not including, 1")

    @validate("address_share_exempt")
    def _validate_exempt(self, proposal):
        return require_networks(proposal, "127.0.0.0/8")

    @validate("workshop_key")
    def _validate_key(self, proposal):
        value = proposal.value
        ok = value == "" or (len(value) >= 8 and re.fullmatch(r"[A-Za-z0-9._~-]+", value) is not None)
        return require(proposal, ok, "empty, or at least 8 URL-safe characters (letters, digits, . _ ~ -)")

    @validate("helper_key", "instructor_key")
    def _validate_helper_key(self, proposal):
        value = proposal.value
        ok = value == "" or (len(value) >= 8 and re.fullmatch(r"[A-Za-z0-9._~-]+", value) is not None)
        return require(proposal, ok, "empty, or at least 8 URL-safe characters (letters, digits, . _ ~ -)")

    def helper_key_for(self, workshop: str | None) -> str:
        """The class view's key: the service's (``workshop`` None: every workshop), or a workshop's derived one."""
        if workshop is None and self.helper_key:
            return self.helper_key
        return self.secret.derive("helper-key", "*" if workshop is None else workshop)[:32]

    def instructor_key_for(self, workshop: str | None) -> str:
        """The instructor's key: the service's own (``workshop`` None or ''), or a named workshop's derived one."""
        if not workshop and self.instructor_key:
            return self.instructor_key
        return self.secret.derive("instructor-key", workshop or "")[:32]

    def helper_links(self, workshops, origin: str) -> dict:
        """The class view's keys and links to hand to the teaching team: the service's, and each named
        workshop's (for the operator only: the status page, /api/admin/class-links)."""
        named = [ws for ws in workshops.all() if ws.name]
        key = self.helper_key_for(None)
        return {"all": key, "link": f"{origin}/class?key={key}",
                "workshops": {ws.name: ws.helper_key for ws in named},
                "links": {ws.name: f"{origin}{ws.prefix}/class?key={ws.helper_key}" for ws in named},
                "instructor": {ws.name: f"{origin}{ws.prefix}/?instructor={ws.instructor_key}"
                               for ws in workshops.all()},
                "follow": {ws.name: f"{origin}{ws.prefix}/follow" for ws in workshops.all()}}

    @validate("landing_path")
    def _validate_landing(self, proposal):
        value = proposal.value.lstrip("/")
        require(proposal, ".." not in value.split("/") and "://" not in value, "a path inside the notebook server")
        return value

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pages = Pages(lambda: self.workshop_name, self.ended,
                           keeping=lambda: self.keeper is not None and self.keeper.enabled,
                           display_name=lambda workshop: self.display_name(workshop))
        self.render = self.pages.render
        self.admission = Admission(self)
        self.observe(lambda change: self.admission.new_rate(), names=["spawn_rate_limit", "spawn_rate_period"])
        self.tickets: dict[str, WaitingVisitor] = {}
        self.arrivals: dict[str, Arrival] = {}  # places in line just served, by ticket key
        self.claims: dict[str, Claim] = {}
        self.history: collections.deque = collections.deque(maxlen=720)
        self.accepting = True
        # True while a (re)start adopts the engine's containers: an attendee's route may not be back yet, so
        # "no route" means "wait", not "ended" (start.py clears it once every workshop's pool has started).
        self.starting = False
        # Origins that may act with a visitor's cookie: nbpool's own, plus those allowed to embed it.
        self.origins = OriginPolicy(self.cors_origin)
        self.observe(lambda change: self.origins.set_allowed(change["new"]), names=["cors_origin"])
        self.admin_origins = OriginPolicy()  # operators' actions: nbpool's own origin only
        self.access = RouteAccess(self.secret, self.pages.denied_page, self.pages.ended_page, self.origins,
                                  classroom=self.classroom)
        self.admin_token  # noqa: B018 (made and stored on first start, not first use)

    @default("admin_token")
    def _default_admin_token(self) -> str:
        return self._stored_admin_token()

    @validate("admin_token")
    def _validate_admin_token(self, proposal):
        return proposal.value or self._stored_admin_token()  # '' means "the one generated and stored"

    def _stored_admin_token(self) -> str:
        path = Path(self.data_dir) / "admin_token"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Hex, never token_urlsafe: one in 32 of those starts with "-", which a command line then reads as an
        # option (python -m loadtest --admin-token -x… failed so in the tests).
        token = secrets.token_hex(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        self.log.info("admin token generated and stored in %s (mode 0600)", path)
        return token

    # --- waiting line bookkeeping -------------------------------------------------------------------

    def sample_history(self, workshops) -> None:
        """One point of the status page's chart: the service's counts, summed over its workshops."""
        self.history.append({"t": time.time(), **add_up(workshops.pools(), workshops.cap.total)})

    def expire(self) -> None:
        """Release containers reserved for visitors who never came back for them."""
        now = time.monotonic()
        for key, waiting in list(self.tickets.items()):
            if waiting.expired(now, self.claim_timeout):
                del self.tickets[key]
                waiting.ticket.cancel()
        for key, arrival in list(self.arrivals.items()):
            if now - arrival.created > self.claim_timeout:
                del self.arrivals[key]
        for key, claim in list(self.claims.items()):
            if now - claim.created > self.claim_timeout:
                del self.claims[key]
                if not claim.used:
                    claim.pool.release(claim.slot, "its /api/spawn link was never opened")

    def new_claim(self, slot: Slot, path: str, pool: Pool) -> str:
        """A signed one-time key that /spawn/claim/<key> turns into ``slot``'s cookie."""
        key = secrets.token_urlsafe(12)
        self.claims[key] = Claim(slot, path, pool)
        return self.secret.sign(key, CLAIM)


def redact(uri: str) -> str:
    """``uri`` with workshop keys, tokens and claim links blanked, for the log."""
    return _LOGGED_SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "…", uri)


class WaitingVisitor:
    """A visitor in line: their ticket, where they want to land, when they last asked (and the kept
    work to copy into their container, when they asked to continue it)."""

    def __init__(self, ticket: Ticket, path: str, restore: Kept | None = None, prefix: str = "",
                 deliver: Delivery | None = None):
        self.ticket = ticket
        self.path = path
        self.prefix = prefix  # its workshop's links ('/w/<name>' or '')
        self.restore = restore
        self.deliver = deliver  # a link's repository, merged into the container before the visitor lands
        self.last_seen = time.monotonic()

    def expired(self, now: float, claim_timeout: float) -> bool:
        # Served but not picked up, or waiting but not asked about, for claim_timeout.
        return now - self.last_seen > claim_timeout


class Arrival:
    """A visitor just taken from the line into their container. A second request for the same place (the
    waiting page's script and its fallback refresh, a reload, a second tab) follows the first one into that
    container instead of finding the place expired; ``done`` is set once the first has finished sending the
    visitor there (their kept work or a link's repository copied in)."""

    def __init__(self, slot: Slot, path: str, prefix: str):
        self.slot = slot
        self.path = path
        self.prefix = prefix
        self.done = asyncio.Event()
        self.created = time.monotonic()


class Claim:
    """A container handed out through /api/spawn, waiting for its link to be opened once."""

    def __init__(self, slot: Slot, path: str, pool: Pool):
        self.slot = slot
        self.path = path
        self.pool = pool
        self.created = time.monotonic()
        self.used = False
