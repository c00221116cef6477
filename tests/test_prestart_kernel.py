"""The pre-started kernel (issue 13): one Python kernel waits in every spare for its attendee's first notebook.

Real engine, real image: each test starts its own container (a pre-started kernel
is used once), as the spawner does (token and base URL in the environment), and
drives the notebook server's REST API and kernel WebSocket as the notebook page does.
"""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest

from loadtest.jupyter import KernelClient
from spawner.engines.docker import DockerBackend
from tests.dockertools import TEST_POOL, NotebookServer, start_notebook_container

HOME = "/home/jovyan"
READY = re.compile(r"nbpool: pre-started python3 kernel ([0-9a-f-]{36}) is ready")
HANDED = re.compile(r"nbpool: handed the pre-started python3 kernel ([0-9a-f-]{36}) to a new session")
OFF = "nbpool: kernel pre-start is off"
# Cull idle kernels after 2 s, looking every second (the stock culler of Jupyter Server).
CULLING = ["start-notebook", "--MappingKernelManager.cull_idle_timeout=2", "--MappingKernelManager.cull_interval=1"]


# --- the orchestrator's side: no engine needed ------------------------------------------------------

@pytest.mark.parametrize(("setting", "value"), [(True, "1"), (False, "0")])
def test_backend_passes_the_setting_to_every_container(setting, value):
    backend = DockerBackend(prestart_kernel=setting, environment={"NBPOOL_PRESTART_KERNEL": "ignored"})
    env = backend.spec.environment("token", "/user/abc/")
    assert env["NBPOOL_PRESTART_KERNEL"] == value  # the setting wins over the free-form environment


def test_prestart_is_on_by_default():
    assert DockerBackend().prestart_kernel is True


# --- the image's side ------------------------------------------------------------------------------

WIRING = """
from traitlets.config import PyFileConfigLoader
from jupyter_server.utils import import_item
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
config = PyFileConfigLoader("jupyter_server_config.py", path="/etc/jupyter").load_config()
km = import_item(config.ServerApp.kernel_manager_class)
ws = import_item(config.ServerApp.kernel_websocket_connection_class)
print(km.__name__, issubclass(km, AsyncMappingKernelManager), ws.__name__,
      issubclass(ws, ZMQChannelsWebsocketConnection))
"""


@pytest.mark.docker
def test_the_image_config_loads_both_classes(docker_client, notebook_image):
    out = docker_client.containers.run(notebook_image, ["python", "-c", WIRING], remove=True,
                                       labels={"org.nbpool.pool": TEST_POOL})
    assert out.decode().split() == ["PrestartKernelManager", "True", "NoDelayKernelConnection", "True"]


