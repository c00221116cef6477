"""nbpool as the benchmarks run it: start.py in a subprocess with its own pool name, data dir, port and log.

    with RunningService(warm=3, cap=20, extra=["DockerBackend.mem_limit = '512M'"]) as service:
        service.wait_until(lambda: service.stats()["available"] >= 3)

It can be killed (SIGKILL) and started again on the same data dir (a restart
adopts what runs); on exit it stops nbpool and removes its pool's containers, then its network (one of its
own, named as its pool) and the firewall chains its bridge had.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # for tests.dockertools, whichever benchmark imported this module
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningService:
    def __init__(self, *, warm: int, cap: int, concurrency: int = 4, extra: list[str] | None = None,
                 name: str = "bench", backend: str = "docker"):
        self.pool = f"nbpool-{name}-{secrets.token_hex(3)}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.warm = warm
        self.backend = backend
        self._tmp = tempfile.TemporaryDirectory(prefix=f"nbpool-{name}-")
        self.dir = Path(self._tmp.name)
        self.config = self.dir / "config.py"
        self.log_path = self.dir / "nbpool.log"
        self.lines = [
            f"Pool.pool_name = {self.pool!r}", f"Pool.warm = {warm}", f"Pool.max_containers = {cap}",
            f"Pool.spawn_concurrency = {concurrency}", "Pool.start_timeout = 180", "Pool.queue_timeout = 300",
            f"Proxy.port = {self.port}", "Proxy.ip = '127.0.0.1'", "WebApp.spawn_rate_limit = 0",
            "DockerBackend.mem_limit = '512M'", f"DockerBackend.network_name = {self.pool!r}",
            f"NbpoolApp.backend = {backend!r}", *(extra or []),
        ]
        self.write_config()
        self.proc: subprocess.Popen | None = None

    def write_config(self, *more: str) -> None:
        self.lines += more
        self.config.write_text("c = get_config()  # noqa: F821\n" + "".join(f"c.{line}\n" for line in self.lines))

    def __enter__(self) -> RunningService:
        self.start_seconds = self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove_containers()
        self.remove_network()
        self._tmp.cleanup()

    def remove_network(self) -> None:
        """Its network (named as its pool: nobody else's), and nbpool's firewall chains of bridges now gone."""
        from tests.dockertools import remove_orphan_firewall_chains

        subprocess.run(["docker", "network", "rm", self.pool], capture_output=True)
        remove_orphan_firewall_chains()

    def remove_containers(self) -> None:
        """Every container of this service: its pool's, and its named workshops' (pools '<pool>-<name>'),
        which nbpool keeps running when it stops if they were handed out (a restart adopts them)."""
        listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=org.nbpool.pool",
                                 "--format", '{{.ID}} {{.Label "org.nbpool.pool"}}'], capture_output=True, text=True)
        ids = [cid for cid, _, pool in (line.partition(" ") for line in listed.stdout.splitlines())
               if pool == self.pool or pool.startswith(self.pool + "-")]
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        if self.backend == "swarm":  # on the manager of `make cluster`
            manager = ["docker", "-H", (ROOT / ".cluster" / "endpoint").read_text().strip()]
            ids = subprocess.run([*manager, "service", "ls", "-q", "--filter", f"label=org.nbpool.pool={self.pool}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([*manager, "service", "rm", *ids], capture_output=True)

    def start(self, wait_warm: bool = True, timeout: float = 600) -> float:
        """Start nbpool; return the seconds until it answered (and had its spares, if asked)."""
        t0 = time.monotonic()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "start.py"), "--config", str(self.config),
                                      "--data-dir", str(self.dir / "data")], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT)
        log.close()
        self.wait_until(lambda: self.answers() and (not wait_warm or self.stats()["available"] >= self.warm),
                        timeout, "nbpool ready")
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def answers(self) -> bool:
        try:
            self.stats()
            return True
        except (OSError, ValueError):
            return False

    def get_json(self, path: str, token: bool = False) -> tuple[int, dict]:
        headers = {"Authorization": f"token {self.admin_token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def stats(self) -> dict:
        return self.get_json("/api/stats")[1]

    def metric(self, name: str) -> float:
        """One sample's value from /metrics (with the admin token); 0 if absent."""
        request = urllib.request.Request(self.url + "/metrics", headers={"Authorization": f"token {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def containers(self) -> list[dict]:
        return self.get_json("/api/admin/containers", token=True)[1]["containers"]

    @property
    def admin_token(self) -> str:
        return (self.dir / "data" / "admin_token").read_text().strip()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 120, what: str = "condition",
                   every: float = 0.05) -> float:
        """Poll ``predicate`` until true; return the seconds it took. Raises TimeoutError naming ``what``."""
        t0 = time.monotonic()
        while not predicate():
            if self.proc is not None and self.proc.poll() is not None and what != "nbpool gone":
                raise RuntimeError(f"nbpool exited while waiting for {what}:\n{self.logs()[-3000:]}")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{what} not reached within {timeout:.0f}s:\n{self.logs()[-3000:]}")
            time.sleep(every)
        return time.monotonic() - t0


def spawn(session, url: str, path: str = "/spawn") -> str:
    """``path`` (a workshop's /w/<name>/spawn, say) through the waiting line as the waiting page's script goes
    (``/api/queue/<ticket>``), with ``session`` (requests'); the container's URL."""
    location = path
    while "/user/" not in location:
        if "/spawn/wait/" in location:
            ticket = location.rsplit("/", 1)[1]
            if not session.get(f"{url}/api/queue/{ticket}?wait=20", timeout=60).json().get("ready"):
                continue
        answer = session.get(location if location.startswith("http") else url + location, allow_redirects=False,
                             timeout=120)
        location = answer.headers.get("Location", "")
        if not location:
            raise RuntimeError(f"/spawn answered {answer.status_code} without a redirect")
    return location if location.startswith("http") else url + location
