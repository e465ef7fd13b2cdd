"""An in-memory graph of the catalog with inverted indexes, for millisecond queries at 16k entities.

Built from the stored entities; relations are derived here in both directions, so storage holds
only what authors wrote.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiplane.catalog.model import REVERSE, EntityError, entity_ref, outgoing_relations, parse_ref

# Leaves deeper than this, or text longer than this, are not indexed for filtering.
_MAX_DEPTH = 4
_MAX_VALUE = 256
_FULL_TEXT_FIELDS = ("metadata.name", "metadata.title", "metadata.description", "spec.type", "metadata.tags")

DEPENDENCY_EDGES = {"dependsOn", "consumesApi"}
DEPENDENT_EDGES = {"dependencyOf", "apiConsumedBy"}


class QueryError(Exception):
    """A malformed query parameter; the message is safe to return to the caller."""


@dataclass
class Filter:
    """One `filter=` parameter: all conditions must hold. A value of None means 'key exists'."""

    conditions: list[tuple[str, str | None]] = field(default_factory=list)


def parse_filter(text: str) -> Filter:
    result = Filter()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not key:
            raise QueryError(f"filter '{text}' has an empty key")
        result.conditions.append((key, value.strip().lower() if sep else None))
    if not result.conditions:
        raise QueryError("filter must not be empty")
    return result


def _flatten(value: Any, prefix: str, depth: int, out: dict[str, set[str]]) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            _flatten(child, f"{prefix}.{str(key).lower()}" if prefix else str(key).lower(), depth + 1, out)
    elif isinstance(value, list):
        for child in value:
            if not isinstance(child, dict | list):
                _flatten(child, prefix, depth, out)
    elif value is not None:
        text = str(value).lower()
        if len(text) <= _MAX_VALUE:
            out.setdefault(prefix, set()).add(text)
        else:
            out.setdefault(prefix, set())


def _get_path(entity: dict[str, Any], path: str) -> Any:
    current: Any = entity
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        match = next((k for k in current if k.lower() == part.lower()), None)
        if match is None:
            return None
        current = current[match]
    return current


def project(entity: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Keep only the dotted `fields` (Backstage's `fields=` parameter)."""
    out: dict[str, Any] = {}
    for path in fields:
        value = _get_path(entity, path)
        if value is None:
            continue
        parts = path.split(".")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out


@dataclass
class Hop:
    ref: str
    depth: int
    via: str
    source: str


