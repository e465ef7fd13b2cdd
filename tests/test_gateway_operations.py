"""Health, metrics, usage reports (HTTP and CLI), structured logs and clean shutdown."""

from __future__ import annotations

import json
import subprocess

import httpx
import openai
import pytest

from tests.conftest import AIPLANE


def _chat(gateway, user: str, model: str = "gpt-4o", n: int = 1) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(user))
    for _ in range(n):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_healthz_and_metrics(gateway):
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    _chat(gateway, "alice@example.com")
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'aiplane_gateway_requests_total{provider="openai",status="200"} 1.0' in metrics
    assert "aiplane_gateway_request_duration_seconds_bucket" in metrics
    assert 'aiplane_gateway_tokens_total{kind="input",provider="openai"} 120.0' in metrics
    assert "aiplane_gateway_cost_usd_total" in metrics
    assert "aiplane_gateway_upstream_errors" in metrics
    assert "alice" not in metrics


def test_usage_endpoint_is_admin_only_and_aggregates(gateway):
    _chat(gateway, "alice@example.com", n=2)
    _chat(gateway, "bob@example.com", model="gpt-4o-mini")
    admin = gateway.token("root@example.com", "--admin")
    user = gateway.token("alice@example.com")

    assert httpx.get(gateway.url + "/v1/usage").status_code == 401
    forbidden = httpx.get(gateway.url + "/v1/usage", headers={"authorization": f"Bearer {user}"})
    assert forbidden.status_code == 403

    def report(**params):
        response = httpx.get(gateway.url + "/v1/usage", params=params, headers={"authorization": f"Bearer {admin}"})
        assert response.status_code == 200, response.text
        return response.json()

    by_model = {r["key"]: r for r in report(group_by="model", since="1h")["rows"]}
    assert by_model["gpt-4o"]["requests"] == 2 and by_model["gpt-4o-mini"]["requests"] == 1
    assert by_model["gpt-4o"]["input_tokens"] == 240
    by_user = report(group_by="user")["rows"]
    assert sorted(r["requests"] for r in by_user) == [1, 2]
    assert all("@" not in r["key"] for r in by_user)
    (provider,) = report(group_by="provider")["rows"]
    assert provider["key"] == "openai" and provider["requests"] == 3
    assert report(group_by="model", since="2999-01-01T00:00:00")["rows"] == []

    bad = httpx.get(gateway.url + "/v1/usage", params={"group_by": "email"}, headers={"authorization": f"Bearer {admin}"})
    assert bad.status_code == 400
    bad = httpx.get(gateway.url + "/v1/usage", params={"since": "yesterday"}, headers={"authorization": f"Bearer {admin}"})
    assert bad.status_code == 400


def test_usage_report_cli(gateway):
    _chat(gateway, "alice@example.com", n=2)
    gateway.wait_for_rows(2)
    result = subprocess.run(
        [AIPLANE, "usage", "report", "--group-by", "model", "--since", "1h", "--json"],
        env=gateway.env, capture_output=True, text=True, check=True,
    )
    data = json.loads(result.stdout)
    assert data["rows"][0]["key"] == "gpt-4o" and data["rows"][0]["requests"] == 2
    table = subprocess.run(
        [AIPLANE, "usage", "report", "--group-by", "provider"],
        env=gateway.env, capture_output=True, text=True, check=True,
    )
    assert "openai" in table.stdout and "240" in table.stdout
    bad = subprocess.run([AIPLANE, "usage", "report", "--group-by", "email"], env=gateway.env, capture_output=True, text=True)
    assert bad.returncode == 2 and "group-by" in bad.stderr


def test_logs_are_json_without_secrets(gateway):
    _chat(gateway, "alice@example.com")
    gateway.wait_for_rows(1)
    lines = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    proxied = [entry for entry in lines if entry["msg"] == "proxied"]
    assert proxied and proxied[0]["request_id"] and proxied[0]["user"]
    assert "alice@example.com" not in gateway.logs()