@pytest.fixture
def start_server(docker_client, notebook_image, request):
    """start(environment=None, command=None) -> a fresh workshop container; removed after the test."""
    started: list[NotebookServer] = []

    def start(environment: dict[str, str] | None = None, command: list[str] | None = None) -> NotebookServer:
        server = start_notebook_container(
            docker_client, notebook_image, base_url=f"/user/prestart-{secrets.token_hex(3)}/",
            token=secrets.token_hex(16), environment=environment, command=command,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        if getattr(request.node, "call_failed", False):
            print(f"\n--- logs of {server.container.name} ---\n{server.logs()[-6000:]}")
        server.remove()


async def wait_for_log(server: NotebookServer, pattern: re.Pattern | str, deadline_s: float = 60.0) -> re.Match | str:
    """The first match of ``pattern`` in the container's log, waiting for it; raise past the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        logs = await asyncio.to_thread(server.logs)
        found = pattern.search(logs) if isinstance(pattern, re.Pattern) else (pattern if pattern in logs else None)
        if found:
            return found
        if loop.time() > end:
            raise TimeoutError(f"{pattern!r} not in the container's log within {deadline_s:.0f}s:\n{logs[-3000:]}")
        await asyncio.sleep(0.1)


def kernel_processes(server: NotebookServer) -> list[str]:
    """The connection files of the kernel processes running in the container."""
    code, out = server.exec("sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; echo")
    assert code == 0, out
    return re.findall(r"kernel-([0-9a-f-]{36})\.json", out)


def client(server: NotebookServer) -> KernelClient:
    return KernelClient(server.url, server.auth, timeout=60)


async def run(kernel: KernelClient, code: str) -> str:
    result = await kernel.execute(code)
    assert result.status == "ok", result.error
    return result.output.strip()


@pytest.mark.docker
async def test_first_python_notebook_gets_the_prestarted_kernel_once(start_server):
    server = start_server()
    spare = (await wait_for_log(server, READY)).group(1)

    # Ready, running, and nowhere in the UI: no kernel listed, none counted.
    probe = client(server)
    assert await probe.kernels() == []
    assert (await probe.request("GET", "api/status"))["kernels"] == 0
    assert kernel_processes(server) == [spare]

    # The workshop's notebooks in a folder of their own, with a data file beside them.
    code, out = server.exec("sh", "-c", f"mkdir -p {HOME}/day1 && echo 'coffee: 42' > {HOME}/day1/data.txt "
                                        f"&& cp {HOME}/01-python-introduction.ipynb {HOME}/day1/")
    assert code == 0, out

    # Another kernel name first: it starts normally and leaves the pre-started one alone.
    bash = client(server)
    try:
        bash_id = await bash.start_session("04-bash-introduction.ipynb", "bash")
        assert bash_id != spare
        assert await run(bash, "pwd") == HOME
    finally:
        await bash.shutdown()
    assert spare in kernel_processes(server)

    # The first Python notebook: the pre-started kernel, moved to the notebook's folder.
    first = client(server)
    second = client(server)
    try:
        assert await first.start_session("day1/01-python-introduction.ipynb") == spare
        handed = (await wait_for_log(server, HANDED)).group(1)
        assert handed == spare
        assert await run(first, "import os; print(os.getcwd())") == f"{HOME}/day1"
        assert await run(first, "print(open('data.txt').read())") == "coffee: 42"
        # What the server sets for a session's kernel: the notebook's path, in the kernel and its environment.
        assert await run(first, "print(__session__); print(os.environ['JPY_SESSION_NAME'])") == \
            f"{HOME}/day1/01-python-introduction.ipynb\n{HOME}/day1/01-python-introduction.ipynb"
        # The hand-over left nothing behind: no name, no history, no execution count of its own.
        assert await run(first, "print('_nbpool_handover' in globals(), len(In), _dh)") == \
            f"False 5 [PosixPath('{HOME}/day1')]"
        # Now an ordinary kernel: listed like any other.
        assert [k["id"] for k in await first.kernels()] == [spare]

        # The second Python notebook: a kernel of its own, started the usual way.
        second_id = await second.start_session("01-python-introduction.ipynb")
        assert second_id != spare
        assert await run(second, "import os; print(os.getcwd())") == HOME
        assert sorted(k["id"] for k in await second.kernels()) == sorted([spare, second_id])
    finally:
        await second.shutdown()
        first.detach()

    # A restart (Kernel > Restart) relaunches the handed-over kernel in the notebook's folder.
    restarted = client(server)
    try:
        await restarted.request("POST", f"api/kernels/{spare}/restart", {})
        await restarted.attach(spare)
        assert await run(restarted, "import os; print(os.getcwd(), os.environ['JPY_SESSION_NAME'])") == \
            f"{HOME}/day1 {HOME}/day1/01-python-introduction.ipynb"
    finally:
        await restarted.shutdown()
    assert server.logs().count("nbpool: handed the pre-started") == 1


@pytest.mark.docker
async def test_a_prestarted_kernel_that_is_gone_means_a_normal_start(start_server):
    server = start_server()
    spare = (await wait_for_log(server, READY)).group(1)
    probe = client(server)
    await probe.request("DELETE", f"api/kernels/{spare}")  # shut down behind the hand-over's back

    kernel = client(server)
    try:
        kernel_id = await kernel.start_session("01-python-introduction.ipynb")
        assert kernel_id != spare
        assert await run(kernel, "print(6 * 7)") == "42"
    finally:
        await kernel.shutdown()
    assert "nbpool: handed the pre-started" not in server.logs()


@pytest.mark.docker
async def test_a_killed_prestarted_kernel_is_restarted_or_replaced(start_server):
    server = start_server()
    spare = (await wait_for_log(server, READY)).group(1)
    # SIGKILL the kernel's process (every process whose command line names its connection file, but this shell).
    code, out = server.exec("sh", "-c", f"for p in /proc/[0-9]*; do [ ${{p#/proc/}} = $$ ] && continue; "
                                        f"grep -qs kernel-{spare} $p/cmdline && kill -KILL ${{p#/proc/}}; done; true")
    assert code == 0, out
    code, out = server.exec("mkdir", "-p", f"{HOME}/day1")
    assert code == 0, out

    # Whichever kernel the session gets (the restarted one, or a new one), it is in the notebook's folder.
    kernel = client(server)
    try:
        await kernel.start_session("day1/notes.ipynb")
        assert await run(kernel, "import os; print(os.getcwd())") == f"{HOME}/day1"
    finally:
        await kernel.shutdown()


@pytest.mark.docker
async def test_culling_spares_the_prestarted_kernel_until_it_is_handed_over(start_server):
    server = start_server(command=CULLING)
    spare = (await wait_for_log(server, READY)).group(1)

    # An ordinary kernel left idle is culled; the pre-started one, idle for longer, is not.
    idle = client(server)
    idle_id = (await idle.request("POST", "api/kernels", {"name": "bash"}))["id"]
    await wait_for_log(server, re.compile(rf"Culling '\w+' kernel 'bash' \({idle_id}\)"))
    assert not re.search(rf"Culling .*\({spare}\)", server.logs())
    assert spare in kernel_processes(server)

    # Handed over, it is an ordinary kernel: kept while connected, culled once left idle.
    kernel = client(server)
    try:
        assert await kernel.start_session("01-python-introduction.ipynb") == spare
        assert await run(kernel, "print(6 * 7)") == "42"
    finally:
        kernel.detach()
    await wait_for_log(server, re.compile(rf"Culling '\w+' kernel 'python3' \({spare}\)"))


@pytest.mark.docker
async def test_setting_off_prestarts_nothing(start_server):
    server = start_server(environment={"NBPOOL_PRESTART_KERNEL": "0"})
    await wait_for_log(server, OFF)
    assert kernel_processes(server) == []

    kernel = client(server)
    try:
        kernel_id = await kernel.start_session("01-python-introduction.ipynb")
        assert f"Kernel started: {kernel_id}" in server.logs()
        assert await run(kernel, "import os; print(os.getcwd())") == HOME
    finally:
        await kernel.shutdown()
    assert "pre-started" not in server.logs()


async def test_status_answers_while_the_kernel_is_being_prestarted(docker_client, notebook_image):
    """api/status (the pool's readiness check) never fails while the hidden kernel starts, nor counts it.

    While it starts, the pre-started kernel has no last_activity yet; making its model then
    failed, and api/status answered 500 for the half second the kernel took to come up.
    Polled from the container's creation, so that window cannot be missed.
    """
    import json
    import urllib.error
    import urllib.request

    token, base_url = secrets.token_hex(16), f"/user/prestart-{secrets.token_hex(3)}/"
    container = docker_client.containers.run(
        notebook_image, detach=True, environment={"NBPOOL_BASE_URL": base_url, "JUPYTER_TOKEN": token},
        ports={"8888/tcp": ("127.0.0.1", None)}, labels={"org.nbpool.pool": TEST_POOL}, mem_limit="1g")
    server = None
    try:
        container.reload()
        server = NotebookServer(container, base_url, token, int(container.ports["8888/tcp"][0]["HostPort"]))
        answers = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        next_look = 0.0
        while True:  # as fast as it answers: the failing moment lasted milliseconds
            request = urllib.request.Request(server.url + "api/status", headers=server.auth)
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    answers.append((r.status, json.load(r)["kernels"]))
            except urllib.error.HTTPError as exc:
                answers.append((exc.code, None))
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet
            if loop.time() > next_look:
                if "pre-started python3 kernel" in await asyncio.to_thread(server.logs):
                    break
                next_look = loop.time() + 0.5
            assert loop.time() < end, "the kernel was not pre-started within 60 s"
        bad = [a for a in answers if a != (200, 0)]
        assert answers and not bad, f"{len(bad)} of {len(answers)} answers were not (200, 0 kernels): {bad[:5]}"
    finally:
        if server is not None:
            server.remove()
        else:
            container.remove(force=True)
