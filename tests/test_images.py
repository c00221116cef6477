"""The base and workshop images, checked against the real engine (issue: foundation)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from loadtest.jupyter import KernelClient
from tests.dockertools import BASE_IMAGE, TEST_POOL

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
WORKSHOPS = sorted((ROOT / "notebook-image" / "workshops").glob("*.ipynb"))


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_text(url: str, headers: dict[str, str]) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return resp.read().decode()


# --- the base image -----------------------------------------------------------------

def test_base_image_is_the_distro_and_suite_it_claims(docker_client):
    image = docker_client.images.get(BASE_IMAGE)
    labels = image.labels
    assert labels["org.nbpool.distro"] == "debian"
    assert labels["org.nbpool.suite"] == "bookworm"
    assert labels["org.nbpool.mirror"].startswith("http")
    assert labels["org.nbpool.build-date"][:2] == "20"
    os_release = docker_client.containers.run(
        BASE_IMAGE, ["cat", "/etc/os-release"], remove=True, labels={"org.nbpool.pool": TEST_POOL}
    ).decode()
    assert "ID=debian" in os_release
    assert "VERSION_CODENAME=bookworm" in os_release


def test_base_image_is_trimmed(docker_client):
    out = docker_client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", "ls /usr/share/man | wc -l; echo $LANG; test -c /dev/null && echo devnull"],
        remove=True, labels={"org.nbpool.pool": TEST_POOL},
    ).decode().split()
    assert out == ["0", "C.UTF-8", "devnull"]


def test_base_build_is_idempotent(docker_client):
    before = docker_client.images.get(BASE_IMAGE).id
    proc = subprocess.run(["bash", str(ROOT / "arch-base" / "mkimage.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "already exists; nothing to do" in proc.stdout
    assert docker_client.images.get(BASE_IMAGE).id == before


def test_arch_base_without_pacstrap_says_so():
    if shutil.which("pacstrap"):
        pytest.skip("pacstrap is installed here: building Arch needs its mirrors and minutes; "
                    "run 'arch-base/mkimage.sh --distro arch' by hand")
    proc = subprocess.run(["bash", str(ROOT / "arch-base" / "mkimage.sh"), "--distro", "arch", "--force"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "pacstrap is not installed" in proc.stderr
    assert "--distro debian" in proc.stderr


def test_unknown_distro_is_named_in_the_error():
    proc = subprocess.run(["bash", str(ROOT / "arch-base" / "mkimage.sh"), "--distro", "gentoo"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "'gentoo'" in proc.stderr


# --- the workshop image -------------------------------------------------------------

def test_kernelspecs(docker_client, notebook_image):
    out = docker_client.containers.run(
        notebook_image, ["jupyter", "kernelspec", "list", "--json"], remove=True,
        labels={"org.nbpool.pool": TEST_POOL},
    )
    specs = json.loads(out)["kernelspecs"]
    assert {"python3", "ir", "octave", "bash"} <= set(specs)


def test_status_needs_the_token(notebook_server):
    assert http_status(notebook_server.url + "api/status", notebook_server.auth) == 200
    assert http_status(notebook_server.url + "api/status") == 403
    assert http_status(notebook_server.url + "api/status", {"Authorization": "token wrong"}) == 403
    # the base URL is honoured: nothing is served outside it
    assert http_status(f"http://127.0.0.1:{notebook_server.port}/api/status", notebook_server.auth) == 404


def test_runs_as_jovyan_under_tini(notebook_server):
    code, cmdline = notebook_server.exec("cat", "/proc/1/cmdline")
    assert code == 0
    assert cmdline.split("\0")[0] == "/usr/bin/tini"
    top = notebook_server.container.top(ps_args="-eo pid,uid,args")
    servers = [p for p in top["Processes"] if "jupyter-notebook" in p[2] or "jupyter notebook" in p[2]]
    assert servers, top
    assert all(p[1] == "1000" for p in servers)
    code, ident = notebook_server.exec("id")
    assert ident.startswith("uid=1000(jovyan) gid=1000(jovyan)")


def test_home_holds_the_workshop_materials(notebook_server):
    code, listing = notebook_server.exec("ls", "/home/jovyan")
    assert code == 0
    for nb in WORKSHOPS:
        assert nb.name in listing.split()
    code, _ = notebook_server.exec("touch", "/home/jovyan/01-python-introduction.ipynb")
    assert code == 0, "the attendee must be able to save the workshop notebooks"


def test_branding_is_served(notebook_server):
    css = http_text(notebook_server.url + "custom/custom.css", notebook_server.auth)
    assert "logo.svg" in css
    logo = http_text(notebook_server.url + "custom/logo.svg", notebook_server.auth)
    assert logo.lstrip().startswith("<svg")
    for page in ("tree", "lab"):
        html = http_text(notebook_server.url + page, notebook_server.auth)
        assert "custom/custom.css" in html, page


def test_quit_button_is_disabled(notebook_server):
    html = http_text(notebook_server.url + "tree", notebook_server.auth)
    start = html.index('id="jupyter-config-data"')
    config = json.loads(html[html.index(">", start) + 1: html.index("</script>", start)])
    assert config["quitButton"] is False


@pytest.mark.parametrize(
    ("kernel", "code", "expected"),
    [
        ("python3", "print(sum(range(101)))", "5050"),
        ("ir", "cat(sum(1:100))", "5050"),
        ("octave", "disp(sum(1:100))", "5050"),
        ("bash", "echo $(( 100 * 101 / 2 ))", "5050"),
    ],
)
async def test_kernel_executes_over_websocket(notebook_server, kernel, code, expected):
    client = KernelClient(notebook_server.url, notebook_server.auth, timeout=60)
    try:
        await client.start(kernel)
        result = await client.execute(code)
    finally:
        await client.shutdown()
    assert result.status == "ok", result.error
    assert result.output.strip() == expected


@pytest.mark.slow
@pytest.mark.parametrize("notebook", WORKSHOPS, ids=lambda p: p.stem)
def test_workshop_notebook_runs_top_to_bottom(notebook_server, notebook):
    # Execute a copy, so the attendee-facing original stays without outputs.
    code, out = notebook_server.exec(
        "sh", "-c",
        f"cp '/home/jovyan/{notebook.name}' /tmp/run.ipynb && "
        "jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=120 "
        "--output /tmp/ran.ipynb /tmp/run.ipynb && cat /tmp/ran.ipynb",
    )
    assert code == 0, out
    ran = json.loads(out[out.index("{"):])
    outputs = [o for cell in ran["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    # Every notebook shows its reader something, and the ones that promise a plot draw one.
    assert outputs
    if notebook.stem.split("-")[1] in ("python", "r", "octave"):
        assert any("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in outputs), \
            f"{notebook.name} drew no plot"


def test_workshop_notebooks_are_stored_without_outputs():
    for nb in WORKSHOPS:
        data = json.loads(nb.read_text())
        assert data["metadata"]["kernelspec"]["name"] in {"python3", "ir", "octave", "bash"}
        assert all(not c.get("outputs") for c in data["cells"] if c["cell_type"] == "code"), nb.name


async def test_kernel_websocket_uses_the_v1_subprotocol(notebook_server):
    client = KernelClient(notebook_server.url, notebook_server.auth, timeout=60)
    try:
        await client.start("python3")
        result = await client.execute("print(6 * 7)")
    finally:
        await client.shutdown()
    assert client.subprotocol == "v1.kernel.websocket.jupyter.org"
    assert result.output.strip() == "42"
