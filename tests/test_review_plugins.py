"""Review plugins through real entry points, and central model routing through a real gateway."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import AIPLANE, GatewayProcess, clean_env, gateway_env
from tests.doubles.server import free_port
from tests.test_review_deterministic import Repo

PLUGINS = '''
from aiplane.review.plugins.spec import hookimpl


class FlakyBootstrap:
    @hookimpl
    def aiplane_review_bootstrap(self, ctx):
        raise RuntimeError("cache warm-up failed")


class BrokenConfigure:
    @hookimpl
    def aiplane_review_configure(self, ctx):
        raise ConnectionError("the ticket system at tickets.internal is unreachable")


class HouseRules:
    @hookimpl
    def aiplane_review_configure(self, ctx):
        ctx.add_prompt_section("House rules", "Prefer pathlib over os.path (HOUSE-RULE-7).")
        ctx.set_env("TEAM_NAME", "widgets")


class BadEnv:
    @hookimpl
    def aiplane_review_configure(self, ctx):
        ctx.set_env("LD_PRELOAD", "/tmp/evil.so")


flaky_bootstrap = FlakyBootstrap()
broken_configure = BrokenConfigure()
house_rules = HouseRules()
bad_env = BadEnv()
'''


def install_plugins(site: Path, **entries: str) -> dict[str, str]:
    """A real distribution on PYTHONPATH whose entry points name the plugins above."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "fixture_review_plugins.py").write_text(PLUGINS)
    info = site / "fixture_review_plugins-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fixture-review-plugins\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = fixture_review_plugins:{target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[aiplane.review_plugins]\n{lines}\n")
    return {"PYTHONPATH": str(site)}


@pytest.fixture()
def repo(tmp_path) -> Repo:
    repo = Repo(tmp_path / "repo")
    repo.write({"app.py": "def main():\n    return 2  # MODEL:FLAG\n"})
    repo.commit("change")
    return repo


def review(repo: Repo, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "review", "--repo", str(repo.path), "--format", "json", *args],
                          env=clean_env(AIPLANE_DATA_DIR=str(repo.path.parent / "data"), **env),
                          capture_output=True, text=True, timeout=180)


