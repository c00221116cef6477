"""Egress rules for nbpool's containers: no connections to the host or to private networks.

Attendees run arbitrary code. Without rules, their containers can open
connections to the host's own services (the bridge gateway is a host address),
to its LAN, to private networks and to a cloud's metadata address, which
often hands out credentials. ``ContainerFirewall`` refuses those while keeping
the internet reachable (attendees ``pip install``).

Two paths need a rule, because netfilter sees a container's packets in two
places:

- packets *to a host address* (the bridge gateway, eth0's address, ...) are
  delivered locally through the ``INPUT`` chain and never reach Docker's
  ``DOCKER-USER`` chain: ``NBPOOL-IN-<bridge>`` refuses every new connection
  there;
- packets to anywhere else are forwarded and pass ``DOCKER-USER`` (Docker
  jumps to it first from ``FORWARD``): ``NBPOOL-FWD-<bridge>`` refuses the
  blocked networks there.

Replies to connections the host opened into a container (the proxy reaching a
notebook server, directly or through docker-proxy) are ESTABLISHED and pass
both chains. DNS stays open to the host's resolvers: Docker's embedded DNS
(127.0.0.11 in each container) forwards queries from inside the container's
network namespace, so they are forwarded packets to (usually private)
resolver addresses.

The chains belong to one bridge only (every jump matches ``-i <bridge>``), so
other Docker networks and the host's own traffic are untouched. Rules are
loaded with ``iptables-restore --noflush`` in one transaction: re-installing
never leaves a moment with an empty chain. Every call is synchronous and
blocking: the backend runs it in its executor.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from traitlets import Float, Int, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..traits import require
from .base import BackendError

EGRESS_MODES = ("internet", "none", "open")

# Not reachable from containers by default (the host's own networks are added at install time).
DEFAULT_BLOCK_NETWORKS = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918 private networks
    "100.64.0.0/10",  # carrier-grade NAT (also used by some clouds and VPNs)
    "169.254.0.0/16",  # link-local, including the cloud metadata address 169.254.169.254
    "127.0.0.0/8", "0.0.0.0/8",  # loopback and "this network"
    "224.0.0.0/4", "240.0.0.0/4",  # multicast and reserved
]

FORWARD_PREFIX = "NBPOOL-FWD-"
INPUT_PREFIX = "NBPOOL-IN-"
# Linux interface names have at most 15 characters, which keeps our chain
# names within iptables' 28.
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_SYSTEMD_RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
_OPEN_HINT = ("To run without nbpool's rules, set c.ContainerFirewall.egress = 'open' (containers can then "
              "reach the host and private networks: at your own risk).")


class FirewallError(BackendError):
    """Installing or removing the rules failed; the message names the command, its output and the way out."""


def bridge_name(network_attrs: dict) -> str:
    """The Linux bridge of a Docker network, from its inspect attributes.

    Docker names it after the network's id (``br-`` and 12 hex digits) unless
    the network was created with ``com.docker.network.bridge.name``.
    """
    options = network_attrs.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or "br-" + network_attrs["Id"][:12]


def chain_names(bridge: str) -> tuple[str, str]:
    """The (forward, input) chains nbpool owns for ``bridge``."""
    return FORWARD_PREFIX + bridge, INPUT_PREFIX + bridge


def read_resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The IPv4 nameservers Docker's embedded DNS forwards to, as Docker itself picks them.

    Like Docker, use systemd-resolved's upstream list when ``path`` names only
    loopback servers (127.0.0.53). Loopback servers are left out: Docker never
    forwards to them. An unreadable file gives [].
    """
    def nameservers(file: Path) -> list[str]:
        try:
            text = file.read_text()
        except OSError:
            return []
        found = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    found.append(ipaddress.IPv4Address(parts[1]))
                except ValueError:
                    continue  # IPv6 or garbage: not for iptables
        return [str(a) for a in found]

    servers = nameservers(path)
    if servers and all(ipaddress.IPv4Address(s) in _LOOPBACK for s in servers):
        servers = nameservers(_SYSTEMD_RESOLVED_UPSTREAM)
    return [s for s in servers if ipaddress.IPv4Address(s) not in _LOOPBACK]


