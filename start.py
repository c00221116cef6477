"""nbpool: temporary workshop notebooks from a warm pool of Docker containers.

    python start.py                       # reads config/nbpool_config.py, serves on :8000
    python start.py --config my_config.py --warm 10 --max-containers 60
    python start.py --generate-config     # writes a fully commented config file
    python start.py --help-all            # every setting

One process, one event loop: the proxy on the public port, the pool, and the
web application on an internal unix socket behind the proxy's default route.
SIGTERM/SIGINT stop it (assigned containers stay for the next start);
SIGHUP re-reads the config file and applies pool size, limits, culling and
image changes live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from traitlets import Any, Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate
from traitlets.config import Application, Config

from proxy.addresses import network_of
from proxy.server import Proxy, install_uvloop
from spawner import __version__, configref
from spawner import reload as settings
from spawner.classroom.room import ClassView
from spawner.content import Allowed, GitCache, Material, SourceError, parse_sources
from spawner.engines.base import ContainerBackend
from spawner.engines.docker import DockerBackend
from spawner.engines.firewall import ContainerFirewall
from spawner.engines.swarm import SwarmBackend
from spawner.guard.bans import Bans
from spawner.guard.guard import AbuseGuard
from spawner.keep import KeptStore, WorkKeeper
from spawner.pool import Pool
from spawner.pool.ended import EndedSessions
from spawner.pool.kernel_activity import KernelActivity
from spawner.record import WorkshopRecord
from spawner.secret import ServerSecret
from spawner.traits import require
from spawner.web.app import MAX_BODY, WebApp
from spawner.web.application import make_application
from spawner.web.workshops_api import PUSH_BODY
from spawner.workshops import WorkshopError, Workshops, parse_workshops, service_zone
from spawner.workshops.factory import PoolFactory

HERE = Path(__file__).resolve().parent
BACKENDS = {"docker": DockerBackend, "swarm": SwarmBackend}


class NbpoolApp(Application):
    name = "nbpool"
    version = __version__
    description = __doc__
    classes = [Pool, DockerBackend, SwarmBackend, ContainerFirewall, Proxy, WebApp, WorkKeeper, WorkshopRecord,
               AbuseGuard, ClassView]

    backend = Enum(list(BACKENDS), "docker", config=True,
                   help="The container engine: 'docker' (one machine, the default) or 'swarm' (a Docker Swarm "
                        "of many machines; the DockerBackend settings apply there too, SwarmBackend adds its own). "
                        "Read at start only.")

    config_file = Unicode(config=True,
                          help="The operator's config file (Python, traitlets style: c.Pool.warm = 10). "
                               "Default: config/nbpool_config.py in the nbpool checkout.")
    data_dir = Unicode(config=True,
                       help="Where nbpool keeps its state: the server secret (signs cookies, derives notebook "
                            "tokens), the admin token, the web app's internal socket, attendees' kept work "
                            "(kept/) and the workshop's record (record/). Default: data/ in the nbpool checkout.")
    workshops = Dict(config=True,
                     help="Several workshops on one service, each with its own links (/w/<name>/, "
                          "/w/<name>/spawn[/<path>]), pool, image and limits: {name: {setting: value}}. A name is "
                          "1-24 lower-case letters, digits and '-'. Settings: display_name, landing_path, key "
                          "(as WebApp's workshop_name, landing_path, workshop_key), schedule (a list of "
                          "{'start': '2026-12-03 09:00', 'end': '2026-12-03 12:30', 'warm': 40}: spares raised "
                          "ahead so they are ready at the start), push_folder (the folder the status page's push "
                          "button copies into every container), and the Pool settings warm, max_containers, "
                          "cull_idle, cull_max_age, warmup_path and engine settings image, "
                          "mem_limit, cpu_limit, pids_limit, disk_limit, environment, volumes, prestart_kernel, "
                          "collaboration, and helper_key and instructor_key (the class view's and the instructor's, "
                          "for this workshop only; unset ones: the service's own), and content (git repositories "
                          "poured into its containers, as NbpoolApp.content). Empty: one workshop at / (as "
                          "without this setting). "
                          "SIGHUP adds, changes and removes workshops live; see docs/workshop/several-workshops.md.")
    total_containers = Integer(0, config=True,
                               help="Most containers of all workshops together (0: no cap beyond each workshop's "
                                    "max_containers). Each workshop is sure of its share, total x its "
                                    "max_containers / the sum of all workshops' max_containers; places beyond the "
                                    "shares go to whoever asks first.")
    time_zone = Unicode("", config=True,
                        help="Time zone of the workshops' schedule times without an offset, e.g. 'Europe/Berlin' "
                             "(empty: this machine's). Times with an offset (2026-12-03T09:00+01:00) need none.")
    content = Any(None, allow_none=True, config=True,
                  help="Workshop material from git for the workshop at / (each named workshop has its own "
                       "'content' setting): {'repo': URL, 'ref': branch, tag or commit, 'path': folder in the home "
                       "directory}, or a list of them. URL: https://, http://, ssh://, git://, user@host:path or "
                       "a local path; ref: default the remote's default branch; path: default the repository's "
                       "name ('.': the home folder). Fetched once on this machine (never inside a container) "
                       "and poured into every container before it is handed out; a new commit reaches running "
                       "containers without overwriting what an attendee changed. SIGHUP applies a change.")
    allowed_content = List(Unicode(), config=True,
                           help="Repositories that links may make nbpool fetch, besides the configured 'content': "
                                "URL patterns such as 'https://github.com/our-org/*' (matched without credentials, "
                                "a trailing '/' or '.git'). An nbgitpuller link (/git-pull?repo=…) or a Binder spec "
                                "(/v2/gh/<org>/<repo>/<ref>) naming any other repository gets a 403 page and "
                                "fetches nothing. SIGHUP applies a change.")
    content_interval = Float(300.0, config=True,
                             help="Seconds between two fetches of every content source (0: only at start and on "
                                  "POST /api/admin/workshops/<name>/pull or /api/admin/content/pull). Read at start.")
    content_timeout = Float(120.0, config=True,
                            help="Seconds one git fetch may take before it is stopped (the last good commit stays "
                                 "in use). Read at start.")
    content_max_bytes = Integer(200 * 2**20, config=True,
                                help="Largest repository nbpool fetches, in bytes: a fetch is stopped once the cache "
                                     "grows past it, and a commit whose files add up to more is refused. Read at "
                                     "start.")
    content_ssh_key = Unicode("", config=True,
                              help="Private key file for ssh:// and user@host:path repositories (given to ssh by path, "
                                   "never copied; hosts are trusted on first use, in the cache's known_hosts). "
                                   "Read at start.")
    generate_config = Bool(False, config=True, help="Write a fully commented config file and exit.")
    config_reference = Unicode("", config=True,
                               help="Rewrite the configuration reference in this Markdown file (between its "
                                    "markers) from the settings' help, and exit; '-' prints it.")
    raise_config_file_errors = True

    aliases = {
        "config": "NbpoolApp.config_file",
        "data-dir": "NbpoolApp.data_dir",
        "port": "Proxy.port",
        "ip": "Proxy.ip",
        "certfile": "Proxy.certfile",
        "keyfile": "Proxy.keyfile",
        "warm": "Pool.warm",
        "max-containers": "Pool.max_containers",
        "pool-name": "Pool.pool_name",
        "image": "DockerBackend.image",
        "backend": "NbpoolApp.backend",
        "log-level": "Application.log_level",
        "config-reference": "NbpoolApp.config_reference",
    }
    flags = {
        "generate-config": ({"NbpoolApp": {"generate_config": True}}, "Write a fully commented config file, exit."),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log everything."),
    }

    @validate("total_containers")
    def _validate_total(self, proposal):
        return require(proposal, proposal.value >= 0, "0 (no service-wide cap) or a number of containers")

    @validate("time_zone")
    def _validate_zone(self, proposal):
        try:
            service_zone(proposal.value)
        except ValueError as exc:
            require(proposal, False, str(exc))
        return proposal.value

    @default("config_file")
    def _default_config_file(self) -> str:
        return str(HERE / "config" / "nbpool_config.py")

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(HERE / "data")

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @default("log_format")
    def _default_log_format(self) -> str:
        return "[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"

    def initialize(self, argv=None) -> None:
        super().initialize(argv)
        if self.generate_config or self.config_reference:
            return
        self.load_operator_config()

    def load_operator_config(self) -> None:
        path = Path(self.config_file)
        if path.exists():
            self.load_config_file(path.name, path=str(path.parent))
            self.log.info("loaded config from %s", path)
        else:
            self.log.warning("no config file at %s: using defaults (python start.py --generate-config writes one)",
                             path)
        # The command line wins over the file.
        self.update_config(self.cli_config)

    def write_reference(self) -> None:
        classes = [type(self), *(cls for cls in self.classes if cls is not type(self))]
        if self.config_reference == "-":
            print(configref.reference(classes))
            return
        changed = configref.rewrite(Path(self.config_reference), classes)
        print(f"{self.config_reference}: {'updated' if changed else 'already current'}")

    def write_config(self) -> None:
        target = Path(self.config_file)
        if target.exists():
            target = target.with_name(target.stem + ".generated.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.generate_config_file())
        print(f"wrote {target}")

    def start(self) -> None:
        if self.generate_config:
            self.write_config()
            return
        if self.config_reference:
            self.write_reference()
            return
        install_uvloop()
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:
            pass

    # --- the service, put together in one direction: each part is given what it uses when it is made ------

    async def serve(self) -> None:
        data, secret = self.init_data()
        specs, own_content = self.init_settings()
        self.init_parts(data, secret)
        self.init_material(data, secret, specs, own_content)
        self.init_web(data, secret)
        self.init_workshops(data, secret)
        app_server, sock_path = self.init_web_server(data)
        await self.start_parts(specs)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await stop.wait()
        await self.stop_parts(app_server, sock_path)

    def init_data(self) -> tuple[Path, ServerSecret]:
        data = Path(self.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        try:
            return data, ServerSecret.load_or_create(data / "secret")
        except ValueError as exc:
            self.log.critical("%s", exc)
            sys.exit(2)

    def init_settings(self) -> tuple[dict | None, list]:
        """The workshops and the content the file names, refused (naming the bad value) before anything runs."""
        try:
            specs = parse_workshops(self.workshops, service_zone(self.time_zone)) if self.workshops else None
            return specs, parse_sources(self.content, "NbpoolApp.content")
        except (WorkshopError, SourceError) as exc:
            self.log.critical("%s", exc)
            sys.exit(2)

    def init_parts(self, data: Path, secret: ServerSecret) -> None:
        self.ended = EndedSessions()  # the pool records why sessions end; the pages tell visitors
        self.proxy = Proxy(parent=self, log=self.log)
        self.engine = BACKENDS[self.backend](parent=self, log=self.log)
        self.record = WorkshopRecord(parent=self, log=self.log, data_dir=str(data))
        self.keeper = WorkKeeper(parent=self, log=self.log, secret=secret, store=KeptStore(data / "kept"),
                                 record=self.record)
        self.guard = AbuseGuard(parent=self, log=self.log, bans=Bans(data / "bans.json", self.log))
        self.agent_token = secret.derive("node-agent", "token")  # nodes' agents answer nbpool with it
        self.engine.guard_with(egress_ports=self.guard.ports(), egress_rate=self.guard.egress_rate,
                               agent_token=self.agent_token)
        self.classroom = ClassView(parent=self, log=self.log, secret=secret,
                                   memory=lambda cid: self.guard.memory.get(cid),
                                   close_tunnels=self.proxy.state.close_tunnels)

    def init_material(self, data: Path, secret: ServerSecret, specs: dict | None, own_content: list) -> None:
        self.material = Material(GitCache(data / "content", timeout=self.content_timeout,
                                          max_bytes=self.content_max_bytes, ssh_key=self.content_ssh_key, log=self.log),
                                 allowed=Allowed(self.allowed_content), secret=secret, keeper=self.keeper, log=self.log,
                                 interval=self.content_interval)
        self.material.configure("", own_content if specs is None else [])
        for name, spec in (specs or {}).items():
            self.material.configure(name, spec.content)

    def init_web(self, data: Path, secret: ServerSecret) -> None:
        self.web = WebApp(parent=self, log=self.log, secret=secret, data_dir=str(data), ended=self.ended,
                          keeper=self.keeper, network_of=lambda address: network_of(address, self.proxy.ipv6_prefix),
                          guard=self.guard, classroom=self.classroom, material=self.material,
                          display_name=lambda name: (ws.display_name if (ws := self.workshop_list.get(name)) else None))

    def init_workshops(self, data: Path, secret: ServerSecret) -> None:
        pools = PoolFactory(service=self, log=self.log, routes=self.proxy.routes, static_cache=self.proxy.cache,
                            secret=secret, route_options=self.web.access.route_options, ended=self.ended,
                            keeper=self.keeper, record=self.record)
        self.workshop_list = Workshops(engine=self.engine, make_pool=pools, web=self.web, keeper=self.keeper,
                                       secret=secret, data_dir=data, log=self.log, total=self.total_containers,
                                       material=self.material)
        self.pool = None  # the unnamed workshop's pool, once started (None with named workshops)

    def init_web_server(self, data: Path) -> tuple[HTTPServer, str]:
        """The web app, on a unix socket of ours only; the proxy's default route leads there."""
        sock_path = str(data / "web.sock")
        # Bodies are capped twice: the proxy answers 413 before relaying a byte
        # of a larger one (and 408 to a stalled one), and Tornado, behind it,
        # never buffers more either; its own timeout is only the backstop.
        app_server = HTTPServer(make_application(self.web, self.workshop_list, self.proxy, self.classroom,
                                                 self.record),
                                xheaders=True,
                                max_body_size=MAX_BODY,  # (an operator's push may send more: PushHandler)
                                body_timeout=self.proxy.body_timeout + 10, idle_connection_timeout=120)
        app_server.add_socket(bind_unix_socket(sock_path, mode=0o600))
        self.proxy.routes.add("/", f"unix:{sock_path}", max_body=MAX_BODY)
        # An instructor's push carries files: the one path of the web app that takes large bodies (admin only).
        self.proxy.routes.add("/api/admin/workshops/", f"unix:{sock_path}", max_body=PUSH_BODY)
        return app_server, sock_path

    async def start_parts(self, specs: dict | None) -> None:
        workshops = self.workshop_list
        try:  # before listening: a config nbpool refuses never answers anyone
            await workshops.check(specs, self.config, BACKENDS[self.backend])
        except WorkshopError as exc:
            self.log.critical("%s", exc)
            sys.exit(2)
        except Exception as exc:
            self._engine_down(exc)
        self.web.starting = True  # until every pool has adopted its containers (EndedHandler, Admission)
        try:
            await self.proxy.start()
        except (OSError, ValueError) as exc:
            self.log.critical("cannot listen on %s:%s: %s", self.proxy.ip or "*", self.proxy.port, exc)
            sys.exit(2)
        # The material fetched before a restart, read back first: the first spares have it without the network.
        await self.material.start(lambda: {ws.name: ws.pool for ws in workshops.all()})
        try:
            await workshops.start(specs, self.config)
        except Exception as exc:
            await self.proxy.stop()
            self._engine_down(exc)
        self.web.starting = False
        self.pool = workshops.default.pool if workshops.default is not None else None
        await self.keeper.start(workshops.pools)
        self.guard.start(workshops.pools, exempt=self.web.admission.exempt_network)
        self.classroom.start(workshops.pools)
        self.watch_kernels()
        self.record_config()
        self.record.start(workshops.pools)
        self.upkeep = asyncio.get_running_loop().create_task(self.web_upkeep())
        scheme = "https" if self.proxy.tls else "http"
        for ws in workshops.all():
            self.log.info("nbpool %s ready on %s://%s:%d%s/ - pool %s: %d warm, cap %d, image %s, %d assigned "
                          "adopted", __version__, scheme, self.proxy.ip or "0.0.0.0", self.proxy.bound_port,
                          ws.prefix, ws.pool.pool_name, ws.pool.warm, ws.pool.max_containers, ws.pool.backend.image,
                          ws.pool.count("assigned"))
        self.proxy.say_origins()

    async def stop_parts(self, app_server: HTTPServer, sock_path: str) -> None:
        self.log.info("stopping: no new visitors; spares removed, assigned containers kept")
        self.web.accepting = False
        self.upkeep.cancel()
        self.guard.stop()
        self.classroom.stop()
        self.keeper.stop()
        await self.material.stop()
        await self.workshop_list.stop()
        self.record.stop()
        await self.proxy.stop()
        app_server.stop()
        await self.engine.leave()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)
        self.log.info("stopped")

    def watch_kernels(self) -> None:
        """The proxy tells what kernel WebSockets say to the pools (when a page's server last ran code: the
        embedded cull) and to the class view while ClassView.enabled (new WebSockets from now)."""
        self.proxy.state.kernel_observer = KernelActivity(time.monotonic,
                                                          self.classroom if self.classroom.enabled else None)

    def _engine_down(self, exc: Exception) -> None:
        hint = "'make cluster'" if self.backend == "swarm" else "'make engine'"
        self.log.critical("cannot start the pool (is the engine up? %s): %s", hint, exc)
        sys.exit(2)

    async def web_upkeep(self) -> None:
        while True:
            await asyncio.sleep(self.web.history_interval)
            try:
                self.web.sample_history(self.workshop_list)
                self.web.expire()
            except Exception:
                self.log.exception("web upkeep failed")

    # --- SIGHUP ---------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the config file and apply it live (in a task: images are checked with the engine;
        one reload at a time, in the order the signals came)."""
        loop = asyncio.get_running_loop()
        if getattr(self, "_reload_lock", None) is None:
            self._reload_lock = asyncio.Lock()
        self._reloading = loop.create_task(self._reload_in_turn())

    async def _reload_in_turn(self) -> None:
        async with self._reload_lock:
            try:
                await self._reload()
            except Exception:  # a task boundary: checked settings that still failed to apply (the engine?)
                self.log.exception("config reload failed part-way (the settings were valid; is the engine up?)")

    async def _reload(self) -> None:
        """Re-read the config file and apply it live; a bad file changes nothing. One check (spawner.reload.check,
        Workshops.check) and one apply (spawner.reload.apply_checked) for the service's parts, the workshop at /
        and the named workshops alike."""
        path = Path(self.config_file)
        self.log.info("SIGHUP: reloading %s", path)
        workshops = self.workshop_list
        try:
            fresh, loader = self._read_config(path)
            settings.check(fresh, *self._makers())
            specs = parse_workshops(loader.workshops, service_zone(loader.time_zone)) if loader.workshops else None
            own_content = parse_sources(loader.content, "NbpoolApp.content")
            await workshops.check(specs, fresh, BACKENDS[self.backend])
        except Exception as exc:  # the operator's file: say what is wrong, keep serving
            self.log.error("config reload failed, nothing changed: %s", exc)
            return
        old_image = self.engine.image
        changed = {id(part): settings.apply_checked(part, fresh, self.log) for part in self._live()}
        self.proxy.fit_open_files()  # (a max_connections it falls back to may not fit the open-file limit)
        rules = self.engine.guard_with(egress_ports=self.guard.ports(), egress_rate=self.guard.egress_rate,
                                       agent_token=self.agent_token)
        if rules or any(changed[id(part)] for part in self.engine.reload_parts()):
            asyncio.get_running_loop().create_task(self._rules_changed())
        if loader.total_containers != workshops.cap.total:
            self.log.info("applied NbpoolApp: total_containers=%d", loader.total_containers)
            workshops.set_total(loader.total_containers)
        self.workshops, self.time_zone = loader.workshops, loader.time_zone
        self.allowed_content, self.content = loader.allowed_content, loader.content
        self.material.reload(Allowed(self.allowed_content), own_content if specs is None else [])
        await workshops.apply(specs, fresh)
        self.pool = workshops.default.pool if workshops.default is not None else None
        self.watch_kernels()
        self.record_config()
        if self.pool is not None and self.engine.image != old_image:
            drained = self.pool.drain()
            self.log.info("image changed %s -> %s: replacing %d spares; assigned containers keep theirs",
                          old_image, self.engine.image, drained)

    def record_config(self) -> None:
        for ws in self.workshop_list.all():
            self.record.record_config(ws.pool, ws.pool.backend)

    async def _rules_changed(self) -> None:
        try:
            await self.engine.rules_changed()
            self.log.info("container firewall rules applied again with the new settings")
        except Exception as exc:  # a task boundary: the operator's new rules failed; say so
            self.log.error("could not apply the new ContainerFirewall settings: %s", exc)

    def _read_config(self, path: Path) -> tuple[Config, NbpoolApp]:
        """The file's config (the command line still wins), and an app holding its NbpoolApp settings."""
        loader = type(self)()
        loader.load_config_file(path.name, path=str(path.parent))
        config = loader.config
        config.merge(self.cli_config)
        return config, loader

    def _makers(self) -> list:
        """How to make a throwaway of each part a reload applies the file to (spawner.reload.check)."""
        key = ServerSecret(b"x" * 32)
        return [lambda c: BACKENDS[self.backend](config=c),
                *(lambda c, part=part: type(part)(config=c) for part in self.engine.reload_parts()),
                lambda c: Proxy(config=c), lambda c: Pool(config=c, backend=ContainerBackend(), secret=key),
                lambda c: WebApp(config=c, secret=key, data_dir=self.data_dir, admin_token="check"),
                lambda c: WorkKeeper(config=c), lambda c: WorkshopRecord(config=c), lambda c: AbuseGuard(config=c),
                lambda c: ClassView(config=c, secret=key, memory=lambda cid: None)]

    def _live(self) -> list:
        """The parts a reload updates from the service's config (named workshops' pools: Workshops.apply)."""
        return [*([self.pool] if self.pool is not None else []), self.engine, *self.engine.reload_parts(), self.web,
                self.proxy, self.keeper, self.record, self.guard, self.classroom]


main = NbpoolApp.launch_instance

if __name__ == "__main__":
    main()
