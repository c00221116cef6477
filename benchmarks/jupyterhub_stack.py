"""JupyterHub + DockerSpawner + tmpauthenticator, run as nbpool's peer in the burst benchmarks.

    with JupyterHubStack() as hub:
        results = asyncio.run(burst(hub.url, 10))   # hub_attendee.burst

    .venv/bin/python benchmarks/jupyterhub_stack.py --attendees 10

The stack is what tmpnb's successor looks like on one machine: an attendee who
opens the hub's root is logged in as a new random user (tmpauthenticator), and
DockerSpawner starts a container for them on demand (no spares), routed by
configurable-http-proxy. Every stack has its own ports, database, cookie secret,
container name prefix and label, in a temporary directory; on exit it stops the
hub (and the proxy it started) and removes every container it spawned.

What it runs (pinned; the hub's virtualenv is kept apart from nbpool's .venv):

    python3 -m venv /work/jhub/venv     # or $JHUB_VENV
    /work/jhub/venv/bin/pip install jupyterhub==5.5.4 dockerspawner==14.0.0 jupyterhub-tmpauthenticator==1.0.0
    configurable-http-proxy 5.3.0: benchmarks/.chp (proxy_bench.py installs it; or $JHUB_CHP)

(the 5.x line on purpose; jupyterhub 6.1.1 was the newest release when this was written.)
The containers run nbpool/notebook-hub:latest: nbpool/notebook:latest plus the
``jupyterhub`` package at the hub's own version, for ``jupyterhub-singleuser``
(built once, and again only when the base image or the version changes). The
image's own server config stays in force under the hub, so both peers run the
same server: real-time collaboration on, one Python kernel pre-started (handed to
the attendee's first kernel), landing on /tree; the single-user extension
replaces only what it must (identity provider, base URL, port).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB_VENV = Path(os.environ.get("JHUB_VENV", "/work/jhub/venv"))
CHP_CANDIDATES = [os.environ.get("JHUB_CHP", ""),
                  str(ROOT / "benchmarks/.chp/node_modules/.bin/configurable-http-proxy"),
                  "/work/jhub/node/node_modules/.bin/configurable-http-proxy"]
BASE_IMAGE = "nbpool/notebook:latest"
IMAGE = "nbpool/notebook-hub:latest"
LABEL = "org.nbpool.jhub"  # on every container a stack spawns: the stack's id

# Two stages as notebook-image/Dockerfile has them, so the host's CA bundle (build-ca/ca.pem, empty when the host
# has none) is used by pip in the first stage only and never lands in the image. ``pip install --root`` puts only
# what is new (jupyterhub and the packages it adds: alembic, SQLAlchemy, pydantic, certipy, oauthlib, pamela)
# under /opt/hubroot, the image's own packages being found already installed; the second stage lays just those
# files over the image (about 100 MB) instead of copying its whole virtualenv again.
# pip also brings back jsonschema's format checkers (jupyter_events asks for them), which the nbpool image
# removes because they cost every server 1.4 CPU-seconds at start: prune.py drops them again (the same list,
# read from notebook-image/Dockerfile), so both peers start the same server.
DOCKERFILE = """\
FROM {base} AS hub
USER root
COPY build-ca/ /tmp/build-ca/
COPY prune.py /tmp/
RUN set -e; \\
    if [ -s /tmp/build-ca/ca.pem ]; then export PIP_CERT=/tmp/build-ca/ca.pem; fi; \\
    /opt/notebook/bin/pip install --no-cache-dir --disable-pip-version-check --root /opt/hubroot \\
        "jupyterhub=={version}"; \\
    /opt/notebook/bin/python /tmp/prune.py {prune}
LABEL org.nbpool.hub-build-stage=pip

FROM {base}
COPY --from=hub /opt/hubroot/ /
RUN python -c "import jupyterhub.singleuser.extension, jupyterhub; print('jupyterhub', jupyterhub.__version__)" \\
 && command -v jupyterhub-singleuser
