"""What running the reviewer in CI adds on top of the review itself: plugins, the VCS round trips,
memory across rounds and publishing.

    .venv/bin/python bench/review_ci.py [--rounds 7]

A real git repository with a one-finding change is reviewed through `aiplane.review.ci` against
the GitHub wire-format double from tests/ (real HTTP on loopback) and the scripted model double.
For each scenario it reports the median wall time of a whole CI round, the median of the bare
engine on the same change (no VCS, no plugins), their difference (the CI overhead) and the
number of GitHub API requests per round. The busy-PR scenario preloads 300 human comments
(3 pages) and 40 of our earlier inline threads, the shape of a long-lived MR.
"""

from __future__ import annotations

import argparse
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

from aiplane.config import load_settings  # noqa: E402
from aiplane.review import memory  # noqa: E402
from aiplane.review.ci import review_change  # noqa: E402
from aiplane.review.engine import ReviewRequest, run  # noqa: E402
from aiplane.review.plugins.context import ReviewOptions  # noqa: E402
from aiplane.review.report import Finding, inline_markdown  # noqa: E402
from tests.doubles import github as gh  # noqa: E402
from tests.doubles.reviewer_model import ModelState, build_model_app  # noqa: E402
from tests.doubles.server import ServerThread  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "Bench")
    (repo / "app.py").write_text("def main():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "feature")
    (repo / "app.py").write_text("def main():\n    return eval(input())  # MODEL:FLAG\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "change")
    return repo


def busy(state: gh.GitHubState) -> None:
    for n in range(300):
        state.add_issue_comment(f"dev{n % 7}", f"comment {n}")
    for n in range(40):
        finding = Finding("app.py", 1, 1, "quality", "suggestion", f"Earlier finding {n}", "Explained.", confidence=0.9)
        state.review_comments.append({"id": next(state.ids), "body": inline_markdown(finding) + "\n\n" + memory.finding_marker(finding),
                                      "user": state.user(gh.BOT), "path": "app.py", "line": 1, "commit_id": state.head_sha,
                                      "in_reply_to_id": None})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    model_state = ModelState()
    with tempfile.TemporaryDirectory() as tmp, ServerThread(build_model_app(model_state)) as model:
        repo = make_repo(Path(tmp))
        env = {
            "AIPLANE_DATA_DIR": str(Path(tmp) / "data"),
            "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": model.url + "/v1",
            "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini",
            "AIPLANE_REVIEW__DISABLED_PLUGINS": '["telemetry"]',
        }
        for key in [k for k in os.environ if k.startswith("AIPLANE_")]:
            del os.environ[key]
        os.environ.update(env)
        settings = load_settings()
        base, head = git(repo, "rev-parse", "main"), git(repo, "rev-parse", "HEAD")

        engine_times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            run(ReviewRequest(repo=repo, base=base, head=head, settings=settings))
            engine_times.append(time.perf_counter() - started)
        engine = statistics.median(engine_times)
        print(f"bare engine (1 finding, 1 reviewer): median {engine * 1000:.0f} ms over {args.rounds} runs")
        print(f"{'scenario':<48}{'CI round ms':>12}{'overhead ms':>13}{'API requests':>14}")
        for name, prepare, repeat in (("first round (new PR)", None, False), ("later round (edit in place)", None, True),
                                      ("busy PR, later round (300 comments, 40 threads)", busy, True)):
            times, requests = [], []
            for _ in range(args.rounds):
                state = gh.GitHubState(base_sha=base, head_sha=head, diff_lines={"app.py": {1, 2}})
                if prepare:
                    prepare(state)
                with ServerThread(gh.build_github_app(state)) as github:
                    environ = {"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "acme/widgets",
                               "GITHUB_REF": "refs/pull/7/merge", "GITHUB_TOKEN": gh.TOKEN}
                    options = ReviewOptions(vcs="github", repo=repo)
                    if repeat:
                        review_change(options, settings, environ)
                    before = len(state.requests)
                    started = time.perf_counter()
                    review_change(options, settings, environ)
                    times.append(time.perf_counter() - started)
                    requests.append(len(state.requests) - before)
            median = statistics.median(times)
            print(f"{name:<48}{median * 1000:>12.0f}{(median - engine) * 1000:>13.0f}{statistics.median(requests):>14.0f}")


if __name__ == "__main__":
    main()
