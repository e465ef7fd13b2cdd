"""Graph answers for agents: compact, paginated objects over the catalog index.

Shared by the MCP server; every function takes an index and returns plain data shaped by the
TypedDicts below, which the MCP server publishes as each tool's output schema.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, with_config
from typing_extensions import NotRequired, TypedDict

from aiplane.catalog.index import CatalogIndex, Filter, Hop, QueryError
from aiplane.catalog.model import EntityError, parse_ref

MAX_RESULT_BYTES = 32 * 1024
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_DEPTH = 6
SOURCE_ANNOTATIONS = ("backstage.io/source-location", "backstage.io/managed-by-location")
DATABASE_TYPES = {"database", "db", "postgres", "postgresql", "mysql", "mongodb", "redis", "datastore"}


class ToolError(Exception):
    """A caller mistake; the message goes back to the agent as is."""


# -- output shapes (published as MCP output schemas, and as Code Mode signatures) -------------


class Summary(TypedDict):
    """One entity in brief; `missing` marks a reference to an entity not in the catalog."""

    ref: str
    title: NotRequired[str]
    type: NotRequired[str]
    lifecycle: NotRequired[str]
    owner: NotRequired[str]
    system: NotRequired[str]
    description: NotRequired[str]
    missing: NotRequired[bool]


class Relation(TypedDict):
    type: str
    targetRef: str


@with_config(ConfigDict(extra="allow"))
class Entity(TypedDict):
    """A Backstage entity as the catalog serves it (other root fields pass through)."""

    apiVersion: str
    kind: str
    metadata: dict[str, Any]
    spec: NotRequired[dict[str, Any]]
    relations: list[Relation]


class SummaryPage(TypedDict):
    items: list[Summary]
    total: int
    next_offset: NotRequired[int]


HopItem = TypedDict("HopItem", {
    "ref": str, "title": NotRequired[str], "type": NotRequired[str], "lifecycle": NotRequired[str],
    "owner": NotRequired[str], "system": NotRequired[str], "description": NotRequired[str],
    "depth": int, "via": str, "from": NotRequired[str], "missing": NotRequired[bool],
})


class HopPage(TypedDict):
    items: list[HopItem]
    total: int
    next_offset: NotRequired[int]


class Ownership(TypedDict):
    entity: Summary
    owners: list[Summary]


class Apis(TypedDict):
    """For an API: api, provided_by, consumed_by. For anything else: entity, provides, consumes."""

    api: NotRequired[Summary]
    provided_by: NotRequired[list[Summary]]
    consumed_by: NotRequired[list[Summary]]
    entity: NotRequired[Summary]
    provides: NotRequired[list[Summary]]
    consumes: NotRequired[list[Summary]]


class Database(Summary):
    depth: int


class Databases(TypedDict):
    entity: Summary
    databases: list[Database]


class Member(TypedDict):
    ref: str
    displayName: NotRequired[str]
    email: NotRequired[str]


class Team(TypedDict):
    group: Summary
    subgroups: list[str]
    members: list[Member]


Edge = TypedDict("Edge", {"from": str, "type": str, "to": str, "external": bool})


class SystemMap(TypedDict):
    system: Summary
    domain: str | None
    owners: list[str]
    parts: dict[str, list[Summary]]
    edges: list[Edge]


def summary(index: CatalogIndex, key: str) -> dict[str, Any]:
    entity = index.entities[key]
    metadata, spec = entity.get("metadata", {}), entity.get("spec") or {}
    out: dict[str, Any] = {"ref": index.display[key]}
    for name, value in (
        ("title", metadata.get("title")),
        ("type", spec.get("type")),
        ("lifecycle", spec.get("lifecycle")),
        ("owner", spec.get("owner")),
        ("system", spec.get("system")),
        ("description", (metadata.get("description") or "")[:200] or None),
    ):
        if isinstance(value, str) and value:
            out[name] = value
    return out


def _key(index: CatalogIndex, ref: str, default_kind: str | None = "component") -> str:
    try:
        key = parse_ref(ref, default_kind).key
    except EntityError as exc:
        raise ToolError(exc.message) from None
    if key not in index.entities:
        raise ToolError(f"no entity {key} in the catalog")
    return key


def _page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    page = items[offset : offset + limit]
    result: dict[str, Any] = {"items": page, "total": len(items)}
    # Keep answers inside the size cap: drop items from the end and say where to continue.
    while page and len(json.dumps(result, separators=(",", ":"))) > MAX_RESULT_BYTES:
        page = page[:-1]
        result["items"] = page
    if offset + len(page) < len(items):
        result["next_offset"] = offset + len(page)
    return result


def get_entity(index: CatalogIndex, ref: str) -> dict[str, Any]:
    key = _key(index, ref)
    entity = index.with_relations(key)
    text = json.dumps(entity, default=str)
    if len(text) > MAX_RESULT_BYTES:
        spec = dict(entity.get("spec") or {})
        if isinstance(spec.get("definition"), str):
            spec["definition"] = spec["definition"][:2000] + "… (truncated)"
        entity["spec"] = spec
        if len(json.dumps(entity, default=str)) > MAX_RESULT_BYTES:
            # Still too large (a big spec or metadata elsewhere): the identity and a note, so
            # the whole answer stays within the cap a model context can take.
            metadata = entity.get("metadata") or {}
            kept = {k: metadata[k] for k in ("name", "namespace", "title") if isinstance(metadata.get(k), str)}
            entity = {
                "apiVersion": entity.get("apiVersion"),
                "kind": entity.get("kind"),
                "metadata": {k: v[:300] for k, v in kept.items()},
                "relations": [],
                "truncated": f"the entity is larger than {MAX_RESULT_BYTES} bytes; only its identity is shown",
            }
    return entity


def search_entities(
    index: CatalogIndex,
    query: str = "",
    kind: str = "",
    type: str = "",
    owner: str = "",
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    conditions: list[tuple[str, str | None]] = []
    if kind:
        conditions.append(("kind", kind.lower()))
    if type:
        conditions.append(("spec.type", type.lower()))
    if owner:
        try:
            conditions.append(("relations.ownedby", parse_ref(owner, "group").key))
        except EntityError as exc:
            raise ToolError(exc.message) from None
    try:
        keys = index.query([Filter(conditions)] if conditions else None, full_text=query or None)
    except QueryError as exc:
        raise ToolError(str(exc)) from None
    return _page([summary(index, k) for k in keys], limit, offset)


def who_owns(index: CatalogIndex, target: str) -> dict[str, Any]:
    """The owner of an entity, or of the entity whose source location contains a path or URL."""
    key = None
    if "://" not in target:
        try:
            candidate = parse_ref(target, "component").key
            key = candidate if candidate in index.entities else None
        except EntityError:
            key = None
    if key is None:
        key = _match_source(index, target)
    if key is None:
        raise ToolError(f"no entity owns '{target}' (matched against refs and source-location annotations)")
    owners = index.related(key, "ownedBy")
    return {
        "entity": summary(index, key),
        "owners": [summary(index, o) if o in index.entities else {"ref": o, "missing": True} for o in owners],
    }


def _normalise_location(value: str) -> str:
    value = value.strip().removeprefix("url:").removeprefix("git:")
    parts = urlsplit(value)
    text = (parts.netloc + parts.path) if parts.scheme else value
    return text.lower().rstrip("/").removesuffix(".git")


def _strip_branch(path: str) -> str:
    """repo/tree/main/services/x -> repo/services/x, so paths compare without the branch."""
    for marker in ("/-/tree/", "/-/blob/", "/tree/", "/blob/"):
        if marker in path:
            repo, _, rest = path.partition(marker)
            return repo + ("/" + rest.split("/", 1)[1] if "/" in rest else "")
    return path


def _match_source(index: CatalogIndex, target: str) -> str | None:
    wanted = _strip_branch(_normalise_location(target))
    best, best_len = None, -1
    for key, entity in index.entities.items():
        annotations = (entity.get("metadata") or {}).get("annotations") or {}
        locations = [annotations.get(a) for a in SOURCE_ANNOTATIONS]
        slug = annotations.get("github.com/project-slug")
        if slug:
            locations.append(f"github.com/{slug}")
        for location in locations:
            if not isinstance(location, str) or not location:
                continue
            root = _strip_branch(_normalise_location(location)).rstrip("/")
            if root and (wanted == root or wanted.startswith(root + "/")) and len(root) > best_len:
                best, best_len = key, len(root)
    return best


def _hops(index: CatalogIndex, hops: list[Hop], limit: int, offset: int) -> dict[str, Any]:
    items = [
        {**summary(index, h.ref), "depth": h.depth, "via": h.via, "from": index.display.get(h.source, h.source)}
        if h.ref in index.entities
        else {"ref": h.ref, "depth": h.depth, "via": h.via, "missing": True}
        for h in hops
    ]
    return _page(items, limit, offset)


def _depth(depth: int) -> int:
    if depth < 1 or depth > MAX_DEPTH:
        raise ToolError(f"depth must be between 1 and {MAX_DEPTH}")
    return depth


def dependencies(index: CatalogIndex, ref: str, depth: int = 1, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return _hops(index, index.dependencies(_key(index, ref), _depth(depth)), limit, offset)


def dependents(index: CatalogIndex, ref: str, depth: int = 1, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    return _hops(index, index.dependents(_key(index, ref), _depth(depth)), limit, offset)


def apis_of(index: CatalogIndex, ref: str) -> dict[str, Any]:
    key = _key(index, ref)

    def listed(relation: str) -> list[dict[str, Any]]:
        return [summary(index, k) if k in index.entities else {"ref": k, "missing": True} for k in index.related(key, relation)]

    if key.startswith("api:"):
        return {"api": summary(index, key), "provided_by": listed("apiProvidedBy"), "consumed_by": listed("apiConsumedBy")}
    return {"entity": summary(index, key), "provides": listed("providesApi"), "consumes": listed("consumesApi")}


def databases_of(index: CatalogIndex, ref: str, depth: int = 2) -> dict[str, Any]:
    key = _key(index, ref)
    found = []
    for hop in index.dependencies(key, _depth(depth)):
        entity = index.entities.get(hop.ref)
        if entity is None or not hop.ref.startswith("resource:"):
            continue
        kind_of = str((entity.get("spec") or {}).get("type", "")).lower()
        if kind_of in DATABASE_TYPES:
            found.append({**summary(index, hop.ref), "depth": hop.depth})
    return {"entity": summary(index, key), "databases": found}


def team_members(index: CatalogIndex, group: str, include_subgroups: bool = False) -> dict[str, Any]:
    key = _key(index, group, "group")
    groups, queue = [key], [key]
    while include_subgroups and queue:
        current = queue.pop()
        for child in index.related(current, "parentOf"):
            if child not in groups:
                groups.append(child)
                queue.append(child)
    members: dict[str, dict[str, Any]] = {}
    for g in groups:
        for user in index.related(g, "hasMember"):
            if user in index.entities:
                profile = (index.entities[user].get("spec") or {}).get("profile") or {}
                fields = {k: v for k, v in profile.items() if k in ("displayName", "email") and isinstance(v, str)} if isinstance(profile, dict) else {}
                members.setdefault(user, {"ref": index.display[user], **fields})
    return {
        "group": summary(index, key),
        "subgroups": [index.display.get(g, g) for g in groups[1:]],
        "members": sorted(members.values(), key=lambda m: m["ref"]),
    }


def system_map(index: CatalogIndex, system: str) -> dict[str, Any]:
    key = _key(index, system, "system")
    parts = index.related(key, "hasPart")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    inside = set(parts)
    edges = []
    for part in parts:
        if part not in index.entities:
            continue
        by_kind.setdefault(part.split(":", 1)[0], []).append(summary(index, part))
        for relation in ("dependsOn", "providesApi", "consumesApi"):
            for target in index.related(part, relation):
                edges.append({"from": index.display[part], "type": relation, "to": index.display.get(target, target), "external": target not in inside})
    domain = index.related(key, "partOf")
    return {
        "system": summary(index, key),
        "domain": index.display.get(domain[0], domain[0]) if domain else None,
        "owners": [index.display.get(o, o) for o in index.related(key, "ownedBy")],
        "parts": by_kind,
        "edges": edges,
    }
