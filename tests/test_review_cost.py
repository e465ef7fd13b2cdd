"""Review cost: one cached prefix shared by all reviewers, hunk-centred reads, token budgets,
cached tokens reported and priced, forced tiers, and a secret scan without false alarms.

Requests are captured at the wire-format model doubles (OpenAI chat completions and Anthropic
messages) exactly as the reviewers sent them.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from aiplane.modelcatalog.catalog import bundled
from aiplane.modelcatalog.pricing import TokenCounts
from tests.conftest import AIPLANE, clean_env
from tests.test_review_deterministic import Repo, _lines

FULL_CHANGE = {
    "app.py": "import os\nvalue = os.environ.get('X')\n" + _lines(30),
    "src/auth/session.py": "TTL = 3600\n" + _lines(30),
    "docs/guide.md": "# Guide\n\nHow to run it.\n",
}


@pytest.fixture()
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


def _review(repo: Repo, server, *args: str, kind: str = "openai", model: str = "gpt-4o-mini", **env: str):
    base = server.url + ("/v1" if kind == "openai" else "")
    settings = clean_env(
        AIPLANE_DATA_DIR=str(repo.path.parent / "data"),
        AIPLANE_LLM__MODELS__SPECIALIST__KIND=kind,
        AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=base,
        AIPLANE_LLM__MODELS__SPECIALIST__MODEL=model,
        AIPLANE_LLM__MODELS__SPECIALIST__API_KEY="sk-test-reviewer",
        **env,
    )
    return subprocess.run([AIPLANE, "review", "--repo", str(repo.path), "--format", "json", *args], env=settings,
                          capture_output=True, text=True, timeout=180)


def _first_requests(calls: list[dict]) -> dict[str, dict]:
    firsts: dict[str, dict] = {}
    for call in calls:
        firsts.setdefault(call["agent"], json.loads(call["raw"]))
    return firsts


def test_openai_reviewers_share_a_byte_identical_prefix(repo, model):
    server, state = model
    repo.write(FULL_CHANGE)
    repo.commit("risky")
    before = len(state.calls)
    result = _review(repo, server)
    review = json.loads(result.stdout)
    assert review["tier"] == "full" and len(review["agents"]) >= 3
    firsts = _first_requests(state.calls[before:])
    assert set(firsts) == set(review["agents"])
    bodies = list(firsts.values())
    # Tools, system message and the first user part, byte for byte, for every reviewer.
    shared = [json.dumps([b["tools"], b["messages"][0], b["messages"][1]["content"][0]]) for b in bodies]
    assert len(set(shared)) == 1
    assert [t["function"]["name"] for t in bodies[0]["tools"]][:4] == ["read_patch", "read_file", "grep", "list_dir"]
    first_part = bodies[0]["messages"][1]["content"][0]["text"]
    assert "<changed_files>" in first_part and "<mr_input>" in first_part and "+TTL = 3600" in first_part
    assert "reviewer_role" not in first_part
    # Each reviewer's own part comes after it, and is its own.
    own = {name: b["messages"][1]["content"][-1]["text"] for name, b in firsts.items()}
    assert all(text.startswith(f"<reviewer_role>\nYou are the {name} reviewer") for name, text in own.items())
    # The untrusted change stays out of the system message.
    assert "TTL = 3600" not in bodies[0]["messages"][0]["content"]
    # One prompt_cache_key for the whole review, and a new one for the next review.
    keys = {b.get("prompt_cache_key") for b in bodies}
    assert len(keys) == 1 and next(iter(keys)).startswith("aiplane-review-")
    before_again = len(state.calls)
    _review(repo, server)
    again = {json.loads(c["raw"]).get("prompt_cache_key") for c in state.calls[before_again:]}
    assert again and again.isdisjoint(keys)


def test_cached_tokens_are_reported_and_priced(repo, model):
    server, state = model
    repo.write(FULL_CHANGE)
    repo.commit("risky")
    before = len(state.calls)
    review = json.loads(_review(repo, server).stdout)
    calls = state.calls[before:]
    # Warm-up: every other reviewer's first request arrives after the first response went out.
    assert all(c["arrived"] >= calls[0]["answered"] for c in calls[1:])
    assert sum(c["cached"] for c in calls) > 0
    prices = bundled().prices
    total_cached = 0
    for usage in review["usage"]:
        total_cached += usage["cached_tokens"]
        expected = prices.cost("openai", "gpt-4o-mini", TokenCounts(usage["input_tokens"], usage["output_tokens"], usage["cached_tokens"]))
        assert usage["cost_usd"] == pytest.approx(expected)
        uncached = prices.cost("openai", "gpt-4o-mini", TokenCounts(usage["input_tokens"], usage["output_tokens"], 0))
        if usage["cached_tokens"]:
            assert usage["cost_usd"] < uncached
    assert total_cached == sum(c["cached"] for c in calls)
    import sqlite3

    db = sqlite3.connect(repo.path.parent / "data" / "aiplane.db")
    (row,) = db.execute("SELECT input_tokens, cached_tokens FROM review_runs").fetchall()
    assert row == (sum(u["input_tokens"] for u in review["usage"]), total_cached)


def test_anthropic_requests_carry_a_cache_breakpoint_after_the_shared_part(repo, model):
    server, state = model
    repo.write(FULL_CHANGE)
    repo.commit("risky")
    before = len(state.calls)
    result = _review(repo, server, kind="anthropic", model="claude-sonnet-4-5")
    review = json.loads(result.stdout)
    assert review["ai_reviewers_ran"] is True, result.stderr
    firsts = _first_requests(state.calls[before:])
    assert len(firsts) >= 3
    shared = set()
    for body in firsts.values():
        content = body["messages"][0]["content"]
        assert content[0]["cache_control"]["type"] == "ephemeral" and "<changed_files>" in content[0]["text"]
        assert content[-1]["text"].startswith("<reviewer_role>")
        shared.add(json.dumps([body["tools"], body["system"], content[0]]))
    assert len(shared) == 1
    assert sum(u["cached_tokens"] for u in review["usage"]) > 0


def _two_far_hunks(repo: Repo) -> None:
    repo.write({"big.py": _lines(900)})
    repo.commit("big file")
    text = (repo.path / "big.py").read_text().replace("value_463 = 463\n", "value_463 = 0  # MODEL:READ:big.py\n")
    text = text.replace("value_771 = 771\n", "value_771 = -1\n")
    repo.write({"big.py": text})
    repo.commit("two hunks far apart")


def _around_the_hunks(shown: str) -> None:
    # Hunks at 461-467 and 769-775 (three lines of context each): 40 lines either side of each,
    # without the hunks' own lines, which the patch in the prompt already shows.
    assert "421: value_420" in shown and "460: value_459" in shown and "468: value_467" in shown and "507: value_506" in shown
    assert "729: value_728" in shown and "815: value_814" in shown
    for absent in ("\n1: value_0", "420: value_419", "464: value_463", "508: value_507", "600: value_599", "772: value_771", "816: value_815"):
        assert absent not in shown


def test_the_lines_around_the_hunks_are_in_the_shared_prefix_once(repo, model):
    server, state = model
    _two_far_hunks(repo)
    before = len(state.calls)
    _review(repo, server, "--tier", "lite", "--base", "HEAD~1")
    calls = state.calls[before:]
    first = json.loads(calls[0]["raw"])["messages"][1]["content"][0]["text"]
    _around_the_hunks(first.split("The changed files around their hunks", 1)[1])
    # A read of the file without a range says where its surroundings are instead of resending them.
    results = [m["content"] for c in calls for m in json.loads(c["raw"])["messages"] if m["role"] == "tool"]
    assert results and all("are in the first message already" in r for r in results)


def test_read_file_defaults_to_windows_around_the_hunks(repo, model):
    server, state = model
    _two_far_hunks(repo)
    before = len(state.calls)
    _review(repo, server, "--tier", "lite", "--base", "HEAD~1", AIPLANE_REVIEW__SHARED_CONTEXT_TOKENS="0")
    calls = state.calls[before:]
    first = json.loads(calls[0]["raw"])["messages"][1]["content"][0]["text"]
    assert "The changed files around their hunks" not in first
    results = [m["content"] for c in calls for m in json.loads(c["raw"])["messages"] if m["role"] == "tool"]
    assert results
    for shown in results:
        _around_the_hunks(shown)


def test_trivial_is_one_call_without_tools_or_conventions(repo, model):
    server, state = model
    repo.write({"AGENTS.md": "# Conventions\nKeep functions short.\n"})
    repo.commit("conventions")
    repo.git("branch", "-f", "main", "HEAD")
    repo.write({"app.py": "def main():\n    return 2\n"})
    repo.commit("tweak")
    before = len(state.calls)
    review = json.loads(_review(repo, server).stdout)
    (call,) = state.calls[before:]
    body = json.loads(call["raw"])
    assert review["tier"] == "trivial" and [t["function"]["name"] for t in body["tools"]] == ["final_result"]
    assert "Keep functions short" not in call["text"] and "+    return 2" in call["text"]


def test_reviewer_budget_withdraws_tools_and_the_comment_says_so(repo, model):
    server, state = model
    repo.write({"app.py": "def main():\n    return 2  # MODEL:READ:README.md\n" + _lines(30)})
    repo.commit("tweak")
    before = len(state.calls)
    result = _review(repo, server, "--tier", "lite", AIPLANE_REVIEW__REVIEWER_INPUT_TOKENS="50")
    review = json.loads(result.stdout)
    calls = state.calls[before:]
    by_agent: dict[str, list[dict]] = {}
    for call in calls:
        by_agent.setdefault(call["agent"], []).append(call)
    assert set(by_agent) == set(review["agents"])
    for agent_calls in by_agent.values():
        assert len(agent_calls) == 2 and "read_file" in agent_calls[0]["tools"]
        assert all(t.startswith("final_result") for t in agent_calls[1]["tools"])
    assert any("reached its own input-token budget and answered" in n for n in review["notices"])


def test_review_budget_skips_later_reviewers_with_a_note_in_the_comment(repo, model):
    server, state = model
    repo.write(FULL_CHANGE)
    repo.commit("risky")
    before = len(state.calls)
    settings = {"AIPLANE_REVIEW__REVIEW_INPUT_TOKENS": "100", "AIPLANE_REVIEW__MAX_CONCURRENCY": "1"}
    result = _review(repo, server, "--format", "markdown", **settings)
    agents = {c["agent"] for c in state.calls[before:]}
    assert len(agents) == 1
    assert "Token budget:" in result.stdout and "did not run: this review's input-token budget" in result.stdout


def test_forced_tier(repo, model):
    server, state = model
    repo.write({"app.py": "def main():\n    return 2\n"})
    repo.commit("tweak")
    review = json.loads(_review(repo, server, "--tier", "full").stdout)
    assert review["tier"] == "full" and review["tier_reasons"][0] == "tier forced to full (decided: trivial)"
    assert "generalist" not in review["agents"] and "security" in review["agents"]
    bad = _review(repo, server, "--tier", "huge")
    assert bad.returncode == 2 and "--tier must be trivial, lite or full" in bad.stderr


# -- secret scan precision ---------------------------------------------------------------------

PLANTED = {
    "AWS Access Key": 'AWS_KEY = "AKIAZ7QW3NV5LTKD2XPM"\n',
    "GitHub Token": 'TOKEN = "ghp_' + "Zq8d7K2mX4pL9vB3nR6tY1wE5uI0oA2sD4fG" + '"\n',
    "Slack Token": 'SLACK = "xoxb-' + "1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx" + '"\n',
    "Stripe Access Key": 'STRIPE = "sk_live_' + "51HqLyjWDarjtT1zdp7dcXp3PrSt9aBcD" + '"\n',
}
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH\n"
               "lWu2/a1gB9JW5TBQ+AVpum9Okx7KfqkfBKL9mcHgSL0yWMdjMfNOqNtrQqKlN4kE\n-----END RSA PRIVATE KEY-----\n")


def _scan(repo: Repo, files: dict[str, str]):
    from aiplane.review import secrets
    from aiplane.review.changes import analyze

    repo.write(files)
    repo.commit("change")
    findings, _ = secrets.scan(analyze(repo.path, "main", "HEAD"))
    return findings


def test_placeholders_and_test_fixtures_are_not_critical(repo):
    findings = _scan(repo, {
        "tests/unittest/test_guard.py": 'DUMMY_LITELLM_API_KEY = "dummy_key"\napi_key = "changeme"\npassword = "xxxxxxxx"\n'
                                        'secret = "${SECRET}"\n',
        "tests/fixtures/settings.py": 'password = "Hk29sLq0vZ81mPx"\n',
        "config/example.py": 'api_key = "your-api-key-here"\n',
        "docs/aws.md": 'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n',
    })
    by_file = {(f.file, f.severity) for f in findings}
    assert ("tests/fixtures/settings.py", "warning") in by_file
    assert ("docs/aws.md", "warning") in by_file
    assert not any(f.severity == "critical" for f in findings)
    assert not any(f.file in ("tests/unittest/test_guard.py", "config/example.py") for f in findings)


def test_real_format_keys_stay_critical_everywhere(repo):
    files = {}
    for index, line in enumerate(PLANTED.values()):
        files[f"src/keys_{index}.py"] = line
        files[f"tests/test_keys_{index}.py"] = line
    files["deploy/id_rsa"] = PRIVATE_KEY
    files["tests/fixtures/id_rsa"] = PRIVATE_KEY.replace("1c7", "9c7")
    files["config/settings.yaml"] = "database:\n  password: Hk29sLq0vZ81mPxQ7w\n"
    findings = _scan(repo, files)
    critical = {(f.file, f.title) for f in findings if f.severity == "critical"}
    for index, kind in enumerate(PLANTED):
        assert (f"src/keys_{index}.py", f"{kind} committed") in critical
        assert (f"tests/test_keys_{index}.py", f"{kind} committed") in critical
    assert ("deploy/id_rsa", "Private Key committed") in critical
    assert ("tests/fixtures/id_rsa", "Private Key committed") in critical
    assert ("config/settings.yaml", "Secret Keyword committed") in critical


def test_a_dummy_key_in_a_test_file_does_not_request_changes(repo):
    repo.write({"tests/unittest/test_litellm_api_key_guard.py": 'DUMMY_LITELLM_API_KEY = "dummy_key"\n\n\ndef test_x():\n    assert DUMMY_LITELLM_API_KEY\n'})
    repo.commit("guard test")
    result = subprocess.run([AIPLANE, "review", "--repo", str(repo.path), "--format", "json"], env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["verdict"] == "approve"


# -- start-up --------------------------------------------------------------------------------

def test_prewarm_only_when_a_model_is_likely(tmp_path, monkeypatch):
    from aiplane.review.prewarm import wants_worker

    monkeypatch.chdir(tmp_path)
    model = {"AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o"}
    assert wants_worker(["--repo", "."], model)
    assert wants_worker(["--config", "x.toml"], {})
    assert not wants_worker(["--repo", "."], {})
    assert not wants_worker(["--dry-run"], model) and not wants_worker(["--help"], model) and not wants_worker(["plugins"], model)
    (tmp_path / "aiplane.toml").write_text("")
    assert wants_worker([], {})


def test_a_prestarted_worker_takes_the_job_and_a_mismatched_one_is_replaced(tmp_path):
    from aiplane.review import runner

    job = {"repo": str(tmp_path), "head": "HEAD", "agent_specs": [], "agents": [], "tier": "lite", "context": ""}
    runner.prestart()
    prestarted = runner._prestarted.process.pid
    pids = []
    result = runner.run_worker(job, on_event=lambda _e, pid: pids.append(pid))
    assert result.completed and set(pids) == {prestarted} and runner._prestarted is None
    runner.prestart()
    stale = runner._prestarted.process
    pids.clear()
    result = runner.run_worker(job, env={"EXTRA": "1"}, on_event=lambda _e, pid: pids.append(pid))
    assert result.completed and stale.pid not in pids and stale.poll() is not None
