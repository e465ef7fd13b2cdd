"""Answering questions from the codex: rank rules by keyword relevance; with a model, phrase an answer citing IDs."""

from __future__ import annotations

import math
import re
from collections import Counter

from aiplane.codex.rules import Rule

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "in", "my", "how", "should", "i", "to", "of", "and", "or", "for", "do", "is", "what", "with", "when", "we"}


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


def rank(rules: list[Rule], question: str, limit: int = 5) -> list[Rule]:
    """BM25 over id, title, statement, languages and domain."""
    docs = {r.id: _terms(" ".join([r.id.replace("-", " "), r.title, r.statement, " ".join(r.scope.languages), r.domain])) for r in rules}
    query = _terms(question)
    if not query or not rules:
        return []
    average = sum(len(d) for d in docs.values()) / len(docs)
    frequency = Counter(term for d in docs.values() for term in set(d))
    scored = []
    for rule in rules:
        counts = Counter(docs[rule.id])
        score = 0.0
        for term in query:
            if term not in counts:
                continue
            idf = math.log(1 + (len(docs) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            tf = counts[term]
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(docs[rule.id]) / average))
        if score > 0:
            scored.append((score, rule))
    return [rule for _score, rule in sorted(scored, key=lambda s: (-s[0], s[1].id))[:limit]]


def answer_prompt(question: str, rules: list[Rule]) -> str:
    cited = "\n\n".join(f"{r.id}: {r.title}\n{r.statement}\nWhy: {r.rationale}" for r in rules)
    return (
        "Answer the engineer's question using only these rules, citing rule IDs in square brackets. "
        "If the rules do not cover it, say so.\n\n" + cited + "\n\nQuestion: " + question
    )
