"""The abuse guard's parts that a real run reaches only slowly: bans expiring, a damaged ban file, the
settings' checks, and reading /proc/net/tcp's addresses (issue 25)."""

from __future__ import annotations

import json
import logging

import pytest
from traitlets import TraitError

from spawner.guard.bans import Bans
from spawner.guard.guard import AbuseGuard
from spawner.probe import _address, read_destinations

log = logging.getLogger("test")


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_bans_match_by_network_container_or_ban_cookie_and_expire(tmp_path):
    clock = Clock()
    bans = Bans(tmp_path / "bans.json", log, clock=clock)
    one = bans.add(reason="ran xmrig", rule="banned_command", hours=1, network="192.0.2.7", containers=["abc"])
    by_browser = bans.add(reason="burned", rule="cpu_budget", hours=2, network="", containers=["def"])
    assert bans.find(network="192.0.2.7", containers=set(), ban_ids=set()) is one
    assert bans.find(network="198.51.100.1", containers={"abc"}, ban_ids=set()) is one
    assert bans.find(network="198.51.100.1", containers=set(), ban_ids={by_browser.id}) is by_browser
    # A ban by browser only never matches a network: its neighbours stay served.
    assert bans.find(network="", containers=set(), ban_ids=set()) is None
    assert bans.find(network="198.51.100.1", containers={"xyz"}, ban_ids=set()) is None
    clock.now += 3601
    assert bans.find(network="192.0.2.7", containers={"abc"}, ban_ids=set()) is None
    assert [b.id for b in bans.current()] == [by_browser.id]
    assert [row["id"] for row in json.loads((tmp_path / "bans.json").read_text())["bans"]] == [by_browser.id]


def test_bans_survive_a_restart_and_a_damaged_file_is_set_aside(tmp_path, caplog):
    path = tmp_path / "bans.json"
    ban = Bans(path, log).add(reason="r", rule="destinations", hours=1, network="192.0.2.7", containers=[])
    assert [b.id for b in Bans(path, log).current()] == [ban.id]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert Bans(path, log).current() == []
    assert "cannot read" in caplog.text and (tmp_path / "bans.damaged").exists()


def test_lifting_a_ban(tmp_path):
    bans = Bans(tmp_path / "bans.json", log)
    ban = bans.add(reason="r", rule="operator", hours=1, network="192.0.2.7", containers=[])
    assert bans.lift(ban.id) is ban and bans.lift(ban.id) is None
    assert bans.find(network="192.0.2.7", containers=set(), ban_ids=set()) is None


@pytest.mark.parametrize("setting, value", [("cpu_warning", 0), ("cpu_warning", 1.5), ("cpu_budget", -1),
                                            ("check_interval", 0), ("max_destinations", -1),
                                            ("banned_commands", ["ab"]), ("banned_addresses", ["not-a-net"])])
def test_bad_settings_name_themselves(setting, value):
    with pytest.raises(TraitError, match=setting):
        AbuseGuard(**{setting: value})


def test_proc_net_tcp_addresses():
    # /proc/net/tcp writes each 32-bit word of an address in the host's (little-endian) order.
    assert str(_address("0100007F")) == "127.0.0.1"
    assert str(_address("076433C6")) == "198.51.100.7"
    assert str(_address("0000000000000000FFFF0000076433C6")) == "198.51.100.7"  # IPv4-mapped, in tcp6
    assert str(_address("B80D0120000000000000000001000000")) == "2001:db8::1"
    assert _address("zz") is None


def test_a_process_connections_are_read_without_loopback():
    """This process's own network namespace: a connection out is seen, one to itself is not."""
    import os
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    inside = socket.create_connection(listener.getsockname())
    out = socket.socket()
    out.setblocking(False)
    out.connect_ex(("198.51.100.9", 80))
    try:
        found = read_destinations(os.getpid())
        assert "198.51.100.9" in found
        assert not any(a.startswith("127.") for a in found)
    finally:
        for s in (out, inside, listener):
            s.close()


def test_egress_ports_become_firewall_rules():
    from spawner.engines.firewall import ContainerFirewall
    from spawner.guard.guard import port_list

    assert port_list("any") == [] and port_list("web") == [80, 443, 9418] and port_list("443, 80") == [80, 443]
    assert port_list("http") is None and port_list("0") is None and port_list("") is None
    rules = ContainerFirewall(ports=[80, 443]).rules("br-test", ["10.0.0.53"], [])
    tail = [" ".join(r) for r in rules if r[1] == "NBPOOL-FWD-br-test"][-4:]
    assert tail[:2] == ["-A NBPOOL-FWD-br-test -p tcp --dport 80 -j RETURN",
                        "-A NBPOOL-FWD-br-test -p tcp --dport 443 -j RETURN"]
    assert tail[2].endswith("-p tcp -j REJECT --reject-with tcp-reset")
    assert not any("--dport 80 " in " ".join(r) for r in ContainerFirewall().rules("br-test", [], []))