def _networks_from_ip_json(text: str) -> list[str]:
    """IPv4 networks of every address in ``ip -j -4 addr`` output."""
    networks = set()
    for link in json.loads(text or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and "local" in addr:
                networks.add(ipaddress.ip_network(f"{addr['local']}/{addr.get('prefixlen', 32)}", strict=False))
    return [str(n) for n in sorted(networks)]


def _reject(chain: str, *match: str, v6: bool = False) -> list[list[str]]:
    """Refuse quickly: a TCP reset or an ICMP port-unreachable, so attempts fail at once instead of hanging."""
    icmp = "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"
    return [["-A", chain, *match, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-A", chain, *match, "-j", "REJECT", "--reject-with", icmp]]


def _validate_cidrs(proposal):
    bad = []
    for value in proposal.value:
        try:
            ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            bad.append(value)
    require(proposal, not bad, f"IPv4 networks in CIDR form like 10.0.0.0/8 ({bad[0]!r} is not one)" if bad else "")
    return [str(ipaddress.IPv4Network(v, strict=False)) for v in proposal.value]


class ContainerFirewall(LoggingConfigurable):
    """Installs and removes the iptables rules that keep one bridge's containers off the host and private networks.

    ``install(bridge)`` after the network is created, ``remove(bridge)`` when
    it is retired; both are idempotent and blocking (run them in an executor).
    """

    egress = Unicode("internet", config=True,
                     help="What containers may connect to. 'internet' (default): anything except the host itself, "
                          "block_networks and the host's own networks; DNS to the host's resolvers stays open. "
                          "'none': nothing but allow_networks (no DNS either). 'open': nbpool installs no rules "
                          "(and removes its old ones): containers can reach the host, its LAN and a cloud's "
                          "metadata address unless you filter that yourself.")
    block_networks = List(Unicode(), DEFAULT_BLOCK_NETWORKS, config=True,
                          help="IPv4 networks (CIDR) containers may not connect to. Default: the RFC 1918 private "
                               "networks, 100.64.0.0/10, link-local 169.254.0.0/16 (with the cloud metadata address "
                               "169.254.169.254), 127.0.0.0/8, 0.0.0.0/8, multicast and 240.0.0.0/4. The networks "
                               "the host's own interfaces are on are always added when the rules are installed, so "
                               "its LAN stays unreachable even on public addresses.")
    allow_networks = List(Unicode(), [], config=True,
                          help="IPv4 networks (CIDR) containers may connect to even though block_networks or the "
                               "host's networks contain them, e.g. ['10.1.2.3/32'] for an internal package mirror. "
                               "Also reachable under egress 'none'. The host's own addresses stay refused. "
                               "Default: none.")
    resolvers = List(Unicode(), [], config=True,
                     help="IPv4 addresses of the DNS servers Docker's embedded DNS forwards to; containers may "
                          "send them DNS (port 53, udp and tcp). Empty (default): read /etc/resolv.conf when the "
                          "rules are installed (systemd-resolved's upstream list if it names only 127.0.0.53). "
                          "Set it when dockerd has its own 'dns' setting.")
    command_timeout = Float(10.0, config=True,
                            help="Seconds one iptables command may take (waiting for the xtables lock included) "
                                 "before it counts as failed.")
    # TCP ports containers may connect to on the internet; empty: any. Set from AbuseGuard.egress_ports (the
    # abuse settings own it; the rules are the firewall's), before the rules are installed.
    ports = List(Int(), [])

    @validate("egress")
    def _validate_egress(self, proposal):
        return require(proposal, proposal.value in EGRESS_MODES, "'internet', 'none' or 'open'")

    @validate("block_networks")
    def _validate_block(self, proposal):
        return _validate_cidrs(proposal)

    @validate("allow_networks")
    def _validate_allow(self, proposal):
        return _validate_cidrs(proposal)

    @validate("resolvers")
    def _validate_resolvers(self, proposal):
        bad = []
        for value in proposal.value:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                bad.append(value)
        return require(proposal, not bad, f"IPv4 addresses ({bad[0]!r} is not one)" if bad else "")

    @validate("command_timeout")
    def _validate_timeout(self, proposal):
        return require(proposal, proposal.value > 0, "a positive number of seconds")

    # --- the rules, as data ---------------------------------------------------------------------

    def rules(self, bridge: str, resolvers: list[str], host_networks: list[str]) -> list[list[str]]:
        """The IPv4 rules of both chains for ``bridge``, in order, as iptables arguments (``-A CHAIN ...``).

        Pure: no system is touched, so tests can read them without root.
        Empty for egress 'open'.
        """
        _check_bridge(bridge)
        if self.egress == "open":
            return []
        forward, inbound = chain_names(bridge)
        established = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]
        dns = []
        if self.egress == "internet":
            for server in resolvers:
                for proto in ("udp", "tcp"):
                    dns.append(["-d", f"{server}/32", "-p", proto, "--dport", "53", "-j", "RETURN"])

        # Host addresses: replies to the host's own connections, and DNS in case a resolver runs on the host.
        result = [["-A", inbound, *established]]
        result += [["-A", inbound, *rule] for rule in dns]
        result += _reject(inbound)

        result.append(["-A", forward, *established])
        result += [["-A", forward, *rule] for rule in dns]
        result += [["-A", forward, "-d", cidr, "-j", "RETURN"] for cidr in self.allow_networks]
        blocked = [*self.block_networks, *_uncovered(host_networks, self.block_networks)]
        for cidr in blocked:
            result += _reject(forward, "-d", cidr)
        if self.egress == "none":
            result += _reject(forward)
        elif self.ports:  # AbuseGuard.egress_ports: the internet, on these TCP ports only (DNS stays open above)
            result += [["-A", forward, "-p", "tcp", "--dport", str(port), "-j", "RETURN"] for port in self.ports]
            result += _reject(forward)
        return result

    def rules6(self, bridge: str) -> list[list[str]]:
        """The IPv6 input chain's rules: no new connection from the bridge to the host.

        Containers may have link-local (fe80::) addresses and the bridge one
        too. Only NEW is refused: neighbour discovery is untracked and passes.
        """
        _check_bridge(bridge)
        if self.egress == "open":
            return []
        _, inbound = chain_names(bridge)
        return [["-A", inbound, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
                *_reject(inbound, "-m", "conntrack", "--ctstate", "NEW", v6=True)]

    @staticmethod
    def jumps(bridge: str, v6: bool = False) -> list[list[str]]:
        """The rules that send the bridge's packets into nbpool's chains: ``[parent chain, match..., -j chain]``."""
        forward, inbound = chain_names(bridge)
        jumps = [["INPUT", "-i", bridge, "-j", inbound]]
        if not v6:
            jumps.insert(0, ["DOCKER-USER", "-i", bridge, "-j", forward])
        return jumps

    # --- the system -----------------------------------------------------------------------------

    def host_networks(self) -> list[str]:
        """The IPv4 networks the host's interfaces are on (its LAN, Docker's bridges, loopback)."""
        return _networks_from_ip_json(self._run([self._tool("ip"), "-j", "-4", "addr"]))

    def install(self, bridge: str) -> None:
        """Create or refill nbpool's chains for ``bridge`` and jump to them at the top of DOCKER-USER and INPUT.

        Idempotent: a second call reloads the chains (atomically) and adds no
        second jump. Egress 'open' removes nbpool's rules instead. Raises
        FirewallError when a command fails or Docker runs without iptables.
        """
        _check_bridge(bridge)
        if self.egress == "open":
            self.log.warning("ContainerFirewall.egress is 'open': containers on %s can reach the host and "
                             "private networks", bridge)
            try:
                self.remove(bridge)  # rules of an earlier run with filtering on
            except FirewallError as exc:
                self.log.warning("could not check %s for nbpool's old firewall rules: %s", bridge, exc)
            return
        started = time.monotonic()
        resolvers = list(self.resolvers) or read_resolvers()
        host_networks = self.host_networks()
        v4 = self.rules(bridge, resolvers, host_networks)
        self._load("iptables", chain_names(bridge), v4, self.jumps(bridge), need="DOCKER-USER")
        v6 = self._ip6tables_usable()
        if v6:
            self._load("ip6tables", chain_names(bridge)[1:], self.rules6(bridge), self.jumps(bridge, v6=True))
        self.log.info("firewall for %s installed in %.0f ms: egress %s, %d IPv4 rules%s; DNS to %s; "
                      "host networks %s blocked", bridge, (time.monotonic() - started) * 1000,
                      self.egress + (f" on TCP ports {', '.join(map(str, self.ports))} only"
                                     if self.ports and self.egress == "internet" else ""),
                      len(v4), " and IPv6 input rules" if v6 else "", ", ".join(resolvers) or "no resolver",
                      ", ".join(host_networks))

    def remove(self, bridge: str) -> None:
        """Delete nbpool's jumps and chains for ``bridge``. Idempotent: whatever is missing counts as removed."""
        _check_bridge(bridge)
        self._unload("iptables", chain_names(bridge))
        if self._ip6tables_usable():
            self._unload("ip6tables", chain_names(bridge)[1:])
        self.log.info("firewall for %s removed", bridge)

    def _load(self, tool: str, chains: tuple[str, ...], rules: list[list[str]], jumps: list[list[str]],
              need: str = "") -> None:
        listing = set(self._run([self._tool(tool), "-w", self._lock_wait(), "-S"]).splitlines())
        if need and f"-N {need}" not in listing:
            raise FirewallError(
                f"{tool} has no {need} chain: Docker runs without its iptables rules (\"iptables\": false in "
                f"daemon.json?), so nbpool cannot filter what containers connect to. Let Docker manage iptables "
                f"or add equivalent rules yourself. {_OPEN_HINT}")
        lines = ["*filter", *(f":{chain} - [0:0]" for chain in chains)]  # declaring a chain flushes it
        lines += [_line(rule) for rule in rules]
        for parent, *rest in jumps:
            if _line(["-A", parent, *rest]) not in listing:
                lines.append(_line(["-I", parent, "1", *rest]))
        self._restore(tool, lines)

    def _unload(self, tool: str, chains: tuple[str, ...]) -> None:
        listing = self._run([self._tool(tool), "-w", self._lock_wait(), "-S"]).splitlines()
        lines = []
        for chain in chains:
            # Every rule that jumps to the chain, however it got there: the chain cannot go while one does.
            lines += ["-D" + line[2:] for line in listing
                      if line.startswith("-A ") and line.split()[-2:] == ["-j", chain]]
        for chain in chains:
            if f"-N {chain}" in listing:
                lines += [f"-F {chain}", f"-X {chain}"]
        if lines:
            self._restore(tool, ["*filter", *lines])

    def _restore(self, tool: str, lines: list[str]) -> None:
        """Apply ``lines`` in one transaction; nothing changes when one of them fails."""
        text = "\n".join([*lines, "COMMIT", ""])
        try:
            self._run([self._tool(f"{tool}-restore"), "-w", self._lock_wait(), "--noflush"], text)
        except FirewallError as exc:
            match = re.search(r"line:? (\d+)", str(exc))
            if match and 0 < int(match.group(1)) <= len(lines):
                raise FirewallError(f"{exc} (the rule it refused: {lines[int(match.group(1)) - 1]!r})") from None
            raise

    def _ip6tables_usable(self) -> bool:
        try:
            self._run([self._tool("ip6tables"), "-w", self._lock_wait(), "-S", "INPUT"])
        except FirewallError as exc:
            self.log.debug("no IPv6 rules: ip6tables is unusable here (%s)", exc)
            return False
        return True

    def _lock_wait(self) -> str:
        # -w: wait this many seconds for the xtables lock dockerd also takes, instead of failing at once.
        return str(max(1, int(self.command_timeout)))

    def _tool(self, name: str) -> str:
        """The path of a command; services often run with a PATH that lacks the sbin directories."""
        found = shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/sbin")
                                            if Path(f"{d}/{name}").exists()), None)
        if found is None:
            raise FirewallError(f"{name} is not installed (looked in PATH, /usr/sbin and /sbin). {_OPEN_HINT}")
        return found

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        """Run one command; its stdout, or FirewallError with the command, its stderr and the way out."""
        command = shlex.join(args)
        try:
            done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=self.command_timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise FirewallError(f"{command} took longer than {self.command_timeout:.0f}s. {_OPEN_HINT}") from None
        except OSError as exc:
            raise FirewallError(f"{command} could not run: {exc}. {_OPEN_HINT}") from None
        if done.returncode != 0:
            raise FirewallError(f"{command} failed (exit {done.returncode}): "
                                f"{done.stderr.strip() or done.stdout.strip()}. {_OPEN_HINT}")
        return done.stdout


def _check_bridge(bridge: str) -> None:
    if not _BRIDGE_NAME.match(bridge):
        raise ValueError(f"{bridge!r} is not a Linux bridge name (1 to 15 letters, digits, '.', '_' or '-')")


def _uncovered(networks: list[str], covering: list[str]) -> list[str]:
    """The ``networks`` that no network of ``covering`` contains already (in order, without repeats)."""
    cover = [ipaddress.IPv4Network(c) for c in covering]
    result = []
    for cidr in dict.fromkeys(networks):
        net = ipaddress.IPv4Network(cidr, strict=False)
        if not any(net.subnet_of(c) for c in cover):
            result.append(str(net))
    return result


def _line(args: list[str]) -> str:
    """One iptables-restore line; arguments never need quoting (bridge names and CIDRs are checked)."""
    return " ".join(args)
