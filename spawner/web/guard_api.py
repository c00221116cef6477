"""The operator's view of bans (issue 25): GET /api/admin/bans, DELETE /api/admin/bans/<id>."""

from __future__ import annotations

from .api import AdminHandler


class BansHandler(AdminHandler):
    def get(self) -> None:
        guard = self.nb.guard
        bans = guard.bans.current() if guard is not None and guard.bans is not None else []
        self.finish({"bans": [ban.public() for ban in bans],
                     "banned_addresses": list(guard.banned_addresses) if guard is not None else []})


class BanHandler(AdminHandler):
    def delete(self, ban_id: str) -> None:
        guard = self.nb.guard
        ban = guard.bans.lift(ban_id) if guard is not None and guard.bans is not None else None
        if ban is None:
            self.set_status(404)
            self.finish({"error": f"no ban {ban_id!r} in force"})
            return
        self.nb.log.info("ban %s lifted by an operator (it was: %s, %s)", ban.id, ban.rule, ban.network or "browser")
        self.set_status(204)
        self.finish()


def guard_handlers() -> list:
    return [(r"/api/admin/bans", BansHandler), (r"/api/admin/bans/([0-9a-f]{1,32})", BanHandler)]
