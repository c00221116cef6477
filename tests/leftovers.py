"""What a test session leaves behind: nbpool's containers, networks, firewall rules and processes.

At the session's start a snapshot is taken of what exists; at its end (after every fixture's teardown)
anything carrying nbpool's labels, or its firewall chains, or a process of this checkout or of a test's
temporary folder, that was not there before and is still there after a short grace, fails the session with
a list. What was there before (an operator's own `make run`, say) is left alone and not counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL_PREFIX = "org.nbpool."
GRACE = 30.0  # seconds for removals already under way (a container being removed, a process exiting)
# A process is the suite's when its command line names this checkout or a test's temporary folder.
MARKERS = (str(ROOT), "/tmp/pytest-of-")


@dataclass
class Snapshot:
    containers: set[str] = field(default_factory=set)  # "<id> <name>"
    networks: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    processes: set[str] = field(default_factory=set)  # "<pid> <command line>"
    engine: bool = False


def take(client) -> Snapshot:
    snap = Snapshot(rules=_rules(), processes=_processes())
    if client is not None:
        snap.engine = True
        snap.containers = _containers(client)
        snap.networks = {f"{n.id[:12]} {n.name}" for n in client.networks.list()}
    return snap


def left_behind(before: Snapshot, client) -> list[str]:
    """What is new since ``before`` and outlived the grace, one line each (empty: nothing)."""
    deadline = time.monotonic() + GRACE
    while True:
        now = take(client if before.engine else None)
        found = ([f"container {c}" for c in sorted(now.containers - before.containers)]
                 + [f"network {n}" for n in sorted(now.networks - before.networks)]
                 + [f"firewall rule {r}" for r in sorted(now.rules - before.rules)]
                 + [f"process {p}" for p in sorted(now.processes - before.processes)])
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def _containers(client) -> set[str]:
    # The engine's list as it answers it, without inspecting each one: a container removed meanwhile (another
    # session's, or one of ours going) must not fail the check.
    return {f"{c['Id'][:12]} {(c.get('Names') or ['?'])[0].lstrip('/')}" for c in client.api.containers(all=True)
            if any(key.startswith(LABEL_PREFIX) for key in (c.get("Labels") or {}))}


def _rules() -> set[str]:
    if shutil.which("iptables") is None:
        return set()
    listing = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True).stdout
    return {line for line in listing.splitlines() if "NBPOOL" in line.upper()}


def _processes() -> set[str]:
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # it ended meanwhile
        if state != "Z" and any(marker in command for marker in MARKERS) and "pytest" not in command:
            found.add(f"{entry.name} {command[:200]}")
    return found
