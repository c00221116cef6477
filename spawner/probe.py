"""What a container does, read on its host: its processes, its CPU time, whom it connects to (issue 25).

Everything comes from the kernel's own files, through the container's main process (its host pid):

- its **cgroup** (``/proc/<pid>/cgroup``, v1 or v2) lists every process of the container, whatever
  started it (a kernel, a terminal, a background job, a fork bomb), and counts their CPU time;
- ``/proc/<pid>/cmdline`` of each is its command line (a renamed binary shows the name it runs under);
- the host's connection tracking (``/proc/net/nf_conntrack``: one read for all containers, whose
  connections out are forwarded through the host) names the addresses each connects to, or tried to a
  moment ago: a miner's pool, a scanner's targets. Where the host does not show it, a container's own
  ``/proc/<pid>/net/tcp`` (and tcp6) stand in, seldom: each read walks every socket of the machine.

The reads are cheap (a few small files per process) and never block on the engine; a container that
ended meanwhile reads as nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass, field

RATE = re.compile(r"[0-9]+(\.[0-9]+)?(kbit|mbit|gbit)")
# Where the machine's processes are: /proc here; a node agent reads its node's, mounted at /host/proc.
PROC = "/proc"
LISTEN = "0A"  # /proc/net/tcp's state for a listening socket
CMDLINE_MAX = 4096  # bytes of a command line looked at (a miner's name comes first)
PROCS_MAX = 4096  # processes of one container looked at in one pass (a fork bomb has more; they count as CPU)


@dataclass
class Reading:
    """One container, now."""

    cpu_seconds: float | None = None  # its cgroup's CPU time since it started (None: unreadable)
    oom_kills: int = 0  # processes its memory cgroup killed at the limit
    memory: int | None = None  # bytes in use, without the page cache the kernel can reclaim (None: unreadable)
    no_new_privileges: bool | None = None  # its main process runs with NoNewPrivs (None: unreadable)
    commands: list[str] = field(default_factory=list)  # its processes' command lines
    destinations: set[str] = field(default_factory=set)  # remote addresses of its connections


class CgroupMounts:
    """Where this host mounts its cgroup hierarchies (read once: they do not move)."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo", under: str = ""):
        """``under``: only hierarchies mounted below this path (a node agent's view of its node's cgroups,
        beside its own container's)."""
        self.v1: dict[str, str] = {}  # controller -> mount point
        self.v2 = ""
        try:
            with open(mountinfo) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            fields = line.split()
            try:
                dash = fields.index("-")
            except ValueError:
                continue
            point, fstype = fields[4], fields[dash + 1]
            if under and not point.startswith(under.rstrip("/") + "/") and point != under:
                continue
            if fstype == "cgroup2" and not self.v2:
                self.v2 = point
            elif fstype == "cgroup":
                for option in fields[dash + 3].split(","):
                    self.v1.setdefault(option, point)

    def cpu_dir(self, pid: int) -> tuple[str, int] | None:
        """(directory, version) of the cgroup that counts ``pid``'s CPU time, or None."""
        try:
            with open(f"{PROC}/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        unified = None
        for line in lines:
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and controllers == "":
                unified = path
            elif "cpuacct" in controllers.split(",") and "cpuacct" in self.v1:
                return os.path.join(self.v1["cpuacct"], path.lstrip("/")), 1
        if unified is not None and self.v2:
            return os.path.join(self.v2, unified.lstrip("/")), 2
        return None


def read_cpu(directory: str, version: int) -> float | None:
    try:
        if version == 1:
            with open(os.path.join(directory, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        with open(os.path.join(directory, "cpu.stat")) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == "usage_usec":
                    return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None


def read_pids(directory: str) -> list[int]:
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            return [int(line) for line in f.read().split()[:PROCS_MAX]]
    except (OSError, ValueError):
        return []


def read_command(pid: int) -> str | None:
    """A process's command line, its arguments joined by spaces (None: it ended, or is a kernel thread)."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read(CMDLINE_MAX)
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as /proc/net/tcp writes it: little-endian 32-bit words in hex."""
    try:
        raw = bytes.fromhex(hex_address)
    except ValueError:
        return None
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    try:
        address = ipaddress.ip_address(words)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def remote(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    """Whether a connection's far end is somewhere else (not the container itself, nor unset)."""
    return address is not None and not (address.is_loopback or address.is_unspecified)


def read_destinations(pid: int) -> set[str]:
    """Remote addresses of the connections in ``pid``'s network namespace (its container's)."""
    found: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{PROC}/{pid}/net/{name}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] == LISTEN:
                continue
            address = _address(fields[2].split(":")[0])
            if remote(address):
                found.add(str(address))
    # Connections that ended a moment ago, where the kernel tracks them (a scanner's refused attempts).
    try:
        with open(f"{PROC}/{pid}/net/nf_conntrack") as f:
            for line in f:
                dst = line.find(" dst=")
                if dst < 0:
                    continue
                text = line[dst + 5:line.find(" ", dst + 5)]
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if remote(address):
                    found.add(str(address))
    except OSError:
        pass
    return found


def host_destinations(path: str = "/proc/net/nf_conntrack") -> dict[str, set[str]] | None:
    """Remote addresses by the local address that connected to them, from this host's connection tracking,
    which sees every container's connections out (they are forwarded through the host): one read for all
    containers, where reading each one's /proc/<pid>/net/tcp costs milliseconds apiece (the kernel walks
    every socket of the machine for each). None where the kernel does not show its table."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    table: dict[str, set[str]] = {}
    for line in lines:
        src = line.find(" src=")
        dst = line.find(" dst=", src)
        if src < 0 or dst < 0:
            continue
        source = line[src + 5:dst]
        target = line[dst + 5:line.find(" ", dst + 5)]
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            continue
        if remote(address) and not address.is_multicast:
            table.setdefault(source, set()).add(target)
    return table


def memory_dir(mounts: CgroupMounts, pid: int) -> tuple[str, int] | None:
    """(directory, version) of ``pid``'s memory cgroup, or None."""
    try:
        with open(f"{PROC}/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and "memory" in mounts.v1:
            return os.path.join(mounts.v1["memory"], path.lstrip("/")), 1
        if hierarchy == "0" and controllers == "" and mounts.v2 and not mounts.v1.get("memory"):
            return os.path.join(mounts.v2, path.lstrip("/")), 2
    return None


def _keyed(path: str, key: str) -> int | None:
    """The value of ``key`` in a cgroup file of 'key value' rows."""
    with open(path) as f:
        for row in f:
            name, _, value = row.partition(" ")
            if name == key:
                return int(value)
    return None


def read_oom_kills(mounts: CgroupMounts, pid: int) -> int:
    """Processes killed at the memory limit of ``pid``'s memory cgroup (v1 memory.oom_control, v2 memory.events)."""
    where = memory_dir(mounts, pid)
    if where is None:
        return 0
    directory, version = where
    try:
        return _keyed(os.path.join(directory, "memory.oom_control" if version == 1 else "memory.events"),
                      "oom_kill") or 0
    except (OSError, ValueError):
        return 0


def read_memory(mounts: CgroupMounts, pid: int) -> int | None:
    """Bytes ``pid``'s container uses, as ``docker stats`` counts them: its cgroup's use less the inactive page
    cache (which the kernel reclaims before it would kill anything)."""
    where = memory_dir(mounts, pid)
    if where is None:
        return None
    directory, version = where
    try:
        if version == 1:
            with open(os.path.join(directory, "memory.usage_in_bytes")) as f:
                used = int(f.read())
            inactive = _keyed(os.path.join(directory, "memory.stat"), "total_inactive_file") or 0
        else:
            with open(os.path.join(directory, "memory.current")) as f:
                used = int(f.read())
            inactive = _keyed(os.path.join(directory, "memory.stat"), "inactive_file") or 0
    except (OSError, ValueError):
        return None
    return max(used - inactive, 0)


def read_no_new_privileges(pid: int) -> bool | None:
    try:
        with open(f"{PROC}/{pid}/status") as f:
            for line in f:
                if line.startswith("NoNewPrivs:"):
                    return line.split()[1] == "1"
    except (OSError, IndexError):
        return None
    return None


def cgroup_of(pid: int) -> str:
    """The cgroup path that counts ``pid``'s CPU (cpuacct's in v1, the unified one in v2), or ''."""
    try:
        with open(f"{PROC}/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    unified = ""
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return path
        if hierarchy == "0" and controllers == "":
            unified = path
    return unified


def scan_members() -> dict[str, list[int]]:
    """Every process of the machine by its cgroup path, from PROC. For a reader in another pid namespace (a
    node agent): a cgroup's own cgroup.procs lists only the processes of the reader's namespace."""
    members: dict[str, list[int]] = {}
    try:
        names = os.listdir(PROC)
    except OSError:
        return members
    for name in names:
        if name.isdigit():
            path = cgroup_of(int(name))
            if path:
                members.setdefault(path, []).append(int(name))
    return members


def read(mounts: CgroupMounts, pid: int, *, commands: bool = True, destinations: bool = True,
         members: dict[str, list[int]] | None = None) -> Reading:
    """What the container whose main process is ``pid`` does now (nothing, if it ended). ``members``: the
    machine's processes by cgroup (scan_members), where the cgroup's own list cannot be read."""
    reading = Reading()
    where = mounts.cpu_dir(pid)
    if where is None:
        return reading
    directory, version = where
    reading.cpu_seconds = read_cpu(directory, version)
    reading.memory = read_memory(mounts, pid)
    if commands:
        pids = members.get(cgroup_of(pid), [])[:PROCS_MAX] if members is not None else read_pids(directory)
        for member in pids:
            command = read_command(member)
            if command is not None:
                reading.commands.append(command)
    if destinations:
        reading.destinations = read_destinations(pid)
    return reading


def cap_egress(pid: int, rate: str) -> str:
    """Cap what the container of ``pid`` sends out at ``rate`` (a token bucket on its eth0, set from outside:
    its processes, without NET_ADMIN, cannot lift it); '' when done, else why not."""
    match = RATE.fullmatch(rate)
    if match is None:
        return f"not a rate: {rate!r}"
    bits = float(rate[:match.start(2)]) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[match.group(2)]
    burst = max(16 * 1024, int(bits / 8 / 100))  # 10 ms at the rate, at least 16 KiB (a few packets)
    try:
        done = subprocess.run(["nsenter", f"--net={PROC}/{pid}/ns/net", "tc", "qdisc", "replace", "dev", "eth0",
                               "root", "tbf", "rate", rate, "burst", str(burst), "latency", "400ms"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"tc exited {done.returncode}")
