"""JSON API, health, metrics and the operators' status page."""

from __future__ import annotations

import hmac
import ipaddress
import json
import time

from traitlets import TraitError

from .. import __version__
from ..pool.errors import PoolError, PoolFull
from ..pool.stats import add_up, spawn_summary
from ..report.analysis import format_bytes
from ..secret import ADMIN
from .access import GRANT_COOKIE, session_cookie
from .admission import Refused
from .handler import ADMIN_COOKIE, PageHandler
from .metrics import all_nodes
from .metrics import render as render_metrics
from .origins import Origins


def admin_refusal(handler: PageHandler) -> str | None:
    """Why admin credentials count for nothing on this request, or None: they count from clients on this
    machine (unless admin_allow_remote), at the host names in admin_hosts (a rebound DNS name reaching
    127.0.0.1 is refused)."""
    nb = handler.nb
    if not (nb.admin_allow_remote or ipaddress.ip_address(handler.request.remote_ip).is_loopback):
        return "admin endpoints answer only on this machine (see WebApp.admin_allow_remote)"
    # Tornado's host_name: the Host header lower-cased, without its port (an IPv6 one keeps its brackets).
    if "*" not in nb.admin_hosts and handler.request.host_name.strip("[]") not in nb.admin_hosts:
        return "admin endpoints answer only at the host names in WebApp.admin_hosts"
    return None


def local_only(handler: PageHandler) -> bool:
    """True (and the request answered 403) when admin endpoints may not answer this request: see
    admin_refusal; and they take state-changing requests only from nbpool's own origin."""
    why = admin_refusal(handler)
    if why is not None:
        handler.set_status(403)
        handler.finish({"error": why})
        return True
    return not handler.same_origin(handler.nb.admin_origins)


class JSONHandler(PageHandler):
    def wants_json(self) -> bool:
        return True

    def json_object(self) -> dict | None:
        """The request body as a JSON object ({} when empty), or None when it is not one."""
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


