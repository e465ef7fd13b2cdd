"""Keyword ranking (BM25) for small corpora (codex rules). No index to build or keep."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping

_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset({"the", "a", "an", "in", "my", "how", "should", "i", "to", "of", "and", "or", "for", "do", "is",
                        "what", "with", "when", "we"})


def terms(text: str) -> list[str]:
    # snake_case, kebab-case and camelCase names split into their words.
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ")
    return [w for w in _WORD.findall(spaced.lower()) if w not in STOP_WORDS and len(w) > 1]


def bm25(documents: Mapping[Hashable, str], query: str, limit: int = 5, k1: float = 1.2, b: float = 0.75) -> list[tuple[Hashable, float]]:
    """The best-matching keys with their scores, best first (ties by key); only positive scores."""
    docs = {key: terms(text) for key, text in documents.items()}
    wanted = terms(query)
    if not wanted or not docs:
        return []
    average = (sum(len(d) for d in docs.values()) / len(docs)) or 1.0
    frequency = Counter(term for d in docs.values() for term in set(d))
    scored = []
    for key, words in docs.items():
        counts = Counter(words)
        score = 0.0
        for term in wanted:
            if term not in counts:
                continue
            idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / average))
        if score > 0:
            scored.append((key, score))
    return sorted(scored, key=lambda s: (-s[1], str(s[0])))[:limit]
