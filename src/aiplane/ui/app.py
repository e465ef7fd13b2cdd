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
from urllib.parse import parse_qs, quote, urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiplane.httpbody import BodyTooLarge, read_limited
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
# The sign-in form holds a token and a path; a JWT that fits a cookie fits this twice over.
MAX_LOGIN_BYTES = 8 * 1024
# Pages load only the gateway's own static files; the JSON data blocks are not scripts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_SECURITY_HEADER_NAMES = {name for name, _ in SECURITY_HEADERS}
# Cells a spreadsheet would read as a formula (OWASP CSV injection), also after leading blanks or a
# line break, and in fullwidth forms some spreadsheets fold to ASCII.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_DEFAULT_PORTS = {"http": 80, "https": 443}

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["money"] = lambda v: "—" if v is None else f"${v:,.4f}" if v < 1 else f"${v:,.2f}"
templates.env.filters["count"] = lambda v: f"{int(v or 0):,}"


def _latency(value: float | None) -> str:
    """A percentile read from the rollup histogram: interpolated within a bucket, hence "≈"."""
    if value is None:
        return "—"
    if queries.percentile_is_floor(value):
        return f"≥ {value / 1000:,.0f} s"
    if value >= 1000:
        return f"≈ {value / 1000:,.2f} s"
    return f"≈ {value:,.1f} ms" if value < 10 else f"≈ {value:,.0f} ms"


templates.env.filters["ms"] = _latency
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
        try:
            body = await read_limited(request, MAX_LOGIN_BYTES)
        except BodyTooLarge:
            # Connection: close, so the server stops reading the rest instead of draining it.
            return Response(
                "the sign-in form is too large\n", status_code=413, media_type="text/plain", headers={"connection": "close"}
            )
        # At most 8 KiB: parsing it is cheaper than the token check that follows.
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
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

    async def logout(self, request: Request) -> Response:
        # A cross-site form could otherwise sign the admin out; the cookie's SameSite does not stop
        # a response from deleting it.
        if not same_origin(request):
            log.info("cross-site sign-out refused", extra=log_fields(path=request.url.path))
            return Response("cross-site request refused\n", status_code=403, media_type="text/plain")
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
        # The overview's KPIs and user table show no latency: no histogram sums for them.
        users = await queries.breakdown(self.engine, win, "user_id", limit=20, latency=False)
        emails = await self._reveal(viewer, [u["key"] for u in users])
        context = {
            "title": "Usage and cost",
            "win": win,
            "query": request.url.query,
            "totals": await queries.totals(self.engine, win, latency=False),
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
            "totals": await queries.totals(self.engine, win, model, user_id, latency=False),
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
        from aiplane.review.evaluation.store import recent

        evals = await recent(self.engine, 50)
        # The full pipeline's own figures over time; baselines and ablations are in the table.
        series = [{"t": r["ts"].isoformat(), "precision": r["precision"], "recall": r["recall"]}
                  for r in reversed(evals) if r["variant"] == "review"]
        context = {"title": "Reviews", "win": win, "query": request.url.query, "stats": await queries.reviews(self.engine, win),
                   "evals": evals, "eval_series": series}
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
            writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
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


def csv_cell(value: Any) -> Any:
    """A text cell that starts like a formula gets a leading quote, so spreadsheets show it as text."""
    if isinstance(value, str) and (value.startswith(_FORMULA_START) or value.lstrip(" \u00a0\u3000").startswith(_FORMULA_START)):
        return "'" + value
    return value


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host.lower(), port


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this origin: the Origin header,
    else the Referer's origin. Neither (or "null") is refused."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed:
        return False
    own = _origin(f"{request.url.scheme}://{request.url.netloc}")
    return own is not None and _origin(claimed) == own


class SecurityHeaders:
    """Adds the dashboard's security headers to every response under /ui, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_HEADER_NAMES]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        try:
            await self.app(scope, receive, send_secured)
        except HTTPException as exc:  # 404 and 405 from routing
            if started:
                raise
            response = PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send_secured)
        except Exception as exc:
            if started:
                raise
            log.error("unhandled error", extra=log_fields(error_type=exc.__class__.__name__, path=scope.get("path")))
            await PlainTextResponse("internal error\n", status_code=500)(scope, receive, send_secured)


def charts_available() -> bool:
    return all(path.is_file() for path in VENDOR.values())


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    """The /ui routes, behind SecurityHeaders; mount them under /ui."""
    pages = Router(
        routes=[
            Route("/", dashboard.overview, methods=["GET"]),
            Route("/login", dashboard.login_form, methods=["GET"]),
            Route("/login", dashboard.login_submit, methods=["POST"]),
            Route("/logout", dashboard.logout, methods=["POST"]),
            Route("/reviews", dashboard.reviews, methods=["GET"]),
            Route("/export/{table}.csv", dashboard.export, methods=["GET"]),
            Route("/static/{name}", dashboard.static, methods=["GET"]),
            Route("/{kind}/{value:path}", dashboard.drill, methods=["GET"]),
        ]
    )
    return [Mount("", app=SecurityHeaders(pages))]


templates.env.globals["charts_available"] = charts_available
