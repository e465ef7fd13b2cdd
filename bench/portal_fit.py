"""Would fitted weights rank tools better than the hand-set fusion? Cross-validation says.

    PYTHONPATH=src:. python bench/portal_fit.py [--l2 0.01]

Each request's candidates are scored by a weighted sum of their features (toolsearch.FEATURES:
the four rankings' reciprocal ranks, score shares, action word, intent, argument kinds, name
coverage). The weights are those of a softmax over the candidates (listwise logistic regression,
L2-regularised) fitted to the task sets' expected tools. The features say nothing of any one
tool or server, so the weights carry over to listings they were not fitted on; leave-one-split-out
cross-validation measures how well, against the hand-set fusion (toolsearch.ranking_weights),
in the same run. Measured 2026-12-02 (bench/RESULTS.md): fitted weights lost hit@3, so the hand-set
fusion ships.

numpy only (Adam on a convex loss of 15 weights, a few seconds); scikit-learn would be one more
dependency for one call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from aiplane.portal import toolsearch  # noqa: E402
from aiplane.portal.toolsearch import semantic  # noqa: E402
from tests.portal_search import evaluate  # noqa: E402

# Every task set that has already been scored: fitting on them spends nothing held out.
SPLITS = ("dev", "test", "dev2", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7", "fresh8", "fresh9",
          "fresh10", "fresh11")


def listing() -> list:
    from tests.portal_search.servers import list_all, servers

    with tempfile.TemporaryDirectory() as tmp:
        listed = asyncio.run(list_all(Path(tmp)))
        descriptions = {name: spec[3] for name, spec in servers(Path(tmp)).items()}
    # The issue's seven servers: the task sets' expectations name no other.
    return [entry for entry in evaluate.listing(listed, descriptions) if entry[0] != "github"]


def examples(base: list, splits: tuple[str, ...], with_model: bool) -> dict[str, list[tuple]]:
    """split -> [(candidate keys, feature matrix, expected keys)]."""
    search = toolsearch.ToolSearch(semantic=with_model, wait_seconds=None)
    index = search.index(base)
    vectors = semantic.result(index.vectors, 120) if with_model and index.vectors is not None else None
    if with_model and vectors is None:
        raise SystemExit("the embedding model did not load")
    out: dict[str, list[tuple]] = {}
    for split in splits:
        rows = []
        for row in evaluate.tasks(split):
            if row["expect"][0].startswith("github__"):
                continue
            scores = semantic.similarity(vectors, row["task"], toolsearch.DENSE_DEPTH) if vectors is not None else None
            candidates, matrix = index.features(row["task"], *(scores or ()))
            rows.append(([index.keys[doc] for doc in candidates], np.array(matrix, dtype=float).reshape(-1, len(toolsearch.FEATURES)),
                         set(row["expect"])))
        out[split] = rows
    return out


def fit(rows: list[tuple], start: np.ndarray, l2: float, steps: int = 1500, rate: float = 0.05) -> np.ndarray:
    """Weights maximising the softmax probability of the expected candidates (Adam)."""
    w = start.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    usable = [(x, np.array([k in expect for k in keys])) for keys, x, expect in rows if any(k in expect for k in keys)]
    for step in range(1, steps + 1):
        grad = 2 * l2 * w
        for x, target in usable:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            q = p * target
            q /= q.sum()
            grad += (p - q) @ x / len(usable)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= rate * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    return w


def hits(rows: list[tuple], w: np.ndarray) -> tuple[int, int]:
    first = top3 = 0
    for keys, x, expect in rows:
        ranked = [k for _s, k in sorted(zip(-(x @ w) if len(keys) else [], keys, strict=True))][:3]
        first += bool(ranked and ranked[0] in expect)
        top3 += bool(set(ranked) & expect)
    return first, top3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--l2", type=float, default=0.01)
    args = parser.parse_args()
    base = listing()
    hand = np.array(toolsearch.ranking_weights())
    for mode, with_model in (("model", True), ("lexical", False)):
        data = examples(base, SPLITS, with_model)
        total = {"hand": [0, 0], "learned": [0, 0]}
        n = 0
        print(f"\n{mode}: leave-one-split-out, hit@1 / hit@3 (hand-set -> learned)")
        for held in SPLITS:
            train = [row for split in SPLITS if split != held for row in data[split]]
            w = fit(train, hand, args.l2)
            for label, weights in (("hand", hand), ("learned", w)):
                first, top3 = hits(data[held], weights)
                total[label][0] += first
                total[label][1] += top3
            a, b = hits(data[held], hand), hits(data[held], w)
            size = len(data[held])
            n += size
            print(f"  {held:7} n={size:3}  {a[0] / size:.0%} / {a[1] / size:.0%}  ->  {b[0] / size:.0%} / {b[1] / size:.0%}")
        print(f"  pooled n={n}  {total['hand'][0] / n:.1%} / {total['hand'][1] / n:.1%}  ->  "
              f"{total['learned'][0] / n:.1%} / {total['learned'][1] / n:.1%}")
        w = fit([row for split in SPLITS for row in data[split]], hand, args.l2)
        print("  weights fitted on all:", {name: round(float(value), 3) for name, value in zip(toolsearch.FEATURES, w, strict=True)})


if __name__ == "__main__":
    main()
