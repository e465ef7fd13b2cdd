"""An in-memory graph of the catalog with inverted indexes, for millisecond queries at 16k entities.

Built from the stored entities; relations are derived here in both directions, so storage holds
only what authors wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from aiplane.catalog.model import REVERSE, EntityError, entity_ref, outgoing_relations, parse_ref

# Leaves deeper than this, or text longer than this, are not indexed for filtering.
_MAX_DEPTH = 4
_MAX_VALUE = 256
_FULL_TEXT_FIELDS = ("metadata.name", "metadata.title", "metadata.description", "spec.type", "metadata.tags")

# Backstage's annotations naming where an entity was read from, and the registered location it descends from.
MANAGED_BY_LOCATION = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
# uids are derived from the ref under this namespace, so they are stable across re-ingests and processes.
_UID_NAMESPACE = uuid.UUID("6f1f4a52-5d0c-4c6b-9a55-2f3f0c9f6b11")
_KEPT_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
# A predicate (POST by-query, entity-facets, by-refs) deeper or larger than this is refused.
MAX_PREDICATE_DEPTH = 16
MAX_PREDICATE_NODES = 512

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
                # Backstage also matches `metadata.tags.java` (= "true") for a list member. Only tags
                # get that second form here: for every list it makes a new key per distinct member
                # (each API ref in consumesApis...), which costs index build time for no documented use.
                if prefix == "metadata.tags" and child is not None and len(text := str(child).lower()) <= _MAX_VALUE:
                    out.setdefault(f"{prefix}.{text}", set()).add("true")
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


def location_ref(source: str) -> str:
    """Backstage's `type:target` form of where an entity was read from."""
    if source.startswith(("http://", "https://")):
        return f"url:{source}"
    return f"file:{source}"


def _resolve_target(base: str, target: str) -> str | None:
    """A Location target as a `type:target` ref, relative to the Location's own location ref."""
    if "*" in target:
        return None  # globs are not followed by our loader either
    if target.startswith(("http://", "https://")):
        return f"url:{target}"
    kind, _, where = base.partition(":")
    if kind == "url":
        return f"url:{urljoin(where, target)}"
    if kind == "file":
        return f"file:{posixpath.normpath(posixpath.join(posixpath.dirname(where), target))}"
    return None


def location_id(ref: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "location:" + ref))


def location_object(ref: str) -> dict[str, str]:
    kind, _, target = ref.partition(":")
    return {"id": location_id(ref), "type": kind, "target": target}


