"""ContainerFirewall: its rules as data (no root needed), then the real rules on a real Docker network.

The Docker tests prove each refusal against a control: the same connection
succeeds without the rules, so a test that could never fail would show.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from traitlets import TraitError

from spawner.engines import firewall
from spawner.engines.base import BackendError
from spawner.engines.firewall import ContainerFirewall, FirewallError, bridge_name, chain_names, read_resolvers
from tests.dockertools import TEST_POOL

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BRIDGE = "br-0123456789ab"
FORWARD, INPUT = chain_names(BRIDGE)
RESOLVERS = ["10.255.255.53"]
HOST_NETWORKS = ["127.0.0.0/8", "172.18.0.0/16", "192.0.2.0/24"]
TCP_RESET = ["-j", "REJECT", "--reject-with", "tcp-reset"]


def chain(rules: list[list[str]], name: str) -> list[list[str]]:
    """The rules of one chain, without their ``-A <chain>``."""
    return [rule[2:] for rule in rules if rule[:2] == ["-A", name]]


def first(rules: list[list[str]], predicate) -> int:
    return next(i for i, rule in enumerate(rules) if predicate(rule))


def is_reject(rule: list[str]) -> bool:
    return "REJECT" in rule


def is_catch_all_reject(rule: list[str]) -> bool:
    return is_reject(rule) and "-d" not in rule


# --- the rules as data -------------------------------------------------------------------------------

def test_chain_names_fit_iptables_limit():
    # Linux bridge names have at most 15 characters; iptables chain names at most 28.
    assert all(len(name) <= 28 for name in chain_names("br-" + "f" * 12))
    assert all(len(name) <= 28 for name in chain_names("x" * 15))


def test_the_gateway_path_refuses_new_connections():
    """Connections to the host's own addresses (the gateway) pass INPUT, never DOCKER-USER: INPUT needs a reject."""
    rules = chain(ContainerFirewall().rules(BRIDGE, RESOLVERS, HOST_NETWORKS), INPUT)
    assert rules[0] == ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]
    assert rules[-2] == ["-p", "tcp", *TCP_RESET]
    assert rules[-1] == ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    # Nothing but replies and DNS returns before the rejects.
    assert all("--dport" in rule and "53" in rule for rule in rules[1:-2])


def test_dns_to_the_resolvers_is_allowed_before_any_reject():
    rules = ContainerFirewall().rules(BRIDGE, RESOLVERS, HOST_NETWORKS)
    for name in (FORWARD, INPUT):
        own = chain(rules, name)
        for proto in ("udp", "tcp"):
            dns = ["-d", "10.255.255.53/32", "-p", proto, "--dport", "53", "-j", "RETURN"]
            assert dns in own, (name, proto)
            assert own.index(dns) < first(own, is_reject)


def test_allow_networks_come_before_the_block_rules():
    fw = ContainerFirewall(allow_networks=["10.1.2.3/32", "192.0.2.80/32"])
    rules = chain(fw.rules(BRIDGE, RESOLVERS, HOST_NETWORKS), FORWARD)
    for cidr in fw.allow_networks:
        assert rules.index(["-d", cidr, "-j", "RETURN"]) < first(rules, is_reject)
    # Allowed networks never open the host's own addresses.
    assert not any("10.1.2.3/32" in rule for rule in chain(fw.rules(BRIDGE, RESOLVERS, HOST_NETWORKS), INPUT))


def test_private_metadata_and_host_networks_are_blocked():
    rules = chain(ContainerFirewall().rules(BRIDGE, RESOLVERS, HOST_NETWORKS), FORWARD)
    rejected = [ipaddress.ip_network(rule[rule.index("-d") + 1]) for rule in rules if is_reject(rule)]
    for address in ("169.254.169.254", "10.255.255.53", "172.18.0.1", "192.168.1.1", "100.64.0.1", "192.0.2.1"):
        assert any(ipaddress.ip_address(address) in net for net in rejected), address
    # The host's networks are added once, and not at all when a default block already covers them.
    blocked = [rule[1] for rule in rules if is_reject(rule) and "tcp" in rule]
    assert blocked.count("192.0.2.0/24") == 1
    assert "172.18.0.0/16" not in blocked and blocked.count("127.0.0.0/8") == 1
    # The internet stays reachable: no catch-all reject.
    assert not any(is_catch_all_reject(rule) for rule in rules)


