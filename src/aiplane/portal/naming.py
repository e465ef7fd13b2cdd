"""Names and text that upstream servers choose, made safe to show.

Every name the portal exposes is `<server>__<name>` and fits `^[A-Za-z0-9_-]{1,64}$`: the
MCP naming rules (SEP-986: 1-64 characters of `A-Z a-z 0-9 _ - . /`) narrowed to what model
APIs and strict clients accept, with the server prefix counted. An upstream tool or prompt
name outside SEP-986 is refused (it is broken or hostile: newlines, spaces, 20,000 characters);
a valid one that does not fit (a dot, a slash, too long with the prefix) is renamed, and the
portal maps the exposed name back to the upstream's own.

Descriptions and other prose reach a model inside one-line signatures and doc comments, so
`clean_text` keeps them on one line, closes no comment and stays within a length.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

SEPARATOR = "__"
MAX_NAME = 64
SEP986 = re.compile(r"[A-Za-z0-9_./-]{1,64}")
STRICT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RENAMED = re.compile(r"[^A-Za-z0-9_-]")
# Characters that move text to another line or reorder it on screen, besides the C0/C1 controls.
_LINE_LIKE = {"\u2028", "\u2029", "\u0085"} | {chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x2066, 0x206A)}


def exposed(server: str, name: str) -> str:
    return f"{server}{SEPARATOR}{name}"


def _shortened(server: str, name: str) -> str:
    """A name that fits with the prefix: its start, then a hash of the whole so two stay apart."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    room = MAX_NAME - len(server) - len(SEPARATOR) - len(digest) - 1
    return f"{name[:max(room, 1)]}_{digest}"


def safe_suffix(server: str, name: str) -> str:
    """Any text as a name that fits `<server>__<suffix>` (resource names are prose)."""
    suffix = _RENAMED.sub("_", name[:200] if isinstance(name, str) else "") or "_"
    return _shortened(server, suffix) if len(exposed(server, suffix)) > MAX_NAME else suffix


def map_names(server: str, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Exposed suffix → upstream name, for the names that may be exposed; and the refused ones.

    Names that fit as they are win over renamed ones; a renamed name that would collide with
    another is refused, as is the second of two identical names.
    """
    candidates: list[tuple[str, str, bool]] = []  # (suffix, upstream name, renamed?)
    refused: list[str] = []
    for name in names:
        if not isinstance(name, str) or not SEP986.fullmatch(name):
            refused.append(name[:64] if isinstance(name, str) else type(name).__name__)
        elif STRICT.fullmatch(name) and len(exposed(server, name)) <= MAX_NAME:
            candidates.append((name, name, False))
        else:
            suffix = _RENAMED.sub("_", name)
            candidates.append((_shortened(server, suffix) if len(exposed(server, suffix)) > MAX_NAME else suffix, name, True))
    taken = {suffix for suffix, _name, renamed in candidates if not renamed}
    mapping: dict[str, str] = {}
    for suffix, name, renamed in candidates:  # the upstream's order is kept
        if suffix in mapping or (renamed and suffix in taken):
            refused.append(name)
        else:
            mapping[suffix] = name
    return mapping, refused


def clean_text(text: object, limit: int) -> str:
    """One line of at most `limit` characters, with no control characters and no `*/`."""
    if not isinstance(text, str):
        return ""
    text = text[: limit * 4]  # enough to fill `limit` after whitespace collapses; bounds the work
    kept = "".join(" " if (unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or c in _LINE_LIKE) else c for c in text)
    kept = " ".join(kept.split()).replace("*/", "* /").replace("/*", "/ *")
    if len(kept) > limit:
        kept = kept[: limit - 1].rstrip() + "…"
    return kept


def quoted_key(name: str, limit: int = 64) -> str:
    """A property name as TypeScript shows it: bare when an identifier, else a JSON string."""
    if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}", name):
        return name
    return json.dumps(clean_text(name, limit))


def accessor(name: str) -> str:
    """How code reaches a tool: `tools.a__b`, or `tools["a-b__c"]` when the name has a dash."""
    return f"tools.{name}" if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", name) else f'tools["{name}"]'