"""
PRUNE_PY = """\
import csv, os, pathlib, re, shutil, sys
# Remove from the --root tree the distributions named in argv: every file their RECORD lists, then empty folders.
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
site = next(pathlib.Path("/opt/hubroot").glob("opt/notebook/lib/python3*/site-packages"))
wanted = {norm(n) for n in sys.argv[1:]}
for info in site.glob("*.dist-info"):
    if norm(info.name.removesuffix(".dist-info").rsplit("-", 1)[0]) in wanted:
        for row in csv.reader((info / "RECORD").open()):
            pathlib.Path(os.path.normpath(site / row[0])).unlink(missing_ok=True)
        shutil.rmtree(info, ignore_errors=True)
        print("pruned", info.name)
for folder, _, _ in sorted(os.walk(site), reverse=True):
    if not os.listdir(folder):
        os.rmdir(folder)
"""


def pruned_packages() -> list[str]:
    """What notebook-image/Dockerfile uninstalls from the image's virtualenv (its one ``pip uninstall -y``)."""
    found = re.search(r"pip uninstall -y ([^;]+);", (ROOT / "notebook-image" / "Dockerfile").read_text())
    if not found:
        raise RuntimeError("notebook-image/Dockerfile has no 'pip uninstall -y ...;' to read the pruned list from")
    return found.group(1).replace("\\", " ").split()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def chp_command() -> str:
    for path in CHP_CANDIDATES:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("configurable-http-proxy not found: npm install --prefix benchmarks/.chp "
                       "configurable-http-proxy@5.3.0 (or set $JHUB_CHP)")