def test_egress_none_rejects_everything():
    fw = ContainerFirewall(egress="none", allow_networks=["203.0.113.0/24"])
    rules = fw.rules(BRIDGE, RESOLVERS, HOST_NETWORKS)
    assert not any("--dport" in rule for rule in rules), "no DNS either"
    forward = chain(rules, FORWARD)
    assert forward[-2:] == [["-p", "tcp", *TCP_RESET], ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]]
    assert ["-d", "203.0.113.0/24", "-j", "RETURN"] in forward
    assert is_catch_all_reject(chain(rules, INPUT)[-1])


def test_egress_open_gives_no_rules():
    fw = ContainerFirewall(egress="open")
    assert fw.rules(BRIDGE, RESOLVERS, HOST_NETWORKS) == []
    assert fw.rules6(BRIDGE) == []


def test_ipv6_input_refuses_new_connections_only():
    rules = chain(ContainerFirewall().rules6(BRIDGE), INPUT)
    assert rules[0][-1] == "RETURN"
    assert all("NEW" in rule for rule in rules[1:]) and rules[-1][-1] == "icmp6-port-unreachable"


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("egress", "closed", "'closed'"),
    ("block_networks", ["10.0.0.0/8", "10.0.0.0/33"], "'10.0.0.0/33'"),
    ("allow_networks", ["mirror.example"], "'mirror.example'"),
    ("allow_networks", ["fd00::/8"], "'fd00::/8'"),
    ("resolvers", ["10.0.0.300"], "'10.0.0.300'"),
    ("command_timeout", 0, "0"),
])
def test_bad_settings_name_the_value(name, value, shown):
    with pytest.raises(TraitError, match=re.escape(shown)) as caught:
        ContainerFirewall(**{name: value})
    assert f"ContainerFirewall.{name}" in str(caught.value)


def test_networks_are_normalised():
    assert ContainerFirewall(allow_networks=["10.1.2.3/8"]).allow_networks == ["10.0.0.0/8"]


def test_a_bad_bridge_name_is_refused():
    with pytest.raises(ValueError, match="not a Linux bridge name"):
        ContainerFirewall().rules("br-0123456789abcdef", RESOLVERS, [])  # 19 characters
    with pytest.raises(ValueError, match="not a Linux bridge name"):
        ContainerFirewall().rules("br x", RESOLVERS, [])


def test_bridge_name_from_network_attributes():
    net_id = "78f18ba9aec82df6d0e3cad62df9235209f4c750b5096cd5b0e8846a6477afde"
    assert bridge_name({"Id": net_id, "Options": {}}) == "br-78f18ba9aec8"
    assert bridge_name({"Id": net_id, "Options": None}) == "br-78f18ba9aec8"
    assert bridge_name({"Id": net_id, "Options": {"com.docker.network.bridge.name": "nbpool0"}}) == "nbpool0"


def test_read_resolvers(tmp_path, monkeypatch):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.255.255.53\nnameserver fd00::53\nnameserver 127.0.0.1\n"
                    "search example\nnameserver 9.9.9.9\n")
    assert read_resolvers(conf) == ["10.255.255.53", "9.9.9.9"]
    # systemd-resolved's stub: Docker forwards to its upstream list instead.
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.168.1.1\n")
    monkeypatch.setattr(firewall, "_SYSTEMD_RESOLVED_UPSTREAM", upstream)
    conf.write_text("nameserver 127.0.0.53\noptions edns0\n")
    assert read_resolvers(conf) == ["192.168.1.1"]
    assert read_resolvers(tmp_path / "missing") == []


# --- install and remove against scripted iptables (no root needed) ----------------------------------

IP_ADDR_JSON = json.dumps([
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
    {"ifname": BRIDGE, "addr_info": [{"family": "inet", "local": "172.18.0.1", "prefixlen": 16}]},
])
DOCKER_LISTING = "-P INPUT ACCEPT\n-P FORWARD DROP\n-N DOCKER\n-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n"


