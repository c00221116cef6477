"""Kept work's limits against the real service, engine and image: a folder of thousands of files.
Each test fails without the protection it names.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.service import cid_of, through_the_line, visitor
from tests.test_kept_work import base_of, put_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def container_of(docker_client, service, cid: str):
    return next(c for c in docker_client.containers.list(filters={"label": f"org.nbpool.pool={service.pool_name}"})
                if cid in c.name)


def in_home(docker_client, service, cid: str, script: str) -> None:
    """Run ``script`` (sh) in the attendee's home, as the attendee (the container's own user)."""
    result = container_of(docker_client, service, cid).exec_run(["sh", "-c", script], user="1000:1000",
                                                                workdir="/home/jovyan")
    assert result.exit_code == 0, result.output[-500:]


def spawn_with(session: requests.Session, service, query: str = "") -> str:
    resp = session.get(f"{service.url}/spawn{query}", allow_redirects=False, timeout=30)
    return through_the_line(session, service.url, resp)


def end_and_wait(service, session: requests.Session, url: str) -> None:
    """The operator removes the container (the last save runs); wait for the ended page to offer the work."""
    assert service.admin("DELETE", f"/api/admin/containers/{cid_of(url)}").status_code == 204
    service.wait_for(lambda: "Your work was kept" in session.get(url, timeout=30).text, timeout=90,
                     what="the ended page offering the kept work")


def test_a_folder_with_more_files_than_kept_work_looks_at_is_passed_over(make_service, docker_client):
    service = make_service(Pool__warm=1, Pool__max_containers=3, WorkKeeper__save_timeout=60,
                           WorkKeeper__max_files=200)
    service.start()
    owner = visitor()
    url = spawn_with(owner, service)
    put_file(owner, service, base_of(url), "notes.txt", b"mine")
    # 20,000 empty files: their listing (about 5 MB) is far over what 200 files need (256 KB).
    in_home(docker_client, service, cid_of(url),
            "mkdir many && cd many && seq -w 1 20000 | sed 's/^/attendee-file-/' | xargs touch")
    end_and_wait(service, owner, url)
    page = owner.get(url, timeout=30).text
    assert "notes.txt" in page
    assert re.search(r"many/:\s*not kept: its list of files is over 256 KB \(too many files in one folder\)", page)
    assert "attendee-file-" not in page
    kept = service.admin("GET", "/api/admin/kept").json()["sessions"]
    assert [r["files"] for r in kept if r["id"] == cid_of(url)] == [1]
