"""A Backstage catalog backend double for `aiplane catalog sync`, speaking Backstage's wire format.

`GET /api/catalog/entities/by-query` pages with Backstage's cursor: base64 JSON carrying the sort
values of the last item (keyset paging over name then uid), `isPrevious` and `totalItems`; the
page size is capped server-side (Backstage answers fewer items than asked for). `GET /entities`
pages by `limit`/`offset` (for backends without by-query). Entities are served as Backstage serves
them (uid, etag, namespace, relations, location annotations). Bearer auth, with Backstage's error
envelope on 401. `state.mode` scripts failures.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "backstage-static-token-for-tests-6f1f4a52"
MAX_PAGE = 100  # Backstage-side cap on `limit`


def _entity(kind: str, name: str, spec: dict[str, Any], relations: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{name}")),
            "etag": base64.b64encode(name.encode()).decode(),
            "annotations": {
                "backstage.io/managed-by-location": "url:https://git.example.com/acme/catalog/blob/main/all.yaml",
                "backstage.io/managed-by-origin-location": "url:https://git.example.com/acme/catalog/blob/main/all.yaml",
            },
        },
        "spec": spec,
        "relations": relations,
    }


def make_entities(components: int = 240, groups: int = 10) -> list[dict[str, Any]]:
    out = []
    for g in range(groups):
        out.append(_entity("Group", f"team-{g}", {"type": "team", "children": []}, []))
    for c in range(components):
        team = f"team-{c % groups}"
        out.append(_entity("Component", f"svc-{c:04d}", {"type": "service", "lifecycle": "production", "owner": team},
                           [{"type": "ownedBy", "targetRef": f"group:default/{team}"}]))
    return out


@dataclass
class BackstageState:
    entities: list[dict[str, Any]] = field(default_factory=make_entities)
    mode: str = "ok"
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # (path, query, had the token)
    page_size_asked: list[int] = field(default_factory=list)


def _error(request: Request, status: int, name: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"name": name, "message": message}, "request": {"method": request.method, "url": str(request.url.path)},
                         "response": {"statusCode": status}}, status_code=status)


def _encode(cursor: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(cursor).encode()).decode()


def _sort_key(entity: dict[str, Any]) -> tuple[str, str]:
    return entity["metadata"]["name"], entity["metadata"]["uid"]


def build_app(state: BackstageState) -> Starlette:
    def authorized(request: Request) -> bool:
        ok = request.headers.get("authorization") == f"Bearer {TOKEN}"
        state.requests.append((request.url.path, request.url.query, ok))
        return ok

    async def by_query(request: Request) -> Response:
        if not authorized(request):
            return _error(request, 401, "AuthenticationError", "Missing credentials")
        mode = state.mode
        if mode == "no-by-query":
            return _error(request, 404, "NotFoundError", "Not Found")
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "redirect":
            return Response(status_code=302, headers={"location": "http://127.0.0.1:9/elsewhere"})
        page_number = sum(1 for path, _, _ in state.requests if path.endswith("/by-query"))
        if mode == "error-midway" and page_number >= 3:
            return _error(request, 500, "DatabaseError", "connection reset; password=hunter2")
        if mode == "garbage" and page_number >= 2:
            return Response("<html>gateway timeout</html>", media_type="text/html")
        if mode == "huge":
            return Response(b'{"items": [' + b'"x",' * 400_000 + b'"x"], "pageInfo": {}, "totalItems": 1}', media_type="application/json")
        if mode == "gzip":
            body = gzip.compress(json.dumps({"items": [], "pageInfo": {}, "totalItems": 0}).encode())
            return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})
        limit = min(int(request.query_params.get("limit") or 20), MAX_PAGE)
        state.page_size_asked.append(int(request.query_params.get("limit") or 20))
        ordered = sorted(state.entities, key=_sort_key)
        # In "loop" mode the cursor is ignored and the same nextCursor comes back forever.
        cursor_text = request.query_params.get("cursor") if mode != "loop" else None
        if cursor_text:
            try:
                cursor = json.loads(base64.b64decode(cursor_text))
            except ValueError:
                return _error(request, 400, "InputError", "Malformed cursor")
            after = tuple(cursor["orderFieldValues"])
            ordered = [e for e in ordered if _sort_key(e) > after]
            total = cursor["totalItems"]
        else:
            total = len(ordered)
        if mode == "empty":
            ordered, total = [], 0
        page = ordered[:limit]
        items = list(page)
        if mode == "hostile-items" and not cursor_text:
            items += [{"kind": "Component"}, "not an object", {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                      "metadata": {"name": "bad name!"}, "spec": {}}]
        info: dict[str, str] = {}
        if len(ordered) > limit:
            next_cursor = {"orderFields": [{"field": "metadata.name", "order": "asc"}],
                           "orderFieldValues": list(_sort_key(page[-1])), "isPrevious": False, "totalItems": total}
            info["nextCursor"] = _encode(next_cursor) if mode != "loop" else "c3RhbGU="
        if cursor_text:
            info["prevCursor"] = _encode({"orderFieldValues": list(_sort_key(page[0])) if page else [], "isPrevious": True, "totalItems": total})
        return JSONResponse({"items": items, "totalItems": total, "pageInfo": info})

    async def entities(request: Request) -> Response:
        if not authorized(request):
            return _error(request, 401, "AuthenticationError", "Missing credentials")
        ordered = sorted(state.entities, key=_sort_key)
        offset = int(request.query_params.get("offset") or 0)
        limit = int(request.query_params.get("limit") or len(ordered))
        return JSONResponse(ordered[offset : offset + limit])

    return Starlette(routes=[
        Route("/api/catalog/entities/by-query", by_query, methods=["GET"]),
        Route("/api/catalog/entities", entities, methods=["GET"]),
    ])
