"""Compact TypeScript declarations from MCP tool schemas: what `search` shows the model.

`execute` runs JavaScript, so signatures are TypeScript: one line per tool, the input's
properties (optional ones marked `?`), the output's shape when the tool declares one, and the
description cut short. Deep or exotic schemas degrade to `unknown` rather than growing.

Everything here comes from upstream servers, so every string is cleaned (`naming.clean_text`):
one line, no `*/`, bounded. Property names and enum values are capped in length and number,
and the whole line in length, so a schema cannot carry more text than a description may.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from aiplane.portal.naming import accessor, clean_text, quoted_key

MAX_DEPTH = 3
MAX_DESCRIPTION = 160
MAX_PROPERTIES = 24
MAX_ENUM_VALUES = 12
MAX_LITERAL = 40
MAX_DECLARATION = 1200
# Schema nodes one declaration may visit: a hostile `"type": ["object", "object", ...]` at every
# level, or wide objects nested deep, would otherwise cost 8^depth walks (seconds a tool).
MAX_NODES = 2000


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(clean_text(value, MAX_LITERAL))
    if isinstance(value, bool) or value is None or (isinstance(value, (int, float)) and abs(value) < 1e15):
        return json.dumps(value)
    return "unknown"


def ts_type(schema: Any, depth: int = 0, max_depth: int = MAX_DEPTH, budget: _Budget | None = None) -> str:
    budget = budget or _Budget()
    budget.left -= 1
    if not isinstance(schema, dict) or depth > max_depth or budget.left < 0:
        return "unknown"
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return " | ".join(dict.fromkeys(_literal(v) for v in schema["enum"][:MAX_ENUM_VALUES]))
    if "const" in schema:
        return _literal(schema["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(dict.fromkeys(ts_type(s, depth + 1, max_depth, budget) for s in schema[key][:8])) or "unknown"
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = dict.fromkeys(k for k in kind[:8] if isinstance(k, str))  # ["object"] * 8 is one object
        return " | ".join(dict.fromkeys(ts_type({**schema, "type": k}, depth, max_depth, budget) for k in kinds)) or "unknown"
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        inner = ts_type(schema.get("items"), depth + 1, max_depth, budget)
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object" or "properties" in schema:
        return _object(schema, depth, max_depth, budget)
    return "unknown"


def _object(schema: dict[str, Any], depth: int, max_depth: int, budget: _Budget) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return "Record<string, unknown>"
    required = schema.get("required")
    required = set(r for r in islice(required, MAX_PROPERTIES * 8) if isinstance(r, str)) if isinstance(required, list) else set()
    fields = []
    for name, sub in islice(properties.items(), MAX_PROPERTIES):
        fields.append(f"{quoted_key(str(name))}{'' if name in required else '?'}: {ts_type(sub, depth + 1, max_depth, budget)}")
    if len(properties) > MAX_PROPERTIES:
        fields.append("[more: string]: unknown")
    return "{ " + "; ".join(fields) + " }"


def declaration(name: str, description: str | None, input_schema: Any, output_schema: Any = None) -> str:
    """`/** description */ tools.name(args: {...}): Promise<...>` on one line, at most MAX_DECLARATION characters."""
    name = name.removeprefix("tools.")  # callers may pass the accessor or the bare name
    text = clean_text(description or "", MAX_DESCRIPTION)
    doc = f"/** {text} */ " if text else ""
    for max_depth in (MAX_DEPTH, 1, -1):
        args = ts_type(input_schema, max_depth=max_depth) if max_depth >= 0 else "Record<string, unknown>"
        returns = (ts_type(output_schema, max_depth=max_depth) if output_schema else "unknown") if max_depth >= 0 else "unknown"
        line = f"{doc}{accessor(name)}(args: {args}): Promise<{returns}>"
        if len(line) <= MAX_DECLARATION:
            return line
    return line
