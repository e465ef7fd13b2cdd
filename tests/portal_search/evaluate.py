"""Scoring tool search on the task file: hit@1 and hit@3 per split, shared by the test and the bench."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

TASKS = Path(__file__).with_name("tasks.json")
# Task sets in files of their own, one per split name (`<split>.json`), all over the seven
# servers except dev2 (eight):
# - fresh: written after the ranking was tuned and before it was scored on them, never used to choose;
# - fresh2 (third pass): written and committed before any change of that pass was scored, scored
#   once at its end, never used to choose;
# - dev2 (third pass): a second tuning set, written after dev had been used for the glossary (the
#   lexicon was never fitted to it, so choices made on dev + dev2 are less biased toward it);
# - fresh3 (fourth pass, 117 requests) and fresh4, fresh5 (fifth and sixth, 120 each): written
#   blind, by people who never saw the ranking code nor ran a search, each committed before its pass
#   scored it, scored once;
# - fresh6 ... fresh13 (seventh pass, 120 each): written blind the same way by eight more people
#   (varied askers; mid-task context; agent-style searches; hurried short requests; stack jargon; a
#   team's chat log; plain realistic requests; non-native and informal writers), each committed
#   before its one scoring and used for tuning only after it.
SEPARATE_SETS = ("fresh", "fresh2", "dev2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7", "fresh8", "fresh9",
                 "fresh10", "fresh11", "fresh12", "fresh13")


def tasks(split: str = "all") -> list[dict]:
    """Rows of tasks.json (split "dev", "test" or "all"), or of `<split>.json` for a split in SEPARATE_SETS."""
    if split in SEPARATE_SETS:
        return json.loads(Path(__file__).with_name(f"{split}.json").read_text())
    rows = json.loads(TASKS.read_text())
    return [row for row in rows if split == "all" or row["split"] == split]


def hits(rank: Callable[[str], Sequence[str]], rows: list[dict]) -> tuple[float, float, list[tuple[str, list[str]]]]:
    """(hit@1, hit@3, misses at 3) of a ranking function over task rows."""
    first = top3 = 0
    misses = []
    for row in rows:
        got = list(rank(row["task"]))[:3]
        first += bool(got and got[0] in row["expect"])
        if set(got) & set(row["expect"]):
            top3 += 1
        else:
            misses.append((row["task"], got))
    return first / len(rows), top3 / len(rows), misses


def listing(tools_by_server: dict[str, list], descriptions: dict[str, str]) -> list[tuple[str, str, object]]:
    return [(server, descriptions.get(server, ""), tool) for server, tools in tools_by_server.items() for tool in tools]


def replicate(base: list[tuple[str, str, object]], count: int) -> list[tuple[str, str, object]]:
    """`count` tools made by repeating the real ones under distinct server names (git, git2, ...)."""
    out = []
    copy = 1
    while len(out) < count:
        for server, description, tool in base:
            if len(out) == count:
                break
            name = server if copy == 1 else f"{server}{copy}"
            out.append((name, description, SimpleNamespace(name=tool.name, title=getattr(tool, "title", None),
                                                             description=tool.description, input_schema=tool.input_schema,
                                                             output_schema=getattr(tool, "output_schema", None))))
        copy += 1
    return out
