"""Kept work's limits against the real service, engine and image: downloads nobody reads, a folder of
thousands of files, the workshop key and a second restore. Each test fails without the protection it names.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.service import cid_of, through_the_line, visitor, vm_kib
from tests.test_kept_work import base_of, put_file, read_file, running, zip_contents

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


def deleted_files(pid: int) -> int:
    """Files process ``pid`` holds open that were deleted (temporary copies)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).endswith("(deleted)")
        except OSError:
            continue
    return count


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def test_downloads_nobody_reads_hold_no_copy_and_little_memory(make_service, docker_client):
    service = make_service(Pool__warm=1, Pool__max_containers=3, WorkKeeper__save_timeout=60)
    service.start()
    owner = visitor()
    url = spawn_with(owner, service)
    base = base_of(url)
    put_file(owner, service, base, "notes.txt", b"mine")
    in_home(docker_client, service, cid_of(url), "head -c 12M /dev/urandom > big.bin")  # does not compress
    end_and_wait(service, owner, url)
    cid, pid = cid_of(url), service.proc.pid
    rss_before = vm_kib(pid, "VmRSS")

    # Thirty downloads of it at once, from clients that read the status line and then nothing more.
    request = (f"GET /kept/{cid}.zip HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
               f"Cookie: {cookie_header(owner)}\r\n\r\n").encode()
    clients = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=120)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(request)
            clients.append(sock)
        statuses = sorted(sock.recv(12).decode()[9:12] for sock in clients)
        time.sleep(2)  # what a download would do next (build a copy, fill buffers) it has had time to do
        assert deleted_files(pid) == 0  # (a temporary copy per request: thirty deleted files of 12 MiB held open)
        assert vm_kib(pid, "VmRSS") - rss_before < 48 * 1024
        # Streamed, two at once per session; the others are told to come back.
        assert statuses == ["200"] * 2 + ["429"] * 28, statuses
        assert service.stats()["available"] >= 0  # the service still answers meanwhile
    finally:
        for sock in clients:
            sock.close()

    # Once they hang up, their places are free again, and the archive is whole.
    def downloads() -> requests.Response:
        return owner.get(f"{service.url}/kept/{cid}.zip", timeout=60)

    service.wait_for(lambda: downloads().status_code == 200, timeout=30, what="the downloads' places freed")
    files = zip_contents(downloads().content)
    assert sorted(files) == ["big.bin", "notes.txt"] and len(files["big.bin"]) == 12 * 2**20


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


def test_a_restore_needs_the_workshop_key_and_happens_once(make_service):
    service = make_service(Pool__warm=1, Pool__max_containers=4, WebApp__workshop_key="open-sesame")
    service.start()
    owner = visitor()
    url = spawn_with(owner, service, "?key=open-sesame")
    cid = cid_of(url)
    put_file(owner, service, base_of(url), "notes.txt", b"mine")
    end_and_wait(service, owner, url)
    before = owner.cookies.copy()  # this browser as it was before continuing (the old session's cookie)

    def restore(session: requests.Session) -> requests.Response:
        return session.post(f"{service.url}/kept/{cid}/restore", data={"path": "tree"},
                            headers={"Origin": service.url}, allow_redirects=False, timeout=120)

    # The session's cookie alone (the workshop key's cookie is not there) is no key.
    no_key = visitor()
    no_key.cookies.update({k: v for k, v in owner.cookies.items() if not k.startswith("nbpool-key")})
    refused = restore(no_key)
    assert refused.status_code == 403 and "needs its link" in refused.text

    restored = through_the_line(owner, service.url, restore(owner))
    assert cid_of(restored) != cid and read_file(owner, base_of(restored), "notes.txt") == b"mine"
    def assigned() -> set[str]:
        return {r["id"] for r in service.admin("GET", "/api/admin/containers").json()["containers"]
                if r["state"] == "assigned"}

    held = assigned()

    # Again, from the browser that continued it: back to that session, and no other container is taken.
    again = restore(owner)
    assert again.status_code == 302 and cid_of(service.url + again.headers["Location"]) == cid_of(restored)
    # From the browser as it was (its cookie names the old session): told it was continued already.
    old = visitor()
    old.cookies.update(before)
    told = restore(old)
    assert told.status_code == 409 and "continued this work in a fresh notebook already" in told.text
    assert 'id="restore"' not in told.text and 'id="download"' in told.text
    assert assigned() == held == {cid_of(restored)}
    assert running(service, cid_of(restored))
