"""The Docker implementation of the container backend.

The docker SDK is blocking: every call goes through one injected thread pool
as an explicit callable, under a deadline (``docker_timeout``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from traitlets import Bool, Dict, Float, Instance, Integer, List, TraitError, Unicode, default, validate

from ..traits import MemorySize, require
from .base import (
    POOL_LABEL,
    WORKSHOP_LABEL,
    BackendError,
    ContainerBackend,
    ContainerEvent,
    ContainerInfo,
    EngineUnavailable,
    NodeInfo,
    Usage,
)
from .docker_containers import ContainerSpec
from .docker_disk import EngineQuota, backing_free
from .docker_events import EventWatch
from .docker_files import HOME, home_archive
from .docker_network import ensure_network
from .firewall import ContainerFirewall

# How the SDK says the engine did not answer at all (its socket gone, refused, or reset).
UNREACHABLE = (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)
LIVE_RESTORE_HINT = ('add "live-restore": true to /etc/docker/daemon.json and restart the engine once, so '
                     'later engine restarts keep attendees\' containers running')

T = TypeVar("T")


class DockerBackend(ContainerBackend):
    """Runs each pool container with the docker SDK, with limits and isolation."""

    image = Unicode("nbpool/notebook:latest", config=True,
                    help="The notebook image each container runs (built by 'make images').")
    command = List(Unicode(), [], config=True,
                   help="Command to run instead of the image's own, with placeholders {base_url}, {port} and "
                        "{token}, as tmpnb's --command had, e.g. ['start-notebook', '--ServerApp.base_url="
                        "{base_url}']. Empty: the image's command, which reads NBPOOL_BASE_URL, JUPYTER_PORT "
                        "and JUPYTER_TOKEN from the environment (the token then stays out of process lists).")
    mem_limit = MemorySize("1G", config=True,
                           help="Memory limit per container (e.g. 512M, 2G); no swap beyond it. An idle "
                                "container uses about 90 MiB (50 MiB without prestart_kernel), one with a kernel "
                                "of each kind about 300 MiB.")
    cpu_limit = Float(1.0, config=True,
                      help="CPU limit per container, in cores (0.5 = half a core). 0 means no limit.")
    start_cpu_shares = Integer(1024, config=True,
                               help="CPU weight (cgroup cpu.shares; Docker's default is 1024) of a container while "
                                    "its server starts; raised to 1024 once it is ready. A low value (e.g. 64) lets "
                                    "attendees already at work keep quick cells during a burst, at the price of "
                                    "slower starts for those still waiting (measured: docs/measured/burst.md). "
                                    "1024: starts "
                                    "compete like everyone else, which gets the whole burst in soonest.")
    pids_limit = Integer(512, config=True,
                         help="Most processes/threads per container (stops fork bombs). 0 means no limit.")
    disk_limit = MemorySize("2G", config=True,
                            help="Most disk space one container's own files may take (its writable layer: "
                                 "notebooks, pip installs, /tmp), e.g. 2G. Where the engine has a per-container "
                                 "quota (its btrfs driver, as 'NBPOOL_ENGINE_QUOTA=1 make engine' sets up, or "
                                 "overlay2 on xfs with pquota) writes past it fail ('Disk quota exceeded'); "
                                 "elsewhere the pool "
                                 "measures every Pool.disk_check_interval and ends a container over it, telling "
                                 "its attendee why. 0 means no limit.")
    log_max_size = MemorySize("10M", config=True,
                              help="Largest log Docker keeps per container (json-file, in two files of half this "
                                   "size), so a chatty or hostile attendee cannot fill the host's disk with output. "
                                   "0 means Docker's default (no limit).")
    prestart_kernel = Bool(True, config=True,
                           help="Keep one Python kernel running in every container, started in the background "
                                "once its server answers, and hand it to the attendee's first Python notebook: "
                                "its first cell answers in about 0.09 s instead of 0.7 s (benchmarks/first_cell.py). "
                                "Costs each container about 37 MiB of memory from its start, and 0.7 CPU-seconds "
                                "once, soon after it answers; a container whose attendee opens no Python notebook "
                                "keeps it unused. Other kernels, and later Python notebooks, start as usual. Passed "
                                "as NBPOOL_PRESTART_KERNEL=1/0, which the nbpool image reads; other images ignore it.")
    collaboration = Bool(True, config=True,
                         help="The notebook lives on the server: Jupyter's real-time collaboration and server-side "
                              "execution, so a cell's output reaches the notebook with no browser connected (a "
                              "reload or a dropped network during a run loses nothing), a helper sees the "
                              "attendee's live document, and attendees follow the instructor within a second. "
                              "Costs each container a few MiB (benchmarks/server_side_cost.py). Passed as "
                              "NBPOOL_COLLABORATION=1/0, which the nbpool image reads; other images ignore it "
                              "(turn it off for them: plain Jupyter).")
    environment = Dict(value_trait=Unicode(), config=True,
                       help="Extra environment variables for every container (values are strings).")
    volumes = Dict(value_trait=Unicode(), config=True,
                   help="Read-only data to mount in every container: {host_path: container_path}.")
    network_name = Unicode("nbpool", config=True,
                           help="Bridge network the containers join; created when missing, with "
                                "inter-container traffic disabled so attendees cannot reach each other. "
                                "Read at start only.")
    user = Unicode("1000:1000", config=True, help="uid:gid the notebook server runs as (never root).")
    init_process = Bool(False, config=True,
                        help="Run Docker's init as PID 1 in each container. The nbpool image has tini as "
                             "PID 1 already; turn this on for images without an init, so zombies are reaped.")
    endpoint_mode = Unicode("container-ip", config=True,
                            help="How the proxy reaches a container: 'container-ip' (its address on the bridge "
                                 "network: nothing is published, and attendees' connections survive an engine "
                                 "restart with live restore; needs nbpool on the engine's own machine) or "
                                 "'host-port' (its port published on 127.0.0.1 only, through Docker's userland "
                                 "proxy, which stops while the engine restarts).")
    docker_timeout = Float(60.0, config=True,
                           help="Seconds any single Docker call may take before it counts as failed.")
    extra_create_kwargs = Dict(config=True,
                               help="Further keyword arguments for docker's containers.create (advanced).")
    executor = Instance(ThreadPoolExecutor, help="The thread pool every blocking Docker call runs in.")
    firewall = Instance(ContainerFirewall, help="What containers on network_name may connect to (host rules).")

    @default("firewall")
    def _default_firewall(self) -> ContainerFirewall:
        return ContainerFirewall(parent=self, log=self.log)

    @default("executor")
    def _default_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker")

    @validate("cpu_limit")
    def _validate_cpu(self, proposal):
        return require(proposal, proposal.value >= 0, "0 (no limit) or a positive number of cores")

    @validate("start_cpu_shares")
    def _validate_shares(self, proposal):
        return require(proposal, 2 <= proposal.value <= 262144, "between 2 and 262144 (Docker's default is 1024)")

    @validate("pids_limit")
    def _validate_pids(self, proposal):
        return require(proposal, proposal.value == 0 or proposal.value >= 32, "0 (no limit) or at least 32")

    @validate("endpoint_mode")
    def _validate_endpoint_mode(self, proposal):
        return require(proposal, proposal.value in ("host-port", "container-ip"), "'host-port' or 'container-ip'")

    @validate("user")
    def _validate_user(self, proposal):
        # Numbers only: a name (or '00', '+0', '0x0') could still be root inside the image.
        parts = proposal.value.split(":")
        ok = 1 <= len(parts) <= 2 and all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts)
        return require(proposal, ok, "a numeric uid:gid (or uid) other than 0, e.g. '1000:1000'")

    @validate("command")
    def _validate_command(self, proposal):
        for part in proposal.value:
            try:
                part.format(base_url="/", port=1, token="t")
            except (KeyError, IndexError, ValueError) as exc:
                raise TraitError(f"DockerBackend.command: {part!r} has an unknown placeholder {exc}; "
                                 "use {base_url}, {port} or {token}") from None
        return proposal.value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: docker.DockerClient | None = None
        self._network_ready = asyncio.Lock()
        self._network_checked = False
        self.quota = EngineQuota(self.log)  # what enforces disk_limit on the engine, learnt at setup
        self.spec = ContainerSpec(self, lambda: self.quota)  # what goes into a container
        self.bridge = ""  # the Linux bridge of network_name, once known
        self._engine_info: dict = {}  # `docker info`, read once at setup
        self.origin: DockerBackend | None = None  # the engine a workshop's variant shares (see variant)

    def variant(self, config) -> DockerBackend:
        """The same engine with one workshop's settings (image, limits): it shares this one's client,
        thread pool, network and firewall, and only makes containers differently."""
        twin = type(self)(config=config, log=self.log, executor=self.executor, firewall=self.firewall)
        twin.origin = self
        twin.quota = self.quota  # one engine: one quota
        twin._share(self)
        return twin

    def _share(self, origin: DockerBackend) -> None:
        """What a variant takes over from ``origin`` by reference (engines with more state add theirs)."""

    # --- the executor boundary -------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking SDK call in the executor, under ``docker_timeout``."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs)), self.docker_timeout)
        except TimeoutError:
            raise BackendError(f"docker {what} took longer than {self.docker_timeout:.0f}s") from None
        except UNREACHABLE as exc:
            raise EngineUnavailable(f"docker {what}: the engine does not answer ({exc})") from exc
        except docker.errors.DockerException as exc:
            if isinstance(exc.__context__, UNREACHABLE):
                raise EngineUnavailable(f"docker {what}: the engine does not answer ({exc})") from exc
            raise BackendError(f"docker {what} failed: {exc}") from exc

    def _docker(self) -> docker.DockerClient:
        if self.origin is not None:
            return self.origin._docker()
        # Created in the executor on first use: from_env may talk to the engine.
        if self._client is None:
            self._client = docker.from_env(timeout=int(self.docker_timeout))
        return self._client

    # --- setup --------------------------------------------------------------------------------

    def _ensure_network_sync(self) -> str:
        return ensure_network(self._docker(), self.network_name, self.log)

    async def setup(self) -> None:
        await self.ensure_network()
        if self.origin is not None:
            return  # the origin said what there is to say about the engine
        info = self._engine_info
        swarm = (info.get("Swarm") or {}).get("LocalNodeState") == "active"
        if info.get("LiveRestoreEnabled"):
            self.log.info("the engine runs with live restore: its restarts keep containers running")
        elif swarm:
            self.log.warning("this engine is a swarm node, which cannot use live restore: drain the node before "
                             "restarting its engine, or its attendees' containers stop")
        else:
            self.log.warning("the engine runs without live restore: restarting it stops every attendee's "
                             "container. To fix, %s.", LIVE_RESTORE_HINT)

    async def watch(self, pool: str, on_event: Callable[[ContainerEvent], None],
                    on_engine: Callable[[bool], None]) -> None:
        await EventWatch(self._docker, pool, self.log).run(on_event, on_engine)

    async def ping(self) -> None:
        await self._call("ping", lambda: self._docker().ping())

    async def free_space(self) -> int | None:
        root = self._engine_info.get("DockerRootDir")
        if not root or not self._docker().api.base_url.startswith("http+docker://"):
            return None  # a remote engine: its disk is not this machine's
        loop = asyncio.get_running_loop()
        try:
            st = await loop.run_in_executor(self.executor, os.statvfs, root)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        host = await loop.run_in_executor(self.executor, backing_free, root)  # a sparse file's own disk
        return free if host is None else min(free, host)

    async def nodes(self) -> list[NodeInfo]:
        info = self._engine_info
        if not info:
            return []
        return [NodeInfo(name=info.get("Name", "engine"), address="local", state="ready", availability="active",
                         role="engine", memory=int(info.get("MemTotal") or 0),
                         containers=int(info.get("ContainersRunning") or 0), cores=float(info.get("NCPU") or 0))]

    async def ensure_network(self) -> None:
        """The network exists and its firewall rules are in place (they do not survive a host reboot)."""
        if self.origin is not None:
            await self.origin.ensure_network()
            self.bridge, self._engine_info = self.origin.bridge, self.origin._engine_info
            return
        async with self._network_ready:
            if not self._network_checked:
                self.bridge = await self._call("network create", self._ensure_network_sync)
                await self._call("firewall", self.firewall.install, self.bridge)
                self._engine_info = await self._call("info", lambda: self._docker().info())
                self.quota.learn(self._engine_info, self._docker().api.base_url.startswith("http+docker://"),
                                 self.disk_limit)
                self._network_checked = True

    # --- the backend contract ------------------------------------------------------------------

    @property
    def disk_quota(self) -> bool:
        """Whether the engine itself stops a container's writes at disk_limit now (no watchdog needed)."""
        return self.quota.enforced()

    async def _quota_extra(self) -> int:
        """Bytes a container's quota allows beyond disk_limit: on btrfs, its image's files (see docker_disk)."""
        if not self.quota.counts_image(self.disk_limit):
            return 0
        found = await self._call(f"image inspect {self.image}", lambda: self._docker().api.inspect_image(self.image))
        return self.quota.extra(int(found.get("Size") or 0))

    def _start_sync(self, kwargs: dict) -> dict:
        container = self._docker().containers.create(**kwargs)
        try:
            container.start()
        except docker.errors.DockerException:
            # Created but not started (a bad network, a port clash): do not leave it behind.
            container.remove(force=True)
            raise
        container.reload()  # the published port is known only once it runs
        return container.attrs

    async def start(self, pool: str, cid: str, *, name: str, token: str, base_url: str,
                    labels: dict[str, str]) -> ContainerInfo:
        await self.ensure_network()
        kwargs = self.spec.create_kwargs(pool, cid, name, token, base_url, labels, await self._quota_extra())
        try:
            info = self.spec.info(await self._call(f"run {self.image}", self._start_sync, kwargs))
        except BackendError as exc:
            if "network" in str(exc) and "not found" in str(exc):
                self._network_checked = False  # removed behind our back: create it again next time
            if "storage_opt" in kwargs and self.quota.refused(str(exc), self.image):
                return await self.start(pool, cid, name=name, token=token, base_url=base_url, labels=labels)
            raise
        if info.endpoint is None:
            # Most often it exited at once: keep its last words before removing it.
            output = await self.logs(info.engine_id, tail=30)
            await self.remove(info.engine_id)
            raise BackendError(f"container {info.name} is {info.state} without a reachable endpoint; "
                               f"its last output:\n{output}")
        return info

    def _sizes_sync(self, pool: str) -> dict[str, int]:
        rows = self._docker().api.containers(size=True, filters={"label": f"{POOL_LABEL}={pool}"})
        return {row["Id"]: int(row.get("SizeRw") or 0) for row in rows}

    async def disk_usage(self, pool: str) -> dict[str, int]:
        return await self._call("measure sizes", self._sizes_sync, pool)

    def _usage_sync(self, engine_ids: list[str]) -> dict[str, Usage]:
        out = {}
        for engine_id in engine_ids:
            try:
                # one_shot: no second sample a second later (CPU is reported as a running total anyway).
                stats = self._docker().api.stats(engine_id, stream=False, one_shot=True)
            except (docker.errors.DockerException, ValueError):  # gone, or going: its stats answer is empty
                continue
            memory = stats.get("memory_stats") or {}
            used = int(memory.get("usage") or 0)
            if not used:
                continue  # not running (any more)
            detail = memory.get("stats") or {}
            # As `docker stats` counts it: without the inactive page cache (cgroup v1 and v2 names).
            working = used - int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
            cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
            out[engine_id] = Usage(memory=working, memory_peak=max(working, int(memory.get("max_usage") or 0)),
                                   cpu_seconds=round(cpu / 1e9, 3))
        return out

    def _pid_sync(self, engine_id: str) -> int | None:
        try:
            state = self._docker().api.inspect_container(engine_id).get("State") or {}
        except docker.errors.NotFound:
            return None
        return int(state.get("Pid") or 0) or None

    async def host_pid(self, engine_id: str) -> int | None:
        if not self.quota.local:
            return None  # a remote engine's pids are another machine's
        return await self._call("inspect", self._pid_sync, engine_id)

    def _notify_sync(self, engine_id: str, text: str) -> bool:
        # As the container's own user (the attendee's): the file is theirs, and so is anything it could
        # touch. Written aside, then moved, so the server never reads half of it.
        script = ('umask 077; printf "%s" "$1" > /tmp/nbpool-notice.json.part '
                  '&& mv -f /tmp/nbpool-notice.json.part /tmp/nbpool-notice.json')
        try:
            code, _ = self._docker().containers.get(engine_id).exec_run(["sh", "-c", script, "nbpool", text])
        except docker.errors.DockerException:
            return False
        return code == 0

    async def notify(self, engine_id: str, notice: dict) -> bool:
        return await self._call("notify", self._notify_sync, engine_id, json.dumps(notice))

    def _put_sync(self, engine_id: str, folder: str, files: dict[str, bytes]) -> bool:
        archive = home_archive(folder, files, self.user)
        return bool(self._docker().api.put_archive(engine_id, HOME, archive))

    async def put_files(self, engine_id: str, folder: str, files: dict[str, bytes]) -> bool:
        # One tar through the engine: no base64, no JSON, no notebook-server work (a 20 MB repository into
        # 40 containers costs the contents API most of a minute of CPU on two cores).
        return await self._call("copy files", self._put_sync, engine_id, folder, files) if files else True

    async def usage(self, engine_ids: list[str]) -> dict[str, Usage]:
        return await self._call("measure usage", self._usage_sync, engine_ids) if engine_ids else {}

    def _list_sync(self, pool: str) -> list[dict]:
        return self._docker().api.containers(all=True, filters={"label": f"{POOL_LABEL}={pool}"})

    async def list(self, pool: str) -> list[ContainerInfo]:
        return [self.spec.info(attrs) for attrs in await self._call("list", self._list_sync, pool)]

    async def workshop_pools(self) -> dict[str, str]:
        found = await self._call("list", lambda: self._docker().api.containers(
            all=True, filters={"label": WORKSHOP_LABEL}))
        return {c["Labels"][POOL_LABEL]: c["Labels"][WORKSHOP_LABEL] for c in found
                if POOL_LABEL in (c.get("Labels") or {})}

    def _logs_sync(self, engine_id: str, tail: int) -> str:
        try:
            return self._docker().api.logs(engine_id, tail=tail).decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    async def logs(self, engine_id: str, tail: int = 50) -> str:
        try:
            return await self._call("logs", self._logs_sync, engine_id, tail)
        except BackendError as exc:
            return f"(logs unavailable: {exc})"

    async def rename(self, engine_id: str, name: str) -> None:
        await self._call("rename", lambda: self._docker().api.rename(engine_id, name))

    async def promote(self, engine_id: str) -> None:
        if self.start_cpu_shares != 1024:
            await self._call("update", lambda: self._docker().api.update_container(engine_id, cpu_shares=1024))

    def _remove_sync(self, engine_id: str) -> None:
        try:
            self._docker().api.remove_container(engine_id, force=True, v=True)
        except docker.errors.NotFound:
            pass  # already gone: done
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc):
                return  # someone else is removing it: done
            raise

    async def remove(self, engine_id: str) -> None:
        await self._call("remove", self._remove_sync, engine_id)

    def _retire_firewall_sync(self) -> bool:
        net = self._docker().networks.get(self.network_name)
        if net.attrs.get("Containers"):
            return False  # assigned containers stay after a stop: so do the rules that contain them
        self.firewall.remove(self.bridge)
        return True

    async def has_image(self, image: str) -> bool | None:
        """Whether the engine has ``image`` (None: it cannot tell)."""
        def look() -> bool:
            try:
                self._docker().images.get(image)
                return True
            except docker.errors.ImageNotFound:
                return False
        return await self._call("image inspect", look)

    async def retire_firewall(self) -> None:
        """Remove the firewall rules when no container is left on the network; else keep them."""
        if not self.bridge:
            return
        try:
            if await self._call("firewall", self._retire_firewall_sync):
                self.log.info("no containers left on %s: its firewall rules are removed", self.network_name)
        except BackendError as exc:
            self.log.warning("could not remove the firewall rules of %s: %s", self.network_name, exc)

    async def reinstall_firewall(self) -> None:
        """Apply changed ContainerFirewall settings (SIGHUP)."""
        if self.bridge:
            await self._call("firewall", self.firewall.install, self.bridge)

    # --- the service's asks (see ContainerBackend) -------------------------------------------------

    def reload_parts(self) -> list:
        return [self.firewall]

    def guard_with(self, *, egress_ports, egress_rate: str, agent_token: str) -> bool:
        if self.firewall.ports == egress_ports:
            return False
        self.firewall.ports = egress_ports
        return True

    async def rules_changed(self) -> None:
        await self.reinstall_firewall()

    async def leave(self) -> None:
        await self.retire_firewall()
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._call("close", client.close)
