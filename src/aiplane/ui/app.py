"""The admin dashboard at /ui: server-rendered pages, charts from a locally vendored uPlot."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from aiplane.logs import log_fields
from aiplane.store.schema import audit_events
from aiplane.ui import queries

log = logging.getLogger("aiplane.ui")

HERE = Path(__file__).parent
VENDOR = {
    "uPlot.iife.min.js": HERE / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js",
    "uPlot.min.css": HERE / "node_modules" / "uplot" / "dist" / "uPlot.min.css",
}
OWN_STATIC = {"dashboard.js": HERE / "static" / "dashboard.js", "dashboard.css": HERE / "static" / "dashboard.css"}
SESSION_COOKIE = "aiplane_session"
EXPORTS = ("timeseries", "providers", "models", "users")

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = lambda v: "—" if v is None else f"${v:,.4f}" if v < 1 else f"${v:,.2f}"
templates.env.filters["count"] = lambda v: f"{int(v or 0):,}"
templates.env.filters["ms"] = lambda v: "—" if v is None else ("> 60 s" if v == float("inf") else f"≤ {v:,.0f} ms")
templates.env.filters["pct"] = lambda v: f"{(v or 0) * 100:.1f}%"


# (identity or None, is_admin) for a token, or raises; supplied by the gateway.
Verify = Callable[[str], Awaitable[Any]]


class Dashboard:
    def __init__(
        self,
        engine: AsyncEngine,
        verify: Verify,
        token_from_headers: Callable[[Any], str | None],
        subject_to_user: Callable[[str], Awaitable[str]],
        reveal_identities: bool,
    ) -> None:
        self.engine = engine
        self.verify = verify
        self.token_from_headers = token_from_headers
        self.subject_to_user = subject_to_user
        self.reveal_identities = reveal_identities

    # -- access -------------------------------------------------------------------------------

    async def _viewer(self, request: Request) -> tuple[str, bool] | None:
        token = self.token_from_headers(request.headers) or request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            identity = await self.verify(token)
        except Exception:  # noqa: BLE001 - any verification failure means "not logged in"
            return None
        return await self.subject_to_user(identity.subject), identity.is_admin

    async def _guard(self, request: Request, html: bool = True) -> tuple[str | None, Response | None]:
        viewer = await self._viewer(request)
        if viewer is None:
            if html:
                return None, RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
            return None, Response("login required\n", status_code=401, media_type="text/plain")
        user_id, is_admin = viewer
        if not is_admin:
            page = templates.TemplateResponse(request, "forbidden.html", {"title": "Forbidden"}, status_code=403)
            return None, page if html else Response("admins only\n", status_code=403, media_type="text/plain")
        return user_id, None

    # -- pages ----------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"title": "Sign in", "error": None, "next": request.query_params.get("next", "/ui")})

    async def login_submit(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        token = (form.get("token") or "").strip()
        target = form.get("next") or "/ui"
        if not target.startswith("/ui"):
            target = "/ui"  # never redirect off-site
        try:
            identity = await self.verify(token) if token else None
        except Exception:  # noqa: BLE001
            identity = None
        if identity is None:
            context = {"title": "Sign in", "error": "That token is not valid.", "next": target}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        if not identity.is_admin:
            return templates.TemplateResponse(request, "forbidden.html", {"title": "Forbidden"}, status_code=403)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/ui",
            max_age=max(int(identity.expires_at - datetime.now(UTC).timestamp()), 0),
        )
        return response

    async def logout(self, _request: Request) -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response

    def _window(self, request: Request) -> queries.Window:
        params = request.query_params
        return queries.window(params.get("range"), params.get("start"), params.get("end"))

    async def _open_page(self, request: Request) -> tuple[str | None, queries.Window | None, Response | None]:
        """Access check and range parsing shared by every page: (viewer, window) or the response to send."""
        viewer, refused = await self._guard(request)
        if refused is not None:
            return None, None, refused
        try:
            return viewer, self._window(request), None
        except ValueError as exc:
            page = templates.TemplateResponse(request, "error.html", {"title": "Bad range", "message": str(exc)}, status_code=400)
            return None, None, page

    async def overview(self, request: Request) -> Response:
        viewer, win, refused = await self._open_page(request)
        if refused is not None or win is None:
            return refused  # type: ignore[return-value]
        users = await queries.breakdown(self.engine, win, "user_id", limit=20)
        emails = await self._reveal(viewer, [u["key"] for u in users])
        context = {
            "title": "Usage and cost",
            "win": win,
            "query": request.url.query,
            "totals": await queries.totals(self.engine, win),
            "series": await queries.timeseries(self.engine, win),
            "providers": await queries.breakdown(self.engine, win, "provider"),
            "models": await queries.breakdown(self.engine, win, "model", limit=25),
            "users": users,
            "emails": emails,
            "drill": None,
        }
        return templates.TemplateResponse(request, "overview.html", context)

    async def drill(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        value = request.path_params["value"]
        if kind not in ("models", "users"):
            return Response("not found\n", status_code=404, media_type="text/plain")
        viewer, win, refused = await self._open_page(request)
        if refused is not None or win is None:
            return refused  # type: ignore[return-value]
        model = value if kind == "models" else None
        user_id = value if kind == "users" else None
        other = "user_id" if model else "model"
        rows = await queries.breakdown(self.engine, win, other, model=model, user_id=user_id, limit=25)
        emails = await self._reveal(viewer, [r["key"] for r in rows] if model else [value])
        context = {
            "title": f"{'Model' if model else 'User'} {value}",
            "win": win,
            "query": request.url.query,
            "totals": await queries.totals(self.engine, win, model, user_id),
            "series": await queries.timeseries(self.engine, win, model, user_id),
            "providers": await queries.breakdown(self.engine, win, "provider", model=model, user_id=user_id),
            "models": rows if user_id else [],
            "users": rows if model else [],
            "emails": emails,
            "drill": {"kind": kind, "value": value},
        }
        return templates.TemplateResponse(request, "overview.html", context)

    async def reviews(self, request: Request) -> Response:
        _viewer, win, refused = await self._open_page(request)
        if refused is not None or win is None:
            return refused  # type: ignore[return-value]
        context = {"title": "Reviews", "win": win, "query": request.url.query, "stats": await queries.reviews(self.engine, win)}
        return templates.TemplateResponse(request, "reviews.html", context)

    async def export(self, request: Request) -> Response:
        viewer, refused = await self._guard(request, html=False)
        if refused is not None:
            return refused
        table = request.path_params["table"]
        if table not in EXPORTS:
            return Response(f"unknown table; choose one of {', '.join(EXPORTS)}\n", status_code=404, media_type="text/plain")
        try:
            win = self._window(request)
        except ValueError as exc:
            return Response(f"{exc}\n", status_code=400, media_type="text/plain")
        model = request.query_params.get("model") or None
        user_id = request.query_params.get("user") or None
        if table == "timeseries":
            rows = await queries.timeseries(self.engine, win, model, user_id)
        else:
            by = {"providers": "provider", "models": "model", "users": "user_id"}[table]
            rows = await queries.breakdown(self.engine, win, by, model, user_id, limit=10_000)  # type: ignore[arg-type]
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        filename = f"aiplane-{table}-{win.since:%Y%m%d%H}-{win.until:%Y%m%d%H}.csv"
        return Response(
            buffer.getvalue(), media_type="text/csv", headers={"content-disposition": f'attachment; filename="{filename}"'}
        )

    async def _reveal(self, viewer: str | None, user_ids: list[str]) -> dict[str, str]:
        """Emails for the given ids, only when the reveal setting is on, and always audited."""
        if not self.reveal_identities or not user_ids or viewer is None:
            return {}
        emails = await queries.emails_for(self.engine, user_ids)
        async with self.engine.begin() as conn:
            await conn.execute(
                audit_events.insert().values(
                    ts=datetime.now(UTC), actor=viewer, action="reveal_identities", detail=json.dumps(sorted(emails))
                )
            )
        log.warning("identities revealed on the dashboard", extra=log_fields(actor=viewer, count=len(emails)))
        return emails

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = OWN_STATIC.get(name) or VENDOR.get(name)
        if path is None or not path.is_file():
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(path, headers={"cache-control": "public, max-age=86400"})


def charts_available() -> bool:
    return all(path.is_file() for path in VENDOR.values())


def routes(dashboard: Dashboard) -> list[Route]:
    return [
        Route("/", dashboard.overview, methods=["GET"]),
        Route("/login", dashboard.login_form, methods=["GET"]),
        Route("/login", dashboard.login_submit, methods=["POST"]),
        Route("/logout", dashboard.logout, methods=["POST", "GET"]),
        Route("/reviews", dashboard.reviews, methods=["GET"]),
        Route("/export/{table}.csv", dashboard.export, methods=["GET"]),
        Route("/static/{name}", dashboard.static, methods=["GET"]),
        Route("/{kind}/{value:path}", dashboard.drill, methods=["GET"]),
    ]


templates.env.globals["charts_available"] = charts_available
