"""Kept work against the real service, engine and image: an attendee's files outlive their container.

Everything goes through the public port as a browser would (the visitor's
cookie, Origin on writes); nbpool saves through each notebook server's own API.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile

import pytest
import requests

from tests.service import cid_of, spawn, through_the_line, visitor

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NEW_NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "made-by-the-attendee",
                           "metadata": {}, "outputs": [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}],
                           "source": ["print(6 * 7)"]}],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}


def base_of(url: str) -> str:
    return re.match(r"(.*/user/[0-9a-f]+/)", url).group(1)


def put_file(session: requests.Session, service, base: str, path: str, data: bytes) -> None:
    """Write a file in the visitor's server through the proxy, as the notebook UI's upload does."""
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    resp = session.put(f"{base}api/contents/{path}", json=body, headers={"Origin": service.url}, timeout=30)
    assert resp.status_code in (200, 201), (resp.status_code, resp.text[:300])


def make_folder(session: requests.Session, service, base: str, path: str) -> None:
    resp = session.put(f"{base}api/contents/{path}", json={"type": "directory"}, headers={"Origin": service.url},
                       timeout=30)
    assert resp.status_code in (200, 201), resp.text[:300]


def read_file(session: requests.Session, base: str, path: str) -> bytes:
    resp = session.get(f"{base}files/{path}", timeout=30)
    assert resp.status_code == 200, (resp.status_code, resp.text[:200])
    return resp.content


def attendee_work(session: requests.Session, service, base: str) -> dict[str, bytes]:
    """A created notebook, an edited workshop notebook, a data file in a folder: what they made."""
    original = json.loads(read_file(session, base, "01-python-introduction.ipynb"))
    original["cells"].append({"cell_type": "markdown", "id": "my-note", "metadata": {}, "source": ["My own note"]})
    made = {
        "my-analysis.ipynb": json.dumps(NEW_NOTEBOOK, indent=1).encode(),
        "01-python-introduction.ipynb": json.dumps(original, indent=1).encode(),
        "data/results.csv": b"x,y\n1,2\n3,4\n",
    }
    make_folder(session, service, base, "data")
    for path, data in made.items():
        put_file(session, service, base, path, data)
    return made


def running(service, cid: str) -> bool:
    return any(row["id"] == cid for row in service.admin("GET", "/api/admin/containers").json()["containers"])


def zip_contents(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_an_idle_culled_attendees_work_comes_back_by_zip_and_by_restore(make_service):
    service = make_service(Pool__warm=1, Pool__max_containers=4, Pool__cull_idle=6, Pool__cull_interval=2,
                           WorkKeeper__max_per_attendee="300K")
    service.start()
    owner = visitor()
    url = spawn(owner, service.url)
    base, cid = base_of(url), cid_of(url)
    made = attendee_work(owner, service, base)
    put_file(owner, service, base, "big.bin", b"\0" * 400_000)  # over the 300K each attendee may keep

    # Idle (nothing asked of it meanwhile: polling its pages would be activity): culled within
    # cull_idle + cull_interval; the ended page then offers the work back.
    service.wait_for(lambda: not running(service, cid), timeout=60, what="the idle cull")
    service.wait_for(lambda: "Your work was kept" in owner.get(url, timeout=30).text, timeout=30,
                     what="the ended page offering the kept work")
    page = owner.get(url, timeout=30)
    assert page.status_code == 404 and "has ended" in page.text
    for path in made:
        assert path in page.text
    assert "02-r-introduction.ipynb" not in page.text and "README.md" not in page.text  # the image's own, unchanged
    assert re.search(r"big\.bin \(400\.0 KB\):\s*not kept: too large", page.text)

    # A stranger, and the same URLs without any cookie, see nothing of it.
    stranger = visitor()
    spawn(stranger, service.url)
    for client in (stranger, requests.Session()):
        ended = client.get(url, timeout=30)
        assert "Your work was kept" not in ended.text and "my-analysis" not in ended.text
        assert client.get(f"{service.url}/kept/{cid}", timeout=30).status_code == 404
        assert client.get(f"{service.url}/kept/{cid}.zip", timeout=30).status_code == 404
        refused = client.post(f"{service.url}/kept/{cid}/restore", headers={"Origin": service.url}, timeout=30,
                              allow_redirects=False)
        assert refused.status_code == 404

    # Download all: exactly the files they made, byte for byte.
    archive = owner.get(f"{service.url}/kept/{cid}.zip", timeout=30)
    assert archive.status_code == 200 and archive.headers["Content-Type"] == "application/zip"
    assert zip_contents(archive.content) == made

    # The workshop link now leads to the kept work first, not silently to a fresh notebook.
    again = owner.get(f"{service.url}/spawn", allow_redirects=False, timeout=30)
    assert again.status_code == 302 and again.headers["Location"].startswith(f"/kept/{cid}")

    # Continue in a fresh notebook: the same files in a new container, landing in the newest notebook.
    resp = owner.post(f"{service.url}/kept/{cid}/restore", data={"path": ""}, headers={"Origin": service.url},
                      allow_redirects=False, timeout=120)
    fresh_url = through_the_line(owner, service.url, resp)
    fresh_base = base_of(fresh_url)
    assert cid_of(fresh_url) != cid and "/notebooks/" in fresh_url
    for path, data in made.items():
        assert read_file(owner, fresh_base, path) == data
    assert owner.get(fresh_url, timeout=30).status_code == 200


def test_a_restore_waits_in_line_and_a_cross_site_one_is_refused(make_service):
    # No spares: the hand-out and the restore both go through the waiting line.
    service = make_service(Pool__warm=0, Pool__max_containers=3)
    service.start(wait_warm=False)
    owner = visitor()
    url = spawn(owner, service.url)
    base, cid = base_of(url), cid_of(url)
    put_file(owner, service, base, "notes.txt", b"mine")
    assert service.admin("DELETE", f"/api/admin/containers/{cid}").status_code == 204
    assert "notes.txt" in owner.get(url, timeout=30).text
    other_site = owner.post(f"{service.url}/kept/{cid}/restore", headers={"Origin": "https://evil.example"},
                            allow_redirects=False, timeout=30)
    assert other_site.status_code == 403
    listed = service.admin("GET", "/api/admin/kept").json()
    row = next(r for r in listed["sessions"] if r["id"] == cid)
    assert row["files"] == 1 and row["state"] == "ended" and "nonce" not in json.dumps(listed)

    resp = owner.post(f"{service.url}/kept/{cid}/restore", data={"path": "tree"}, headers={"Origin": service.url},
                      allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and "/spawn/wait/" in resp.headers["Location"]
    restored = through_the_line(owner, service.url, resp)
    assert restored.endswith("/tree") and cid_of(restored) != cid
    assert read_file(owner, base_of(restored), "notes.txt") == b"mine"

    assert service.admin("DELETE", f"/api/admin/kept/{cid}").status_code == 204
    assert "notes.txt" not in owner.get(url, timeout=30).text


def test_a_killed_container_keeps_its_last_checkpoint_across_a_restart(make_service, docker_client):
    service = make_service(Pool__warm=1, Pool__max_containers=3, WorkKeeper__keep_interval=10,
                           Pool__reconcile_interval=3600)
    service.start()
    owner = visitor()
    url = spawn(owner, service.url)
    base, cid = base_of(url), cid_of(url)
    put_file(owner, service, base, "notes.txt", b"checkpointed version")

    def checkpointed() -> bool:
        rows = service.admin("GET", "/api/admin/kept").json()["sessions"]
        return any(r["id"] == cid and r["files"] == 1 for r in rows)

    service.wait_for(checkpointed, timeout=40, what="a checkpoint")
    put_file(owner, service, base, "notes.txt", b"written after the checkpoint, lost with the container")
    engine = next(c for c in docker_client.containers.list(
        filters={"label": f"org.nbpool.pool={service.pool_name}"}) if cid in c.name)
    engine.kill()
    service.wait_for(lambda: "Your work was kept" in owner.get(url, timeout=30).text, timeout=30,
                     what="the ended page with the checkpoint")
    assert "Its server stopped unexpectedly." in owner.get(url, timeout=30).text

    service.restart()  # kept work lives in the data directory: a restart loses none of it
    page = owner.get(url, timeout=30)
    assert "Your work was kept" in page.text and "notes.txt" in page.text
    archive = owner.get(f"{service.url}/kept/{cid}.zip", timeout=30)
    assert zip_contents(archive.content) == {"notes.txt": b"checkpointed version"}
    kept_dir = service.data_dir / "kept" / cid
    assert (kept_dir.stat().st_mode & 0o777) == 0o700
    assert ((kept_dir / "files" / "notes.txt").stat().st_mode & 0o777) == 0o600
    assert ((kept_dir / "kept.json").stat().st_mode & 0o777) == 0o600