def test_clean_shutdown_flushes_every_usage_record(make_gateway):
    # A long flush interval: nothing reaches the database until shutdown drains the queue.
    gateway = make_gateway("flush", AIPLANE_GATEWAY__USAGE_FLUSH_INTERVAL_SECONDS="3600")
    token = gateway.token()
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {token}"}) as client:
        for _ in range(25):
            assert client.post("/openai/chat/completions", json={"model": "gpt-4o", "messages": []}).status_code == 200
    # uvicorn re-raises SIGTERM after a graceful shutdown, so the status reports the signal.
    assert gateway.stop() in (0, -15)
    rows = gateway.usage_rows()
    assert len(rows) == 25
    assert "usage flushed" in gateway.logs()


@pytest.mark.parametrize(
    "env,fragment",
    [
        ({"AIPLANE_GATEWAY__PORT": "not-a-port"}, "AIPLANE_GATEWAY__PORT"),
        ({"AIPLANE_PROVIDERS__OPENAI__BASE_URL": "ftp://example.com"}, "providers.openai.base_url"),
        ({"AIPLANE_PROVIDERS__OPENAI__BASEURL": "http://x"}, "AIPLANE_PROVIDERS__OPENAI__BASEURL"),
        ({"AIPLANE_GATEWAY_PORT": "1"}, "AIPLANE_GATEWAY_PORT"),
        ({"AIPLANE_AUTH__MODE": "oidc"}, "auth.jwks_url"),
        ({"AIPLANE_PROVIDERS__VLLM__KIND": "openai-compatible"}, "providers.vllm.base_url"),
        ({"AIPLANE_DATABASE__URL": "mysql://u:hunter2@db/x"}, "not supported"),
    ],
)
def test_bad_settings_name_the_key_and_exit_2(tmp_path, env, fragment):
    from tests.conftest import clean_env

    result = subprocess.run(
        [AIPLANE, "gateway", "serve", "--port", "1"],
        env=clean_env(AIPLANE_DATA_DIR=str(tmp_path), **env), capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_config_file_and_env_precedence(tmp_path, upstream):
    from tests.conftest import clean_env

    server, _state = upstream
    config = tmp_path / "custom.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[gateway]\nport = 9\n[providers.local]\nkind = "openai-compatible"\nbase_url = "{server.url}/v1"\n'
    )
    probe = (
        "from aiplane.config import load_settings; import sys; s = load_settings(__import__('pathlib').Path(sys.argv[1]));"
        "print(s.gateway.port, s.providers['local'].compat_base_url, s.providers['openai'].base_url)"
    )
    import sys

    out = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        env=clean_env(AIPLANE_GATEWAY__PORT="8788"), capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == ["8788", f"{server.url}/v1", "https://api.openai.com/v1"]

    config.write_text("[gateway\nport = 1")
    result = subprocess.run([AIPLANE, "gateway", "serve", "--config", str(config)], env=clean_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "invalid TOML" in result.stderr
    config.write_text("[gateway]\nprot = 1\n")
    result = subprocess.run([AIPLANE, "gateway", "serve", "--config", str(config)], env=clean_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "gateway.prot" in result.stderr
    result = subprocess.run([AIPLANE, "gateway", "serve", "--config", str(tmp_path / "missing.toml")], env=clean_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "not found" in result.stderr


def test_token_create_refuses_in_oidc_mode(tmp_path):
    from tests.conftest import clean_env

    result = subprocess.run(
        [AIPLANE, "gateway", "token", "create", "--user", "a@example.com"],
        env=clean_env(
            AIPLANE_DATA_DIR=str(tmp_path), AIPLANE_AUTH__MODE="oidc", AIPLANE_AUTH__JWKS_URL="https://idp.example.test/jwks",
            AIPLANE_AUTH__ISSUER="https://idp.example.test", AIPLANE_AUTH__AUDIENCE="gw",
        ),
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "auth.mode" in result.stderr


def test_help_lists_every_subcommand():
    result = subprocess.run([AIPLANE, "--help"], capture_output=True, text=True, check=True)
    for name in ("gateway", "usage", "db", "version"):
        assert name in result.stdout
