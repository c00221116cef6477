"""Workshop material from git (issue 28), against the real service, engine and image, and a real git server
(``git daemon`` on this machine's loopback: tests/gitserver.py).

- an nbgitpuller link lands in the notebook at ``urlpath`` with the repository's files, the git server sees
  one fetch for a class following the link at once, and an attendee who follows it again keeps their changes;
- a repository not allowed gets a clear refusal and nothing is fetched;
- a workshop's content is in its spares before anyone takes them; a new commit reaches a running attendee
  while their edit of the same file is kept (the new version lands beside it); a failing remote keeps the
  last good content, and the status page says why;
- a Binder launch link (``/v2/git/<url>/<ref>``) for a file that exists only in the repository opens it.
"""

from __future__ import annotations

import concurrent.futures
import json
from urllib.parse import quote, urlencode

import pytest
import requests

from .gitserver import notebook
from .service import cid_of, through_the_line, visitor

pytestmark = [pytest.mark.docker]

INTRO = notebook("print('lesson one')")


def contents(session: requests.Session, container_url: str, path: str) -> str | None:
    """A file of the visitor's container as its server has it (None: not there)."""
    base = container_url.split("/user/")[0] + "/user/" + cid_of(container_url) + "/"
    resp = session.get(f"{base}api/contents/{quote(path)}", params={"content": 1, "type": "file",
                                                                      "format": "text"}, timeout=30)
    return resp.json()["content"] if resp.status_code == 200 else None


def write(session: requests.Session, container_url: str, service, path: str, text: str) -> None:
    base = container_url.split("/user/")[0] + "/user/" + cid_of(container_url) + "/"
    resp = session.put(f"{base}api/contents/{quote(path)}", json={"type": "file", "format": "text", "content": text},
                       headers={"Origin": service.url}, timeout=30)
    assert resp.status_code in (200, 201), resp.text[:300]


def follow(session: requests.Session, service, link: str) -> str:
    """Follow a link as a browser would (through the waiting line if need be): the URL it lands on."""
    resp = session.get(f"{service.url}{link}", allow_redirects=False, timeout=120)
    while resp.status_code == 302 and "/git-pull?" in resp.headers["Location"]:  # (a Binder link's next step)
        resp = session.get(service.url + resp.headers["Location"], allow_redirects=False, timeout=120)
    assert resp.status_code == 302, (resp.status_code, resp.text[:500])
    return through_the_line(session, service.url, resp)


def test_an_nbgitpuller_link_lands_in_its_notebook_fetched_once_for_a_class_and_keeps_a_returning_attendees_work(
        make_service, git_server):
    git_server.create("course", {"lessons/intro.ipynb": INTRO, "data/values.csv": "a,b\n1,2\n",
                                 ".github/workflows/ci.yml": "on: push\n"})
    git_server.create("secret", {"answers.ipynb": notebook("42")})
    service = make_service(Pool__warm=3, Pool__max_containers=6,
                           NbpoolApp__allowed_content=[f"git://127.0.0.1:{git_server.port}/course*"])
    service.start()
    link = "/hub/user-redirect/git-pull?" + urlencode(
        {"repo": git_server.url("course"), "branch": "main", "urlpath": "lab/tree/course/lessons/intro.ipynb"})

    # A class follows the link at the same moment: one fetch reaches the git server.
    attendees = [visitor() for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(attendees)) as pool:
        landed = list(pool.map(lambda s: follow(s, service, link), attendees))
    for session, url in zip(attendees, landed, strict=True):
        assert url.endswith("/lab/tree/course/lessons/intro.ipynb"), url
        assert json.loads(contents(session, url, "course/lessons/intro.ipynb")) == json.loads(INTRO)
        assert contents(session, url, "course/data/values.csv") == "a,b\n1,2\n"
        assert contents(session, url, "course/.github/workflows/ci.yml") is None  # (dot-names stay out)
    assert len({cid_of(u) for u in landed}) == len(attendees)
    assert git_server.fetches("course") == 1, git_server.log_path.read_text()

    # One of them changes the lesson, and comes back with the link: their own container, their change kept.
    mine = notebook("print('my own answer')")
    write(attendees[0], landed[0], service, "course/lessons/intro.ipynb", mine)
    again = follow(attendees[0], service, link)
    assert cid_of(again) == cid_of(landed[0])
    assert json.loads(contents(attendees[0], again, "course/lessons/intro.ipynb")) == json.loads(mine)

    # A repository the operator did not allow: a clear page, and nothing fetched.
    other = visitor()
    refused = other.get(f"{service.url}/git-pull?" + urlencode({"repo": git_server.url("secret")}), timeout=30)
    assert refused.status_code == 403 and "not offered here" in refused.text
    assert git_server.fetches("secret") == 0
    bad = other.get(f"{service.url}/git-pull?" + urlencode({"repo": "--upload-pack=touch /tmp/x"}), timeout=30)
    assert bad.status_code == 400 and "not a repository URL" in bad.text