class ScriptedFirewall(ContainerFirewall):
    """Answers ``iptables -S`` from canned listings and records every command instead of running it."""

    def __init__(self, listing: str, listing6: str | None = "-P INPUT ACCEPT\n", **kwargs):
        super().__init__(resolvers=RESOLVERS, **kwargs)
        self.listings = {"iptables": listing, "ip6tables": listing6}
        self.calls: list[tuple[list[str], str | None]] = []

    def _tool(self, name: str) -> str:
        return name

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        self.calls.append((args, stdin))
        if args[0] == "ip":
            return IP_ADDR_JSON
        if args[0].endswith("-restore"):
            return ""
        if self.listings[args[0]] is None:
            raise FirewallError(f"{args[0]} failed: not available")
        return self.listings[args[0]]

    def restored(self, tool: str) -> list[str]:
        return [line for args, stdin in self.calls if args[0] == f"{tool}-restore" for line in stdin.splitlines()]


def test_install_creates_chains_and_jumps_in_one_transaction():
    fw = ScriptedFirewall(DOCKER_LISTING)
    fw.install(BRIDGE)
    lines = fw.restored("iptables")
    assert lines[:3] == ["*filter", f":{FORWARD} - [0:0]", f":{INPUT} - [0:0]"] and lines[-1] == "COMMIT"
    assert f"-I DOCKER-USER 1 -i {BRIDGE} -j {FORWARD}" in lines
    assert f"-I INPUT 1 -i {BRIDGE} -j {INPUT}" in lines
    assert f"-A {FORWARD} -d 192.0.2.0/24 -p tcp -j REJECT --reject-with tcp-reset" in lines
    assert f"-I INPUT 1 -i {BRIDGE} -j {INPUT}" in fw.restored("ip6tables")


def test_install_adds_no_second_jump():
    listing = DOCKER_LISTING + f"-A DOCKER-USER -i {BRIDGE} -j {FORWARD}\n-A INPUT -i {BRIDGE} -j {INPUT}\n"
    fw = ScriptedFirewall(listing, listing6=f"-P INPUT ACCEPT\n-A INPUT -i {BRIDGE} -j {INPUT}\n")
    fw.install(BRIDGE)
    assert not any(line.startswith("-I") for line in fw.restored("iptables") + fw.restored("ip6tables"))


def test_install_without_docker_user_says_why_and_how_to_opt_out():
    fw = ScriptedFirewall("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n")
    with pytest.raises(FirewallError, match="no DOCKER-USER chain") as caught:
        fw.install(BRIDGE)
    assert "egress = 'open'" in str(caught.value)
    assert fw.restored("iptables") == []


def test_install_goes_on_without_ip6tables():
    fw = ScriptedFirewall(DOCKER_LISTING, listing6=None)
    fw.install(BRIDGE)
    assert fw.restored("iptables") and fw.restored("ip6tables") == []


def test_remove_deletes_every_jump_and_both_chains():
    jump = f"-A INPUT -i {BRIDGE} -j {INPUT}"
    listing = (DOCKER_LISTING + f"-N {FORWARD}\n-N {INPUT}\n{jump}\n{jump}\n"
               f"-A DOCKER-USER -i {BRIDGE} -j {FORWARD}\n-A {INPUT} -j RETURN\n"
               f"-A INPUT -i {BRIDGE}x -j {INPUT}x\n")  # another bridge's jump stays
    fw = ScriptedFirewall(listing)
    fw.remove(BRIDGE)
    lines = fw.restored("iptables")
    assert lines.count(f"-D INPUT -i {BRIDGE} -j {INPUT}") == 2
    assert f"-D DOCKER-USER -i {BRIDGE} -j {FORWARD}" in lines
    assert lines[-5:] == [f"-F {FORWARD}", f"-X {FORWARD}", f"-F {INPUT}", f"-X {INPUT}", "COMMIT"]
    assert not any(f"{INPUT}x" in line for line in lines)


def test_remove_of_nothing_runs_nothing():
    fw = ScriptedFirewall(DOCKER_LISTING)
    fw.remove(BRIDGE)
    assert not any(args[0].endswith("-restore") for args, _ in fw.calls)


