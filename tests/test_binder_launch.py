"""Launch buttons of Jupyter Book and MyST pages pointing at nbpool as their BinderHub (issue 16, its
launch side): /versions, and /v2/<provider>/<spec>?urlpath=… into the spec's workshop, at that path."""

from __future__ import annotations

import pytest
import requests

from spawner.web.binder import landing_path, repository_name

from .dockertools import remove_pool_containers
from .service import cid_of, through_the_line, visitor

NOTEBOOK = "01-python-introduction.ipynb"


@pytest.mark.parametrize(("provider", "spec", "name"), [
    ("gh", "someorg/python-intro/main", "python-intro"),
    ("gh", "SomeOrg/R-Stats/feature/branch-with/slashes", "r-stats"),
    ("gl", "group%2Fsub%2Fr-stats/v1.0", "r-stats"),  # Thebe's and Jupyter Book's form
    ("gl", "group/r-stats/v1.0", "r-stats"),  # MyST's form
    ("git", "https%3A%2F%2Fgit.example.org%2Fteach%2Fr-stats.git/main", "r-stats"),
    ("gist", "someone/abc123/HEAD", "abc123"),
])
def test_the_repository_name_in_a_spec(provider, spec, name):
    assert repository_name(provider, spec) == name


@pytest.mark.parametrize(("urlpath", "labpath", "path"), [
    ("tree/week1/ex.ipynb", "", "tree/week1/ex.ipynb"),  # Jupyter Book, classic interface
    ("lab/tree/ex.ipynb", "", "lab/tree/ex.ipynb"),  # Jupyter Book, JupyterLab
    ("/lab/tree//ex.ipynb", "", "lab/tree/ex.ipynb"),  # MyST (decoded from %2Flab%2Ftree%2F%2F)
    ("notebooks/ex.ipynb", "", "notebooks/ex.ipynb"),
    ("lab", "", "lab"),
    ("", "data/ex.ipynb", "lab/tree/data/ex.ipynb"),
    ("", "", ""),
])
def test_the_path_a_launch_link_asks_for(urlpath, labpath, path):
    assert landing_path(urlpath, labpath) == path


@pytest.fixture
def two_workshops(make_service, docker_client):
    service = make_service(NbpoolApp__workshops={
        "python-intro": {"warm": 1, "max_containers": 2}, "r-stats": {"warm": 1, "max_containers": 2}})
    service.start(wait_warm=False)
    yield service
    service.stop()
    for name in ("python-intro", "r-stats"):
        remove_pool_containers(docker_client, f"{service.pool_name}-{name}")


def test_launch_links_land_in_the_specs_workshop_at_their_path(two_workshops, docker_client):
    service = two_workshops
    versions = requests.get(f"{service.url}/versions", headers={"Origin": "https://book.example.org"}, timeout=10)
    assert versions.ok and "binderhub" in versions.json() and versions.headers["Access-Control-Allow-Origin"] == "*"

    # Jupyter Book's launch button, JupyterLab interface.
    book = visitor()
    first = book.get(f"{service.url}/v2/gh/teach/r-stats/main?urlpath=lab/tree/{NOTEBOOK}", allow_redirects=False,
                     timeout=30)
    assert first.status_code == 302 and first.headers["Location"] == f"/w/r-stats/spawn/lab/tree/{NOTEBOOK}"
    url = through_the_line(book, service.url, book.get(service.url + first.headers["Location"],
                                                       allow_redirects=False, timeout=60))
    assert url.endswith(f"/lab/tree/{NOTEBOOK}") and book.get(url, timeout=30).ok
    (container,) = docker_client.containers.list(filters={"label": f"org.nbpool.id={cid_of(url)}"})
    assert container.labels["org.nbpool.workshop"] == "r-stats"

    # MyST's rocket: the path encoded, with a double slash.
    myst = requests.get(f"{service.url}/v2/gh/teach/python-intro/main?urlpath=%2Flab%2Ftree%2F%2F{NOTEBOOK}",
                        allow_redirects=False, timeout=30)
    assert myst.headers["Location"] == f"/w/python-intro/spawn/lab/tree/{NOTEBOOK}"

    # A repository that names no workshop: the page says which there are; nothing is handed out.
    unknown = requests.get(f"{service.url}/v2/gh/teach/other-course/main", timeout=30)
    assert unknown.status_code == 404 and "/w/python-intro/" in unknown.text and "/w/r-stats/" in unknown.text
    # A path that climbs out of the notebook server is refused at /spawn, as any deep link.
    climbing = requests.get(f"{service.url}/v2/gh/teach/r-stats/main?urlpath=../../etc", timeout=30)
    assert climbing.status_code == 400


def test_a_service_without_named_workshops_serves_every_spec(make_service):
    service = make_service(Pool__warm=0)
    service.start(wait_warm=False)
    resp = requests.get(f"{service.url}/v2/gl/group%2Fany-course/v2?urlpath=tree", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and resp.headers["Location"] == "/spawn/tree"
    bare = requests.get(f"{service.url}/v2/gh/org/repo/HEAD", allow_redirects=False, timeout=30)
    assert bare.headers["Location"] == "/spawn"  # (its landing path, as the workshop link's)
    assert requests.get(f"{service.url}/v2/nope/org/repo/HEAD", timeout=30).status_code == 404
