"""Run the whole nbpool service (start.py) as a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from loadtest.jupyter import KernelClient
from tests.dockertools import TEST_POOL

ROOT = Path(__file__).resolve().parent.parent
NETWORK = TEST_POOL  # the session's own network: its cleanup removes it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One nbpool, with its own config file, data dir, port and pool name."""

    def __init__(self, tmp: Path, pool_name: str, **settings):
        self.tmp = tmp
        self.pool_name = pool_name
        self.port = free_port()
        self.data_dir = tmp / "data"
        self.config = tmp / "nbpool_config.py"
        self.log_path = tmp / "nbpool.log"
        self.settings = {
            "Pool.pool_name": pool_name, "Pool.warm": 1, "Pool.max_containers": 4, "Pool.spawn_concurrency": 2,
            "Pool.start_timeout": 90, "Pool.reconcile_interval": 5, "Pool.cull_interval": 5,
            "DockerBackend.network_name": NETWORK, "DockerBackend.mem_limit": "512M",
            "Proxy.port": self.port, "Proxy.ip": "127.0.0.1", "WebApp.history_interval": 1,
        }
        self.settings.update({k.replace("__", "."): v for k, v in settings.items()})
        # With a certificate it serves HTTPS (a test's own, self-signed: not verified).
        self.url = f"{'https' if self.settings.get('Proxy.certfile') else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.write_config()

    def write_config(self, **changes) -> None:
        self.settings.update({k.replace("__", "."): v for k, v in changes.items()})
        lines = ["c = get_config()  # noqa: F821"]
        lines += [f"c.{key} = {value!r}" for key, value in self.settings.items()]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, wait_warm: bool = True, timeout: float = 120, wait: bool = True) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "start.py"), "--config", str(self.config), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        if not wait:  # the caller watches the start itself
            return
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nbpool exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                stats = requests.get(f"{self.url}/api/stats", timeout=2, verify=False).json()
                # Started: every pool has adopted its containers (until then visitors are asked to wait).
                started = requests.get(f"{self.url}/healthz", timeout=2, verify=False).json()["starting"] is False
                if started and (not wait_warm or stats["available"] >= self.settings["Pool.warm"]):
                    return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nbpool not ready within {timeout:.0f}s:\n{self.logs()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def restart(self) -> None:
        assert self.stop() == 0, self.logs()
        self.start()

    def sighup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, verify=False, **kwargs)

    def stats(self) -> dict:
        return requests.get(f"{self.url}/api/stats", timeout=10, verify=False).json()

    def wait_for(self, predicate, timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout:.0f}s; stats {self.stats()}")
            time.sleep(0.2)


def visitor() -> requests.Session:
    """A browser-like client: its own cookies, a browser's User-Agent."""
    session = requests.Session()
    session.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) nbpool-tests"
    return session


def spawn(session: requests.Session, url: str, path: str = "", timeout: float = 120) -> str:
    """Follow /spawn[/path] like a browser (through the waiting line); return the container URL reached."""
    resp = session.get(f"{url}/spawn/{path}" if path else f"{url}/spawn", allow_redirects=False, timeout=30)
    return through_the_line(session, url, resp, timeout)


def through_the_line(session: requests.Session, url: str, resp: requests.Response, timeout: float = 120) -> str:
    """From a /spawn answer (a redirect to a container or to the waiting line) to the container URL."""
    deadline = time.monotonic() + timeout
    origin = re.match(r"https?://[^/]+", url).group(0)  # (``url`` may be a workshop's, /w/<name>)
    while resp.status_code == 302 and "/spawn/wait/" in resp.headers["Location"]:
        location = resp.headers["Location"]
        wait_url = origin + location if location.startswith("/") else location
        key = wait_url.rsplit("/", 1)[1]
        while not session.get(f"{origin}/api/queue/{key}", timeout=30).json().get("ready"):
            if time.monotonic() > deadline:
                raise TimeoutError("still waiting in line")
            time.sleep(0.3)
        resp = session.get(wait_url, allow_redirects=False, timeout=30)
    assert resp.status_code == 302, (resp.status_code, resp.text[:500])
    location = resp.headers["Location"]
    return location if location.startswith("http") else origin + location


def vm_kib(pid: int | str, field: str) -> int:
    """A memory figure of process ``pid`` ('self' for this one) from /proc, e.g. VmRSS or VmHWM, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cid_of(url: str) -> str:
    """The container id in a /user/<id>/ URL."""
    return re.search(r"/user/([0-9a-f]+)/", url).group(1)


def kernel_client(session: requests.Session, container_url: str) -> KernelClient:
    """A kernel client for the server ``spawn`` reached, through the proxy with only the visitor's cookie."""
    base = container_url.rsplit("/tree", 1)[0] + "/"
    return KernelClient(base, {"Cookie": "; ".join(f"{k}={v}" for k, v in session.cookies.items())})
