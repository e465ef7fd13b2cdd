"""The gateway ASGI app: routes, identity, the proxy handler, usage reports, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from yarl import URL

from aiplane.catalog.api import routes as catalog_routes
from aiplane.catalog.store import LiveIndex
from aiplane.catalog.sync import SyncScheduler
from aiplane.config import Settings
from aiplane.gateway.auth import AuthError, Identity, TokenVerifier, make_verifier
from aiplane.gateway.discovery import DiscoveryService
from aiplane.gateway.metering import TokenMeter
from aiplane.gateway.metrics import GatewayMetrics
from aiplane.gateway.quotas import QuotaService, Ticket, estimate_charge
from aiplane.gateway.quotas import admin_routes as quota_routes
from aiplane.gateway.relay import (
    STREAM_HEADERS,
    Finish,
    RelayStreamingResponse,
    Scrubber,
    error_response,
    relay_headers,
    relay_stream,
)
from aiplane.gateway.routing import (
    RouteError,
    Target,
    check_endpoint,
    resolve,
    upstream_path,
    upstream_query,
)
from aiplane.inflate import Inflater, UnsupportedEncoding
from aiplane.llm.routing import EMPTY as EMPTY_ROUTING
from aiplane.llm.routing import RoutingError
from aiplane.llm.routing import parse as parse_routing
from aiplane.logs import log_fields
from aiplane.modelcatalog.catalog import CatalogRefresher, ModelCatalog, bundled
from aiplane.modelcatalog.pricing import PriceTable
from aiplane.portal.core import Portal
from aiplane.portal.oauth import ProtectedResource
from aiplane.portal.server import PortalEndpoint, authenticator
from aiplane.store import jobs, reviewconfig
from aiplane.store.database import create_engine, migrate
from aiplane.store.identities import IdentityMap
from aiplane.store.usage import UsageRecord, UsageWriter, aggregate, parse_since
from aiplane.ui.app import Dashboard
from aiplane.ui.app import routes as ui_routes

log = logging.getLogger("aiplane.gateway")

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
UNAUTHORIZED_MESSAGE = "missing or invalid credentials"


class Gateway:
    """Everything one gateway process holds: settings, clients, caches and the usage writer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self._snapshot = bundled()
        self.catalog: CatalogRefresher | None = None
        self.engine = create_engine(settings.database_url)
        self.identities = IdentityMap(self.engine)
        self.quotas = QuotaService(settings, self.engine, self.metrics)
        self.usage = UsageWriter(
            self.engine,
            spool_path=settings.data_dir / "usage-spool.jsonl",
            batch_size=settings.gateway.usage_batch_size,
            flush_interval=settings.gateway.usage_flush_interval_seconds,
        )
        # Created in lifespan: an aiohttp session belongs to the running event loop.
        self._session: aiohttp.ClientSession | None = None
        # Fair sharing: upstream requests in flight per user, and the pool they all draw from.
        self._inflight: dict[str, int] = {}
        self._pool = asyncio.Semaphore(settings.gateway.upstream_pool_size)
        self.verifier = self._make_verifier()
        self.catalog_index = LiveIndex(self.engine)
        self.catalog_sync = SyncScheduler(self.engine, settings.backstage, self.catalog_index, settings.catalog_loader,
                                          claim=functools.partial(jobs.claim, self.engine))
        self.discovery = DiscoveryService(settings, lambda: self.models.data)
        self.discovery.load()
        self._metadata_header = settings.gateway.metadata_header.lower()
        self.portal = self._make_portal()

    def _make_portal(self) -> PortalEndpoint | None:
        """The MCP portal at /mcp, when upstream MCP servers are configured; same tokens as the gateway."""
        if not self.settings.portal.upstreams:
            return None
        return PortalEndpoint(
            Portal(self.settings.portal, self.engine),
            authenticator(self.verifier.token_from_headers, self.verifier.verify, self.identities.user_id, AuthError),
            ProtectedResource.from_settings(self.settings),
        )

    def _make_verifier(self) -> TokenVerifier:
        return make_verifier(self.settings, self.session)

    @property
    def models(self) -> ModelCatalog:
        return self.catalog.current if self.catalog is not None else self._snapshot

    @property
    def prices(self) -> PriceTable:
        return self.models.prices

    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the gateway lifespan has not started"
        return self._session

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # aiohttp over httpx: httpx's pool costs about half the gateway's CPU per request (bench/RESULTS.md).
        self._session = aiohttp.ClientSession(
            # The pool semaphore decides who waits; the connector never makes anyone wait on top of it.
            connector=aiohttp.TCPConnector(limit=self.settings.gateway.upstream_pool_size + 16, limit_per_host=0,
                                           keepalive_timeout=60, ttl_dns_cache=300),
            trust_env=False,
            # The relay inflates in bounded steps itself (a gzip can inflate a thousandfold).
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        if self.settings.database.auto_migrate:
            await migrate(self.engine)
        await self.usage.start()
        await self.quotas.start()
        catalog = self.settings.catalog
        self.catalog = CatalogRefresher(
            self.engine,
            self._session,
            catalog.url or None,
            catalog.refresh_interval_seconds,
            catalog.timeout_seconds,
            catalog.min_keep_ratio,
            claim=functools.partial(jobs.claim, self.engine),
        )
        self.catalog.on_change(self.discovery.invalidate)
        await self.catalog.start()
        await self.catalog_sync.start()
        self._install_reload_signal()
        # Startup objects (settings, tables, SDK modules) never die; keeping them out of the
        # collector's generations trims GC pauses from the latency tail.
        gc.freeze()
        if self.settings.auth.mode == "dev":
            log.warning("auth.mode is 'dev': tokens are signed by the local key in the data dir; use 'oidc' in production")
        log.info(
            "gateway ready",
            extra=log_fields(auth_mode=self.settings.auth.mode, models=self.models.model_count, catalog=self.models.source),
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.portal is not None:
                    await stack.enter_async_context(self.portal.lifespan())
                yield
        finally:
            await self.catalog_sync.stop()
            await self.catalog.stop()
            await self.quotas.stop()
            await self.usage.close()
            await self._session.close()
            await self.engine.dispose()
            log.info("gateway stopped; usage flushed")

    def _install_reload_signal(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.discovery.reload)
        except (NotImplementedError, RuntimeError, ValueError):
            log.info("SIGHUP reload unavailable here; use POST /v1/admin/reload")

    # -- identity ---------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Identity:
        token = self.verifier.token_from_headers(request.headers)
        if token is None:
            raise AuthError("no token")
        return await self.verifier.verify(token)

    def _unauthorized(self, request_id: str, reason: str) -> Response:
        self.metrics.auth_failures.inc()
        log.info("request refused", extra=log_fields(request_id=request_id, reason=reason))
        return error_response(401, "authentication_error", UNAUTHORIZED_MESSAGE, request_id)

    # -- proxy ------------------------------------------------------------------------------

    async def proxy(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        prefix = request.scope["route_prefix"]
        try:
            identity = await self.authenticate(request)
        except AuthError as exc:
            return self._unauthorized(request_id, str(exc))
        try:
            # Normalise first, then decide: routing and every policy see the same decoded path.
            path = upstream_path(request.scope)
            check_endpoint(self.settings, prefix, request.method, path, identity.groups)
        except RouteError as exc:
            return error_response(exc.status, exc.kind, exc.message, request_id)
        user_id = await self.identities.user_id(identity.subject)
        lease = self._lease(user_id)
        if lease is None:
            limit = self.settings.gateway.max_inflight_per_user
            return error_response(429, "rate_limit_error", f"too many requests in flight for this user (limit "
                                  f"gateway.max_inflight_per_user = {limit}); retry when one finishes", request_id,
                                  {"retry-after": "1"})
        try:
            return await self._proxy(request, request_id, prefix, path, user_id, started, lease, identity)
        except BaseException:
            lease.release()
            raise
        finally:
            lease.settle()

    def _lease(self, user_id: str) -> Lease | None:
        """A per-user in-flight slot, or None when the user already has the most allowed."""
        count = self._inflight.get(user_id, 0)
        if count >= self.settings.gateway.max_inflight_per_user:
            return None
        self._inflight[user_id] = count + 1
        return Lease(self, user_id)

    async def _proxy(self, request: Request, request_id: str, prefix: str, path: str, user_id: str, started: float,
                     lease: Lease, identity: Identity) -> Response:
        try:
            body = await self._read_body(request)
            target = resolve(self.settings, prefix, request.method, path, body, user_id, identity.groups,
                             request.headers.get("content-type", ""))
        except ClientDisconnect:
            return Response(status_code=499)
        except RouteError as exc:
            return error_response(exc.status, exc.kind, exc.message, request_id)
        # Quotas (gateway/quotas.py): checked before the upstream call, charged when the request ends.
        admitted = await self.quotas.admit(identity.subject, user_id, identity.groups, target.provider, target.model,
                                           request_id, self.prices.canonical(target.catalog_id, target.model)
                                           if self.quotas.rules else None)
        if isinstance(admitted, Response):
            return admitted
        lease.quota = admitted
        response = await self._call_upstream(request, request_id, prefix, user_id, started, lease, target)
        if admitted is not None and self.quotas.headers:
            response.headers.update(admitted.remaining_headers())
        return response

    async def _call_upstream(self, request: Request, request_id: str, prefix: str, user_id: str, started: float,
                             lease: Lease, target: Target) -> Response:
        headers = self._upstream_headers(request, target, user_id)
        url = target.url + upstream_query(request.scope, prefix)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=target.settings.connect_timeout_seconds, sock_read=target.settings.timeout_seconds
        )
        meter = TokenMeter(target.wire)
        exchange = Exchange(self, request_id, user_id, target, started, lease)
        try:
            await asyncio.wait_for(self._pool.acquire(), self.settings.gateway.pool_wait_seconds)
        except TimeoutError:
            exchange.finish(503, meter, "gateway_busy", None)
            return error_response(503, "overloaded_error", "every upstream connection is busy; retry shortly",
                                  request_id, {"retry-after": "1"})
        lease.pooled = True
        upstream_call = asyncio.ensure_future(self.session().request(
            request.method, URL(url, encoded=True), headers=headers, data=target.body or None, timeout=timeout,
            allow_redirects=False,
        ))
        gone = asyncio.ensure_future(_until_disconnect(request))
        try:
            await asyncio.wait((upstream_call, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not upstream_call.done():
            # The client left while the provider was still working: stop it now, not at the timeout.
            upstream_call.cancel()
            with contextlib.suppress(BaseException):
                await upstream_call
            exchange.finish(499, meter, "client_disconnected", None)
            return Response(status_code=499)
        try:
            upstream = upstream_call.result()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self._upstream_failed(exc, target, meter, request_id, exchange.finish)
        return self._answer(upstream, target, meter, request_id, exchange, started)

    def _answer(self, upstream: aiohttp.ClientResponse, target: Target, meter: TokenMeter, request_id: str,
                exchange: Exchange, started: float) -> Response:
        status = upstream.status
        first_byte = time.perf_counter() - started
        refusal: tuple[int, str, str, dict[str, str]] | None = None
        if status < 200:
            refusal = (502, "upstream_error", f"the provider answered {status}", {})
        elif 300 <= status < 400:
            # A redirect would send the client (and whatever it carries) to a place we did not choose.
            refusal = (502, "upstream_redirect", f"the provider answered {status} (a redirect, not followed)", {})
        elif status >= 500:
            retry_after = {"retry-after": upstream.headers["retry-after"]} if "retry-after" in upstream.headers else {}
            refusal = (504 if status == 504 else 502, "upstream_error", f"the provider answered {status}", retry_after)
        elif status == 401:
            # The gateway's own key was refused; the caller cannot fix that, so don't say 401.
            refusal = (502, "upstream_auth_failed", "the provider refused the gateway's credentials", {})
        inflater = None
        if refusal is None:
            try:
                encodings = upstream.headers.getall("content-encoding", [])
                if len(encodings) > 1 or "," in "".join(encodings):
                    raise UnsupportedEncoding(", ".join(encodings))  # two layers: never guess which is real
                inflater = Inflater(encodings[0] if encodings else "")
            except UnsupportedEncoding:
                refusal = (502, "upstream_error", "the provider answered in an encoding the gateway did not ask for", {})
        if refusal is not None:
            upstream.close()
            self.metrics.upstream_errors.labels(target.provider, f"http_{status}").inc()
            exchange.finish(status, meter, refusal[1], first_byte)
            return error_response(refusal[0], refusal[1], refusal[2], request_id, refusal[3])
        assert inflater is not None
        exchange.upstream = upstream
        scrubber = Scrubber(target.secrets())
        sse = status < 400 and upstream.headers.get("content-type", "").startswith("text/event-stream")
        headers = relay_headers(upstream, request_id, scrubber)
        if sse:
            headers.update(STREAM_HEADERS)
        return RelayStreamingResponse(
            relay_stream(upstream, target, meter, started, exchange.finish, sse, inflater),
            status_code=status,
            headers=headers,
            on_close=exchange.abandon,
        )

    def _upstream_failed(
        self, exc: BaseException, target: Target, meter: TokenMeter, request_id: str, finish: Finish
    ) -> Response:
        # aiohttp's connect and read timeouts subclass TimeoutError; everything else is a ClientError.
        if isinstance(exc, TimeoutError):
            status, kind, message = 504, "upstream_timeout", "the provider did not answer in time"
        else:
            status, kind, message = 502, "upstream_unavailable", "the provider could not be reached"
        self.metrics.upstream_errors.labels(target.provider, kind).inc()
        finish(status, meter, kind, None)
        return error_response(status, kind, message, request_id)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.gateway.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RouteError(413, "request_too_large", f"request body exceeds {limit} bytes")
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise RouteError(413, "request_too_large", f"request body exceeds {limit} bytes")
        return bytes(chunks)

    def _upstream_headers(self, request: Request, target: Target, user_id: str) -> dict[str, str]:
        # By allowlist: what the provider's API reads, never the caller's credentials or identity.
        headers = {k: v for k, v in request.headers.items() if k in target.forward_headers}
        if target.body and not target.path.startswith(("audio/", "images/")):
            headers["content-type"] = "application/json"  # the body is our own encoding of what was parsed
        headers.update(target.key_headers())
        headers[self._metadata_header] = json.dumps({"userId": user_id}, separators=(", ", ": "))
        # Asked for and inflated in bounded steps by the relay.
        headers["accept-encoding"] = "gzip, deflate"
        return headers

    def _record(
        self,
        request_id: str,
        user_id: str,
        target: Target,
        status: int,
        started: float,
        meter: TokenMeter,
        error: str | None,
        first_byte: float | None,
    ) -> float | None:
        elapsed = time.perf_counter() - started
        tokens = meter.counts
        model = (target.model if target.model != "unknown" else (meter.response_model or "unknown"))[:200]
        cost = self.prices.cost(target.catalog_id, model, tokens)
        self.usage.submit(
            UsageRecord(
                request_id=request_id,
                user_id=user_id,
                provider=target.provider,
                model=model[:200],
                endpoint=target.path[:200],
                streamed=target.streaming_requested,
                status=status,
                latency_ms=round(elapsed * 1000, 3),
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                cached_tokens=tokens.cached,
                cache_write_tokens=tokens.cache_write,
                cost_usd=cost,
                error=error,
            )
        )
        m = self.metrics
        m.requests.labels(target.provider, str(status)).inc()
        m.latency.labels(target.provider).observe(elapsed)
        if first_byte is not None:
            m.first_byte.labels(target.provider).observe(first_byte)
        for kind, value in (("input", tokens.input), ("output", tokens.output), ("cached", tokens.cached)):
            if value:
                m.tokens.labels(target.provider, kind).inc(value)
        if cost:
            m.cost.labels(target.provider).inc(cost)
        log.info(
            "proxied",
            extra=log_fields(
                request_id=request_id,
                user=user_id,
                provider=target.provider,
                model=model,
                status=status,
                latency_ms=round(elapsed * 1000, 2),
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                error=error,
            ),
        )
        return cost

    # -- admin and operations ---------------------------------------------------------------

    async def _admin(self, request: Request, request_id: str, what: str) -> Identity | Response:
        """The admin's identity; otherwise the 401 or 403 to send."""
        try:
            identity = await self.authenticate(request)
        except AuthError as exc:
            return self._unauthorized(request_id, str(exc))
        if not identity.is_admin:
            return error_response(403, "permission_error", f"{what} is for admins", request_id)
        return identity

    async def usage_report(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        if isinstance(admin := await self._admin(request, request_id, "the usage report"), Response):
            return admin
        group_by = request.query_params.get("group_by", "user")
        if group_by not in ("user", "model", "provider"):
            return error_response(400, "invalid_request", "group_by must be user, model or provider", request_id)
        try:
            since = parse_since(request.query_params.get("since"))
        except ValueError as exc:
            return error_response(400, "invalid_request", str(exc), request_id)
        await self.usage.flush()
        rows = await aggregate(self.engine, group_by, since)  # type: ignore[arg-type]
        return JSONResponse({"group_by": group_by, "since": since.isoformat(), "rows": rows})

    async def well_known_opencode(self, request: Request) -> Response:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return Response(
            self.discovery.render(origin), media_type="application/json", headers={"cache-control": "no-store"}
        )

    async def auth_info(self, _request: Request) -> Response:
        """What `aiplane login` needs to get a token; nothing here is secret."""
        auth = self.settings.auth
        info: dict = {"mode": auth.mode, "token_headers": auth.token_headers}
        if auth.mode == "oidc":
            info.update({"issuer": auth.issuer, "client_id": auth.device_client_id, "scopes": auth.device_scopes})
        return JSONResponse(info)

    async def admin_reload(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        if isinstance(admin := await self._admin(request, request_id, "reloading"), Response):
            return admin
        problems = self.discovery.reload()
        if problems:
            return JSONResponse(
                {"status": "rejected", "problems": [str(p) for p in problems], "request_id": request_id},
                status_code=422,
            )
        return JSONResponse({"status": "reloaded", "request_id": request_id})

    async def review_config(self, request: Request) -> Response:
        """The reviewers' model routing: any signed-in caller reads it, admins replace it."""
        request_id = uuid.uuid4().hex
        if request.method == "GET":
            if (refused := await self.authorize_user(request)) is not None:
                return refused
            stored = await reviewconfig.latest(self.engine)
            document = stored["document"] if stored else EMPTY_ROUTING.model_dump(mode="json")
            # Reviews cache it for 5 s themselves; intermediaries must not hold it longer.
            return JSONResponse(document, headers={"cache-control": "max-age=5"})
        if isinstance(admin := await self._admin(request, request_id, "changing the review config"), Response):
            return admin
        try:
            document = parse_routing(await self._read_body(request))
        except RoutingError as exc:
            return error_response(422, "invalid_request", f"invalid review config: {exc}", request_id)
        except RouteError as exc:
            return error_response(exc.status, exc.kind, exc.message, request_id)
        actor = await self.identities.user_id(admin.subject)
        await reviewconfig.save(self.engine, document.model_dump(mode="json", exclude_none=True), actor)
        log.info("review config replaced", extra=log_fields(request_id=request_id, user_id=actor))
        return JSONResponse({"status": "saved", "request_id": request_id})

    def dashboard(self) -> Dashboard:
        return Dashboard(
            self.engine,
            self.verifier.verify,
            self.verifier.token_from_headers,
            self.identities.user_id,
            self.settings.ui.reveal_identities,
        )

    async def authorize_user(self, request: Request) -> Response | None:
        """None when the caller holds a valid token; otherwise the 401 to send."""
        try:
            await self.authenticate(request)
        except AuthError as exc:
            return self._unauthorized(uuid.uuid4().hex, str(exc))
        return None

    async def authorize_admin(self, request: Request) -> Response | None:
        """None when the caller is an admin; otherwise the 401 or 403 to send."""
        refused = await self._admin(request, uuid.uuid4().hex, "this catalog call")
        return refused if isinstance(refused, Response) else None

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, _request: Request) -> Response:
        self.metrics.usage_pending.set(self.usage.pending)
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


async def _until_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Lease:
    """One request's hold on the gateway: its user's in-flight slot and, once granted, a pool slot."""

    __slots__ = ("gateway", "user_id", "pooled", "handed_off", "released", "quota")

    def __init__(self, gateway: Gateway, user_id: str) -> None:
        self.gateway, self.user_id = gateway, user_id
        self.pooled = self.handed_off = self.released = False
        self.quota: Ticket | None = None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        inflight = self.gateway._inflight
        left = inflight.get(self.user_id, 1) - 1
        if left > 0:
            inflight[self.user_id] = left
        else:
            inflight.pop(self.user_id, None)
        if self.pooled:
            self.gateway._pool.release()
        if self.quota is not None:
            self.gateway.quotas.finish(self.quota)

    def settle(self) -> None:
        """End of the handler: release now, unless a streamed answer still holds the slots."""
        if not self.handed_off:
            self.release()


class Exchange:
    """Records one request exactly once, and gives back its slots when it ends, however it ends."""

    def __init__(self, gateway: Gateway, request_id: str, user_id: str, target: Target, started: float, lease: Lease) -> None:
        self.gateway, self.request_id, self.user_id, self.target = gateway, request_id, user_id, target
        self.started, self.lease = started, lease
        self.recorded = False
        self.upstream: aiohttp.ClientResponse | None = None
        lease.handed_off = True

    def finish(self, status: int, meter: TokenMeter, error: str | None, first_byte: float | None) -> None:
        if not self.recorded:
            self.recorded = True
            if error is None and status >= 400:
                error = f"http_{status}"
            cost = self.gateway._record(self.request_id, self.user_id, self.target, status, self.started, meter, error,
                                        first_byte)
            if self.lease.quota is not None:
                counts = meter.counts
                tokens = counts.input + counts.output
                if tokens == 0 and (200 <= status < 300 or status == 499):
                    # No usage report reached us (the client left a stream before its last chunk, or
                    # the upstream sends none): quotas are charged an estimate, so leaving early is
                    # not free. The usage row keeps what was observed.
                    tokens, cost = estimate_charge(self.target, self.gateway.prices)
                self.lease.quota.charge(tokens, cost)
        self.lease.release()

    def abandon(self) -> None:
        """The response ended without the relay running (the client left first): still one row, slots back."""
        if not self.recorded and self.upstream is not None:
            self.upstream.close()
        self.finish(499, TokenMeter(self.target.wire), "client_disconnected", None)


def _prefixed(prefix: str, gateway: Gateway):
    async def endpoint(request: Request) -> Response:
        request.scope["route_prefix"] = prefix
        return await gateway.proxy(request)

    return endpoint


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_response(404, "not_found", "no such route", uuid.uuid4().hex)


async def _method_not_allowed(request: Request, _exc: Exception) -> Response:
    return error_response(405, "method_not_allowed", "method not allowed", uuid.uuid4().hex)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", extra=log_fields(error_type=exc.__class__.__name__, path=request.url.path))
    return error_response(500, "internal_error", "internal gateway error", uuid.uuid4().hex)


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)
    routes = [
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/v1/usage", gateway.usage_report, methods=["GET"]),
        Route("/.well-known/opencode", gateway.well_known_opencode, methods=["GET"]),
        Route("/v1/auth/info", gateway.auth_info, methods=["GET"]),
        Route("/v1/admin/reload", gateway.admin_reload, methods=["POST"]),
        Route("/v1/review-config", gateway.review_config, methods=["GET", "PUT"]),
        Route("/openai/{path:path}", _prefixed("openai", gateway), methods=PROXY_METHODS),
        Route("/anthropic/{path:path}", _prefixed("anthropic", gateway), methods=PROXY_METHODS),
        Route("/google-ai-studio/{path:path}", _prefixed("google", gateway), methods=PROXY_METHODS),
        Route("/compat/{path:path}", _prefixed("compat", gateway), methods=PROXY_METHODS),
        *quota_routes(gateway.quotas, gateway._admin, gateway.identities.find, gateway.identities.user_id),
        Mount("/api/catalog", routes=catalog_routes(gateway.catalog_index, gateway.authorize_user, gateway.authorize_admin,
                                                     gateway.catalog_sync.refresh)),
        Mount("/ui", routes=ui_routes(gateway.dashboard())),
    ]
    if gateway.portal is not None:
        routes.append(Route("/mcp", endpoint=gateway.portal))
        if gateway.portal.oauth is not None:
            routes += gateway.portal.oauth.routes()
    app = Starlette(
        routes=routes,
        lifespan=gateway.lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed, Exception: _internal_error},
    )
    app.state.gateway = gateway
    return app
