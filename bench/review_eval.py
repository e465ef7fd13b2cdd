"""The eval harness's own overhead per case, against the bare review pipeline in the same run.

    .venv/bin/python bench/review_eval.py [--cases 12]

A temp repository gets one small change per case. Each case is reviewed three ways against the
scripted OpenAI double from tests/ (which answers at once, so model time is near zero and what is
left is ours): the bare pipeline (`variants.run_unit`, the same call `aiplane review eval` makes),
the harness with the location-only pre-match, and the harness with the LLM judge (the double
again). The harness adds the dataset, results.jsonl with fsync per unit, matching and metrics.
It prints the median review time per case, bare and inside the harness, and the harness's own
time per case: wall time minus the reviews it ran, measured in the same run. The figures time the harness only: the
double's findings are scripted, so no quality figure comes out of this.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from aiplane.config import Settings  # noqa: E402
from aiplane.review.evaluation.dataset import load  # noqa: E402
from aiplane.review.evaluation.harness import EvalOptions, run_eval  # noqa: E402
from aiplane.review.evaluation.variants import Variant, run_unit  # noqa: E402
from tests.doubles.reviewer_model import ModelState, build_model_app  # noqa: E402
from tests.doubles.server import ServerThread  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def corpus(root: Path, cases: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "Bench")
    (repo / "app.py").write_text("def main():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    lines = []
    for n in range(cases):
        base = git(repo, "rev-parse", "HEAD")
        (repo / "app.py").write_text(f"def main():\n    return eval(input() or '{n}')  # MODEL:FLAG\n")
        git(repo, "commit", "-q", "-am", f"change {n}")
        head = git(repo, "rev-parse", "HEAD")
        lines.append({"id": f"c{n}", "repo": str(repo), "base": base, "head": head, "title": f"Change {n}",
                      "golden": [{"text": "MATCH:eval input reaches eval", "severity": "High", "file": "app.py", "start_line": 2},
                                 {"text": "MATCH:docstring no docstring", "severity": "Low"}]})
    path = root / "dataset.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12)
    args = parser.parse_args()
    state = ModelState()
    with ServerThread(build_model_app(state)) as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = load(corpus(root, args.cases))
        endpoint = {"base_url": server.url + "/v1", "model": "gpt-4o-mini", "api_key": "sk-bench"}
        settings = Settings(data_dir=root / "data", llm={"models": {"specialist": endpoint}})
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")}
        bare = []
        for case in dataset.cases:
            started = time.perf_counter()
            result = run_unit(case, Path(case.repo), Variant("review"), settings, env)
            assert result.error is None, result.error
            bare.append(time.perf_counter() - started)
        rows = {}
        for name, judge in (("harness, location match", None), ("harness, LLM judge", Settings(llm={"models": {"specialist": endpoint}}).llm.models["specialist"])):
            options = EvalOptions(root / name.replace(" ", "_").replace(",", ""), [Variant("review")], concurrency=1, judge=judge)
            started = time.perf_counter()
            outcome = run_eval(dataset, settings, options, env)
            total = time.perf_counter() - started
            assert outcome.summary["review"]["failed"] == 0
            reviewing = [r["latency_s"] for r in outcome.records]
            # The harness's own time: wall time minus the reviews it ran, per case (same run, same load).
            rows[name] = (statistics.median(reviewing), (total - sum(reviewing)) / len(dataset.cases))
    base = statistics.median(bare)
    print(f"{args.cases} cases, concurrency 1, scripted model double (answers at once)\n")
    print("| path | median review s/case | harness's own ms/case | share of a case |")
    print("| --- | --- | --- | --- |")
    print(f"| bare pipeline | {base:.3f} | – | – |")
    for name, (review_s, own) in rows.items():
        print(f"| {name} | {review_s:.3f} | {own * 1000:.0f} | {own / (review_s + own) * 100:.1f}% |")


if __name__ == "__main__":
    main()
