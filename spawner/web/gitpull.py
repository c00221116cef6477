"""nbgitpuller's links, served from nbpool's own cache: ``/git-pull?repo=…&branch=…&urlpath=…``.

Also at ``/hub/user-redirect/git-pull`` (so a link made by nbgitpuller's link generator for a JupyterHub
works by changing its host alone) and ``/w/<name>/git-pull`` for a workshop. The visitor gets a
container of the workshop the link is under (at ``/`` of a service with several, the workshop whose
``content`` names the repository), with the repository's files merged into the folder ``targetpath``
(default: the repository's name), and lands at ``urlpath``. Coming back with the same link, they get
their own container again, their changes kept (a file they changed stays; the new version lands beside it).

Only repositories the operator allowed (``content`` sources and ``NbpoolApp.allowed_content``) are
fetched; any other gets a 403 page and nothing is fetched. The fetch happens before a container is
taken, once for everyone following the link at the same moment; a repository that cannot be fetched
(and was never fetched before) gets a 502 page that says why, and takes nothing.
"""

from __future__ import annotations

from ..content import Delivery, FetchError, SourceError, parse_pull_link
from ..content.gitcache import redact
from .visitor import SpawnHandler


class GitPullHandler(SpawnHandler):
    async def get(self, path: str = "") -> None:
        if not self.to_main_host():
            await self.pull(confirmed=False)

    async def post(self, path: str = "") -> None:
        """The confirm page's answer (path mode: this browser holds another notebook, which ends first)."""
        if self.same_origin():
            await self.pull(confirmed=True)

    async def pull(self, confirmed: bool) -> None:
        material = self.nb.material
        try:
            link = parse_pull_link(lambda name: self.get_argument(name, None))
        except SourceError as exc:
            self.page("error.html", status=400, reason="This link is not complete",
                      message=f"This workshop link cannot be followed: {exc}.")
            return
        if self.workshop is None and not self.request.path.startswith("/w/"):
            named = material.workshop_of(link.repo)
            self._workshop = self.workshops.get(named) if named is not None else None
        if self.workshop is None:
            self.pick_workshop()
            return
        if not material.allows(link.repo):
            self.nb.log.info("git-pull of %s refused for %s: not an allowed repository", redact(link.repo)[:200],
                             self.request.remote_ip)
            self.record("refused", why="repository not allowed", status=403)
            self.page("error.html", status=403, reason="This repository is not offered here",
                      message="This link names a repository this workshop server does not serve. Ask your "
                              "instructor for the workshop's own link.")
            return
        user_agent = self.request.headers.get("User-Agent", "").lower()
        if not confirmed and any(bot in user_agent for bot in self.nb.bot_user_agents):
            self.page("landing.html", spawn_url=self.request.uri)  # link previews: nothing fetched, nothing taken
            return
        try:
            await material.ensure(link.repo, link.ref)
        except FetchError as exc:
            self.nb.log.warning("git-pull of %s: %s", redact(link.repo)[:200], exc)
            self.page("error.html", status=502, reason="The workshop material could not be fetched",
                      message=f"The repository this link names could not be fetched ({exc}). Please try again "
                              "in a moment, or tell your instructor.")
            return
        await self.spawn(link.urlpath, confirmed=confirmed, deliver=Delivery(link.repo, link.ref, link.target))


def gitpull_handlers() -> list:
    return [(r"(?:/w/[^/]+)?(?:/hub/user-redirect)?/git-pull/?", GitPullHandler)]