class CatalogIndex:
    def __init__(self, entities: Iterable[dict[str, Any]]) -> None:
        self.entities: dict[str, dict[str, Any]] = {}
        self.display: dict[str, str] = {}
        for entity in entities:
            ref = entity_ref(entity)
            self.entities[ref.key] = entity
            self.display[ref.key] = str(ref)
        self.out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.relations: set[tuple[str, str, str]] = set()
        self.dangling: list[tuple[str, str, str]] = []
        for key, entity in self.entities.items():
            try:
                declared = outgoing_relations(entity)
            except EntityError:
                continue
            for relation, target in declared:
                self._relate(key, relation, target.key, str(target))
        for key in self.out:
            for relation in self.out[key]:
                self.out[key][relation].sort()
        self._values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._exists: dict[str, set[str]] = defaultdict(set)
        for key, entity in self.entities.items():
            flat: dict[str, set[str]] = {}
            _flatten({k: v for k, v in entity.items() if k != "relations"}, "", 0, flat)
            for relation, targets in self.out.get(key, {}).items():
                flat[f"relations.{relation.lower()}"] = set(targets)
            for path, values in flat.items():
                self._exists[path].add(key)
                for value in values:
                    self._values[path][value].add(key)
        self.ordered = sorted(self.entities)

    def _relate(self, source: str, relation: str, target: str, target_display: str) -> None:
        if (source, relation, target) not in self.relations:
            self.relations.add((source, relation, target))
            self.out[source][relation].append(target)
        if target not in self.entities:
            self.dangling.append((self.display[source], relation, target_display))
            return
        reverse = REVERSE[relation]
        if (target, reverse, source) not in self.relations:
            self.relations.add((target, reverse, source))
            self.out[target][reverse].append(source)

    # -- entities ---------------------------------------------------------------------------

    def get(self, ref: str, default_kind: str | None = None) -> dict[str, Any] | None:
        try:
            key = parse_ref(ref, default_kind).key
        except EntityError:
            return None
        return self.with_relations(key) if key in self.entities else None

    def with_relations(self, key: str) -> dict[str, Any]:
        entity = dict(self.entities[key])
        entity["relations"] = [
            {"type": relation, "targetRef": self.display.get(target, target)}
            for relation, targets in sorted(self.out.get(key, {}).items())
            for target in targets
        ]
        return entity

    # -- queries ----------------------------------------------------------------------------

    def _matches(self, flt: Filter) -> set[str]:
        result: set[str] | None = None
        for key, value in sorted(flt.conditions, key=lambda c: c[1] is None):
            if value is None:
                found = self._exists.get(key, set())
            else:
                found = self._values.get(key, {}).get(value, set())
            result = set(found) if result is None else result & found
            if not result:
                return set()
        return result or set()

    def query(
        self,
        filters: list[Filter] | None = None,
        order: list[tuple[str, bool]] | None = None,
        full_text: str | None = None,
        full_text_fields: list[str] | None = None,
    ) -> list[str]:
        """Matching entity keys, ordered. Several filters mean OR."""
        if filters:
            matched: set[str] = set()
            for flt in filters:
                matched |= self._matches(flt)
        else:
            matched = set(self.entities)
        if full_text:
            term = full_text.lower()
            paths = [p.lower() for p in (full_text_fields or _FULL_TEXT_FIELDS)]
            matched = {
                key for key in matched
                if any(term in value for path in paths for value in self._values_of(key, path))
            }
        if not order:
            return [key for key in self.ordered if key in matched] if len(matched) > len(self.ordered) // 8 else sorted(matched)
        keys = sorted(matched)
        for path, ascending in reversed(order):
            keys.sort(key=lambda k: (str(_get_path(self.entities[k], path) or "").lower()), reverse=not ascending)
        return keys

    def _values_of(self, key: str, path: str) -> list[str]:
        value = _get_path(self.entities[key], path)
        if value is None:
            return []
        if isinstance(value, list):
            return [str(v).lower() for v in value]
        return [str(value).lower()]

    def facets(self, facet: str, keys: Iterable[str]) -> list[dict[str, Any]]:
        counts: dict[str, int] = defaultdict(int)
        originals: dict[str, str] = {}
        for key in keys:
            value = _get_path(self.entities[key], facet)
            for item in value if isinstance(value, list) else [value]:
                if item is None or isinstance(item, dict | list):
                    continue
                text = str(item)
                counts[text.lower()] += 1
                originals.setdefault(text.lower(), text)
        return sorted(({"value": originals[k], "count": c} for k, c in counts.items()), key=lambda f: (-f["count"], f["value"]))

    # -- graph ------------------------------------------------------------------------------

    def walk(self, start: str, edges: set[str], max_depth: int, through_apis: str) -> list[Hop]:
        """Breadth-first over `edges`; an API node is passed through via `through_apis`."""
        seen = {start}
        frontier = [start]
        hops: list[Hop] = []
        for depth in range(1, max_depth + 1):
            following = []
            for node in frontier:
                relations = self.out.get(node, {})
                targets = [(r, t) for r in edges for t in relations.get(r, [])]
                for relation, target in targets:
                    # Reaching an API means reaching whoever provides (or consumes) it.
                    steps = [(relation, target)]
                    if target.startswith("api:"):
                        steps += [(through_apis, t) for t in self.out.get(target, {}).get(through_apis, [])]
                    for via, hop in steps:
                        if hop in seen:
                            continue
                        seen.add(hop)
                        hops.append(Hop(hop, depth, via, node))
                        following.append(hop)
            frontier = following
            if not frontier:
                break
        return hops

    def dependencies(self, key: str, depth: int) -> list[Hop]:
        return self.walk(key, DEPENDENCY_EDGES, depth, "apiProvidedBy")

    def dependents(self, key: str, depth: int) -> list[Hop]:
        # The blast radius: whoever depends on this, and whoever consumes an API it provides.
        return self.walk(key, DEPENDENT_EDGES | {"providesApi"}, depth, "apiConsumedBy")

    def related(self, key: str, relation: str) -> list[str]:
        return list(self.out.get(key, {}).get(relation, []))


def encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, max_limit: int = 10_000) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise QueryError("cursor is not valid") from None
    # A cursor comes back from the client: every field is checked as if it were a query parameter.
    def strings(value: Any) -> bool:
        return isinstance(value, list) and len(value) <= 100 and all(isinstance(v, str) and len(v) <= 1000 for v in value)

    def count(value: Any, maximum: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum

    if (not isinstance(state, dict) or not count(state.get("offset"), 10**9) or not count(state.get("limit"), max_limit)
            or not all(strings(state.get(k)) for k in ("filter", "fields", "order", "term_fields"))
            or not isinstance(state.get("term"), str) or len(state["term"]) > 1000):
        raise QueryError("cursor is not valid")
    return state
