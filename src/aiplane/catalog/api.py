"""Backstage-compatible catalog REST API (the read side), mounted by the gateway under /api/catalog.

Paths, parameters, bodies and error envelopes follow Backstage's catalog-backend OpenAPI spec,
so `@backstage/catalog-client` works unchanged. Writes (locations, deletes) are not offered:
the catalog is fed by `aiplane catalog ingest` and `aiplane catalog sync`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from aiplane.catalog.index import (
    CatalogIndex,
    QueryError,
    decode_cursor,
    encode_cursor,
    location_object,
    parse_filter,
    project,
)
from aiplane.catalog.model import EntityError, EntityRef, validate
from aiplane.catalog.store import LiveIndex
from aiplane.httpbody import BodyTooLarge, read_limited

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_REFS = 1000
MAX_FACETS = 50
# MAX_REFS refs of a few hundred characters each, plus fields: well under this.
MAX_BODY_BYTES = 1024 * 1024

Authorize = Callable[[Request], Awaitable[Response | None]]
# Re-read one entity from where it came from (admin-only POST /refresh); given the index key.
Refresh = Callable[[CatalogIndex, str], Awaitable[None]]

_ERROR_NAMES = {400: "InputError", 401: "AuthenticationError", 403: "NotAllowedError", 404: "NotFoundError",
                405: "MethodNotAllowedError", 413: "PayloadTooLargeError"}


def error(request: Request, status: int, name: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # Backstage's error envelope, so Backstage-aware clients (ResponseError.fromResponse) parse it.
    body = {
        "error": {"name": name, "message": message},
        "request": {"method": request.method, "url": request.url.path},
        "response": {"statusCode": status},
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _fields(values: list[str]) -> list[str]:
    return [f.strip() for value in values for f in value.split(",") if f.strip()][:100]


def _order(values: list[str]) -> list[tuple[str, bool]]:
    order = []
    for value in values:
        path, _, direction = value.partition(",")
        direction = (direction or "asc").strip().lower()
        if not path.strip() or direction not in ("asc", "desc"):
            raise QueryError(f"orderField '{value}' must be 'field,asc' or 'field,desc'")
        order.append((path.strip(), direction == "asc"))
    return order


def _int(value: Any, default: int, name: str, maximum: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not ((isinstance(value, int) and value >= 0) or (isinstance(value, str) and value.isdigit())):
        raise QueryError(f"{name} must be a non-negative integer")
    return min(int(value), maximum)


def _strings(value: Any, name: str, limit: int = 100) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) and len(v) <= 1000 for v in value):
        raise QueryError(f"{name} must be a list of at most {limit} strings")
    return value


def _page(index: CatalogIndex, keys: list[str], state: dict[str, Any]) -> dict[str, Any]:
    offset, limit = state["offset"], max(state["limit"], 1)
    page = keys[offset : offset + limit]
    items = [index.with_relations(k) for k in page]
    if state["fields"]:
        items = [project(item, state["fields"]) for item in items]
    info: dict[str, str] = {}
    if offset + limit < len(keys):
        info["nextCursor"] = encode_cursor({**state, "offset": offset + limit})
    if offset > 0:
        info["prevCursor"] = encode_cursor({**state, "offset": max(offset - limit, 0)})
    return {"items": items, "totalItems": len(keys), "pageInfo": info}


def _run(index: CatalogIndex, state: dict[str, Any]) -> dict[str, Any]:
    keys = index.query(
        [parse_filter(f) for f in state["filter"]] or None,
        _order(state["order"]),
        state["term"] or None,
        state["term_fields"] or None,
        state.get("query"),
    )
    return _page(index, keys, state)


def by_query(index: CatalogIndex, params: Any) -> dict[str, Any]:
    """GET /entities/by-query: filter strings, or a cursor (which may carry a POST predicate)."""
    cursor = params.get("cursor")
    if cursor:
        state = decode_cursor(cursor, MAX_LIMIT)
        if params.get("limit"):
            state["limit"] = _int(params.get("limit"), DEFAULT_LIMIT, "limit", MAX_LIMIT)
        if params.getlist("fields"):
            state["fields"] = _fields(params.getlist("fields"))
    else:
        state = {
            "filter": params.getlist("filter"),
            "fields": _fields(params.getlist("fields")),
            "order": params.getlist("orderField"),
            "term": params.get("fullTextFilterTerm") or "",
            "term_fields": _fields(params.getlist("fullTextFilterFields")),
            "limit": _int(params.get("limit"), DEFAULT_LIMIT, "limit", MAX_LIMIT),
            "offset": _int(params.get("offset"), 0, "offset", 10**9),
        }
    return _run(index, state)


def by_predicate(index: CatalogIndex, body: dict[str, Any]) -> dict[str, Any]:
    """POST /entities/by-query: a filter predicate in `query`, as catalog-client sends it."""
    limit = _int(body.get("limit"), DEFAULT_LIMIT, "limit", MAX_LIMIT)
    fields = _strings(body.get("fields"), "fields")
    if body.get("cursor") is not None:
        state = decode_cursor(body["cursor"], MAX_LIMIT)
        if body.get("limit") is not None:
            state["limit"] = limit
        if fields:
            state["fields"] = fields
        return _run(index, state)
    query = body.get("query")
    if query is not None and not isinstance(query, dict):
        raise QueryError("query must be an object")
    order: list[str] = []
    for item in body.get("orderBy") or []:  # catalog-client: [{field, order}]
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise QueryError("orderBy must be a list of {field, order}")
        order.append(f"{item['field']},{item.get('order') or 'asc'}")
    order += _strings(body.get("orderField"), "orderField")  # the OpenAPI spelling: ["field,asc"]
    full_text = body.get("fullTextFilter") or {}
    if not isinstance(full_text, dict) or not isinstance(full_text.get("term", ""), str):
        raise QueryError("fullTextFilter must be {term, fields?}")
    state = {
        "filter": [], "fields": fields, "order": order,
        "term": full_text.get("term", "").strip()[:1000], "term_fields": _strings(full_text.get("fields"), "fullTextFilter.fields"),
        "limit": limit, "offset": _int(body.get("offset"), 0, "offset", 10**9),
        "query": query,
    }
    return _run(index, state)  # a bad predicate fails here, before any cursor carries it


def all_entities(index: CatalogIndex, params: Any) -> tuple[list[dict[str, Any]], str | None]:
    """GET /entities: an array, optionally paged by offset/limit/after (the next page is in a Link header)."""
    order = []
    for item in params.getlist("order"):
        direction, sep, path = item.partition(":")
        if not sep or direction not in ("asc", "desc") or not path:
            raise QueryError(f'Invalid order parameter "{item}", expected "<asc or desc>:<field name>"')
        order.append((path, direction == "asc"))
    keys = index.query([parse_filter(f) for f in params.getlist("filter")] or None, order)
    fields = _fields(params.getlist("fields"))
    limit_text, offset_text, after = params.get("limit"), params.get("offset"), params.get("after")
    next_after = None
    if limit_text is not None or offset_text is not None or after is not None:
        if limit_text is not None and (not limit_text.isdigit() or int(limit_text) <= 0):
            raise QueryError("Invalid limit, must be greater than zero")
        offset = _int(offset_text, 0, "offset", 10**9)
        if after is not None:
            offset = _int(decode_cursor(after, MAX_LIMIT).get("offset"), 0, "after", 10**9)
        limit = min(int(limit_text), MAX_LIMIT) if limit_text else len(keys)
        if offset + limit < len(keys):
            next_after = encode_cursor({"filter": [], "fields": [], "order": [], "term": "", "term_fields": [],
                                        "limit": min(limit, MAX_LIMIT), "offset": offset + limit})
        keys = keys[offset : offset + limit]
    items = [index.with_relations(k) for k in keys]
    if fields:
        items = [project(item, fields) for item in items]
    return items, next_after


def routes(live: LiveIndex, authorize: Authorize, authorize_admin: Authorize | None = None,
           refresh: Refresh | None = None) -> list[Route]:
    async def backstage_refusal(request: Request, refused: Response) -> Response:
        status = refused.status_code
        message = "missing or invalid credentials" if status == 401 else "not allowed"
        headers = {k: v for k, v in refused.headers.items() if k.lower() == "www-authenticate"}
        return error(request, status, _ERROR_NAMES.get(status, "Error"), message, headers)

    async def guarded(request: Request, handler: Callable[[CatalogIndex, Request], Awaitable[Response]],
                      admin: bool = False) -> Response:
        refused = await authorize(request)
        if refused is not None:
            return await backstage_refusal(request, refused)
        if admin:
            # Without an admin check wired in, admin-only calls are refused for everyone.
            refused = await authorize_admin(request) if authorize_admin is not None else Response(status_code=403)
            if refused is not None:
                return await backstage_refusal(request, refused)
        try:
            return await handler(await live.get(), request)
        except QueryError as exc:
            return error(request, 400, "InputError", str(exc))
        except BodyTooLarge:
            # Stop reading the rest of an oversized body.
            return error(request, 413, "PayloadTooLargeError", f"request body exceeds {MAX_BODY_BYTES} bytes",
                         {"connection": "close"})

    async def json_body(request: Request) -> dict[str, Any]:
        raw = await read_limited(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            raise QueryError("body must be a JSON object") from None
        if not isinstance(body, dict):
            raise QueryError("body must be a JSON object")
        return body

    def entity_key(request: Request) -> str:
        p = request.path_params
        return EntityRef(p["kind"].lower(), p["namespace"], p["name"]).key

    def no_entity(request: Request) -> Response:
        p = request.path_params
        return error(request, 404, "NotFoundError",
                     f"No entity named '{p['name']}' found, with kind '{p['kind']}' in namespace '{p['namespace']}'")

    async def entities_handler(index: CatalogIndex, request: Request) -> Response:
        items, next_after = all_entities(index, request.query_params)
        headers = {}
        if next_after is not None:
            query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "after")]
            headers["link"] = f'<{request.url.path}?{urlencode(query + [("after", next_after)])}>; rel="next"'
        return JSONResponse(items, headers=headers)

    async def query_handler(index: CatalogIndex, request: Request) -> Response:
        return JSONResponse(by_query(index, request.query_params))

    async def predicate_handler(index: CatalogIndex, request: Request) -> Response:
        return JSONResponse(by_predicate(index, await json_body(request)))

    async def by_uid_handler(index: CatalogIndex, request: Request) -> Response:
        uid = request.path_params["uid"]
        key = index.uids.get(uid)
        if key is None:
            return error(request, 404, "NotFoundError", f"No entity with uid {uid[:100]}")
        return JSONResponse(index.with_relations(key))

    async def by_name_handler(index: CatalogIndex, request: Request) -> Response:
        key = entity_key(request)
        if key not in index.entities:
            return no_entity(request)
        return JSONResponse(index.with_relations(key))

    async def ancestry_handler(index: CatalogIndex, request: Request) -> Response:
        key = entity_key(request)
        if key not in index.entities:
            return no_entity(request)
        return JSONResponse(index.ancestry(key))

    async def by_refs_handler(index: CatalogIndex, request: Request) -> Response:
        body = await json_body(request)
        refs = body.get("entityRefs")
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or len(refs) > MAX_REFS:
            return error(request, 400, "InputError", f"entityRefs must be a list of at most {MAX_REFS} strings")
        fields = _strings(body.get("fields"), "fields")
        allowed: set[str] | None = None
        filters = request.query_params.getlist("filter")
        if filters or body.get("query") is not None:
            query = body.get("query")
            if query is not None and not isinstance(query, dict):
                raise QueryError("query must be an object")
            allowed = set(index.query([parse_filter(f) for f in filters] or None, predicate=query))
        items = []
        for ref in refs:
            try:
                entity = index.get(ref)
            except EntityError:
                entity = None
            if entity is not None and allowed is not None and index.get_key(ref) not in allowed:
                entity = None  # filtered out: Backstage answers null in its place
            items.append(project(entity, fields) if entity is not None and fields else entity)
        return JSONResponse({"items": items})

    def facets_of(index: CatalogIndex, facets: list[str], keys: list[str]) -> dict[str, Any]:
        if not facets:
            raise QueryError("at least one facet is required")
        if len(facets) > MAX_FACETS:
            raise QueryError(f"at most {MAX_FACETS} facets")
        return {"facets": {facet: index.facets(facet, keys) for facet in facets}}

    async def facets_handler(index: CatalogIndex, request: Request) -> Response:
        filters = [parse_filter(f) for f in request.query_params.getlist("filter")]
        keys = index.query(filters or None)
        return JSONResponse(facets_of(index, request.query_params.getlist("facet"), keys))

    async def facets_predicate_handler(index: CatalogIndex, request: Request) -> Response:
        body = await json_body(request)
        query = body.get("query")
        if query is not None and not isinstance(query, dict):
            raise QueryError("query must be an object")
        keys = index.query(predicate=query)
        return JSONResponse(facets_of(index, _strings(body.get("facets"), "facets", MAX_FACETS), keys))

    async def locations_handler(index: CatalogIndex, request: Request) -> Response:
        return JSONResponse([{"data": location} for location in index.locations()])

    async def locations_query_handler(index: CatalogIndex, request: Request) -> Response:
        body = await json_body(request)
        if body.get("cursor"):
            state = decode_cursor(body["cursor"], MAX_LIMIT)
        else:
            state = {"offset": 0, "limit": _int(body.get("limit"), DEFAULT_LIMIT, "limit", MAX_LIMIT)}
        if body.get("limit") is not None:
            state["limit"] = _int(body.get("limit"), DEFAULT_LIMIT, "limit", MAX_LIMIT)
        locations = index.locations()
        offset, limit = state["offset"], max(state["limit"], 1)
        info = {}
        if offset + limit < len(locations):
            info["nextCursor"] = encode_cursor({"filter": [], "fields": [], "order": [], "term": "", "term_fields": [],
                                                "limit": limit, "offset": offset + limit})
        return JSONResponse({"items": locations[offset : offset + limit], "totalItems": len(locations), "pageInfo": info})

    async def location_handler(index: CatalogIndex, request: Request) -> Response:
        location = index.location_by_id(request.path_params["id"])
        if location is None:
            return error(request, 404, "NotFoundError", f"Found no location with ID {request.path_params['id'][:100]}")
        return JSONResponse(location)

    async def location_by_entity_handler(index: CatalogIndex, request: Request) -> Response:
        key = entity_key(request)
        origin = index.origin_of(key) if key in index.entities else None
        if origin is None:
            p = request.path_params
            return error(request, 404, "NotFoundError", f"found no location for {p['kind']}:{p['namespace']}/{p['name']}")
        return JSONResponse(location_object(origin))

    async def validate_handler(index: CatalogIndex, request: Request) -> Response:
        body = await json_body(request)
        location = body.get("location")
        problems = []
        if not isinstance(location, str) or not location.startswith("url:") or len(location) <= 4:
            problems.append({"name": "TypeError", "message": f"Invalid location ref {str(location)[:200]}, only 'url:<target>' is supported, e.g. url:https://host/path"})
        try:
            validate(body.get("entity"))
        except EntityError as exc:
            problems.append({"name": "InputError", "message": f"{exc.message} (rule: {exc.rule})"})
        if problems:
            return JSONResponse({"errors": problems}, status_code=400)
        return Response(status_code=200)

    async def refresh_handler(index: CatalogIndex, request: Request) -> Response:
        body = await json_body(request)
        ref = body.get("entityRef")
        if not isinstance(ref, str) or not ref:
            raise QueryError("entityRef is required")
        key = index.get_key(ref)
        if key is None:
            return error(request, 404, "NotFoundError", f"No entity {ref[:200]}")
        if refresh is not None:
            await refresh(index, key)
        live.invalidate()
        return Response(status_code=200)

    def bind(handler, admin: bool = False):  # noqa: ANN001, ANN202
        async def endpoint(request: Request) -> Response:
            return await guarded(request, handler, admin)

        return endpoint

    table = [
        Route("/entities", bind(entities_handler), methods=["GET"]),
        Route("/entities/by-query", bind(query_handler), methods=["GET"]),
        Route("/entities/by-query", bind(predicate_handler), methods=["POST"]),
        Route("/entities/by-uid/{uid}", bind(by_uid_handler), methods=["GET"]),
        Route("/entities/by-name/{kind}/{namespace}/{name}", bind(by_name_handler), methods=["GET"]),
        Route("/entities/by-name/{kind}/{namespace}/{name}/ancestry", bind(ancestry_handler), methods=["GET"]),
        Route("/entities/by-refs", bind(by_refs_handler), methods=["POST"]),
        Route("/entity-facets", bind(facets_handler), methods=["GET"]),
        Route("/entity-facets", bind(facets_predicate_handler), methods=["POST"]),
        Route("/locations", bind(locations_handler), methods=["GET"]),
        Route("/locations/by-query", bind(locations_query_handler), methods=["POST"]),
        Route("/locations/by-entity/{kind}/{namespace}/{name}", bind(location_by_entity_handler), methods=["GET"]),
        Route("/locations/{id}", bind(location_handler), methods=["GET"]),
        Route("/validate-entity", bind(validate_handler), methods=["POST"]),
        Route("/refresh", bind(refresh_handler, admin=True), methods=["POST"]),
    ]

    async def fallback(request: Request) -> Response:
        # Unknown paths and methods answer in Backstage's envelope too (writes are not offered here).
        refused = await authorize(request)
        if refused is not None:
            return await backstage_refusal(request, refused)
        scope = {**request.scope, "method": "GET"}
        known = any(route.matches(scope)[0] != Match.NONE for route in table) or any(
            route.matches({**request.scope, "method": "POST"})[0] != Match.NONE for route in table)
        if known:
            return error(request, 405, "MethodNotAllowedError", f"{request.method} is not supported on {request.url.path}")
        return error(request, 404, "NotFoundError", f"no catalog route {request.url.path}")

    return [*table, Route("/{path:path}", fallback, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