class CatalogIndex:
    def __init__(self, entities: Iterable[dict[str, Any]], sources: Mapping[str, str] | None = None) -> None:
        self.entities: dict[str, dict[str, Any]] = {}
        self.display: dict[str, str] = {}
        for entity in entities:
            ref = entity_ref(entity)
            self.entities[ref.key] = entity
            self.display[ref.key] = str(ref)
        # key -> where it was read from (a path, a URL or `backstage:<url>` for synced entities)
        self.sources: dict[str, str] = dict(sources or {})
        self._served: dict[str, dict[str, Any]] = {}
        self._parents: dict[str, list[str]] | None = None
        self.uids: dict[str, str] = {}
        self.uid_of: dict[str, str] = {}
        for key in sorted(self.entities):
            # A uid that came with the entity (synced from a Backstage) is kept when well-formed and unique.
            given = (self.entities[key].get("metadata") or {}).get("uid")
            uid = given if isinstance(given, str) and _KEPT_UID.match(given) and given not in self.uids else None
            uid = uid or str(uuid.uuid5(_UID_NAMESPACE, key))
            if uid in self.uids:  # a kept uid equal to a derived one: derive from the ref again
                uid = str(uuid.uuid5(_UID_NAMESPACE, "dup:" + key))
            self.uids[uid] = key
            self.uid_of[key] = uid
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
            searchable = {k: v for k, v in entity.items() if k != "relations"}
            # Filters see what is served: the default namespace and the uid.
            searchable["metadata"] = {"namespace": "default", **(entity.get("metadata") or {}), "uid": self.uid_of[key]}
            _flatten(searchable, "", 0, flat)
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

    def get_key(self, ref: str, default_kind: str | None = None) -> str | None:
        try:
            key = parse_ref(ref, default_kind).key
        except EntityError:
            return None
        return key if key in self.entities else None

    def get(self, ref: str, default_kind: str | None = None) -> dict[str, Any] | None:
        try:
            key = parse_ref(ref, default_kind).key
        except EntityError:
            return None
        return self.with_relations(key) if key in self.entities else None

    def with_relations(self, key: str) -> dict[str, Any]:
        """The entity as Backstage serves it: uid, etag, namespace, location annotations, relations."""
        served = self._served.get(key)
        if served is None:
            served = self._serve(key)
            self._served[key] = served
        return dict(served)  # callers may replace top-level fields; nested ones are shared

    def _serve(self, key: str) -> dict[str, Any]:
        entity = dict(self.entities[key])
        metadata = dict(entity.get("metadata") or {})
        metadata.pop("etag", None)
        metadata.setdefault("namespace", "default")
        metadata["uid"] = self.uid_of[key]
        annotations = dict(metadata.get("annotations") or {})
        own = self.location_of(key)
        if own is not None:
            annotations.setdefault(MANAGED_BY_LOCATION, own)
        origin = self.origin_of(key)
        if origin is not None:
            annotations.setdefault(MANAGED_BY_ORIGIN, origin)
        if annotations:
            metadata["annotations"] = annotations
        entity["metadata"] = metadata
        entity["relations"] = [
            {"type": relation, "targetRef": self.display.get(target, target)}
            for relation, targets in sorted(self.out.get(key, {}).items())
            for target in targets
        ]
        # The etag changes exactly when what is served changes.
        digest = hashlib.sha256(json.dumps(entity, sort_keys=True, separators=(",", ":"), default=str).encode()).digest()
        metadata["etag"] = base64.urlsafe_b64encode(digest[:18]).decode()
        return entity

    # -- locations and ancestry ---------------------------------------------------------------

    def location_of(self, key: str) -> str | None:
        """The entity's own location ref: its managed-by-location annotation, else where we read it."""
        annotations = (self.entities[key].get("metadata") or {}).get("annotations") or {}
        given = annotations.get(MANAGED_BY_LOCATION) if isinstance(annotations, dict) else None
        if isinstance(given, str) and ":" in given:
            return given
        source = self.sources.get(key)
        if source and not source.startswith("backstage:"):
            return location_ref(source)
        return None

    def parents(self, key: str) -> list[str]:
        """Location entities whose targets produced this entity's file."""
        if self._parents is None:
            produced: dict[str, list[str]] = defaultdict(list)
            for loc in self.entities:
                if not loc.startswith("location:"):
                    continue
                base = self.location_of(loc)
                spec = self.entities[loc].get("spec") or {}
                targets = list(spec.get("targets") or []) + ([spec["target"]] if spec.get("target") else [])
                for target in targets[:1000]:
                    resolved = _resolve_target(base, target) if base and isinstance(target, str) else None
                    if resolved is not None:
                        produced[resolved.rstrip("/")].append(loc)
            parents: dict[str, list[str]] = {}
            for entity_key in self.entities:
                own = self.location_of(entity_key)
                if own is None:
                    continue
                found: list[str] = []
                # The file itself, or a directory target above it (our loader follows directories).
                candidate = own
                for _ in range(64):
                    found += [p for p in produced.get(candidate, []) if p != entity_key and p not in found]
                    head, sep, _tail = candidate.rpartition("/")
                    if not sep or head.endswith(":") or head.endswith("/"):
                        break
                    candidate = head
                if found:
                    parents[entity_key] = sorted(found)
            self._parents = parents
        return self._parents.get(key, [])

    def ancestry(self, key: str) -> dict[str, Any]:
        """Backstage's ancestry: the entity, then each Location above it, with their parents."""
        items, queue, seen = [], [key], {key}
        while queue and len(items) < 1000:
            current = queue.pop(0)
            parents = self.parents(current)
            items.append({"entity": self.with_relations(current), "parentEntityRefs": [self.display[p] for p in parents]})
            for parent in parents:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return {"rootEntityRef": self.display[key], "items": items}

    def origin_of(self, key: str) -> str | None:
        """The registered location an entity descends from: the top of its ancestry."""
        annotations = (self.entities[key].get("metadata") or {}).get("annotations") or {}
        given = annotations.get(MANAGED_BY_ORIGIN) if isinstance(annotations, dict) else None
        if isinstance(given, str) and ":" in given:
            return given
        current, seen = key, {key}
        while True:
            parents = [p for p in self.parents(current) if p not in seen]
            if not parents:
                return self.location_of(current)
            current = parents[0]
            seen.add(current)

    def locations(self) -> list[dict[str, str]]:
        refs = {origin for key in self.entities if (origin := self.origin_of(key)) is not None}
        return [location_object(ref) for ref in sorted(refs)]

    def location_by_id(self, location: str) -> dict[str, str] | None:
        return next((loc for loc in self.locations() if loc["id"] == location), None)

    # -- predicates (Backstage's POST filter language) -------------------------------------------

    def match(self, predicate: Any) -> set[str]:
        """Entity keys matching a filter predicate ($all, $any, $not, $exists, $in, $hasPrefix).

        The result may be one of the index's own sets: read it, never change it."""
        budget = [MAX_PREDICATE_NODES]
        return self._match(predicate, 0, budget)

    def _match(self, predicate: Any, depth: int, budget: list[int]) -> set[str]:
        budget[0] -= 1
        if depth > MAX_PREDICATE_DEPTH or budget[0] < 0:
            raise QueryError(f"query predicate is deeper than {MAX_PREDICATE_DEPTH} or larger than {MAX_PREDICATE_NODES} nodes")
        if not isinstance(predicate, dict):
            raise QueryError("query must be an object, e.g. {\"kind\": \"component\"}")
        if "$all" in predicate or "$any" in predicate or "$not" in predicate:
            if len(predicate) != 1:
                raise QueryError("$all, $any and $not must stand alone in their object")
            (op, operand), = predicate.items()
            if op == "$not":
                return set(self.entities) - self._match(operand, depth + 1, budget)
            if not isinstance(operand, list):
                raise QueryError(f"{op} takes a list of predicates")
            if not operand:
                return set()
            parts = [self._match(p, depth + 1, budget) for p in operand]
            if op == "$any":
                return set().union(*parts)
            parts.sort(key=len)  # smallest first: the intersection never grows
            return parts[0].intersection(*parts[1:])
        result: set[str] | None = None
        for raw_key, value in predicate.items():
            if not isinstance(raw_key, str) or not raw_key or raw_key.startswith("$"):
                raise QueryError(f"unknown predicate operator '{raw_key}'")
            found = self._match_field(raw_key.lower(), value)
            result = found if result is None else (result & found if len(result) <= len(found) else found & result)
        return set(self.entities) if result is None else result

    def _match_field(self, key: str, value: Any) -> set[str]:
        if isinstance(value, str | int | float | bool) and value is not None:
            return self._values.get(key, {}).get(_primitive(value), set())
        if isinstance(value, dict) and len(value) == 1:
            (op, operand), = value.items()
            if op == "$exists" and isinstance(operand, bool):
                present = self._exists.get(key, set())
                return present if operand else set(self.entities) - present
            if op == "$in" and isinstance(operand, list) and len(operand) <= MAX_PREDICATE_NODES:
                if not all(isinstance(v, str | int | float | bool) for v in operand):
                    raise QueryError(f"$in for '{key}' takes a list of strings, numbers or booleans")
                values = self._values.get(key, {})
                if len(operand) == 1:
                    return values.get(_primitive(operand[0]), set())
                return set().union(*(values.get(_primitive(v), set()) for v in operand))
            if op == "$hasPrefix" and isinstance(operand, str):
                prefix = operand.lower()
                return set().union(*(keys for v, keys in self._values.get(key, {}).items() if v.startswith(prefix)))
        raise QueryError(
            f"invalid predicate value for '{key}': expected a primitive value, $exists, $in or $hasPrefix"
        )

    # -- queries ----------------------------------------------------------------------------

    def _matches(self, flt: Filter) -> set[str]:
        # Backstage groups a filter's conditions by key: values of one key OR, different keys AND
        # (`kind=component,kind=api` is either kind; `kind=component,spec.type=service` is both).
        by_key: dict[str, set[str]] = {}
        for key, value in flt.conditions:
            if value is None:
                found = self._exists.get(key, set())
            else:
                found = self._values.get(key, {}).get(value, set())
            # The index's own set when a key has one value (never changed below), a union otherwise.
            by_key[key] = by_key[key] | found if key in by_key else found
        result: set[str] | None = None
        for found in sorted(by_key.values(), key=len):
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
        predicate: dict[str, Any] | None = None,
    ) -> list[str]:
        """Matching entity keys, ordered. Several filters mean OR; a predicate is ANDed on top."""
        if filters:
            matched: set[str] = set()
            for flt in filters:
                matched |= self._matches(flt)
            if predicate is not None:
                matched &= self.match(predicate)
        elif predicate is not None:
            matched = set(self.match(predicate))
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


def _primitive(value: str | int | float | bool) -> str:
    # JavaScript's String(): booleans are lower-case words, integral numbers have no fraction.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


MAX_CURSOR_CHARS = 64 * 1024


def encode_cursor(state: dict[str, Any]) -> str:
    # Standard base64 of JSON, as Backstage writes it: catalog-client peeks inside (atob) to see
    # whether a cursor carries a predicate query and must go to POST /entities/by-query.
    return base64.b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, max_limit: int = 10_000) -> dict[str, Any]:
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise QueryError("cursor is not valid")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode(), altchars=b"-_" if ("-" in cursor or "_" in cursor) else None, validate=True)
        state = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError, binascii.Error):
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
    if "query" in state and not isinstance(state["query"], dict | None):
        raise QueryError("cursor is not valid")
    return state