def test_egress_open_installs_nothing_and_removes_old_rules():
    fw = ScriptedFirewall(DOCKER_LISTING + f"-N {INPUT}\n-A INPUT -i {BRIDGE} -j {INPUT}\n", egress="open")
    fw.install(BRIDGE)
    lines = fw.restored("iptables")
    assert f"-D INPUT -i {BRIDGE} -j {INPUT}" in lines and f"-X {INPUT}" in lines
    assert not any(line.startswith(("-A", "-I", ":")) for line in lines)


def test_a_failed_command_is_named_with_its_output():
    fw = ContainerFirewall()
    with pytest.raises(FirewallError) as caught:
        fw._run([sys.executable, "-c", "import sys; sys.stderr.write('no such chain'); sys.exit(3)"])
    message = str(caught.value)
    assert "sys.exit(3)" in message and "exit 3" in message and "no such chain" in message
    assert "c.ContainerFirewall.egress = 'open'" in message
    assert isinstance(caught.value, BackendError)
    with pytest.raises(FirewallError, match="nbpool-no-such-tool is not installed"):
        fw._tool("nbpool-no-such-tool")


# --- the real rules on a real Docker network ----------------------------------------------------------

# Run inside the container: connect, and say how it ended.
PROBE = """
import json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
started = time.monotonic()
try:
    socket.create_connection((host, port), timeout=3).close()
    result = "connected"
except ConnectionRefusedError:
    result = "refused"
except TimeoutError:
    result = "timeout"
except OSError as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"to": f"{host}:{port}", "result": result, "seconds": round(time.monotonic() - started, 3)}))
"""

# Resolve a name and GET a URL from inside the container; the resolver gives up after about a second.
FETCH = """
import json, socket, sys, urllib.parse, urllib.request
url = sys.argv[1]
try:
    address = socket.getaddrinfo(urllib.parse.urlsplit(url).hostname, 80, socket.AF_INET)[0][4][0]
except OSError as exc:
    print(json.dumps({"resolved": None, "error": str(exc)}))
    sys.exit()
try:
    with urllib.request.urlopen(url, timeout=10) as response:
        print(json.dumps({"resolved": address, "status": response.status}))
except Exception as exc:
    print(json.dumps({"resolved": address, "error": f"{type(exc).__name__}: {exc}"}))
"""
FAST_RESOLVER = {"RES_OPTIONS": "timeout:1 attempts:1"}


def skip_or_fail(message: str):
    if UNDER_CI:
        pytest.fail(message + " -- under CI=true these tests must run", pytrace=False)
    pytest.skip(message)


def mirror_url() -> str:
    """The first plain-http URI of apt's sources on this host (the package mirror containers use)."""
    files = [Path("/etc/apt/sources.list")]
    for pattern in ("*.sources", "*.list"):
        files += sorted(Path("/etc/apt/sources.list.d").glob(pattern))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                for word in words[1:]:
                    if word.startswith("http://"):
                        return word.rstrip("/") + "/"
    skip_or_fail("apt's configuration names no http:// mirror to test the internet with")
    raise AssertionError  # not reached


def outbound_address() -> str:
    """The host's own address on its default route (eth0's), found without sending a packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("198.51.100.1", 9))
        return sock.getsockname()[0]


def iptables_listing(*args: str, tool: str = "iptables") -> list[str]:
    done = subprocess.run([tool, "-w", "10", "-S", *args], capture_output=True, text=True, timeout=20, check=True)
    return done.stdout.splitlines()


def packets(chain_name: str, *words: str) -> int:
    """Packets counted so far by the rule of ``chain_name`` containing all ``words``."""
    for line in iptables_listing(chain_name, "-v"):
        match = re.search(r" -c (\d+) \d+", line)
        if match and all(word in line.split() for word in words):
            return int(match.group(1))
    raise AssertionError(f"no rule with {words} in {chain_name}")


@dataclass
class FwNetwork:
    name: str
    bridge: str
    gateway: str


@dataclass
class HostServer:
    port: int


@pytest.fixture(scope="module")
def host_server():
    """An HTTP server on every host address, as a service on the host would be."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host service\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HostServer(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def network(docker_client):
    """A bridge network of this module's own, like nbpool's (no inter-container traffic); gone afterwards."""
    if os.geteuid() != 0:
        skip_or_fail("the firewall tests change iptables rules and need root")
    net = docker_client.networks.create(
        f"nbpool-fwtest-{secrets.token_hex(4)}", driver="bridge", check_duplicate=True,
        options={"com.docker.network.bridge.enable_icc": "false"}, labels={"org.nbpool.pool": TEST_POOL})
    try:
        net.reload()
        yield FwNetwork(net.name, bridge_name(net.attrs), net.attrs["IPAM"]["Config"][0]["Gateway"])
    finally:
        ContainerFirewall().remove(bridge_name(net.attrs))
        net.reload()
        for container in net.containers:
            container.remove(force=True)
        net.remove()