def test_plugins_command_lists_builtins_and_third_party_status(tmp_path):
    env = install_plugins(tmp_path / "site", **{"flaky-bootstrap": "flaky_bootstrap", "missing": "does_not_exist"})
    result = subprocess.run([AIPLANE, "review", "plugins", "--json"], env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"local", "github", "gitlab", "gateway", "codex", "agents-md", "remote-config", "telemetry"} <= set(rows)
    assert rows["github"]["status"] == "loaded" and rows["github"]["hooks"] == ["configure"]
    assert rows["flaky-bootstrap"]["status"] == "bootstrap failed" and "cache warm-up failed" in rows["flaky-bootstrap"]["error"]
    assert rows["missing"]["status"] == "failed to load" and "does_not_exist" in rows["missing"]["error"]
    table = subprocess.run([AIPLANE, "review", "plugins"], env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "remote-config" in table.stdout


def test_failing_bootstrap_plugin_does_not_stop_the_review(tmp_path, repo):
    env = install_plugins(tmp_path / "site", **{"flaky-bootstrap": "flaky_bootstrap"})
    result = review(repo, env)
    assert result.returncode == 0, result.stderr
    notices = json.loads(result.stdout)["notices"]
    assert any("Plugin flaky-bootstrap failed during bootstrap (RuntimeError: cache warm-up failed)" in n for n in notices)


def test_failing_configure_plugin_stops_the_run_with_its_message(tmp_path, repo):
    env = install_plugins(tmp_path / "site", **{"broken-configure": "broken_configure"})
    result = review(repo, env)
    assert result.returncode == 0 and result.stdout == ""
    assert "plugin broken-configure could not configure the review: the ticket system at tickets.internal is unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert review(repo, env, "--strict").returncode == 1
    # Switched off centrally, the same plugin no longer stops anything.
    disabled = review(repo, env | {"AIPLANE_REVIEW__DISABLED_PLUGINS": '["broken-configure"]'})
    assert disabled.returncode == 0 and json.loads(disabled.stdout)["verdict"] == "approve"


def test_contributions_reach_the_reviewers_and_are_validated(tmp_path, repo, model):
    server, state = model
    env = install_plugins(tmp_path / "site", **{"house-rules": "house_rules"}) | {
        "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": server.url + "/v1",
        "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini",
    }
    before = len(state.calls)
    result = review(repo, env)
    assert result.returncode == 0, result.stderr
    assert any("Prefer pathlib over os.path (HOUSE-RULE-7)" in call["text"] for call in state.calls[before:])
    bad = install_plugins(tmp_path / "site2", **{"bad-env": "bad_env"})
    refused = review(repo, bad)
    assert refused.returncode == 0 and "LD_PRELOAD is reserved for the review worker" in refused.stderr


def test_local_review_remembers_earlier_rounds(repo, model):
    server, _state = model
    env = {"AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": server.url + "/v1", "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini"}
    first = json.loads(review(repo, env, "--base", "main").stdout)
    assert len(first["findings"]) == 1
    saved = json.loads((repo.path / ".aiplane" / "state" / "review.json").read_text())
    assert len(saved["threads"]) == 1 and "aiplane-review:summary v2" in saved["summary"]
    assert (repo.path / ".aiplane" / "state" / ".gitignore").read_text() == "*\n"
    repo.write({"app.py": "def main():\n    return 2\n"})
    repo.commit("fix")
    second = json.loads(review(repo, env, "--base", "main").stdout)
    assert second["findings"] == [] and "1 finding(s) from the previous review are fixed." in second["notices"]
    assert json.loads((repo.path / ".aiplane" / "state" / "review.json").read_text())["threads"][0]["resolved"] is True
    (repo.path / ".aiplane" / "state" / "review.json").write_text("{not json")
    broken = review(repo, env, "--base", "main")
    assert broken.returncode == 0 and "unreadable review state" in broken.stderr and "delete it" in broken.stderr


# -- central routing through the gateway --------------------------------------------------------


@pytest.fixture()
def routed_gateway(tmp_path, model):
    server, _state = model
    data = tmp_path / "gw"
    env = gateway_env(data, server.url, AIPLANE_PROVIDERS__LOCAL__KIND="openai-compatible",
                      AIPLANE_PROVIDERS__LOCAL__BASE_URL=server.url + "/v1",
                      AIPLANE_PROVIDERS__LOCAL__COMPAT_BASE_URL=server.url + "/v1")
    gw = GatewayProcess(data, env).start()
    yield gw
    gw.stop()


def set_config(gw: GatewayProcess, document: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(document))
    return subprocess.run([AIPLANE, "review-config", "set", str(path)], env=gw.env, capture_output=True, text=True, timeout=60)


def test_remote_config_flip_changes_the_model_of_the_next_run(tmp_path, repo, model, routed_gateway):
    gw, (_server, state) = routed_gateway, model
    document = {"default": {"model": "openai/gpt-4o-mini", "failback": ["local/qwen-coder"]}, "providers": {}}
    saved = set_config(gw, document, tmp_path)
    assert saved.returncode == 0 and "reviews pick it up within 5 seconds" in saved.stderr
    env = {"AIPLANE_REVIEW__GATEWAY_URL": gw.url, "AIPLANE_TOKEN": gw.token("ci-bot@example.com")}

    before = len(state.calls)
    first = json.loads(review(repo, env).stdout)
    assert {c["model"] for c in state.calls[before:]} == {"gpt-4o-mini"}
    assert first["usage"][0]["model"] == "openai:gpt-4o-mini" and len(first["findings"]) == 1

    document["providers"] = {"openai": {"enabled": False}}
    assert set_config(gw, document, tmp_path).returncode == 0
    before = len(state.calls)
    second = json.loads(review(repo, env).stdout)
    assert {c["model"] for c in state.calls[before:]} == {"qwen-coder"}
    assert second["usage"][0]["model"] == "openai:local/qwen-coder"
    assert gw.wait_for_rows(len(state.calls))  # the calls went through the gateway and were metered

    got = subprocess.run([AIPLANE, "review-config", "get"], env=gw.env, capture_output=True, text=True, timeout=60)
    assert json.loads(got.stdout)["providers"] == {"openai": {"enabled": False}} and "by cli:" in got.stderr


def test_review_config_endpoint_auth_and_validation(tmp_path, routed_gateway):
    gw = routed_gateway
    url = gw.url + "/v1/review-config"
    assert httpx.get(url).status_code == 401
    user = {"authorization": f"Bearer {gw.token('dev@example.com')}"}
    assert httpx.get(url, headers=user).json() == {"version": 1, "default": None, "agents": {}, "providers": {}}
    assert httpx.put(url, headers=user, json={"agents": {}}).status_code == 403
    admin = {"authorization": f"Bearer {gw.token('admin@example.com', '--admin')}"}
    bad = httpx.put(url, headers=admin, json={"agents": {"security": {"model": "no-provider"}}})
    assert bad.status_code == 422 and "agents.security.model" in bad.json()["error"]["message"]
    good = httpx.put(url, headers=admin, json={"agents": {"security": {"model": "anthropic/claude-sonnet-4-5"}}})
    assert good.status_code == 200
    assert httpx.get(url, headers=user).json()["agents"]["security"]["model"] == "anthropic/claude-sonnet-4-5"
    invalid = tmp_path / "bad.json"
    invalid.write_text("{\"providers\": {\"openai\": {\"enabled\": \"maybe\"}}")
    result = subprocess.run([AIPLANE, "review-config", "set", str(invalid)], env=gw.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "invalid review config" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_gateway_config_falls_back_to_local_settings(repo, model):
    server, _state = model
    env = {"AIPLANE_REVIEW__GATEWAY_URL": f"http://127.0.0.1:{free_port()}", "AIPLANE_TOKEN": "t",
           "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": server.url + "/v1", "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini"}
    result = review(repo, env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert any("central review config was not available" in n for n in body["notices"]) and body["ai_reviewers_ran"]