def test_a_workshops_content_is_in_its_spares_and_a_new_commit_reaches_attendees_keeping_their_edits(
        make_service, git_server):
    first = git_server.create("material", {"a.ipynb": notebook("x = 1"), "b.md": "# Notes\n"})
    service = make_service(NbpoolApp__workshops={"course": {"warm": 2, "max_containers": 5, "landing_path": "tree",
                                                            "content": {"repo": git_server.url("material"),
                                                                        "ref": "main"}}},
                           NbpoolApp__content_interval=0)
    service.start(wait_warm=False)
    service.wait_for(lambda: service.admin("GET", "/api/admin/content").json()["sources"][0]["commit"] == first,
                     timeout=60, what="the first fetch")
    service.wait_for(lambda: requests.get(f"{service.url}/w/course/api/stats", timeout=10).json()["available"] >= 2,
                     timeout=120, what="2 spares")
    editor, other = visitor(), visitor()
    editor_url = follow(editor, service, "/w/course/spawn")
    other_url = follow(other, service, "/w/course/spawn")
    for session, url in ((editor, editor_url), (other, other_url)):
        assert contents(session, url, "material/b.md") == "# Notes\n"
    mine = notebook("x = 'the attendee changed this'")
    write(editor, editor_url, service, "material/a.ipynb", mine)

    # The instructor fixes both files and pushes; an operator (or a schedule) pulls.
    second = git_server.commit("material", {"a.ipynb": notebook("x = 2"), "b.md": "# Notes, fixed\n"})
    pulled = service.admin("POST", "/api/admin/workshops/course/pull").json()["sources"]
    assert [r["commit"] for r in pulled] == [second] and not pulled[0]["error"]
    service.wait_for(lambda: contents(editor, editor_url, "material/b.md") == "# Notes, fixed\n", timeout=60,
                     what="the new commit in a running container")
    assert json.loads(contents(editor, editor_url, "material/a.ipynb")) == json.loads(mine)  # theirs, kept
    service.wait_for(lambda: contents(editor, editor_url, "material/a (updated).ipynb") is not None, timeout=30,
                     what="the new version beside the attendee's")
    assert "x = 2" in contents(editor, editor_url, "material/a (updated).ipynb")
    service.wait_for(lambda: "x = 2" in (contents(other, other_url, "material/a.ipynb") or ""), timeout=30,
                     what="the untouched copy replaced")
    assert contents(other, other_url, "material/a (updated).ipynb") is None

    # The git server goes away: the pull says why, and new attendees still get the last good commit.
    git_server.stop()
    failed = service.admin("POST", "/api/admin/content/pull").json()["sources"]
    assert failed[0]["commit"] == second and failed[0]["error"], failed
    page = service.admin("GET", "/status").text
    assert git_server.url("material") in page and second[:10] in page and failed[0]["error"][:30] in page
    late = visitor()
    late_url = follow(late, service, "/w/course/spawn")
    assert contents(late, late_url, "material/b.md") == "# Notes, fixed\n"
    assert "failed" in service.logs() and git_server.url("material") in service.logs()


def test_a_binder_link_opens_a_file_that_only_the_repository_has(make_service, git_server):
    git_server.create("book", {"only-in-the-book.ipynb": notebook("print('from the book')"), "intro.md": "# Book\n"})
    # (a private source whose token must never show: its host does not answer, so its error is logged)
    secret = "s3cr3t-t0ken"
    service = make_service(Pool__warm=1, Pool__max_containers=3,
                           NbpoolApp__allowed_content=[f"git://127.0.0.1:{git_server.port}/*"],
                           NbpoolApp__content={"repo": f"https://nbpool:{secret}@127.0.0.1:9/private", "path": "p"})
    service.start()
    reader = visitor()
    spec = quote(git_server.url("book"), safe="")
    # As MyST writes it: urlpath with a leading slash and a double one.
    landed = follow(reader, service, f"/v2/git/{spec}/main?urlpath=%2Flab%2Ftree%2F%2Fonly-in-the-book.ipynb")
    assert landed.endswith("/lab/tree/only-in-the-book.ipynb"), landed
    assert "from the book" in contents(reader, landed, "only-in-the-book.ipynb")  # at the home folder's root
    page = reader.get(landed, timeout=30)
    assert page.status_code == 200
    service.wait_for(lambda: service.admin("GET", "/api/admin/content").json()["sources"][0]["error"], timeout=60,
                     what="the private source's failed fetch")
    shown = [service.logs(), service.admin("GET", "/status").text, service.admin("GET", "/api/admin/content").text]
    assert all("https://***@127.0.0.1:9/private" in text for text in shown[1:]), shown[2]
    assert not any(secret in text for text in shown)
    # The same spec with a repository nobody allowed still opens the workshop, without fetching anything.
    stranger = visitor()
    other = quote(f"git://127.0.0.1:{git_server.port + 1}/elsewhere", safe="")
    resp = stranger.get(f"{service.url}/v2/git/{other}/main", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and "/spawn" in resp.headers["Location"] and "git-pull" not in resp.headers[
        "Location"]

    # SIGHUP with the allow list emptied: the book's spec only picks the workshop again, nothing fetched.
    service.write_config(NbpoolApp__allowed_content=[])
    service.sighup()
    service.wait_for(lambda: "applied NbpoolApp: allowed_content=[]" in service.logs(), timeout=30, what="the reload")
    resp = visitor().get(f"{service.url}/v2/git/{spec}/main", allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and "git-pull" not in resp.headers["Location"], resp.headers["Location"]