def hub_version() -> str:
    """The jupyterhub version in the hub's virtualenv (the image gets the same)."""
    python = HUB_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no hub virtualenv at {HUB_VENV}: see this module's docstring (or set $JHUB_VENV)")
    return subprocess.run([str(python), "-c", "import jupyterhub; print(jupyterhub.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def build_image(tag: str = IMAGE, base: str = BASE_IMAGE, force: bool = False) -> str:
    """Build ``tag`` unless an image with the same source (base image id, hub version, Dockerfile) exists."""
    version = hub_version()
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", base],
                             capture_output=True, text=True).stdout.strip()
    if not base_id:
        raise RuntimeError(f"base image {base} is missing: run 'make images' first")
    dockerfile = DOCKERFILE.format(base=base, version=version, prune=" ".join(pruned_packages()))
    source = hashlib.sha256(f"{base_id}\n{dockerfile}\n{PRUNE_PY}".encode()).hexdigest()[:16]
    have = subprocess.run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "org.nbpool.source-hash"}}',
                           tag], capture_output=True, text=True).stdout.strip()
    if have == source and not force:
        return tag
    old_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="nbpool-hub-image-") as ctx:
        (Path(ctx) / "Dockerfile").write_text(dockerfile)
        (Path(ctx) / "prune.py").write_text(PRUNE_PY)
        (Path(ctx) / "build-ca").mkdir()
        ca = Path(ctx) / "build-ca" / "ca.pem"
        ca.write_bytes(b"")
        for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # as notebook-image/build.sh
            path = os.environ.get(var, "")
            if path and os.path.isfile(path) and os.path.getsize(path):
                shutil.copyfile(path, ca)
                break
        print(f"building {tag} (jupyterhub {version} on {base}) ...", file=sys.stderr)
        # The legacy builder, as build.sh uses: no buildx plugin needed.
        done = subprocess.run(["docker", "build", "--label", f"org.nbpool.source-hash={source}",
                               "--label", f"org.nbpool.base={base}", "-t", tag, ctx],
                              capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if done.returncode:
        raise RuntimeError(f"docker build of {tag} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith(("pruned", "jupyterhub "))),
          file=sys.stderr)
    # The first stage's image is left untagged by the legacy builder: only a cache, and this build is cached by tag.
    stages = subprocess.run(["docker", "images", "-q", "--filter", "dangling=true", "--filter",
                             "label=org.nbpool.hub-build-stage"], capture_output=True, text=True).stdout.split()
    if stages:
        subprocess.run(["docker", "image", "rm", *stages], capture_output=True)
    new_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                            capture_output=True, text=True).stdout.strip()
    if old_id and old_id != new_id:  # the image this build replaced, unless a container still uses it
        subprocess.run(["docker", "image", "rm", old_id], capture_output=True)
    return tag


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: where containers on it reach the hub."""
    out = subprocess.run(["docker", "network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
                         capture_output=True, text=True).stdout.split()
    if out:
        return out[0]
    # Some engines leave the default bridge's gateway out of IPAM: it is docker0's address.
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"],
                                                                   capture_output=True, text=True).stdout)
    if not found:
        raise RuntimeError("cannot tell the default bridge's gateway (docker network inspect bridge)")
    return found.group(1)


class JupyterHubStack:
    """One JupyterHub on a free port, its own temporary directory, and the containers it spawns.

    ``environment``: extra variables for every container (e.g. {"NBPOOL_COLLABORATION": "0"}; the image's
    server config reads NBPOOL_COLLABORATION and NBPOOL_PRESTART_KERNEL, both on when unset, as in nbpool's
    default). ``extra``: more config lines, e.g. ["Spawner.cpu_limit = 1"].
    """

    def __init__(self, *, image: str = IMAGE, mem_limit: str = "512M", timeout: int = 300, name: str = "bench",
                 environment: dict[str, str] | None = None, extra: list[str] | None = None, build: bool = True):
        self.id = f"jhub-{name}-{secrets.token_hex(3)}"  # container names are <id>-<username>
        self.image = image
        self.mem_limit = mem_limit
        self.timeout = timeout
        self.environment = dict(environment or {})
        self.extra = list(extra or [])
        self.build = build
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.id}-")
        self.dir = Path(self._tmp.name)
        self.config = self.dir / "jupyterhub_config.py"
        self.log_path = self.dir / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        gateway = bridge_gateway()
        d = self.dir
        lines = [
            # The public side (the proxy) on loopback, as nbpool's; the hub itself on the bridge's gateway, the
            # host address containers on Docker's default bridge can reach (JUPYTERHUB_API_URL in each one).
            "JupyterHub.ip = '127.0.0.1'", f"JupyterHub.port = {self.port}",
            f"JupyterHub.hub_ip = {gateway!r}", f"JupyterHub.hub_port = {free_port(gateway)}",
            f"ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'",
            f"ConfigurableHTTPProxy.command = [{chp_command()!r}]",
            f"ConfigurableHTTPProxy.pid_file = {str(d / 'proxy.pid')!r}",
            f"JupyterHub.db_url = 'sqlite:///{d / 'jupyterhub.sqlite'}'",
            f"JupyterHub.cookie_secret_file = {str(d / 'cookie_secret')!r}",
            f"JupyterHub.pid_file = {str(d / 'jupyterhub.pid')!r}",
            # The stack removes its containers itself (docker rm -f) at exit: quicker than the hub stopping
            # each one in turn at shutdown, and done even when the hub has to be killed.
            "JupyterHub.cleanup_servers = False",
            "JupyterHub.authenticator_class = 'tmpauthenticator.TmpAuthenticator'",
            "Authenticator.allow_all = True",  # JupyterHub 5 lets nobody in without some allow config
            "JupyterHub.spawner_class = 'dockerspawner.DockerSpawner'",
            f"DockerSpawner.image = {self.image!r}",
            "DockerSpawner.pull_policy = 'never'",  # no registry here: a missing image is an error, not a pull
            # The image's CMD is nbpool's start-notebook (plain Jupyter Notebook); the hub needs its single-user
            # server, which runs as the image's user 1000 in /home/jovyan (WORKDIR, HOME, the server's root_dir).
            "DockerSpawner.cmd = ['jupyterhub-singleuser']",
            # The default bridge, reached at the container's own address as nbpool's container-ip mode does
            # (no published port, no docker-proxy in the path).
            "DockerSpawner.network_name = 'bridge'", "DockerSpawner.use_internal_ip = True",
            f"DockerSpawner.prefix = {self.id!r}",
            f"DockerSpawner.extra_create_kwargs = {{'labels': {{{LABEL!r}: {self.id!r}}}}}",
            "DockerSpawner.remove = True",
            # As nbpool's DockerBackend: the memory limit, and no swap beyond it.
            f"DockerSpawner.mem_limit = {self.mem_limit!r}",
            f"DockerSpawner.extra_host_config = {{'memswap_limit': {self.mem_limit!r}}}",
            f"DockerSpawner.environment = {self.environment!r}",
            # Defaults 60 s and 30 s: a burst on two cores would fail spawns instead of measuring them.
            f"Spawner.start_timeout = {self.timeout}", f"Spawner.http_timeout = {self.timeout}",
            # Where nbpool's attendees land too (the image's own default_url, which wins over this anyway).
            "Spawner.default_url = '/tree'",
            # JupyterHub.concurrent_spawn_limit stays at its default, 100 spawns at once: no limit for 50.
            *self.extra,
        ]
        self.config.write_text("c = get_config()  # noqa: F821\n" + "".join(f"c.{line}\n" for line in lines))
        secret = d / "cookie_secret"  # the hub refuses a secret file others can read
        secret.write_text(secrets.token_hex(32))
        secret.chmod(0o600)

    def __enter__(self) -> JupyterHubStack:
        try:
            if self.build:
                build_image(self.image)
            self.write_config()
            self.start_seconds = self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove_containers()
        self._tmp.cleanup()

    def start(self, timeout: float = 120) -> float:
        """Start the hub (it starts the proxy); return the seconds until /hub/health answered through the proxy."""
        t0 = time.monotonic()
        log = open(self.log_path, "ab")
        env = {**os.environ, "PATH": f"{HUB_VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        # Its own session, so a Ctrl-C at the benchmark's terminal reaches the benchmark only: stop() ends it.
        self.proc = subprocess.Popen([str(HUB_VENV / "bin" / "jupyterhub"), "-f", str(self.config)], cwd=self.dir,
                                     stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        while not self.answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited ({self.proc.returncode}) at start:\n{self.logs()[-3000:]}")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"jupyterhub not answering within {timeout:.0f}s:\n{self.logs()[-3000:]}")
            time.sleep(0.1)
        return time.monotonic() - t0

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/hub/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> None:
        """Stop the hub, and the proxy if the hub left it running (the proxy runs in a session of its own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pid_file = self.dir / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                time.sleep(0.1)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def containers(self) -> list[str]:
        """Ids of this stack's containers, running or not."""
        found = set()
        for flt in (f"label={LABEL}={self.id}", f"name=^/?{self.id}-"):
            found.update(subprocess.run(["docker", "ps", "-aq", "--filter", flt],
                                        capture_output=True, text=True).stdout.split())
        return sorted(found)

    def remove_containers(self) -> None:
        ids = self.containers()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description="A JupyterHub + DockerSpawner burst: N attendees at once.")
    parser.add_argument("--attendees", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300, help="seconds each attendee may take")
    parser.add_argument("--json", type=Path, help="write every attendee's result here")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hub_attendee import burst, summary

    with JupyterHubStack(timeout=int(args.timeout)) as hub:
        print(f"jupyterhub at {hub.url} (answered {hub.start_seconds:.1f}s after start); "
              f"{args.attendees} attendees at once", file=sys.stderr)
        time.sleep(3)  # let the machine settle after the hub's start
        results = asyncio.run(burst(hub.url, args.attendees, timeout=args.timeout))
        left = hub.containers()
        if any(not r["ok"] for r in results):
            print(f"--- the hub's log, its end ---\n{hub.logs()[-4000:]}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(summary(results))
    print(f"{len(left)} containers spawned; removed: {len(hub.containers()) == 0}")


if __name__ == "__main__":
    main()
