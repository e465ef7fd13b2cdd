"""The Backstage descriptor model: entity references, validation rules and relations.

Rules follow Backstage's catalog-model (backstage.io/v1alpha1): name and namespace patterns,
tag/label/annotation key rules, each kind's required spec fields, and the relation pairs
derived from spec fields, with the default kind each field implies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

KNOWN_API_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")
# Backstage's placeholder keys: a one-key mapping with one of these is replaced by what it names.
PLACEHOLDERS = ("$text", "$json", "$yaml")
# The largest entity stored, in characters of its JSON form (about: strings count their length).
MAX_ENTITY_CHARS = 8 * 1024 * 1024
# Integers beyond a signed 64-bit range are not JSON numbers any peer reads back exactly, and a
# huge one (0x followed by thousands of digits) cannot even be printed in decimal by Python.
MAX_INT_BITS = 63
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
KNOWN_KINDS = ("component", "api", "resource", "system", "domain", "group", "user", "location")

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_KIND = re.compile(r"[a-zA-Z][a-zA-Z0-9]*")
_DNS_LABEL = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TAG = re.compile(r"^[a-z0-9:+#]+(?:-[a-z0-9:+#]+)*$")
_KEY_NAME = re.compile(r"^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

RELATION_PAIRS = {
    "ownedBy": "ownerOf",
    "partOf": "hasPart",
    "providesApi": "apiProvidedBy",
    "consumesApi": "apiConsumedBy",
    "dependsOn": "dependencyOf",
    "childOf": "parentOf",
    "memberOf": "hasMember",
}
REVERSE = {**RELATION_PAIRS, **{v: k for k, v in RELATION_PAIRS.items()}}

# kind -> spec field -> (relation type, default target kind or None when a kind must be given)
RELATION_FIELDS: dict[str, dict[str, tuple[str, str | None]]] = {
    "component": {
        "owner": ("ownedBy", "group"),
        "system": ("partOf", "system"),
        "subcomponentOf": ("partOf", "component"),
        "providesApis": ("providesApi", "api"),
        "consumesApis": ("consumesApi", "api"),
        "dependsOn": ("dependsOn", None),
        "dependencyOf": ("dependencyOf", None),
    },
    "api": {"owner": ("ownedBy", "group"), "system": ("partOf", "system")},
    "resource": {
        "owner": ("ownedBy", "group"),
        "system": ("partOf", "system"),
        "dependsOn": ("dependsOn", None),
        "dependencyOf": ("dependencyOf", None),
    },
    "system": {"owner": ("ownedBy", "group"), "domain": ("partOf", "domain")},
    "domain": {"owner": ("ownedBy", "group"), "subdomainOf": ("partOf", "domain")},
    "group": {"parent": ("childOf", "group"), "children": ("parentOf", "group"), "members": ("hasMember", "user")},
    "user": {"memberOf": ("memberOf", "group")},
}

# kind -> required spec fields and their JSON type
REQUIRED_SPEC: dict[str, dict[str, type]] = {
    "component": {"type": str, "lifecycle": str, "owner": str},
    "api": {"type": str, "lifecycle": str, "owner": str},
    "resource": {"type": str, "owner": str},
    "system": {"owner": str},
    "domain": {"owner": str},
    "group": {"type": str, "children": list},
    "user": {"memberOf": list},
}


class EntityError(Exception):
    """A document breaks a catalog rule; ``rule`` names which."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True, slots=True)
class EntityRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """The comparison form: references compare case-insensitively."""
        return str(self).lower()


def parse_ref(value: str, default_kind: str | None = None, default_namespace: str = "default") -> EntityRef:
    if not isinstance(value, str) or not value.strip():
        raise EntityError("reference", "an entity reference must be a non-empty string")
    text = value.strip()
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, rest = None, text  # type: ignore[assignment]
    namespace, slash, name = rest.partition("/")
    if not slash:
        namespace, name = default_namespace, rest
    kind = kind or default_kind
    if not kind:
        raise EntityError("reference", f"reference '{value}' must name a kind, e.g. 'resource:{value}'")
    if not name or not namespace:
        raise EntityError("reference", f"reference '{value}' is malformed; use [kind:][namespace/]name")
    return EntityRef(kind.lower(), namespace, name)


