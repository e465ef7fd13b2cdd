"""What one upstream may put in front of clients, and how big a listing may get.

An upstream decides how many tools it lists and how large each is; a client should not pay
for that. Tools beyond `max_tools_per_upstream`, and any one item larger than
`max_tool_bytes` as JSON, are left out (and logged); a listing stops growing at
`max_listing_bytes`, all upstreams together.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from aiplane.logs import log_fields

log = logging.getLogger("aiplane.portal")
T = TypeVar("T")


def json_size(item: Any) -> int:
    try:
        return len(item.model_dump_json(by_alias=True, exclude_none=True).encode())
    except (ValueError, RecursionError):  # a schema nested past what serialisation allows: too large
        return 1 << 62


def json_depth(value: Any, stop: int) -> int:
    """How deep dicts and lists nest in `value`, counted iteratively and no further than stop + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= stop:
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def per_upstream(server: str, items: list[T], max_items: int, max_item_bytes: int, kind: str) -> list[T]:
    kept = []
    for item in items[:max_items]:
        if json_size(item) > max_item_bytes:
            log.warning("upstream item too large, left out", extra=log_fields(upstream=server, kind=kind))
            continue
        kept.append(item)
    if len(items) > max_items:
        log.warning("upstream lists too many items, the rest left out",
                    extra=log_fields(upstream=server, kind=kind, listed=len(items), kept=max_items))
    return kept


def within_bytes(groups: list[list[T]], max_bytes: int, kind: str) -> list[T]:
    """Items of several upstreams up to `max_bytes` in all, taken in turns so that one upstream's
    long listing cannot crowd out the others; returned in their original order."""
    sizes = [[json_size(item) for item in group] for group in groups]
    taken = [0] * len(groups)
    total = 0
    full = False
    while not full and any(taken[g] < len(group) for g, group in enumerate(groups)):
        for g, group in enumerate(groups):
            if taken[g] < len(group):
                if total + sizes[g][taken[g]] > max_bytes:
                    full = True
                    break
                total += sizes[g][taken[g]]
                taken[g] += 1
    if full:
        log.warning("listing over its size cap, cut short", extra=log_fields(kind=kind, kept=sum(taken), max_bytes=max_bytes))
    return [item for g, group in enumerate(groups) for item in group[: taken[g]]]
