"""Where workshop material comes from: git repositories, as the operator names them and as links name them.

A **source** is ``{"repo": URL, "ref": branch, tag or commit, "path": folder in the home directory}``
(``c.NbpoolApp.content`` for the service, ``content`` in a workshop's settings); ``ref`` defaults to the
remote's default branch, ``path`` to the repository's name (the last part of its URL, as nbgitpuller
does, less a ``.git``; ``"."`` is the home folder itself).

A **link** names a repository too: nbgitpuller's ``git-pull?repo=…&branch=…&urlpath=…&targetpath=…``, or
a Binder spec (``gh/<org>/<repo>/<ref>``, ``git/<url-encoded URL>/<ref>``). A link's repository is
fetched only when the operator allowed it: a configured source, or a URL that matches one of
``c.NbpoolApp.allowed_content``'s patterns (``https://github.com/our-org/*``), compared without
credentials, a trailing ``/`` or ``.git``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from urllib.parse import unquote

from .gitcache import SKIP_NAMES, redact

SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$")  # git@github.com:org/repo.git (ssh)
MAX_URL = 500


class SourceError(ValueError):
    """A source or a link names something nbpool will not fetch; the message says what and why."""


def check_repo(url: object, where: str = "repo") -> str:
    """``url`` if it is a repository URL nbpool may hand to git (never an option, never a relative path)."""
    if not isinstance(url, str) or not url.strip():
        raise SourceError(f"{where} must be a repository URL such as 'https://github.com/org/course', not {url!r}")
    url = url.strip()
    shown = redact(url)
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise SourceError(f"{where}: {shown[:100]!r} is not a repository URL (too long, or spaces in it)")
    if not (url.startswith(SCHEMES) or url.startswith("/") or SCP_LIKE.match(url)):
        raise SourceError(f"{where}: {shown!r} is not a repository URL nbpool fetches (https://, http://, ssh://, "
                          "git://, file://, user@host:path, or an absolute path)")
    path = url.split("://", 1)[-1]
    if "?" in url or "#" in url or ".." in path.split("/"):
        raise SourceError(f"{where}: {shown!r} has a query, a fragment or a '..' in it")
    return url


def check_ref(ref: object, where: str = "ref") -> str:
    """A branch, tag or commit git may be asked for ('' : the default branch); never an option or a range."""
    if ref is None or ref == "" or ref == "HEAD":
        return ""
    if not isinstance(ref, str) or len(ref) > 200 or ref.startswith("-") or ".." in ref or \
            not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", ref) or ref.endswith((".lock", "/")):
        raise SourceError(f"{where} must be a branch, a tag or a commit such as 'main', 'v1.2' or a 40-hex id, "
                          f"not {str(ref)[:100]!r}")
    return ref


def check_folder(path: object, where: str = "path") -> str:
    """A folder in the attendee's home: relative, plain names ('' : the home folder itself)."""
    if path is None or path in ("", ".", "./"):
        return ""
    if not isinstance(path, str):
        raise SourceError(f"{where} must be a folder in the home directory, not {path!r}")
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." or p.startswith(".") or p in SKIP_NAMES for p in parts) or len(path) > 200:
        raise SourceError(f"{where}: {path[:100]!r} is not a plain folder in the home directory")
    return "/".join(parts)


def repo_folder(url: str) -> str:
    """The folder a repository lands in by default: the URL's last part, as nbgitpuller names it, without a
    '.git' (nbgitpuller keeps it; links to such URLs are rare, and 'course.git' is no name for a folder)."""
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    return check_folder(name) if name not in ("", ".", "..") else "repository"


def same_repo(url: str) -> str:
    """``url`` as links are matched: no credentials, scheme and host lower-cased, no trailing '/' or '.git'."""
    bare = re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", url.strip())
    m = re.match(r"^([A-Za-z+]+://[^/]+)(.*)$", bare)
    if m:
        bare = m.group(1).lower() + m.group(2)
    return bare.rstrip("/").removesuffix(".git").rstrip("/")


