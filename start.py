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
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from traitlets import Bool, Enum, Unicode, default
from traitlets.config import Application, Config, TraitError

from proxy.server import Proxy, install_uvloop
from spawner import __version__, configref
from spawner.engines.docker import DockerBackend
from spawner.engines.firewall import ContainerFirewall
from spawner.engines.swarm import SwarmBackend
from spawner.keep import KeptStore, WorkKeeper
from spawner.pool import Pool
from spawner.pool.ended import EndedSessions
from spawner.record import WorkshopRecord
from spawner.secret import ServerSecret
from spawner.web.app import MAX_BODY, WebApp
from spawner.web.application import make_application

HERE = Path(__file__).resolve().parent
# Settings read at start only (the listening socket, names the engine already holds):
# a reload keeps their values and says so. Every other setting is read where it is used.
FIXED_SETTINGS = {Proxy: ("ip", "port", "certfile", "keyfile"), Pool: ("pool_name",),
                  DockerBackend: ("network_name",), SwarmBackend: ("docker_host",)}
BACKENDS = {"docker": DockerBackend, "swarm": SwarmBackend}


class NbpoolApp(Application):
    name = "nbpool"
    version = __version__
    description = __doc__
    classes = [Pool, DockerBackend, SwarmBackend, ContainerFirewall, Proxy, WebApp, WorkKeeper, WorkshopRecord]

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

    # --- wiring ----------------------------------------------------------------------------

    async def serve(self) -> None:
        data = Path(self.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        try:
            secret = ServerSecret.load_or_create(data / "secret")
        except ValueError as exc:
            self.log.critical("%s", exc)
            sys.exit(2)
        # One pass, in dependency order: each part is given what it needs when it is made.
        ended = EndedSessions()  # the pool records why sessions end; the pages tell visitors
        self.proxy = Proxy(parent=self, log=self.log)
        self.engine = BACKENDS[self.backend](parent=self, log=self.log)
        self.record = WorkshopRecord(parent=self, log=self.log, data_dir=str(data))
        self.keeper = WorkKeeper(parent=self, log=self.log, secret=secret, store=KeptStore(data / "kept"),
                                 record=self.record)
        self.web = WebApp(parent=self, log=self.log, secret=secret, data_dir=str(data), ended=ended,
                          keeper=self.keeper)
        self.pool = Pool(parent=self, log=self.log, backend=self.engine, routes=self.proxy.routes,
                         static_cache=self.proxy.cache, secret=secret,
                         route_options=self.web.access.route_options, ended=ended,
                         landing_page=lambda: self.web.landing_path, keeper=self.keeper, record=self.record)

        # The web app listens only on a unix socket of ours; the proxy's default route leads there.
        sock_path = str(data / "web.sock")
        # Bodies are capped twice: the proxy answers 413 before relaying a byte
        # of a larger one (and 408 to a stalled one), and Tornado, behind it,
        # never buffers more either; its own timeout is only the backstop.
        app_server = HTTPServer(make_application(self.web, self.pool, self.proxy, self.record),
                                xheaders=True,
                                max_body_size=MAX_BODY,
                                body_timeout=self.proxy.body_timeout + 10, idle_connection_timeout=120)
        app_server.add_socket(bind_unix_socket(sock_path, mode=0o600))
        self.proxy.routes.add("/", f"unix:{sock_path}", max_body=MAX_BODY)

        try:
            await self.proxy.start()
        except (OSError, ValueError) as exc:
            self.log.critical("cannot listen on %s:%s: %s", self.proxy.ip or "*", self.proxy.port, exc)
            sys.exit(2)
        try:
            await self.pool.start()
        except Exception as exc:
            hint = "'make cluster'" if self.backend == "swarm" else "'make engine'"
            self.log.critical("cannot start the pool (is the engine up? %s): %s", hint, exc)
            await self.proxy.stop()
            sys.exit(2)
        await self.keeper.start(self.pool)
        self.record.record_config(self.pool, self.engine)
        self.record.start(self.pool)
        loop = asyncio.get_running_loop()
        upkeep = loop.create_task(self.web_upkeep())
        scheme = "https" if self.proxy.tls else "http"
        self.log.info("nbpool %s ready on %s://%s:%d/ - pool %s: %d warm, cap %d, image %s, %d assigned adopted",
                      __version__, scheme, self.proxy.ip or "0.0.0.0", self.proxy.bound_port, self.pool.pool_name,
                      self.pool.warm, self.pool.max_containers, self.engine.image, self.pool.count("assigned"))

        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        await stop.wait()

        self.log.info("stopping: no new visitors; spares removed, assigned containers kept")
        self.web.accepting = False
        upkeep.cancel()
        self.keeper.stop()
        await self.pool.stop()
        self.record.stop()
        await self.proxy.stop()
        app_server.stop()
        await self.engine.retire_firewall()
        await self.engine.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)
        self.log.info("stopped")

    async def web_upkeep(self) -> None:
        while True:
            await asyncio.sleep(self.web.history_interval)
            try:
                self.web.sample_history(self.pool)
                self.web.expire(self.pool)
            except Exception:
                self.log.exception("web upkeep failed")

    # --- SIGHUP ---------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the config file and apply it live; a bad file changes nothing."""
        path = Path(self.config_file)
        self.log.info("SIGHUP: reloading %s", path)
        try:
            fresh = self._read_config(path)
            self._check(fresh)
        except Exception as exc:  # the operator's file: say what is wrong, keep serving
            self.log.error("config reload failed, nothing changed: %s", exc)
            return
        old_image = self.engine.image
        firewall_before = self._values(self.engine.firewall)
        live = self._live()
        owners = {cls: next((o for o in live.values() if isinstance(o, cls)), None) for cls in FIXED_SETTINGS}
        fixed = {(cls, k): getattr(owners[cls], k) for cls, names in FIXED_SETTINGS.items() if owners[cls]
                 for k in names}
        before = {cls.__name__: self._values(obj) for cls, obj in self._live().items()}
        for obj in self._live().values():
            obj.update_config(fresh)
        for cls, obj in self._live().items():
            after = self._values(obj)
            changed = {k: v for k, v in after.items() if before[cls.__name__].get(k) != v}
            if changed:
                self.log.info("applied %s: %s", cls.__name__, ", ".join(f"{k}={v!r}" for k, v in changed.items()))
        for (cls, k), value in fixed.items():
            if getattr(owners[cls], k) != value:
                setattr(owners[cls], k, value)  # kept as it is until a restart
                self.log.warning("%s.%s changed in the config file: takes effect at the next start",
                                 cls.__name__, k)
        if self._values(self.engine.firewall) != firewall_before:
            asyncio.get_running_loop().create_task(self._reinstall_firewall())
        self.record.record_config(self.pool, self.engine)
        if self.engine.image != old_image:
            drained = self.pool.drain()
            self.log.info("image changed %s -> %s: replacing %d spares; assigned containers keep theirs",
                          old_image, self.engine.image, drained)

    async def _reinstall_firewall(self) -> None:
        try:
            await self.engine.reinstall_firewall()
            self.log.info("container firewall rules applied again with the new settings")
        except Exception as exc:  # a task boundary: the operator's new rules failed; say so
            self.log.error("could not apply the new ContainerFirewall settings: %s", exc)

    def _read_config(self, path: Path) -> Config:
        loader = type(self)()
        loader.load_config_file(path.name, path=str(path.parent))
        config = loader.config
        config.merge(self.cli_config)
        return config

    def _check(self, config: Config) -> None:
        """Build throwaway copies with the new config: any bad value raises, naming itself."""
        try:
            BACKENDS[self.backend](config=config)
            ContainerFirewall(config=config)
            Proxy(config=config)
            Pool(config=config, backend=DockerBackend(), secret=ServerSecret(b"x" * 32))
            WebApp(config=config, secret=ServerSecret(b"x" * 32), data_dir=self.data_dir, admin_token="check")
            WorkKeeper(config=config)
            WorkshopRecord(config=config)
        except TraitError as exc:
            raise ValueError(str(exc)) from None

    def _live(self) -> dict:
        return {Pool: self.pool, type(self.engine): self.engine, ContainerFirewall: self.engine.firewall,
                WebApp: self.web, Proxy: self.proxy, WorkKeeper: self.keeper, WorkshopRecord: self.record}

    @staticmethod
    def _values(obj) -> dict:
        return {name: getattr(obj, name) for name in obj.trait_names(config=True)}


main = NbpoolApp.launch_instance

if __name__ == "__main__":
    main()
