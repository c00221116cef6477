"""Helpers for tests that use the real Docker engine and the real images."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import docker
import docker.errors

NOTEBOOK_IMAGE = "nbpool/notebook:latest"
BASE_IMAGE = "nbpool/base:bookworm"
# Every container a test starts itself carries org.nbpool.pool=TEST_POOL, so cleanup finds them all. `make test`
# runs two pytest-xdist workers, and a session's cleanup removes its whole pool and network: one each per worker.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEST_POOL = "nbpool-tests" + (f"-{WORKER}" if WORKER else "")


def engine_or_none() -> tuple[docker.DockerClient | None, str]:
    """The engine's client, or None with the reason it cannot be reached."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no engine"
        return None, f"{type(exc).__name__}: {exc}"
    return client, ""


def labelled(client: docker.DockerClient, label: str) -> list[dict]:
    """Containers carrying ``label`` ("key=value"), as the engine lists them: not inspected one by one, so one
    removed meanwhile (the pool removing it while a test waits for that) does not fail the listing."""
    return client.api.containers(all=True, filters={"label": label})


def remove_test_containers(client: docker.DockerClient) -> None:
    """The session's end: its pool's containers, then the network the services made (if nothing is on it)."""
    remove_pool_containers(client, TEST_POOL)
    for network in client.networks.list(names=[TEST_POOL]):
        try:
            network.reload()
            if not network.containers:
                network.remove()
        except docker.errors.NotFound:
            pass  # already gone
        except docker.errors.APIError as exc:
            print(f"network {TEST_POOL} left in place: {exc}")
    remove_orphan_firewall_chains()


def remove_orphan_firewall_chains() -> None:
    """nbpool's firewall chains for bridges that are gone (the networks tests made and removed): the service
    keeps its rules while its network lives, so a test run removes what its own networks left."""
    import shutil
    import subprocess
    from pathlib import Path

    from spawner.engines.firewall import FORWARD_PREFIX, INPUT_PREFIX, ContainerFirewall

    if shutil.which("iptables") is None:
        return
    listing = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True).stdout.splitlines()
    bridges = {line.split()[1][len(prefix):] for line in listing for prefix in (FORWARD_PREFIX, INPUT_PREFIX)
               if line.startswith(f"-N {prefix}")}
    firewall = ContainerFirewall()
    for bridge in sorted(bridges):
        if not Path("/sys/class/net", bridge).exists():
            firewall.remove(bridge)


def remove_pool_containers(client: docker.DockerClient, pool_name: str, show_logs: bool = False) -> list[str]:
    """Force-remove every container of ``pool_name``; return their names (printing logs first if asked)."""
    leftovers = client.containers.list(all=True, filters={"label": f"org.nbpool.pool={pool_name}"})
    for container in leftovers:
        try:
            if show_logs:
                print(f"--- logs of {container.name} ---\n{container.logs(tail=60).decode(errors='replace')}")
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # already gone
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a removal already in progress
                raise
    return [c.name for c in leftovers]


def remove_service_containers(client: docker.DockerClient, pool_name: str, show_logs: bool = False) -> list[str]:
    """Force-remove the containers of a service's pool and of its named workshops' pools (<pool_name>-<name>).

    With ``show_logs``, each container's last lines (its Jupyter server's log) are printed first.
    """
    found = client.api.containers(all=True, filters={"label": "org.nbpool.pool"})  # (no inspect: may be going)
    pools = {(c.get("Labels") or {}).get("org.nbpool.pool", "") for c in found}
    return [name for pool in sorted(pools) if pool == pool_name or pool.startswith(pool_name + "-")
            for name in remove_pool_containers(client, pool, show_logs)]


HOSTILE_IMAGE = "nbpool/hostile-test:latest"


def build_hostile_image(client: docker.DockerClient, context: str) -> str:
    """The workshop image with its server taken over by its attendee (tests/resources/hostile); its tag."""
    client.images.build(path=context, tag=HOSTILE_IMAGE, buildargs={"BASE_IMAGE": NOTEBOOK_IMAGE}, rm=True,
                        forcerm=True)
    return HOSTILE_IMAGE


def wait_for_http(url: str, headers: dict[str, str], deadline_s: float) -> int:
    """Poll ``url`` until it answers below 500; return the status, raise on deadline."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return exc.code
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {deadline_s:.0f}s (last: {last})")


@dataclass
class NotebookServer:
    container: docker.models.containers.Container
    base_url: str  # e.g. /user/abc/
    token: str
    port: int

    @property
    def url(self) -> str:
        """Root URL of the server as reached from the host."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def logs(self) -> str:
        try:
            return self.container.logs().decode(errors="replace")
        except docker.errors.NotFound:
            return "(container gone)"

    def exec(self, *cmd: str, user: str = "1000") -> tuple[int, str]:
        code, out = self.container.exec_run(list(cmd), user=user, demux=False)
        return code, out.decode(errors="replace")

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass


def start_notebook_container(client: docker.DockerClient, image: str, *, base_url: str, token: str,
                             ready_timeout: float = 60.0, environment: dict[str, str] | None = None,
                             command: list[str] | None = None) -> NotebookServer:
    """Start a workshop container the way the orchestrator does and wait until it is ready.

    ``environment`` adds to (or overrides) what the orchestrator sets; ``command`` replaces the image's.
    """
    container = client.containers.run(
        image,
        command,
        detach=True,
        environment={"NBPOOL_BASE_URL": base_url, "JUPYTER_TOKEN": token, **(environment or {})},
        ports={"8888/tcp": ("127.0.0.1", None)},
        labels={"org.nbpool.pool": TEST_POOL},
        mem_limit="1g",
    )
    container.reload()
    port = int(container.ports["8888/tcp"][0]["HostPort"])
    server = NotebookServer(container, base_url, token, port)
    try:
        wait_for_http(server.url + "api/status", server.auth, ready_timeout)
    except TimeoutError:
        logs = server.logs()
        server.remove()
        raise TimeoutError(f"notebook container never became ready; its logs:\n{logs}") from None
    return server