def entity_ref(entity: dict[str, Any]) -> EntityRef:
    metadata = entity["metadata"]
    return EntityRef(str(entity["kind"]).lower(), metadata.get("namespace") or "default", metadata["name"])


def _check_key(where: str, key: Any) -> None:
    if not isinstance(key, str) or not key:
        raise EntityError(where, f"{where} keys must be non-empty strings")
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise EntityError(where, f"{where} key '{key}' has an invalid prefix (must be a DNS subdomain)")
    if len(name) > 63 or not _KEY_NAME.fullmatch(name):
        raise EntityError(where, f"{where} key '{key}' is invalid (1-63 chars of [a-zA-Z0-9-_.], alphanumeric at both ends)")


def check_values(entity: Any, max_chars: int = MAX_ENTITY_CHARS) -> bool:
    """Check that a document is plain JSON data of bounded size; return whether it holds a placeholder.

    Keys are strings, integers fit in 64 bits, floats are finite, strings are valid Unicode (no
    lone surrogates), nothing else (dates, bytes, sets) appears. The size is counted over the
    document as it will be serialised, so a value shared through YAML aliases counts once per
    use; the walk stops as soon as the bound is passed, so it costs at most ``max_chars`` steps.
    """
    stack = [entity]
    size = 0
    found = False
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            size += 2
            if len(value) == 1 and next(iter(value)) in PLACEHOLDERS:
                found = True
            for key, child in value.items():
                if type(key) is not str:
                    raise EntityError("value", f"mapping keys must be strings, found a {type(key).__name__} key (quote it)")
                if not key.isascii() and _SURROGATE.search(key):
                    raise EntityError("value", "a key holds an unpaired surrogate (not valid Unicode)")
                size += len(key) + 4
                if type(child) is str:  # the common leaf, checked here rather than stacked
                    size += len(child) + 2
                    if not child.isascii() and _SURROGATE.search(child):
                        raise EntityError("value", "text holds an unpaired surrogate (not valid Unicode)")
                else:
                    stack.append(child)
        elif kind is list:
            size += 2
            stack.extend(value)
        elif kind is str:
            size += len(value) + 2
            if not value.isascii() and _SURROGATE.search(value):
                raise EntityError("value", "text holds an unpaired surrogate (not valid Unicode)")
        elif value is None or kind is bool:
            size += 5
        elif kind is int:
            if value.bit_length() > MAX_INT_BITS:
                raise EntityError("value", f"an integer does not fit in {MAX_INT_BITS + 1} bits (quote it)")
            size += 20
        elif kind is float:
            if not math.isfinite(value):
                raise EntityError("value", "NaN and infinite numbers are not JSON (quote them)")
            size += 24
        else:
            raise EntityError("value", f"a {kind.__name__} value is not JSON data (quote it)")
        if size > max_chars:
            raise EntityError("size", f"the entity is larger than {max_chars} characters once aliases and placeholders are expanded")
    return found


