"""Shared fixtures: the real Docker engine, and notebook containers from the real image.

Docker tests skip only when not under CI and no engine answers; under
``CI=true`` a missing engine is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil

import pytest

from proxy.server import Proxy
from tests import leftovers, network_churn
from tests.dockertools import (
    NOTEBOOK_IMAGE,
    build_hostile_image,
    engine_or_none,
    remove_service_containers,
    remove_test_containers,
    start_notebook_container,
)
from tests.resources import echo, ws_echo
from tests.service import Service

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("NBPOOL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing is None and not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        missing = f"no Chromium at {CHROMIUM} ('make browser' installs Debian's)"
    if missing:
        if UNDER_CI:
            pytest.fail(missing + " -- under CI=true the browser test must run", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        network_churn.watch(browser)
        yield browser
        browser.close()




def pytest_configure(config):
    config.pluginmanager.register(network_churn, "nbpool-network-churn")  # a browser test's one rerun


def pytest_collection_modifyitems(config, items):
    # A test is a Docker test when it uses the engine, however indirectly (a service, a container, the
    # swarm): marked here so `-m "not docker"` (make check) never depends on each file remembering to say so.
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "docker_client" in names and "docker" not in item.keywords:
            item.add_marker(pytest.mark.docker)
    if hasattr(config, "workerinput"):
        # Under pytest-xdist (make test: two workers, whole files each, in this order): the Swarm file first, as
        # it is the longest (its cluster's start alone is most of a minute), then the other engine tests, then
        # the quick ones, which fill the gaps at the end. Every worker collects the same order.
        items.sort(key=lambda item: 0 if item.path.name == "test_swarm.py" else 1 if "docker" in item.keywords
                   else 2)


def pytest_sessionstart(session):
    # What exists before the suite runs: only what appears during it and outlives it counts as left behind.
    # Under pytest-xdist only the controller checks: it starts before its workers and ends after them.
    if os.environ.get("NBPOOL_LEFTOVER_CHECK", "1") == "0" or hasattr(session.config, "workerinput"):
        return
    client, _ = engine_or_none()
    session.config.nbpool_before = leftovers.take(client)
    if client is not None:
        client.close()


@pytest.hookimpl(trylast=True)  # after pytest-xdist has taken its workers down
def pytest_sessionfinish(session, exitstatus):
    """Fail the session when it left a container, network, firewall rule or process of nbpool's behind
    (after every fixture's teardown). NBPOOL_LEFTOVER_CHECK=0 turns it off, e.g. beside another session."""
    before = getattr(session.config, "nbpool_before", None)
    if before is None or session.config.option.collectonly or exitstatus == pytest.ExitCode.INTERRUPTED:
        return
    client = engine_or_none()[0] if before.engine else None
    found = leftovers.left_behind(before, client)
    if client is not None:
        client.close()
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_sep("=", "left behind by the test session", red=True)
        for line in found:
            reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Mark the item when its test body failed, so fixtures can print container
    # logs at teardown only then: getattr(request.node, "call_failed", False).
    rep = yield
    if rep.when == "call":
        item.call_failed = rep.failed
    return rep


@pytest.fixture(scope="session")
def docker_client():
    """A client of the real engine; skip (outside CI) or fail (under CI) without one."""
    client, why = engine_or_none()
    if client is None:
        message = f"no Docker engine reachable ({why}); run 'make engine'"
        if UNDER_CI:
            pytest.fail(message + " -- under CI=true Docker tests must run", pytrace=False)
        pytest.skip(message)
    yield client
    remove_test_containers(client)
    client.close()


@pytest.fixture(scope="session")
def notebook_image(docker_client):
    """The workshop image's tag; fails with a clear message if it was not built."""
    import docker.errors

    try:
        docker_client.images.get(NOTEBOOK_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{NOTEBOOK_IMAGE} is missing: run 'make images'", pytrace=False)
    return NOTEBOOK_IMAGE


@pytest.fixture(scope="session")
def notebook_server(docker_client, notebook_image, request):
    """One running workshop container with a known base URL and token, shared by a session."""
    server = start_notebook_container(
        docker_client, notebook_image, base_url="/user/session-test/", token=secrets.token_hex(16)
    )
    yield server
    failed = any(getattr(item, "call_failed", False) for item in request.session.items
                 if "notebook_server" in getattr(item, "fixturenames", ()))
    if failed:
        print(f"\n--- logs of {server.container.name} ---\n{server.logs()}")
    server.remove()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """(cert, key): a self-signed certificate for localhost, for HTTPS tests."""
    import subprocess

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="session")
def hostile_image(docker_client, notebook_image):
    """An image whose 'notebook server' is its attendee's own program (tests/resources/hostile); removed after."""
    from pathlib import Path

    tag = build_hostile_image(docker_client, str(Path(__file__).parent / "resources" / "hostile"))
    yield tag
    remove_test_containers(docker_client)
    import docker.errors

    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.APIError:
        pass  # still used by a container a failing test left: make clean-containers, then it goes


@pytest.fixture
async def raw_backend():
    """start(handler) -> URL of a tiny asyncio server running ``handler(reader, writer)``; closed after the test.

    For backends that misbehave on purpose (hang up, send garbage, refuse an upgrade).
    """
    servers = []

    async def start(handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


# --- the proxy's tests: an echo backend (two, where routes must differ), a WebSocket echo, and a proxy in front ---

@pytest.fixture
async def backend():
    running = await echo.start()
    yield running
    await running.stop()


@pytest.fixture
async def backend2():
    running = await echo.start()
    yield running
    await running.stop()


@pytest.fixture
async def ws_backend():
    running = await ws_echo.start()
    yield running
    await running.stop()


@pytest.fixture
async def proxy(backend):
    p = Proxy(port=0)
    p.routes.add("/", backend.url)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def git_server(tmp_path):
    """A real git server (tests/gitserver.py) under the test's own folder, stopped after it."""
    from .gitserver import GitServer

    server = GitServer(tmp_path / "git")
    server.start()
    yield server
    server.stop()


# --- the whole service (start.py as a subprocess), for end-to-end tests ---

@pytest.fixture
def make_service(docker_client, notebook_image, tmp_path_factory, request):
    started: list[Service] = []

    def make(**settings) -> Service:
        service = Service(tmp_path_factory.mktemp("nbpool"), f"nbpool-e2e-{secrets.token_hex(3)}", **settings)
        started.append(service)
        return service

    yield make
    failed = getattr(request.node, "call_failed", False)
    for service in started:
        service.stop()
        if failed:
            print(f"--- nbpool log ({service.pool_name}) ---\n{service.logs()[-6000:]}")
        # (on a failure, what each notebook server said too: a page that never drew its notebook, a lost room)
        remove_service_containers(docker_client, service.pool_name, show_logs=failed)
