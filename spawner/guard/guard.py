"""The guard on every container of a public link: miners, CPU hogs and scanners end, and are banned (issue 25).

Every ``check_interval`` the guard reads each assigned container on its host (``probe``): its processes'
command lines, its cgroup's CPU time, the addresses it connects to. A session ends, with its reason on
its page, when

- a process's command line holds one of ``banned_commands`` (known miners by default);
- its CPU time reaches ``cpu_budget`` (warned at ``cpu_warning`` of it first);
- it connected to more than ``max_destinations`` distinct addresses within ``destinations_window``
  (a miner trying pools, a scanner).

Then its browser and network are banned for ``ban_hours`` (``bans``); its work is not kept. Every action
is logged with the session, the visitor's network and the rule, counted for /metrics and recorded for
the report. Spares run no attendee's code and are not read.

It reads containers on this machine only: a backend whose containers run elsewhere (Swarm workers) gives
no host pid, and the guard says at start which pools it cannot see.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from traitlets import Float, Instance, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .. import probe
from ..backoff import every
from ..pool.pool import Pool
from ..pool.slot import ASSIGNED, Slot
from ..traits import require, require_networks
from .bans import Bans
from .webhook import Webhook

# Well-known miners' program names (as mybinder's and 2i2c's lists name them); none a teaching notebook would run
# under another meaning (a short word like "t-rex" would end a dinosaur exercise).
DEFAULT_BANNED = ["xmrig", "minerd", "cpuminer", "ethminer", "nbminer", "lolminer", "phoenixminer",
                  "nanominer", "srbminer", "xmr-stak", "cgminer", "bfgminer", "ccminer", "stratum+tcp://",
                  "stratum+ssl://", "nicehash", "hellminer", "verus-solver"]
RULES = ("banned_command", "cpu_budget", "destinations")
# Seconds between two readings of one container's own socket tables, where the host's connection tracking
# cannot stand in for them: each costs a few milliseconds (measured 7 ms on a 2-core machine).
SLOW_READ_EVERY = 30.0


class AbuseGuard(LoggingConfigurable):
    """Ends sessions that mine, burn CPU or scan, and bans their browser and network (see the module)."""

    banned_commands = List(Unicode(), DEFAULT_BANNED, config=True,
                           help="Substrings of process command lines (case-insensitive) that end a session and "
                                "ban its visitor: a process whose command line holds one, in any container handed "
                                "out, however it was started. Default: well-known miners (xmrig, minerd, cpuminer, "
                                "ethminer, ...). Add your own; [] turns the check off.")
    cpu_budget = Float(3600.0, config=True,
                       help="CPU-seconds one session may use, all its processes together (its cgroup's count: "
                            "kernels, terminals, background jobs). Its visitor is warned at cpu_warning of it and "
                            "the session ends, banned, at all of it. Default: one CPU-hour, as mybinder promises. "
                            "0: no budget.")
    cpu_warning = Float(0.8, config=True,
                        help="The share of cpu_budget at which the session's visitor is warned (logged, and on "
                             "their status).")
    check_interval = Float(5.0, config=True,
                           help="Seconds between two readings of every container handed out: a banned program "
                                "runs at most about this long.")
    max_destinations = Integer(64, config=True,
                               help="Distinct remote addresses one session may connect to within "
                                    "destinations_window; more is a miner's or scanner's pattern and ends it like "
                                    "a banned command. Read at each check from the host's connection tracking "
                                    "(connections open or ended a moment ago); where the host does not show it, "
                                    "from each container's open sockets every 30 s. 0: not checked.")
    destinations_window = Float(60.0, config=True,
                                help="Seconds over which max_destinations distinct addresses are counted.")
    ban_hours = Float(24.0, config=True,
                      help="Hours a session ended by the guard bans its browser and its network (IPv4 address, "
                           "IPv6 /64) from new notebooks. Networks in WebApp.address_share_exempt are banned by "
                           "browser only. 0: the session ends, nobody is banned.")
    banned_addresses = List(Unicode(), [], config=True,
                            help="Networks (CIDR) that never get a notebook, e.g. ['203.0.113.0/24']: for "
                                 "addresses known to abuse the service. Their visitors see the ban page.")

    egress_ports = Unicode("any", config=True,
                           help="TCP ports containers may connect to on the internet: 'any' (default); 'web' for "
                                "80, 443 and git's 9418 only (mybinder's kind of list: no miner pool, mail or "
                                "IRC port); or your own comma-separated list, e.g. '80,443,9418,21'. DNS to the "
                                "host's resolvers stays open; UDP is refused otherwise. Applies with "
                                "ContainerFirewall.egress 'internet'.")
    egress_rate = Unicode("", config=True,
                          help="The most each container may send out, e.g. '10mbit' (a token bucket on its network "
                               "interface, set from the host: mybinder caps at 1mbit). Applied to every container "
                               "handed out within check_interval; receiving (pip install, downloads) is not "
                               "limited. '': no cap.")
    webhook_url = Unicode("", config=True,
                          help="An https:// (or http://) URL nbpool POSTs a JSON message to when the guard ends a "
                               "session: {text, rule, session, network, reason, ban, until} ('text' suits Slack "
                               "and Mattermost incoming webhooks). At most webhook_per_hour messages an hour; the "
                               "rest are counted in the next one. '': none. Never logged (it is a secret).")
    webhook_per_hour = Integer(20, config=True, help="Most webhook messages sent in one hour.")

    bans = Instance(Bans, allow_none=True)

    @validate("egress_ports")
    def _validate_ports(self, proposal):
        require(proposal, port_list(proposal.value) is not None,
                "'any', 'web', or a comma-separated list of TCP ports from 1 to 65535")
        return proposal.value.strip()

    @validate("egress_rate")
    def _validate_rate(self, proposal):
        value = proposal.value.strip().lower()
        return require(proposal, value == "" or probe.RATE.fullmatch(value) is not None,
                       "'' or a rate like '10mbit', '500kbit' or '1gbit'")

    @validate("webhook_url")
    def _validate_webhook(self, proposal):
        value = proposal.value.strip()
        return require(proposal, value == "" or value.startswith(("https://", "http://")),
                       "'' or an http(s):// URL")

    @validate("webhook_per_hour")
    def _validate_per_hour(self, proposal):
        return require(proposal, proposal.value >= 1, "1 or more")

    @validate("cpu_warning")
    def _validate_warning(self, proposal):
        return require(proposal, 0 < proposal.value <= 1, "a share of cpu_budget, above 0 and at most 1")

    @validate("cpu_budget", "ban_hours", "destinations_window")
    def _validate_nonnegative(self, proposal):
        return require(proposal, proposal.value >= 0, "a number of seconds or hours, 0 or more")

    @validate("check_interval")
    def _validate_interval(self, proposal):
        return require(proposal, 0.2 <= proposal.value <= 300, "seconds from 0.2 to 300")

    @validate("max_destinations")
    def _validate_destinations(self, proposal):
        return require(proposal, proposal.value >= 0, "a count, 0 or more")

    @validate("banned_commands")
    def _validate_commands(self, proposal):
        for word in proposal.value:
            require(proposal, len(word.strip()) >= 3, f"substrings of at least 3 characters ({word!r} is not one)")
        return [word.strip() for word in proposal.value]

    @validate("banned_addresses")
    def _validate_addresses(self, proposal):
        return require_networks(proposal, "203.0.113.0/24")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pools: Callable[[], list[Pool]] = lambda: []
        self.exempt: Callable[[str], bool] = lambda network: False
        self.mounts = probe.CgroupMounts()
        self.actions: collections.Counter[str] = collections.Counter()  # ended sessions by rule
        self.warnings = 0
        self.pass_seconds = 0.0  # CPU time of the guard's own passes, together
        self.passes = 0
        self._pids: dict[str, int] = {}  # engine id -> host pid of its main process
        self._seen: dict[str, dict[str, float]] = {}  # cid -> {remote address: last seen (monotonic)}
        self._warned: set[str] = set()
        # cid -> bytes its container uses, as of the last pass (the class view shows it beside its limit)
        self.memory: dict[str, int] = {}
        self._notices: set[asyncio.Task] = set()
        self._read_seconds = 0.0  # CPU time of the last pass's reading thread
        self._slow_read: dict[str, float] = {}  # cid -> when its sockets were last read one by one
        self._shaped: dict[str, str] = {}  # engine id -> the egress rate set on it
        self._unseen: set[str] = set()  # pools already said to be out of the guard's sight
        self._task: asyncio.Task | None = None
        self.webhook = Webhook(lambda: self.webhook_url, lambda: self.webhook_per_hour, self.log)

    # --- running ----------------------------------------------------------------------------------

    def ports(self) -> list[int]:
        """egress_ports as the firewall's list ([]: any port)."""
        return port_list(self.egress_ports) or []

    def start(self, pools: Callable[[], list[Pool]], exempt: Callable[[str], bool]) -> None:
        self.pools, self.exempt = pools, exempt
        self._task = asyncio.get_running_loop().create_task(
            every(lambda: self.check_interval, self.check, self.log, "abuse guard"))
        self.log.info("abuse guard: every %gs, %d banned commands, CPU budget %s, at most %s destinations per "
                      "%gs; bans last %g hours%s", self.check_interval, len(self.banned_commands),
                      f"{self.cpu_budget:g}s" if self.cpu_budget else "none", self.max_destinations or "any",
                      self.destinations_window, self.ban_hours,
                      f" ({len(self.bans)} in force)" if self.bans is not None and len(self.bans) else "")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def warning_of(self, cid: str) -> bool:
        """Whether the session ``cid`` was warned of its CPU budget."""
        return cid in self._warned

    # --- one pass ------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Read every assigned container once and act on what it does."""
        began = time.thread_time()  # (this thread's alone: the proxy's work meanwhile is not the guard's)
        watched: list[tuple[Pool, Slot, int]] = []
        live: set[str] = set()
        remote: list[tuple[Pool, Slot, probe.Reading]] = []
        for pool in self.pools():
            slots = [s for s in list(pool.slots.values()) if s.state == ASSIGNED and s.engine_id]
            for slot in slots:
                if pool.backend.guards_remotely:  # read on its node, by nbpool's agent there
                    reading = pool.backend.guard_reading(slot.engine_id)
                    if reading is not None and reading.cpu_seconds is not None:
                        remote.append((pool, slot, reading))
                    continue
                live.add(slot.engine_id)
                pid = await self._pid(pool, slot)
                if pid:
                    watched.append((pool, slot, pid))
        for engine_id in [e for e in self._pids if e not in live]:
            del self._pids[engine_id]
        self._shaped = {e: r for e, r in self._shaped.items() if e in live}
        cids = {slot.cid for _, slot, _ in watched} | {slot.cid for _, slot, _ in remote}
        for gone in [c for c in self._seen if c not in cids]:
            del self._seen[gone]
        for gone in [c for c in self._slow_read if c not in cids]:
            del self._slow_read[gone]
        self._warned &= cids
        for gone in [c for c in self.memory if c not in cids]:
            del self.memory[gone]
        if watched:
            spent = time.thread_time() - began
            readings = await asyncio.to_thread(self._read_all, watched)
            began = time.thread_time() - spent - self._read_seconds
            for (pool, slot, _), reading in zip(watched, readings, strict=True):
                if reading.cpu_seconds is None:
                    self._pids.pop(slot.engine_id, None)  # ended, or restarted: ask the engine again
                    continue
                await self._judge(pool, slot, reading)
        for pool, slot, reading in remote:
            await self._judge(pool, slot, reading)
        self.passes += 1
        self.pass_seconds += time.thread_time() - began

    def _read_all(self, watched: list[tuple[Pool, Slot, int]]) -> list[probe.Reading]:
        """Every watched container's reading (in a thread: files only, no engine call)."""
        began = time.thread_time()
        try:
            return self._read_each(watched)
        finally:
            self._read_seconds = time.thread_time() - began

    def _read_each(self, watched: list[tuple[Pool, Slot, int]]) -> list[probe.Reading]:
        want_commands = bool(self.banned_commands)
        readings = [probe.read(self.mounts, pid, commands=want_commands, destinations=False)
                    for _, _, pid in watched]
        rate = self.egress_rate
        for (_, slot, pid), reading in zip(watched, readings, strict=True):
            if rate and reading.cpu_seconds is not None and self._shaped.get(slot.engine_id) != rate:
                problem = probe.cap_egress(pid, rate)
                self._shaped[slot.engine_id] = rate
                if problem:
                    self.log.warning("abuse guard: cannot cap %s's egress at %s: %s", slot.cid, rate, problem)
        if not self.max_destinations:
            return readings
        table = probe.host_destinations()
        now = time.monotonic()
        for (_, slot, pid), reading in zip(watched, readings, strict=True):
            address = slot.endpoint.host if slot.endpoint is not None else ""
            if table is not None and address and not address.startswith("127."):
                reading.destinations = table.get(address, set())
            elif now - self._slow_read.get(slot.cid, -SLOW_READ_EVERY) >= SLOW_READ_EVERY:
                # No host table, or a container reached through a published port: its own sockets, seldom.
                self._slow_read[slot.cid] = now
                reading.destinations = probe.read_destinations(pid)
        return readings

    async def _pid(self, pool: Pool, slot: Slot) -> int:
        pid = self._pids.get(slot.engine_id)
        if pid is None:
            pid = await pool.backend.host_pid(slot.engine_id) or 0
            if not pid and pool.pool_name not in self._unseen:
                self._unseen.add(pool.pool_name)
                self.log.warning("abuse guard: pool %s's containers do not run on this machine (or the engine "
                                 "does not say where): the guard cannot read them", pool.pool_name)
            self._pids[slot.engine_id] = pid
        return pid

    async def _judge(self, pool: Pool, slot: Slot, reading: probe.Reading) -> None:
        if reading.memory is not None:
            self.memory[slot.cid] = reading.memory
        banned = self._banned_command(reading.commands)
        if banned is not None:
            word, command = banned
            await self.end(pool, slot, "banned_command", f"ran {command[:120]!r} (banned: {word!r})",
                           f"It ran a program this service does not allow ({word}).")
            return
        budget = self.cpu_budget
        if budget and reading.cpu_seconds >= budget:
            await self.end(pool, slot, "cpu_budget",
                           f"used {reading.cpu_seconds:.0f} CPU-seconds, its budget (cpu_budget {budget:g})",
                           f"It used all the computing time one session may have ({_duration(budget)} of CPU).")
            return
        if self.max_destinations:
            count = self._destinations(slot.cid, reading.destinations)
            if count > self.max_destinations:
                await self.end(pool, slot, "destinations",
                               f"connected to {count} distinct addresses within {self.destinations_window:g}s "
                               f"(max_destinations {self.max_destinations})",
                               f"It connected to {count} different machines on the internet within moments, as "
                               "miners and scanners do.")
                return
        if budget and reading.cpu_seconds >= budget * self.cpu_warning and slot.cid not in self._warned:
            self._warned.add(slot.cid)
            self.warnings += 1
            self.log.warning("abuse guard: session %s from %s used %.0f of its %g CPU-seconds: warned",
                             slot.cid, slot.owner or "?", reading.cpu_seconds, budget)
            pool.record("guard_warning", cid=slot.cid, rule="cpu_budget", cpu_seconds=round(reading.cpu_seconds))
            notice = {"id": "cpu-budget", "type": "warning",
                      "message": f"This session has used {reading.cpu_seconds / budget:.0%} of the computing time "
                                 f"one session may have ({_duration(budget)} of CPU). At all of it the session "
                                 "ends: stop long-running or background work you do not need, and save what "
                                 "you want to keep."}
            task = asyncio.get_running_loop().create_task(self._notify(pool, slot, notice))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def _notify(self, pool: Pool, slot: Slot, notice: dict) -> None:
        try:
            shown = await pool.backend.notify(slot.engine_id, notice)
        except Exception as exc:  # a task boundary: the warning is logged already; say why it was not shown
            shown = False
            self.log.debug("abuse guard: notice to %s failed: %s", slot.cid, exc)
        if not shown:
            self.log.info("abuse guard: session %s's notice could not be left in its container", slot.cid)

    def _banned_command(self, commands: list[str]) -> tuple[str, str] | None:
        words = [w.lower() for w in self.banned_commands]
        for command in commands:
            low = command.lower()
            for word in words:
                if word in low:
                    return word, command
        return None

    def _destinations(self, cid: str, now_seen: set[str]) -> int:
        now = time.monotonic()
        seen = self._seen.setdefault(cid, {})
        for address in now_seen:
            seen[address] = now
        cutoff = now - self.destinations_window
        for address in [a for a, t in seen.items() if t < cutoff]:
            del seen[address]
        return len(seen)

    # --- acting ------------------------------------------------------------------------------------

    async def end(self, pool: Pool, slot: Slot, rule: str, reason: str, visitor_reason: str) -> None:
        """End ``slot``'s session for abuse (``rule``), ban its visitor, log, count and record it."""
        if slot.state != ASSIGNED:
            return
        self.actions[rule] += 1
        network = slot.owner
        ban = None
        if self.bans is not None and self.ban_hours:
            by_network = bool(network) and not self.exempt(network)
            ban = self.bans.add(reason=reason, rule=rule, hours=self.ban_hours, network=network if by_network else "",
                                containers=[slot.cid], workshop=pool.workshop)
            visitor_reason += (f" New notebooks from this browser{' and network' if by_network else ''} are "
                               f"refused until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(ban.until))}.")
        self.log.warning("abuse guard: session %s%s from %s %s (rule %s): ended%s", slot.cid,
                         f" of workshop {pool.workshop}" if pool.workshop else "", network or "?", reason, rule,
                         f", ban {ban.id} for {self.ban_hours:g} hours" + ("" if ban.network else " (browser only)")
                         if ban else "")
        pool.record("abuse", cid=slot.cid, rule=rule, reason=reason, ban=ban.id if ban else None)
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.until)) if ban else None
        self.webhook.send({"text": f"nbpool: session {slot.cid} from {network or '?'} ended: {reason} (rule {rule})"
                                   + (f"; banned until {until}" if ban else ""),
                           "rule": rule, "session": slot.cid, "workshop": pool.workshop or None,
                           "network": network or None, "reason": reason, "ban": ban.id if ban else None,
                           "until": until})
        self._seen.pop(slot.cid, None)
        await pool.end_for_abuse(slot, reason, visitor_reason)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        hours = seconds / 3600
        return f"{hours:g} hour" + ("s" if hours != 1 else "")
    if seconds < 120:
        return f"{seconds:g} seconds"
    minutes = round(seconds / 60)
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


WEB_PORTS = [80, 443, 9418]


def port_list(value: str) -> list[int] | None:
    """AbuseGuard.egress_ports as ports ([] for any), or None when it is not valid."""
    value = value.strip().lower()
    if value == "any":
        return []
    if value == "web":
        return list(WEB_PORTS)
    try:
        ports = sorted({int(p) for p in value.split(",") if p.strip()})
    except ValueError:
        return None
    return ports if ports and all(1 <= p <= 65535 for p in ports) else None