def validate(entity: Any, max_chars: int | None = MAX_ENTITY_CHARS) -> dict[str, Any]:
    """Check one document against Backstage's rules; return it or raise EntityError.

    `max_chars=None` skips `check_values` for a caller that has just run it.
    """
    if not isinstance(entity, dict):
        raise EntityError("envelope", "a catalog document must be a mapping")
    if max_chars is not None:
        check_values(entity, max_chars)
    for field in ("apiVersion", "kind", "metadata"):
        if field not in entity:
            raise EntityError("envelope", f"missing required field '{field}'")
    api_version, kind = entity["apiVersion"], entity["kind"]
    if not isinstance(api_version, str) or "/" not in api_version:
        raise EntityError("envelope", f"apiVersion '{api_version}' must look like group/version")
    if not isinstance(kind, str) or len(kind) > 63 or not _KIND.fullmatch(kind):
        raise EntityError("envelope", "kind must be 1-63 letters and digits, starting with a letter")
    known = kind.lower() in KNOWN_KINDS
    if known and api_version not in KNOWN_API_VERSIONS:
        raise EntityError("envelope", f"apiVersion '{api_version}' is not valid for kind {kind}")
    metadata = entity["metadata"]
    if not isinstance(metadata, dict):
        raise EntityError("envelope", "metadata must be a mapping")
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 63 or not _NAME.fullmatch(name):
        raise EntityError(
            "name",
            f"metadata.name '{name}' is not valid: 1-63 characters of [a-zA-Z0-9-_.], starting and ending alphanumeric",
        )
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise EntityError("namespace", f"metadata.namespace '{namespace}' is not a valid DNS label")
    for field in ("title", "description"):
        if metadata.get(field) is not None and not isinstance(metadata[field], str):
            raise EntityError("metadata", f"metadata.{field} must be a string")
    tags = metadata.get("tags", [])
    if not isinstance(tags, list):
        raise EntityError("tags", "metadata.tags must be a list")
    for tag in tags:
        if not isinstance(tag, str) or len(tag) > 63 or not _TAG.fullmatch(tag):
            raise EntityError("tags", f"tag '{tag}' is not valid: 1-63 characters of [a-z0-9:+#] separated by '-'")
    for section in ("labels", "annotations"):
        values = metadata.get(section, {})
        if not isinstance(values, dict):
            raise EntityError(section, f"metadata.{section} must be a mapping")
        for key, value in values.items():
            _check_key(section[:-1], key)
            if not isinstance(value, str):
                raise EntityError(section[:-1], f"{section[:-1]} '{key}' must have a string value")
            if section == "labels" and value and (len(value) > 63 or not _KEY_NAME.fullmatch(value)):
                raise EntityError("label", f"label '{key}' has an invalid value '{value}'")
    spec = entity.get("spec", {})
    if spec is not None and not isinstance(spec, dict):
        raise EntityError("spec", "spec must be a mapping")
    spec = spec or {}
    if known:
        _validate_spec(kind.lower(), spec)
    return entity


def _validate_spec(kind: str, spec: dict[str, Any]) -> None:
    for field, expected in REQUIRED_SPEC.get(kind, {}).items():
        if field not in spec or spec[field] is None:
            raise EntityError("spec", f"{kind} entities require spec.{field}")
        if expected is not object and not isinstance(spec[field], expected):
            raise EntityError("spec", f"spec.{field} must be a {'list' if expected is list else 'string'}")
    definition = spec.get("definition")
    placeholder = isinstance(definition, dict) and len(definition) == 1 and next(iter(definition)) in PLACEHOLDERS
    if kind == "api" and definition is not None and not (isinstance(definition, str) or placeholder):
        # Newer API types (mcp-server, ai-model-server) carry no definition, so it is optional;
        # when present it is text (JSON or YAML written as a string) or a $text/$json/$yaml placeholder.
        raise EntityError("spec", "spec.definition must be text (write the document as a string) or a $text placeholder")
    if kind == "location":
        if not spec.get("target") and not spec.get("targets"):
            raise EntityError("spec", "location entities require spec.target or spec.targets")
    for field, (_relation, default_kind) in RELATION_FIELDS.get(kind, {}).items():
        value = spec.get(field)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            parse_ref(item, default_kind)  # raises on a malformed or kind-less reference
            if _UNSAFE_TEXT.search(item):
                # Never a valid entity name; refused so warnings about it cannot forge log lines.
                raise EntityError("reference", f"spec.{field} holds control or bidi characters")


def outgoing_relations(entity: dict[str, Any]) -> list[tuple[str, EntityRef]]:
    """Relations this entity's own fields declare: (type, target)."""
    kind = str(entity["kind"]).lower()
    namespace = entity["metadata"].get("namespace") or "default"
    spec = entity.get("spec") or {}
    found = []
    for field, (relation, default_kind) in RELATION_FIELDS.get(kind, {}).items():
        value = spec.get(field)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            found.append((relation, parse_ref(item, default_kind, namespace)))
    return found
