"""The launch side of the BinderHub API: ``/v2/<provider>/<spec>?urlpath=…`` and ``/versions``.

Launch buttons on Jupyter Book (sphinx-book-theme ``binderhub_url``) and MyST
(``jupyter: binder: url:``) pages open ``{binderUrl}/v2/{provider}/{spec}?urlpath=<path>``
in a new tab; MyST first checks that ``GET {binderUrl}versions`` answers as a
BinderHub. nbpool builds nothing: the spec chooses the workshop, and the
visitor goes on to that workshop's ``/spawn/<path>`` (the waiting line, the
session cookie and every admission rule as for any visitor). When the spec's
repository is one nbpool may fetch (``NbpoolApp.allowed_content``, or a
workshop's ``content``), the visitor goes through ``/git-pull`` instead, and
gets that repository's files (at the chosen ref) at the root of their home
folder, as Binder would have them; the environment is still the workshop's
image.

The rule, documented in docs/embed/launch-buttons.md: the repository's name in the spec
(``gh/<org>/<repo>/<ref>`` -> ``<repo>``; ``gl`` and ``git`` take the last part
of the URL-encoded repository, without ``.git``) is the workshop's name.
A service without named workshops serves every spec; one with a single
workshop sends every spec there; otherwise an unknown name gets a page that
lists the workshops.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlencode

from .. import __version__
from ..content.sources import SourceError, binder_repo, check_ref, check_repo
from ..workshops import Workshop
from .admission import Refused
from .handler import PageHandler

PROVIDERS = ("gh", "gl", "git", "gist", "zenodo", "figshare", "hydroshare", "dataverse")


def repository_name(provider: str, spec: str) -> str:
    """The repository's name in a BinderHub spec (as it came in the URL, still percent-encoded), lower-cased."""
    parts = spec.split("/")
    if provider in ("gl", "git") and "%2f" in parts[0].lower():
        repo = unquote(parts[0]).rstrip("/")
        name = repo.rsplit("/", 1)[-1]
    elif provider in ("gh", "gl", "gist") and len(parts) > 1:
        name = parts[1]  # gh/<org>/<repo>/<ref>; MyST writes gl/<org>/<repo>/<ref> unencoded
    else:
        name = unquote(parts[0]).rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".git").lower()


def landing_path(urlpath: str, labpath: str = "") -> str:
    """The notebook server path a launch link asks for: ``urlpath`` as BinderHub reads it ('/lab/tree//x'
    from MyST becomes 'lab/tree/x'), or ``labpath`` (a file to open in JupyterLab)."""
    if not urlpath and labpath:
        urlpath = f"lab/tree/{labpath}"
    return re.sub(r"/{2,}", "/", urlpath).strip("/")


class SpecHandler(PageHandler):
    """A handler for /<verb>/<provider>/<spec>: the workshop the spec names."""

    def raw_spec(self) -> str:
        """The spec as the path has it: a gl/git spec's repository is URL-encoded, and decoding it would split it."""
        return self.request.path.split("/", 3)[3] if self.request.path.count("/") >= 3 else ""

    def spec_workshop(self, provider: str) -> tuple[Workshop | None, str]:
        """(the workshop, by the rule above, or None; the repository name the spec gives)."""
        spec = self.raw_spec()
        name = repository_name(provider, spec)
        workshops = self.workshops
        ws = workshops.default or workshops.get(name)
        if ws is None and len(workshops.active) == 1:
            ws = next(iter(workshops.active.values()))
        if ws is None:
            self.nb.log.info("%s for %s/%s: no workshop named %r", self.request.path.split("/")[1], provider,
                             spec[:200], name)
        else:
            self._workshop = ws  # its pages and pool from here on
        return ws, name

    def allowed_repo(self, provider: str) -> tuple[str, str] | None:
        """(repository URL, ref) of the spec when nbpool may fetch it (NbpoolApp.allowed_content or a
        workshop's content); None otherwise: the spec then only chooses the workshop, as before."""
        repo = binder_repo(provider, self.raw_spec())
        if repo is None or self.nb.material is None:
            return None
        try:
            check_repo(repo[0])
            check_ref(repo[1])
        except SourceError:
            return None
        return repo if self.nb.material.allows(repo[0]) else None


class LaunchHandler(SpecHandler):
    """GET /v2/<provider>/<spec>[?urlpath=…]: a fresh container of the spec's workshop, at that path."""

    def get(self, provider: str) -> None:
        ws, _ = self.spec_workshop(provider)
        if ws is None:
            self.no_workshop()
            return
        path = landing_path(self.get_argument("urlpath", ""), self.get_argument("labpath", ""))
        try:
            # (checked here: a client would resolve '..' in the redirect before /spawn could refuse it)
            target = f"{ws.prefix}/spawn" + (f"/{self.nb.admission.spawn_path(path, ws.landing_path)}" if path else "")
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        key = self.get_argument("key", None)
        repo = self.allowed_repo(provider)
        if repo is not None:  # the repository's own files, at the root of the home folder as Binder has them
            query = urlencode({"repo": repo[0], "branch": repo[1], "urlpath": path or ws.landing_path,
                               "targetpath": ".", **({"key": key} if key else {})})
            self.redirect(f"{ws.prefix}/git-pull?{query}")
            return
        self.redirect(target + (f"?key={quote(key, safe='')}" if key else ""))


class VersionsHandler(PageHandler):
    """GET /versions: what a BinderHub answers, so launch buttons (MyST's) know they may use nbpool."""

    def get(self) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")  # public facts; pages on any site ask
        self.finish({"binderhub": f"nbpool {__version__}",
                     "builder": "none: nbpool builds nothing, it hands out ready containers from a warm pool"})


def binder_handlers() -> list:
    return [
        (r"/v2/({})/.+".format("|".join(PROVIDERS)), LaunchHandler),
        (r"/versions/?", VersionsHandler),
    ]
