"""Material from git without an engine: the rules for sources, links and the allow list, and the git cache
against real repositories on this machine (git itself, a local path and a real ``git daemon``)."""

from __future__ import annotations

import asyncio

import pytest

from spawner.content import Allowed, FetchError, GitCache, SourceError, binder_repo, parse_pull_link, parse_sources
from spawner.content.gitcache import redact
from spawner.content.sources import check_repo, repo_folder
from spawner.workshops import WorkshopError, parse_workshops

from .gitserver import notebook


def test_sources_are_checked_and_name_what_is_wrong():
    (one,) = parse_sources({"repo": "https://x-access-token:s3cret@github.com/org/course.git"}, "c")
    assert (one.ref, one.path) == ("", "course") and "s3cret" not in one.describe()
    two = parse_sources([{"repo": "/srv/git/a", "path": "."}, {"repo": "git@host:org/b.git", "ref": "v1.2"}], "c")
    assert [(s.path, s.ref) for s in two] == [("", ""), ("b", "v1.2")]
    for bad, said in [({"repo": "-oProxyCommand=x"}, "not a repository URL"), ({"repo": "ext::sh -c x"}, "not a "),
                      ({"repo": "https://h/a/../b"}, "'..'"), ({"repo": "https://h/a", "ref": "--all"}, "ref must"),
                      ({"repo": "https://h/a", "path": "../x"}, "not a plain folder"),
                      ({"repo": "https://h/a", "branch": "x"}, "unknown key 'branch'"),
                      ([{"repo": "https://h/a"}, {"repo": "https://h2/a"}], "same folder")]:
        with pytest.raises(SourceError, match=said.replace("(", r"\(").replace(".", r"\.")):
            parse_sources(bad, "c")
    with pytest.raises(WorkshopError, match=r"workshops\['w'\]\.content\.repo"):
        parse_workshops({"w": {"content": {"repo": 3}}}, zone=None)


def test_links_and_binder_specs_name_a_repository_as_nbgitpuller_and_binderhub_do():
    link = parse_pull_link({"repo": "https://github.com/org/course", "branch": "main",
                            "urlpath": "/lab/tree//course/intro.ipynb"}.get)
    assert (link.ref, link.target, link.urlpath) == ("main", "course", "lab/tree/course/intro.ipynb")
    legacy = parse_pull_link({"repo": "https://github.com/org/course", "subPath": "week1", "app": "notebook"}.get)
    assert legacy.urlpath == "tree/course/week1"
    assert parse_pull_link({"repo": "https://h/org/c", "targetpath": "."}.get).target == ""
    for hostile in ("../../etc", "/abs/../x", ".ssh"):
        with pytest.raises(SourceError, match="targetpath"):
            parse_pull_link({"repo": "https://h/org/c", "targetpath": hostile}.get)
    with pytest.raises(SourceError, match="repo must be"):
        parse_pull_link({}.get)
    assert binder_repo("gh", "org/course/main") == ("https://github.com/org/course", "main")
    assert binder_repo("gh", "org/course/HEAD") == ("https://github.com/org/course", "")
    encoded = "https%3A%2F%2Fgit.example.org%2Fa%2Fb.git/v2"
    assert binder_repo("git", encoded) == ("https://git.example.org/a/b.git", "v2")
    assert binder_repo("gl", "group/proj/main") == ("https://gitlab.com/group/proj", "main")
    assert binder_repo("zenodo", "10.5281/zenodo.1") is None
    assert repo_folder("https://github.com/org/course.git/") == "course"


def test_the_allow_list_matches_without_credentials_case_or_suffix_and_nothing_else():
    allowed = Allowed(["https://github.com/our-org/*"])
    assert allowed.allows("https://GitHub.com/our-org/course.git/", [])
    assert allowed.allows("https://tok@github.com/our-org/course", [])
    assert not allowed.allows("https://github.com/our-org-evil/course", [])
    assert not allowed.allows("https://github.com/other/course", [])
    sources = parse_sources({"repo": "https://tok@git.example.org/private/course"}, "c")
    assert Allowed([]).allows("https://git.example.org/private/course.git", sources)  # a configured source
    assert "tok" not in redact("fatal: unable to access 'https://user:tok@h/x/'")
    assert redact("could not read from tok", "https://tok@h/x") == "could not read from ***"
    with pytest.raises(SourceError):
        check_repo("https://h/x?upload-pack=y")


def test_a_class_fetching_at_once_is_one_fetch_and_a_failure_keeps_the_last_good_commit(tmp_path, git_server):
    first = git_server.create("course", {"intro.ipynb": notebook("1"), "data/big.bin": b"\0" * 4096,
                                         ".hidden": "x", "__pycache__/m.pyc": b"x"})
    cache = GitCache(tmp_path / "cache")

    async def run():
        snaps = await asyncio.gather(*(cache.fetch(git_server.url("course"), "main") for _ in range(10)))
        assert {s.commit for s in snaps} == {first} and sorted(snaps[0].files) == ["data/big.bin", "intro.ipynb"]
        assert git_server.fetches("course") == 1 and cache.fetches == 1
        assert (await cache.fetch(git_server.url("course"), first)).commit == first  # a commit: already here
        second = git_server.commit("course", {"intro.ipynb": notebook("2")})
        assert (await cache.fetch(git_server.url("course"), "main")).commit == second
        assert cache.fetches == 2
        # The cache keeps what its refs name (the commit named by id is one), not every commit it served.
        third = git_server.commit("course", {"intro.ipynb": notebook("3")})
        assert (await cache.fetch(git_server.url("course"), "main")).commit == third
        repo = cache.repo_dir(git_server.url("course"))
        assert not await cache._has(repo, second, "") and await cache._has(repo, first, "")
        git_server.stop()
        with pytest.raises(FetchError):
            await cache.fetch(git_server.url("course"), "main")
        assert cache.last(git_server.url("course"), "main").commit == third  # still served
        assert cache.tried[(git_server.url("course"), "main")].error
        # After a restart, read back from the cache without the network.
        again = await GitCache(tmp_path / "cache").load(git_server.url("course"), "main")
        assert again.commit == third and b"3" in again.files["intro.ipynb"]

    asyncio.run(run())


def test_a_repository_larger_than_the_cap_is_refused_and_a_local_path_is_fetched(tmp_path, git_server):
    git_server.create("huge", {"blob.bin": bytes(range(256)) * 4096})  # 1 MiB
    small = GitCache(tmp_path / "small", max_bytes=100_000)

    async def run():
        with pytest.raises(FetchError, match="larger than"):
            await small.fetch(git_server.url("huge"), "")
        assert small.last(git_server.url("huge"), "") is None
        local = await GitCache(tmp_path / "local").fetch(str(git_server.root / "huge"), "")
        assert len(local.files["blob.bin"]) == 2**20
        with pytest.raises(FetchError) as failed:
            await GitCache(tmp_path / "x", timeout=10).fetch("https://user:hunter2@127.0.0.1:1/x", "")
        assert "hunter2" not in str(failed.value)

    asyncio.run(run())
