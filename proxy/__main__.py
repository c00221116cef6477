"""Run the proxy alone:

    python -m proxy --port 8000 [--ip 127.0.0.1] --route /prefix=http://host:port [--route ...]
                    [--default-target URL] [--certfile F --keyfile K]

Every other setting is a ``--Proxy.<name>=value`` option (see ``--help-all``).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from traitlets import List, TraitError, Unicode, validate
from traitlets.config import Application

from .server import Proxy, install_uvloop


class ProxyApp(Application):
    name = "nbpool-proxy"
    description = __doc__
    classes = [Proxy]
    route = List(Unicode(), config=True,
                 help="A route as PREFIX=TARGET, e.g. /user/abc=http://127.0.0.1:9000 or /app=unix:/run/app.sock. "
                      "Repeat for more routes; the longest whole-segment prefix wins.")
    default_target = Unicode("", config=True,
                             help="Where requests that match no route go (the route for /). Empty: a 404 page.")
    aliases = {
        "port": "Proxy.port",
        "ip": "Proxy.ip",
        "route": "ProxyApp.route",
        "default-target": "ProxyApp.default_target",
        "certfile": "Proxy.certfile",
        "keyfile": "Proxy.keyfile",
        "log-level": "Application.log_level",
    }

    @validate("route")
    def _validate_route(self, proposal):
        for item in proposal.value:
            prefix, sep, target = item.partition("=")
            if not sep or not prefix.startswith("/") or not target:
                raise TraitError(f"--route {item!r} must look like /prefix=http://host:port")
        return proposal.value

    def start(self) -> None:
        install_uvloop()
        try:
            asyncio.run(self._serve())
        except KeyboardInterrupt:
            pass

    async def _serve(self) -> None:
        proxy = Proxy(parent=self, log=self.log)
        try:
            for item in self.route:
                prefix, _, target = item.partition("=")
                proxy.routes.add(prefix, target)
            if self.default_target:
                proxy.routes.add("/", self.default_target)
            await proxy.start()
        except (ValueError, OSError) as exc:
            self.log.critical("cannot start the proxy: %s", exc)
            sys.exit(2)
        for route in proxy.routes.routes():
            self.log.info("route %s -> %s", route.prefix.decode(), route.target.url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await proxy.stop()


def main() -> None:
    ProxyApp.launch_instance()


if __name__ == "__main__":
    main()
