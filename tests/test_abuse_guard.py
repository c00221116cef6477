"""A public link's abusers, against the real service and engine (issue 25): harmless stand-ins for a miner
(a copy of ``sleep`` named like one), a CPU burner (a background busy loop) and a scanner (connections to
many addresses), each run in an attendee's container the way their own terminal would run it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests

from tests.dockertools import labelled
from tests.service import cid_of, spawn, visitor

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GUARD = {"AbuseGuard__check_interval": 1.0, "Pool__warm": 2, "Pool__max_containers": 4}


def container_of(docker_client, cid: str):
    return docker_client.containers.list(all=True, filters={"label": f"org.nbpool.id={cid}"})[0]


def run_as_attendee(docker_client, cid: str, script: str) -> None:
    """``script`` in the attendee's container, as the attendee, in the background (as from their terminal)."""
    container_of(docker_client, cid).exec_run(["sh", "-c", script], user="1000", detach=True)


def wait_ended(service, session: requests.Session, url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = session.get(url, timeout=30)
        if page.status_code in (404, 410) or "has ended" in page.text:
            return page.text
        time.sleep(0.3)
    raise AssertionError(f"the session at {url} did not end within {timeout:.0f}s; log:\n{service.logs()[-3000:]}")


def test_a_miner_ends_its_session_and_bans_that_browser_while_a_fresh_visitor_is_served(make_service,
                                                                                     docker_client):
    service = make_service(**GUARD)
    service.start()
    miner = visitor()
    url = spawn(miner, service.url)
    cid = cid_of(url)
    began = time.monotonic()
    run_as_attendee(docker_client, cid, "cp /bin/sleep /tmp/xmrig && exec /tmp/xmrig 600")
    page = wait_ended(service, miner, url)
    took = time.monotonic() - began
    assert took < 15, took  # "within seconds": the guard reads every check_interval (1 s here)
    assert "It ran a program this service does not allow (xmrig)" in page, page[:2000]
    service.wait_for(lambda: not labelled(docker_client, f"org.nbpool.id={cid}"), timeout=30,
                     what="the miner's container removed")
    log = service.logs()
    assert re.search(rf"abuse guard: session {cid} from 127\.0\.0\.1 ran .*xmrig.* \(rule banned_command\): "
                     r"ended, ban [0-9a-f]{16} for 24 hours \(browser only\)", log), log[-3000:]

    # That browser gets the ban page, at /spawn and at the API; loopback is exempt, so by browser only.
    refused = miner.get(f"{service.url}/spawn?new=1", allow_redirects=False, timeout=30)
    assert refused.status_code == 403 and "Notebooks are not available to you for now" in refused.text
    assert "ran a program this service does not allow" in refused.text
    api = miner.post(f"{service.url}/api/spawn", json={}, headers={"Origin": service.url}, timeout=30)
    assert api.status_code == 403, api.text
    # A fresh visitor from the same (loopback) address is still served.
    fresh = visitor()
    assert cid_of(spawn(fresh, service.url)) != cid

    # The operator sees the ban, in the metrics too; it survives a restart; lifting it lets the browser in.
    bans = service.admin("GET", "/api/admin/bans").json()["bans"]
    assert [(b["rule"], b["network"], b["containers"]) for b in bans] == [("banned_command", "", [cid])], bans
    metrics = service.admin("GET", "/metrics").text
    assert 'nbpool_abuse_actions_total{rule="banned_command"} 1.0' in metrics
    assert "nbpool_bans 1.0" in metrics
    service.restart()
    again = miner.get(f"{service.url}/spawn?new=1", allow_redirects=False, timeout=30)
    assert again.status_code == 403, again.status_code
    assert [b["id"] for b in service.admin("GET", "/api/admin/bans").json()["bans"]] == [bans[0]["id"]]
    assert service.admin("DELETE", f"/api/admin/bans/{bans[0]['id']}").status_code == 204
    assert service.admin("DELETE", f"/api/admin/bans/{bans[0]['id']}").status_code == 404
    assert service.admin("GET", "/api/admin/bans").json()["bans"] == []
    assert cid_of(spawn(miner, service.url)) != cid


class Receiver:
    """A webhook's receiving end: a small real HTTP server on this machine, keeping what it was sent."""

    def __init__(self):
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/s3cr3t-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_network_is_banned_unless_exempt_and_the_operator_is_told(make_service, docker_client):
    """With loopback not exempt, the miner's network is banned too: a fresh browser from it is refused. The
    operator's webhook hears of it (and its secret URL is nowhere in the log)."""
    receiver = Receiver()
    try:
        service = make_service(WebApp__address_share_exempt=[], AbuseGuard__webhook_url=receiver.url, **GUARD)
        service.start()
        miner = visitor()
        url = spawn(miner, service.url)
        run_as_attendee(docker_client, cid_of(url),
                        "cp /bin/sleep /tmp/cpuminer-sse2 && exec /tmp/cpuminer-sse2 600")
        wait_ended(service, miner, url)
        refused = visitor().get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
        assert refused.status_code == 403 and "browser and network" in refused.text
        (ban,) = service.admin("GET", "/api/admin/bans").json()["bans"]
        assert ban["network"] == "127.0.0.1"
        service.wait_for(lambda: receiver.received, timeout=15, what="the webhook's message")
        (path, message), = receiver.received
        assert path == "/hooks/s3cr3t-token"
        assert (message["rule"], message["session"], message["network"], message["ban"]) == \
            ("banned_command", cid_of(url), "127.0.0.1", ban["id"])
        assert "cpuminer" in message["text"]
        assert "s3cr3t-token" not in service.logs()
    finally:
        receiver.close()


def test_egress_ports_web_refuses_a_miner_pools_port(make_service, docker_client):
    """AbuseGuard.egress_ports 'web': a stratum port (3333) is refused at once, 443 is not."""
    service = make_service(AbuseGuard__egress_ports="web", **GUARD)
    service.start()
    session = visitor()
    cid = cid_of(spawn(session, service.url))
    assert "on TCP ports 80, 443, 9418 only" in service.logs()
    probe = """import socket
for port in (3333, 443):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("198.51.100.7", port))
        print(port, "connected")
    except ConnectionRefusedError:
        print(port, "refused")
    except OSError as exc:
        print(port, type(exc).__name__)
"""
    code, out = container_of(docker_client, cid).exec_run(["python3", "-c", probe], user="1000")
    lines = dict(line.split(" ", 1) for line in out.decode().split("\n") if line)
    assert code == 0 and lines["3333"] == "refused", out
    assert lines["443"] != "refused", out


def test_a_cpu_burner_is_warned_then_ended_at_its_budget_while_its_neighbour_works_on(make_service, docker_client):
    service = make_service(AbuseGuard__cpu_budget=8, AbuseGuard__cpu_warning=0.5, **GUARD)
    service.start()
    burner, neighbour = visitor(), visitor()
    url, other = spawn(burner, service.url), spawn(neighbour, service.url)
    # A background process, not a kernel: the cgroup counts it all the same.
    run_as_attendee(docker_client, cid_of(url), "nohup python3 -c 'while True: pass' >/dev/null 2>&1 &")
    service.wait_for(lambda: f"session {cid_of(url)} from 127.0.0.1 used" in service.logs(), timeout=60,
                     what="the burner warned")
    page = wait_ended(service, burner, url, timeout=60)
    assert "It used all the computing time one session may have" in page, page[:2000]
    assert "(rule cpu_budget)" in service.logs()
    # The neighbour's server answers, and its session goes on.
    assert neighbour.get(other, timeout=30).status_code == 200
    assert cid_of(other) in {r["id"] for r in service.admin("GET", "/api/admin/containers").json()["containers"]}


def test_connections_to_many_addresses_end_the_session(make_service, docker_client):
    service = make_service(AbuseGuard__max_destinations=20, **GUARD)
    service.start()
    scanner = visitor()
    url = spawn(scanner, service.url)
    # Non-blocking connects to 40 documentation addresses, held open (a scanner's or miner's fan-out).
    run_as_attendee(docker_client, cid_of(url), """exec python3 -c '
import socket, time
held = []
for i in range(1, 41):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("198.51.100.%d" % i, 80))
    held.append(s)
time.sleep(600)'""")
    page = wait_ended(service, scanner, url)
    assert "connected to" in page and "different machines" in page, page[:2000]
    assert "(rule destinations)" in service.logs()


def test_egress_rate_caps_what_a_container_sends(make_service, docker_client):
    """AbuseGuard.egress_rate: a token bucket on the container's own interface, set from the host."""
    service = make_service(AbuseGuard__egress_rate="4mbit", **GUARD)
    service.start()
    session = visitor()
    cid = cid_of(spawn(session, service.url))
    container = container_of(docker_client, cid)
    pid = container.attrs["State"]["Pid"]

    def qdisc() -> str:
        return subprocess.run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "show", "dev", "eth0"],
                              capture_output=True, text=True).stdout

    service.wait_for(lambda: "tbf" in qdisc(), timeout=15, what="the cap on the container's interface")
    assert "rate 4Mbit" in qdisc()
    # 3 MB sent out take about 6 s at 4 Mbit/s (measured unlimited: 0.04 s). UDP, because the sender then
    # waits for the bucket itself (its send buffer fills), and nothing needs to answer.
    send = """import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("198.51.100.7", 9))
began, sent = time.monotonic(), 0
while sent < 3_000_000:
    try:
        sent += s.send(b"x" * 1400)
    except OSError:
        time.sleep(0.001)
print(round(time.monotonic() - began, 2))
"""
    code, out = container.exec_run(["python3", "-c", send], user="1000")
    assert code == 0, out
    assert float(out.decode().split()[-1]) > 3, out
