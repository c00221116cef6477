"""How the Docker backend makes a container and reads one back: its create arguments (limits, isolation,
environment, command, logs, volumes), its endpoint and its info.

The Swarm backend reuses the environment, command and log parts for its service specs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .base import GONE, ID_LABEL, POOL_LABEL, RUNNING, ContainerInfo, Endpoint
from .docker_disk import EngineQuota

NOTEBOOK_PORT = 8888


class ContainerSettings(Protocol):
    """What a container spec reads of the backend's settings (DockerBackend's, live)."""

    image: str
    environment: dict
    prestart_kernel: bool
    collaboration: bool
    command: list
    log_max_size: int
    user: str
    network_name: str
    init_process: bool
    endpoint_mode: str
    mem_limit: int
    cpu_limit: float
    pids_limit: int
    start_cpu_shares: int
    disk_limit: int
    volumes: dict
    extra_create_kwargs: dict


class ContainerSpec:
    """What goes into a container, and what an engine's answer about one says (see DockerBackend's settings)."""

    def __init__(self, settings: ContainerSettings, quota: Callable[[], EngineQuota]):
        self.settings = settings
        self.quota = quota  # () -> the engine's quota (shared by a backend and its workshops' variants)

    def environment(self, token: str, base_url: str) -> dict[str, str]:
        """The notebook server's environment: the operator's, and where and with which token it serves."""
        return {**self.settings.environment, "NBPOOL_BASE_URL": base_url, "JUPYTER_PORT": str(NOTEBOOK_PORT),
                "JUPYTER_TOKEN": token, "NBPOOL_PRESTART_KERNEL": "1" if self.settings.prestart_kernel else "0",
                "NBPOOL_COLLABORATION": "1" if self.settings.collaboration else "0"}

    def command(self, token: str, base_url: str) -> list[str]:
        """``command`` with its placeholders filled ([]: the image's own)."""
        return [part.format(base_url=base_url, port=NOTEBOOK_PORT, token=token) for part in self.settings.command]

    def log_half(self) -> int:
        """Bytes of each of the two log files log_max_size allows."""
        return max(self.settings.log_max_size // 2, 1024)

    def create_kwargs(self, pool: str, cid: str, name: str, token: str, base_url: str,
                       labels: dict[str, str], quota_extra: int = 0) -> dict:
        """Keyword arguments for the SDK's containers.create (``quota_extra``: bytes the engine's disk quota
        counts beyond the container's own files, see docker_disk)."""
        settings = self.settings
        env = self.environment(token, base_url)
        kwargs: dict[str, Any] = dict(
            image=settings.image,
            name=name,
            labels={**labels, POOL_LABEL: pool, ID_LABEL: cid},
            environment=env,
            user=settings.user,
            network=settings.network_name,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=settings.init_process,
        )
        if settings.endpoint_mode == "host-port":
            kwargs["ports"] = {f"{NOTEBOOK_PORT}/tcp": ("127.0.0.1", None)}  # loopback only: never other machines
        if settings.command:
            kwargs["command"] = self.command(token, base_url)
        if settings.mem_limit:
            kwargs["mem_limit"] = settings.mem_limit
            kwargs["memswap_limit"] = settings.mem_limit
        if settings.cpu_limit:
            kwargs["nano_cpus"] = int(settings.cpu_limit * 1e9)
        if settings.pids_limit:
            kwargs["pids_limit"] = settings.pids_limit
        if settings.start_cpu_shares != 1024:
            kwargs["cpu_shares"] = settings.start_cpu_shares
        if settings.log_max_size:
            kwargs["log_config"] = {"type": "json-file", "config": {"max-size": str(self.log_half()), "max-file": "2"}}
        if settings.disk_limit and self.quota().kind:  # even while btrfs lost count: for when it has it again
            kwargs["storage_opt"] = {"size": str(settings.disk_limit + quota_extra)}
        if settings.volumes:
            kwargs["volumes"] = {host: {"bind": inside, "mode": "ro"} for host, inside in settings.volumes.items()}
        kwargs.update(settings.extra_create_kwargs)
        return kwargs

    def endpoint(self, attrs: dict) -> Endpoint | None:
        settings = attrs.get("NetworkSettings") or {}
        if self.settings.endpoint_mode == "container-ip":
            net = (settings.get("Networks") or {}).get(self.settings.network_name) or {}
            return Endpoint(net["IPAddress"], NOTEBOOK_PORT) if net.get("IPAddress") else None
        # inspect form: {"8888/tcp": [{"HostIp": ..., "HostPort": ...}]}; list form: [{"PublicPort": ...}]
        ports = settings.get("Ports")
        if isinstance(ports, dict):
            for binding in ports.get(f"{NOTEBOOK_PORT}/tcp") or []:
                return Endpoint("127.0.0.1", int(binding["HostPort"]))
        for binding in attrs.get("Ports") or []:
            if binding.get("PrivatePort") == NOTEBOOK_PORT and binding.get("PublicPort"):
                return Endpoint("127.0.0.1", int(binding["PublicPort"]))
        return None

    def info(self, attrs: dict) -> ContainerInfo:
        labels = (attrs.get("Config") or {}).get("Labels") or attrs.get("Labels") or {}
        state = attrs.get("State")
        if isinstance(state, dict):  # inspect gives a dict, list gives a word
            state = state.get("Status", "")
        name = attrs.get("Name") or (attrs.get("Names") or [""])[0]
        return ContainerInfo(
            engine_id=attrs["Id"], name=name.lstrip("/"), cid=labels.get(ID_LABEL, ""),
            state=RUNNING if state == "running" else (GONE if state in ("exited", "dead", "removing") else state),
            labels=dict(labels), endpoint=self.endpoint(attrs),
        )