@pytest.fixture(scope="module")
def container(docker_client, notebook_image, network, request):
    """One notebook-image container on the test network, serving HTTP on 8000 (published on 127.0.0.1)."""
    box = docker_client.containers.run(
        notebook_image, ["python3", "-m", "http.server", "8000"], detach=True, user="1000:1000",
        network=network.name, ports={"8000/tcp": ("127.0.0.1", None)}, labels={"org.nbpool.pool": TEST_POOL},
        cap_drop=["ALL"], security_opt=["no-new-privileges"])
    try:
        deadline = time.monotonic() + 30
        while True:
            box.reload()
            if box.status == "running" and box.ports.get("8000/tcp"):
                break
            if box.status == "exited" or time.monotonic() > deadline:
                raise AssertionError(f"test container is {box.status}: {box.logs().decode(errors='replace')}")
            time.sleep(0.1)
        yield box
        if any(getattr(item, "call_failed", False) for item in request.session.items):
            print(f"\n--- logs of {box.name} ---\n{box.logs(tail=40).decode(errors='replace')}")
    finally:
        box.remove(force=True)


@pytest.fixture
def installed(network):
    """The default firewall on the test network for one test; removed afterwards, even when the test fails."""
    fw = ContainerFirewall()
    fw.install(network.bridge)
    yield fw
    fw.remove(network.bridge)


def run_in(box, script: str, *args: str, environment: dict | None = None) -> dict:
    code, output = box.exec_run(["python3", "-c", script, *args], user="1000:1000", environment=environment)
    text = output.decode(errors="replace")
    assert code == 0, text
    return json.loads(text.strip().splitlines()[-1])


def probe(box, host: str, port: int) -> dict:
    return run_in(box, PROBE, host, str(port))