@dataclass(frozen=True)
class Source:
    """A repository poured into every container of a workshop."""

    repo: str  # as configured: may carry a credential, so never shown
    ref: str  # '' : the default branch
    path: str  # the folder in the home directory ('' : the home folder)

    @property
    def shown(self) -> str:
        return redact(self.repo)

    @property
    def key(self) -> tuple[str, str]:
        return self.repo, self.ref

    def describe(self) -> str:
        return f"{self.shown}@{self.ref or 'default branch'} -> ~/{self.path}"


def parse_sources(raw: object, where: str) -> list[Source]:
    """``content`` as the operator wrote it (one dict, or a list of them): checked sources."""
    if raw is None or raw == [] or raw == {}:
        return []
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list | tuple):
        raise SourceError(f"{where} must be {{'repo': URL, 'ref': ..., 'path': ...}} or a list of them")
    sources = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if not isinstance(raw, dict) else where
        if not isinstance(item, dict):
            raise SourceError(f"{at} must be a dict with 'repo' (and 'ref', 'path'), not {type(item).__name__}")
        extra = sorted(str(k) for k in item if k not in ("repo", "ref", "path"))
        if extra:
            raise SourceError(f"{at}: unknown key {extra[0]!r} (a source has repo, ref and path)")
        repo = check_repo(item.get("repo"), f"{at}.repo")
        path = check_folder(item["path"], f"{at}.path") if "path" in item else repo_folder(repo)
        sources.append(Source(repo, check_ref(item.get("ref"), f"{at}.ref"), path))
    paths = [s.path for s in sources]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise SourceError(f"{where}: two sources land in the same folder ({twice[0] or 'the home folder'!r}): "
                          "give each its own 'path'")
    return sources


class Allowed:
    """Which repositories a link may make nbpool fetch: the configured sources and the operator's patterns."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()):
        self.patterns = [same_repo(p) for p in patterns]

    def allows(self, url: str, sources: list[Source]) -> bool:
        wanted = same_repo(url)
        return any(same_repo(s.repo) == wanted for s in sources) or any(
            fnmatch.fnmatchcase(wanted, p) for p in self.patterns)


@dataclass(frozen=True)
class PullLink:
    """What an nbgitpuller link asks for."""

    repo: str
    ref: str
    urlpath: str  # relative to the notebook server's root, e.g. 'lab/tree/course/lessons/intro.ipynb'
    target: str  # the folder the repository lands in


def parse_pull_link(arg) -> PullLink:
    """nbgitpuller's query (``arg(name)`` -> value or None): repo (required), branch, urlpath, targetpath, and
    the older subPath + app. SourceError names what is wrong."""
    repo = check_repo(arg("repo"), "repo")
    ref = check_ref(arg("branch"), "branch")
    given_target = arg("targetpath")
    target = check_folder(given_target, "targetpath") if given_target else repo_folder(repo)
    urlpath = (arg("urlpath") or "").strip()
    if not urlpath:
        sub = check_folder(arg("subPath") or "", "subPath") if arg("subPath") else ""
        inside = "/".join(p for p in (target, sub) if p)
        urlpath = f"tree/{inside}" if (arg("app") or "lab") in ("notebook", "classic") else f"lab/tree/{inside}"
    return PullLink(repo, ref, re.sub(r"/{2,}", "/", urlpath).lstrip("/"), target)


def binder_repo(provider: str, spec: str) -> tuple[str, str] | None:
    """(repository URL, ref) of a BinderHub spec (as in the URL, percent-encoded), or None for a provider that
    is not a git repository (zenodo, figshare, …). 'HEAD' and a missing ref mean the default branch."""
    parts = spec.split("/")
    if provider == "gh" and len(parts) >= 2:
        url, rest = f"https://github.com/{unquote(parts[0])}/{unquote(parts[1])}", parts[2:]
    elif (provider in ("gl", "git") and parts and "%2f" in parts[0].lower()) or provider == "git":
        url, rest = unquote(parts[0]), parts[1:]
        if provider == "gl" and "://" not in url:
            url = f"https://gitlab.com/{url}"
    elif provider == "gl" and len(parts) >= 2:
        url, rest = f"https://gitlab.com/{unquote(parts[0])}/{unquote(parts[1])}", parts[2:]
    else:
        return None
    ref = unquote("/".join(rest)).strip("/")
    return url, ("" if ref in ("", "HEAD") else ref)
