"""Compact TypeScript declarations from MCP tool schemas: what `search` shows the model.

`execute` runs JavaScript, so signatures are TypeScript: one line per tool, the input's
properties (optional ones marked `?`), the output's shape when the tool declares one, and the
description cut short. Deep or exotic schemas degrade to `unknown` rather than growing.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 3
MAX_DESCRIPTION = 160
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def ts_type(schema: Any, depth: int = 0) -> str:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return "unknown"
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return " | ".join(json.dumps(v) for v in schema["enum"][:12])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(dict.fromkeys(ts_type(s, depth + 1) for s in schema[key][:8])) or "unknown"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(dict.fromkeys(ts_type({**schema, "type": k}, depth) for k in kind))
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        inner = ts_type(schema.get("items"), depth + 1)
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object" or "properties" in schema:
        return _object(schema, depth)
    return "unknown"


def _object(schema: dict[str, Any], depth: int) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return "Record<string, unknown>"
    required = set(schema.get("required") or [])
    fields = []
    for name, sub in properties.items():
        key = name if _IDENT.match(name) else json.dumps(name)
        fields.append(f"{key}{'' if name in required else '?'}: {ts_type(sub, depth + 1)}")
    return "{ " + "; ".join(fields) + " }"


def declaration(name: str, description: str | None, input_schema: Any, output_schema: Any = None) -> str:
    """`/** description */ name(args: {...}): Promise<...>` on one line."""
    text = " ".join((description or "").split())
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1].rstrip() + "…"
    returns = ts_type(output_schema) if output_schema else "unknown"
    doc = f"/** {text} */ " if text else ""
    return f"{doc}{name}(args: {ts_type(input_schema)}): Promise<{returns}>"
