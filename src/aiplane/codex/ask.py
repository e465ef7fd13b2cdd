"""Answering questions from the codex: rank rules by keyword relevance; with a model, phrase an answer citing IDs."""

from __future__ import annotations

from aiplane.codex.rules import Rule
from aiplane.textrank import bm25


def rank(rules: list[Rule], question: str, limit: int = 5) -> list[Rule]:
    """BM25 over id, title, statement, languages and domain."""
    by_id = {r.id: r for r in rules}
    docs = {r.id: " ".join([r.id.replace("-", " "), r.title, r.statement, " ".join(r.scope.languages), r.domain]) for r in rules}
    return [by_id[key] for key, _score in bm25(docs, question, limit)]


def answer_prompt(question: str, rules: list[Rule]) -> str:
    cited = "\n\n".join(f"{r.id}: {r.title}\n{r.statement}\nWhy: {r.rationale}" for r in rules)
    return (
        "Answer the engineer's question using only these rules, citing rule IDs in square brackets. "
        "If the rules do not cover it, say so.\n\n" + cited + "\n\nQuestion: " + question
    )
