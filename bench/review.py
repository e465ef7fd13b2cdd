"""Review orchestration overhead without model latency.

    .venv/bin/python bench/review.py

Builds git repositories with changes of 5, 50 and 500 files (about 40 changed lines each) and
times the deterministic stages of `aiplane review`: diff parsing and noise filter, risk tier and
reviewer selection, and the secret scan, in process (median of 5). The model-driven stages and
the single-prompt baseline comparison come with the specialists.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aiplane.review.engine import ReviewRequest, plan, run  # noqa: E402


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    repo = root / f"repo-{files}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    for i in range(files):
        (repo / f"pkg/mod_{i}.py").parent.mkdir(parents=True, exist_ok=True)
        (repo / f"pkg/mod_{i}.py").write_text("".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(40)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    for i in range(files):
        path = repo / f"pkg/mod_{i}.py"
        path.write_text(path.read_text().replace("return x +", "return x * ", 20))
    git(repo, "commit", "-q", "-am", "change")
    return repo


def median_ms(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    print("| files | changed lines | tier | reviewers | plan (ms) | plan + secret scan (ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for files in (5, 50, 500):
            repo = make_repo(Path(tmp), files)
            request = ReviewRequest(repo=repo)
            change, review = plan(request)
            plan_ms = median_ms(lambda r=request: plan(r))
            run_ms = median_ms(lambda r=request: run(r))
            print(f"| {files} | {change.changed_lines} | {review.tier} | {len(review.agents)} | {plan_ms:.0f} | {run_ms:.0f} |")


if __name__ == "__main__":
    main()