def host_fetch(url: str) -> int:
    """GET ``url`` from the host until it answers (the server may still be starting); its status."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.docker
def test_the_gateway_is_refused_only_while_installed(network, container, host_server):
    host_address = outbound_address()
    fw = ContainerFirewall()
    fw.remove(network.bridge)
    # Controls: without rules a container reaches the host's service, else a refusal would prove nothing.
    assert probe(container, network.gateway, host_server.port)["result"] == "connected"
    assert probe(container, host_address, host_server.port)["result"] == "connected"
    try:
        fw.install(network.bridge)
        before = packets(chain_names(network.bridge)[1], "tcp-reset")
        assert probe(container, network.gateway, host_server.port)["result"] == "refused"
        assert probe(container, host_address, host_server.port)["result"] == "refused"
        # Refused on the INPUT path: DOCKER-USER never sees packets to host addresses.
        assert packets(chain_names(network.bridge)[1], "tcp-reset") >= before + 2
    finally:
        fw.remove(network.bridge)
    assert probe(container, network.gateway, host_server.port)["result"] == "connected"


@pytest.mark.docker
def test_metadata_private_and_host_addresses_are_refused(installed, network, container, host_server):
    for host, port in [("169.254.169.254", 80), (outbound_address(), host_server.port), ("10.255.255.1", 80),
                       ("192.168.0.1", 80), (network.gateway, 22)]:
        outcome = probe(container, host, port)
        # A reset, not a silent drop: the attempt fails at once instead of hanging for its timeout.
        assert outcome["result"] == "refused", outcome


@pytest.mark.docker
def test_dns_and_the_package_mirror_stay_reachable(installed, network, container):
    forward = chain_names(network.bridge)[0]
    resolvers = read_resolvers()
    dns_before = sum(packets(forward, f"{r}/32", "udp") for r in resolvers)
    outcome = run_in(container, FETCH, mirror_url())
    assert outcome.get("status") == 200, outcome
    # Docker's embedded DNS forwards from inside the container's namespace: forwarded packets, our DNS rule.
    if resolvers:
        assert sum(packets(forward, f"{r}/32", "udp") for r in resolvers) > dns_before


@pytest.mark.docker
def test_dns_needs_the_resolver_rule(network, container):
    """Without the rule for the host's resolvers, a container whose resolvers are blocked cannot resolve.

    The resolvers are blocked explicitly, so the test means the same on a host whose resolver is public.
    """
    defaults = ContainerFirewall().block_networks
    fw = ContainerFirewall(resolvers=["198.51.100.53"],  # a documentation address: not this host's resolver
                           block_networks=[*defaults, *(f"{r}/32" for r in read_resolvers())])
    try:
        fw.install(network.bridge)
        outcome = run_in(container, FETCH, mirror_url(), environment=FAST_RESOLVER)
        assert outcome["resolved"] is None, outcome
    finally:
        fw.remove(network.bridge)


@pytest.mark.docker
def test_egress_none_refuses_the_internet_and_dns(network, container):
    url = mirror_url()
    fw = ContainerFirewall(egress="none")
    address = socket.getaddrinfo(url.split("/")[2], 80, socket.AF_INET)[0][4][0]  # resolved on the host
    try:
        fw.install(network.bridge)
        assert probe(container, address, 80)["result"] == "refused"
        assert run_in(container, FETCH, url, environment=FAST_RESOLVER)["resolved"] is None
    finally:
        fw.remove(network.bridge)
    assert probe(container, address, 80)["result"] == "connected"  # control


@pytest.mark.docker
def test_the_host_still_reaches_the_container(installed, network, container):
    """The proxy's connections into a container are the host's: their replies (ESTABLISHED) pass."""
    published = container.ports["8000/tcp"][0]["HostPort"]
    assert host_fetch(f"http://127.0.0.1:{published}/") == 200  # through docker-proxy
    address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    assert host_fetch(f"http://{address}:8000/") == 200  # straight at the bridge address


@pytest.mark.docker
def test_install_twice_leaves_one_jump_each(network):
    fw = ContainerFirewall()
    forward, inbound = chain_names(network.bridge)
    try:
        fw.install(network.bridge)
        fw.install(network.bridge)
        docker_user = iptables_listing("DOCKER-USER")
        assert docker_user.count(f"-A DOCKER-USER -i {network.bridge} -j {forward}") == 1
        assert docker_user[1] == f"-A DOCKER-USER -i {network.bridge} -j {forward}", "at the top"
        assert iptables_listing("INPUT").count(f"-A INPUT -i {network.bridge} -j {inbound}") == 1
        # The chains hold the rules once, not twice.
        expected = fw.rules(network.bridge, read_resolvers(), fw.host_networks())
        assert len(iptables_listing(forward)) - 1 == len(chain(expected, forward))
        assert len(iptables_listing(inbound)) - 1 == len(chain(expected, inbound))
        if fw._ip6tables_usable():
            assert iptables_listing("INPUT", tool="ip6tables").count(
                f"-A INPUT -i {network.bridge} -j {inbound}") == 1
    finally:
        fw.remove(network.bridge)


@pytest.mark.docker
def test_remove_leaves_nothing_and_can_run_again(network):
    fw = ContainerFirewall()
    fw.install(network.bridge)
    fw.remove(network.bridge)
    ours = chain_names(network.bridge)
    assert not [line for line in iptables_listing() if any(name in line for name in ours)]
    if fw._ip6tables_usable():
        assert not [line for line in iptables_listing(tool="ip6tables") if any(name in line for name in ours)]
    fw.remove(network.bridge)  # already gone: done


@pytest.mark.docker
def test_a_refused_rule_is_named_and_changes_nothing(network):
    fw = ContainerFirewall()
    forward, _ = chain_names(network.bridge)
    with pytest.raises(FirewallError) as caught:
        fw._restore("iptables", ["*filter", f":{forward} - [0:0]", f"-A {forward} -d 10.0.0.0/33 -j RETURN"])
    message = str(caught.value)
    assert "iptables-restore" in message and "10.0.0.0/33" in message and "egress = 'open'" in message
    assert f"-N {forward}" not in iptables_listing(), "the failed transaction created nothing"