class SpawnAPIHandler(JSONHandler):
    """POST /api/spawn -> {"url": a one-time link that opens a fresh container} (tmpnb's API, made safe)."""

    def set_cors(self) -> None:
        origin = self.request.headers.get("Origin")
        allowed = self.nb.cors_origin
        if origin and ("*" in allowed or origin in allowed):
            self.set_header("Access-Control-Allow-Origin", "*" if "*" in allowed else origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.set_header("Access-Control-Allow-Methods", "POST, OPTIONS")

    def options(self) -> None:
        self.set_cors()
        self.set_status(204)
        self.finish()

    def api_token_given(self) -> bool:
        given = self.request.headers.get("Authorization", "").removeprefix("token ").strip()
        return bool(given) and given.isascii() and hmac.compare_digest(given.encode(), self.nb.api_token.encode())

    async def post(self) -> None:
        nb = self.nb
        self.set_cors()
        ws = self.workshop
        if ws is None:
            self.set_status(404)
            self.finish({"error": "name the workshop: POST /w/<name>/api/spawn",
                         "workshops": sorted(self.workshops.active)})
            return
        trusted = bool(nb.api_token) and self.api_token_given()
        if nb.api_token and not trusted and not ws.key:
            self.set_status(403)
            self.finish({"error": "POST /api/spawn needs 'Authorization: token <api_token>'"})
            return
        # Read the request before taking a container for it.
        body = self.json_object() or {}
        address = self.request.remote_ip
        key = body.get("key") if isinstance(body.get("key"), str) else self.get_argument("key", None)
        try:
            path = nb.admission.spawn_path(str(body.get("path", "")), ws.landing_path)
            nb.admission.admit(address, self.pool, key=key, trusted=trusted, workshop_key=ws.key,
                               marks=self.ban_marks())
        except Refused as refusal:
            self.refuse_visitor(refusal)
            return
        try:
            slot = await self.pool.acquire(owner="" if trusted else nb.admission.owner_of(address))
        except PoolError as error:
            self.set_header("Retry-After", str(error.retry_after))
            # The JSON API answers "full" with 429, as tmpnb's clients expect; other refusals keep 503.
            self.set_status(429 if isinstance(error, PoolFull) else error.status)
            self.finish({"error": error.visitor_message, "retry_after": error.retry_after})
            return
        token = nb.new_claim(slot, path, self.pool)
        # (nbpool's main host: in subdomain mode the claim's entry link needs that host's cookies)
        self.finish({"url": f"{Origins(self).main}/spawn/claim/{token}", "id": slot.cid,
                     "expires_in": nb.claim_timeout})


class StatsHandler(JSONHandler):
    """GET /api/stats: the pool in numbers (public, as tmpnb's was)."""

    def get(self) -> None:
        ws = self.workshop
        if ws is not None:
            self.finish(self.numbers(ws.pool))
            return
        if self.request.path.startswith("/w/"):
            self.no_workshop()
            return
        # A service with several workshops: the total, and each one's.
        each = {w.name: {**self.numbers(w.pool), "url": f"{w.prefix}/", "display_name": w.display_name}
                for w in self.workshops.active.values()}
        cap = self.workshops.cap.total
        total = add_up([w.pool for w in self.workshops.active.values()], cap)
        total.pop("warm", None)
        self.finish({**total, "total_containers": cap or None, "version": __version__, "workshops": each})

    @staticmethod
    def numbers(pool) -> dict:
        summary = pool.summary()
        return {"available": summary["available"], "assigned": summary["assigned"],
                "launching": summary["launching"], "capacity": summary["capacity"], "queue": summary["queue"],
                "image": pool.backend.image, "version": __version__}


class HealthHandler(JSONHandler):
    def get(self) -> None:
        pools = self.workshops.all()
        problems = [f"{w.name}: {p}" if w.name else p for w in pools for p in w.pool.problems()]
        problems += [] if self.nb.accepting else ["stopping: not accepting new visitors"]
        problems += ["starting: adopting the engine's containers"] if self.nb.starting else []
        self.set_status(503 if problems else 200)
        self.finish({"status": "unhealthy" if problems else "ok", "problems": problems,
                     "engine_up": all(w.pool.engine_up for w in pools),
                     "breaker_open": any(w.pool.breaker_open for w in pools),
                     "consecutive_failures": max((w.pool.consecutive_failures for w in pools), default=0),
                     "accepting": self.nb.accepting, "starting": self.nb.starting,
                     **summed(pools, self.workshops.cap.total)})


class AdminHandler(JSONHandler):
    """Admin endpoints: a token (header, or the status page's cookie), and by default this machine only."""

    def prepare(self) -> None:
        if local_only(self):
            return
        header = self.request.headers.get("Authorization", "")
        given = header.removeprefix("token ").removeprefix("Bearer ").strip()
        if given:
            if not given.isascii() or not hmac.compare_digest(given.encode(), self.nb.admin_token.encode()):
                self.unauthorized()
        elif not self.admin_cookie_ok():
            self.unauthorized()

    def unauthorized(self) -> None:
        self.set_status(401)
        self.finish({"error": "admin token needed: 'Authorization: token <admin_token>'"})

    def chosen_pool(self, data: dict):
        """The pool an admin action is for: the body's "workshop" (or ?workshop=), else the one at '/';
        None (answered 400/404) when a service with several workshops is not told which."""
        name = data.get("workshop") if isinstance(data.get("workshop"), str) else self.get_argument("workshop", None)
        ws = self.workshops.get(name) if name is not None else self.workshops.default
        if ws is None:
            self.set_status(404 if name is not None else 400)
            self.finish({"error": f"no workshop {name!r}" if name is not None else
                         'name the workshop: {"workshop": "<name>", ...}', "workshops": sorted(self.workshops.active)})
            return None
        return ws.pool


def summed(workshops, cap: int = 0) -> dict:
    """The workshops' pools' numbers added up (the service's)."""
    return add_up([ws.pool for ws in workshops], cap)


class ContainersHandler(AdminHandler):
    def get(self) -> None:
        workshops = self.workshops.all()
        rows = []
        for ws in workshops:
            rows += self.rows(ws)
        keeper = self.nb.keeper
        kept = keeper.summary() if keeper is not None else {"enabled": False}
        # A failed save is the operators' to see (here and in the log), not a reason to call the pool unhealthy.
        problems = [f"{w.name}: {p}" if w.name else p for w in workshops for p in w.pool.problems()]
        problems += [f"kept work: {kept['problem']}"] if kept.get("problem") else []
        spawn = self.workshops_spawn(workshops)
        guard = self.nb.guard
        abuse = {"ended": dict(guard.actions), "warned": guard.warnings,
                 "bans": len(guard.bans) if guard.bans is not None else 0} if guard is not None else None
        self.finish({"containers": rows, "nodes": all_nodes(workshops), "problems": problems,
                     "kept": kept, "abuse": abuse, "spawn_seconds": spawn,
                     **summed(workshops, self.workshops.cap.total)})

    @staticmethod
    def workshops_spawn(workshops) -> dict:
        return spawn_summary([s for w in workshops for s in w.pool.stats.spawn_seconds])

    @staticmethod
    def rows(ws) -> list[dict]:
        pool = ws.pool
        now, wall = pool.clock(), pool.wallclock()
        rows = []
        for slot in pool.slots.values():
            rows.append({
                "id": slot.cid, "workshop": ws.name or None, "state": slot.state, "name": slot.name,
                "embedded": slot.embedded,
                "age_seconds": round(wall - slot.created, 1),
                "assigned_seconds": round(wall - slot.assigned_at, 1) if slot.assigned_at else None,
                "idle_seconds": round(slot.route.idle_seconds(now), 1) if slot.route else None,
                "endpoint": slot.endpoint.url if slot.endpoint else None,
                "node": slot.node or None,
                "bytes_in": slot.route.bytes_in if slot.route else 0,
                "bytes_out": slot.route.bytes_out if slot.route else 0,
                "websockets": slot.route.websockets if slot.route else 0,
                "oom_kills": slot.oom_kills,
            })
        return rows


class ContainerHandler(AdminHandler):
    async def delete(self, cid: str) -> None:
        ws = self.workshops.of_cid(cid)
        if ws is not None and await ws.pool.remove(cid):
            self.set_status(204)
            self.finish()
        else:
            self.set_status(404)
            self.finish({"error": f"no container {cid!r} to remove"})


class ResizeHandler(AdminHandler):
    def post(self) -> None:
        data = self.json_object()
        if data is None:
            self.set_status(400)
            self.finish({"error": "the body must be a JSON object such as {\"warm\": 10}"})
            return
        pool = self.chosen_pool(data)
        if pool is None:
            return
        changes = {k: data[k] for k in ("warm", "max_containers") if k in data}
        if not changes:
            self.set_status(400)
            self.finish({"error": "give warm and/or max_containers"})
            return
        for key, value in changes.items():
            if not isinstance(value, int) or isinstance(value, bool):
                self.set_status(400)
                self.finish({"error": f"{key} must be a whole number, not {value!r}"})
                return
        try:
            for key, value in changes.items():
                setattr(pool, key, value)
        except TraitError as exc:
            self.set_status(400)
            self.finish({"error": str(exc)})
            return
        self.nb.log.info("resized by the admin API: %s", changes)
        self.finish(pool.summary())


class DrainHandler(AdminHandler):
    def post(self) -> None:
        pool = self.chosen_pool(self.json_object() or {})
        if pool is None:
            return
        drained = pool.drain()
        self.nb.log.info("drain requested by the admin API: %d spares of %s being replaced", drained, pool.pool_name)
        self.finish({"drained": drained, **pool.summary()})


class HistoryHandler(AdminHandler):
    def get(self) -> None:
        self.finish({"interval": self.nb.history_interval, "samples": list(self.nb.history)})


class MetricsHandler(AdminHandler):
    """Prometheus metrics: with the admin token (or, with WebApp.metrics_need_token off, from this machine)."""

    def prepare(self) -> None:
        if not self.nb.metrics_need_token and ipaddress.ip_address(self.request.remote_ip).is_loopback:
            local_only(self)  # the host-name check still applies (DNS rebinding)
            return
        super().prepare()

    def get(self) -> None:
        body, content_type = render_metrics(self.workshops, self.proxy, self.nb.guard, self.settings["classroom"])
        self.set_header("Content-Type", content_type)
        self.finish(body)


class StatusPageHandler(AdminHandler):
    """The operators' page: live numbers and a chart; asks for the admin token once (then a cookie)."""

    def unauthorized(self) -> None:
        self.clear()
        self.set_default_headers()
        self.set_status(401)
        self.finish(self.render_page("login.html", error=self.request.method == "POST"))

    def get(self) -> None:
        images = sorted({w.pool.backend.image for w in self.workshops.all()})
        links = self.nb.helper_links(self.workshops, self.own_origin().decode("latin-1"))
        self.finish(self.render_page("status.html", image=", ".join(images), named=self.workshops.named,
                                     class_links=links, content=self.nb.material.status() if self.nb.material else
                                     {"sources": [], "links": []}, size=format_bytes,
                                     when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t
                                     else "never"))


class ClassLinksHandler(AdminHandler):
    """GET /api/admin/class-links: the class view's helper keys and links, to hand to the teaching team."""

    def get(self) -> None:
        self.finish(self.nb.helper_links(self.workshops, self.own_origin().decode("latin-1")))


class StatusLoginHandler(PageHandler):
    def post(self) -> None:
        nb = self.nb
        if local_only(self):
            return
        given = self.get_body_argument("token", "")
        if given and given.isascii() and hmac.compare_digest(given.encode(), nb.admin_token.encode()):
            # Path mode: the operator's sign-in ends this browser's hold on any notebook (they share this
            # origin); the containers go on, culled as usual.
            for ws in self.workshops.all() if not self.proxy.subdomain_host else ():
                if self.get_cookie(session_cookie(ws.name)) is not None:
                    self.clear_cookie(session_cookie(ws.name), path="/")
            if self.holds_grant():  # (a helper's grant to someone's notebook: the same)
                self.clear_cookie(GRANT_COOKIE, path="/")
            self.set_cookie(ADMIN_COOKIE, nb.secret.sign(f"admin:{int(time.time())}", ADMIN), path="/", httponly=True,
                            samesite="Strict", secure=self.request.protocol == "https")
            self.redirect("/status")
            return
        self.page("login.html", status=401, error=True)


def api_handlers() -> list:
    return [
        (r"(?:/w/[^/]+)?/api/spawn/?", SpawnAPIHandler),
        (r"(?:/w/[^/]+)?/api/stats/?", StatsHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/api/admin/containers/?", ContainersHandler),
        (r"/api/admin/containers/([0-9a-f]+)", ContainerHandler),
        (r"/api/admin/resize", ResizeHandler),
        (r"/api/admin/drain", DrainHandler),
        (r"/api/admin/history", HistoryHandler),
        (r"/api/admin/class-links", ClassLinksHandler),
        (r"/status/login", StatusLoginHandler),
        (r"/status/?", StatusPageHandler),
    ]
