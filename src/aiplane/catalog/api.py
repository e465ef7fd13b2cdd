"""Backstage-compatible catalog REST API, mounted by the gateway under /api/catalog."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiplane.catalog.index import CatalogIndex, QueryError, decode_cursor, encode_cursor, parse_filter, project
from aiplane.catalog.model import EntityError, EntityRef
from aiplane.catalog.store import LiveIndex
from aiplane.httpbody import BodyTooLarge, read_limited

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_REFS = 1000
# MAX_REFS refs of a few hundred characters each, plus fields: well under this.
MAX_BODY_BYTES = 1024 * 1024

Authorize = Callable[[Request], Awaitable[Response | None]]


def _error(status: int, name: str, message: str) -> JSONResponse:
    # Backstage's error envelope, so Backstage-aware clients parse it.
    return JSONResponse({"error": {"name": name, "message": message}, "response": {"statusCode": status}}, status_code=status)


def _fields(values: list[str]) -> list[str]:
    return [f.strip() for value in values for f in value.split(",") if f.strip()]


def _order(values: list[str]) -> list[tuple[str, bool]]:
    order = []
    for value in values:
        path, _, direction = value.partition(",")
        direction = (direction or "asc").strip().lower()
        if not path.strip() or direction not in ("asc", "desc"):
            raise QueryError(f"orderField '{value}' must be 'field,asc' or 'field,desc'")
        order.append((path.strip(), direction == "asc"))
    return order


def _int(value: str | None, default: int, name: str, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise QueryError(f"{name} must be a non-negative integer")
    return min(int(value), maximum)


def by_query(index: CatalogIndex, params: Any) -> dict[str, Any]:
    cursor = params.get("cursor")
    if cursor:
        state = decode_cursor(cursor, MAX_LIMIT)
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
    keys = index.query(
        [parse_filter(f) for f in state["filter"]] or None,
        _order(state["order"]),
        state["term"] or None,
        state["term_fields"] or None,
    )
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


def routes(live: LiveIndex, authorize: Authorize) -> list[Route]:
    async def guarded(request: Request, handler: Callable[[CatalogIndex, Request], Awaitable[Response]]) -> Response:
        refused = await authorize(request)
        if refused is not None:
            return refused
        try:
            return await handler(await live.get(), request)
        except QueryError as exc:
            return _error(400, "InputError", str(exc))

    async def query_handler(index: CatalogIndex, request: Request) -> Response:
        return JSONResponse(by_query(index, request.query_params))

    async def by_name_handler(index: CatalogIndex, request: Request) -> Response:
        p = request.path_params
        key = EntityRef(p["kind"].lower(), p["namespace"], p["name"]).key
        if key not in index.entities:
            return _error(404, "NotFoundError", f"No entity named '{p['name']}' found, with kind '{p['kind']}' in namespace '{p['namespace']}'")
        return JSONResponse(index.with_relations(key))

    async def by_refs_handler(index: CatalogIndex, request: Request) -> Response:
        try:
            raw = await read_limited(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            response = _error(413, "PayloadTooLargeError", f"request body exceeds {MAX_BODY_BYTES} bytes")
            response.headers["connection"] = "close"  # stop reading the rest
            return response
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(400, "InputError", "body must be JSON: {\"entityRefs\": [...]}")
        refs = body.get("entityRefs") if isinstance(body, dict) else None
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or len(refs) > MAX_REFS:
            return _error(400, "InputError", f"entityRefs must be a list of at most {MAX_REFS} strings")
        fields = body.get("fields") or []
        items = []
        for ref in refs:
            try:
                entity = index.get(ref)
            except EntityError:
                entity = None
            items.append(project(entity, fields) if entity is not None and fields else entity)
        return JSONResponse({"items": items})

    async def facets_handler(index: CatalogIndex, request: Request) -> Response:
        facets = request.query_params.getlist("facet")
        if not facets:
            return _error(400, "InputError", "at least one facet parameter is required")
        filters = [parse_filter(f) for f in request.query_params.getlist("filter")]
        keys = index.query(filters or None)
        return JSONResponse({"facets": {facet: index.facets(facet, keys) for facet in facets}})

    def bind(handler):  # noqa: ANN001, ANN202
        async def endpoint(request: Request) -> Response:
            return await guarded(request, handler)

        return endpoint

    return [
        Route("/entities/by-query", bind(query_handler), methods=["GET"]),
        Route("/entities/by-name/{kind}/{namespace}/{name}", bind(by_name_handler), methods=["GET"]),
        Route("/entities/by-refs", bind(by_refs_handler), methods=["POST"]),
        Route("/entity-facets", bind(facets_handler), methods=["GET"]),
    ]
