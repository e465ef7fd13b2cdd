"""/.well-known/opencode, org config reloads, the model catalog refresh and store:false."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import AIPLANE
from tests.doubles.providers import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "org-config"


@pytest.fixture()
def org_source(tmp_path) -> Path:
    src = tmp_path / "org-config"
    shutil.copytree(EXAMPLE, src)
    return src


def _doc(gateway, headers: dict | None = None) -> dict:
    response = httpx.get(gateway.url + "/.well-known/opencode", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_discovery_document_points_everything_at_the_gateway(make_gateway, org_source):
    gateway = make_gateway("disc", AIPLANE_DISCOVERY__CONFIG_SOURCE=str(org_source))
    doc = _doc(gateway)  # no credentials needed
    assert doc["auth"] == {"command": ["aiplane", "login", "--gateway", gateway.url], "env": "AIPLANE_TOKEN"}
    config = doc["config"]
    providers = config["provider"]
    assert providers["openai"]["options"] == {
        "baseURL": gateway.url + "/openai",
        "apiKey": "",
        "headers": {"Authorization": "Bearer {env:AIPLANE_TOKEN}"},
    }
    assert providers["anthropic"]["options"]["baseURL"] == gateway.url + "/anthropic/v1"
    assert providers["google"]["options"]["baseURL"] == gateway.url + "/google-ai-studio/v1beta"
    assert set(config["agent"]) == {"reviewer", "security-auditor", "docs-writer"}
    assert set(config["command"]) == {"review", "security-check"}
    assert config["mcp"]["aiplane-portal"]["url"] == gateway.url + "/mcp?mode=codemode"
    # Every OpenAI model served says store: false; other providers are left alone.
    assert providers["openai"]["models"] and all(m["options"]["store"] is False for m in providers["openai"]["models"].values())
    assert all("store" not in (m.get("options") or {}) for m in providers["anthropic"]["models"].values())
    assert "{baseURL}" not in json.dumps(doc)


def test_discovery_document_contains_no_secret(make_gateway, org_source):
    gateway = make_gateway("disc-secret", AIPLANE_DISCOVERY__CONFIG_SOURCE=str(org_source))
    text = httpx.get(gateway.url + "/.well-known/opencode").text
    dev_key = (gateway.data_dir / "dev-signing-key.pem").read_text()
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, dev_key.splitlines()[1], gateway.token()):
        assert secret not in text
    # Nothing that looks like a credential: every Authorization value is an {env:...} reference.
    assert not re.search(r"sk-[A-Za-z0-9-]{8,}|AIza[0-9A-Za-z_-]{8,}|BEGIN [A-Z ]*PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}", text)
    for value in re.findall(r'"Authorization":"([^"]*)"', text):
        assert value == "Bearer {env:AIPLANE_TOKEN}"
    assert '"apiKey":""' in text and "api_key" not in text


def test_public_url_setting_and_request_origin(make_gateway):
    gateway = make_gateway("disc-public", AIPLANE_DISCOVERY__PUBLIC_URL="https://ai.example.com")
    doc = _doc(gateway, {"host": "evil.example.net"})
    assert doc["config"]["provider"]["openai"]["options"]["baseURL"] == "https://ai.example.com/openai"
    plain = make_gateway("disc-origin")
    proxied = _doc(plain, {"host": "gw.example.com:8443"})
    assert proxied["config"]["provider"]["openai"]["options"]["baseURL"] == "http://gw.example.com:8443/openai"


def test_origin_is_json_escaped_when_rendered():
    from aiplane.orgconfig.discovery import render

    rendered = render({"url": "{baseURL}/openai"}, 'http://x"},"evil":"1')
    assert json.loads(rendered) == {"url": 'http://x"},"evil":"1/openai'}


def test_bad_org_config_refuses_to_start(tmp_path, org_source, upstream):
    from tests.conftest import gateway_env

    (org_source / "agents" / "broken.md").write_text("---\nmode: superuser\n---\nx\n")
    server, _ = upstream
    env = gateway_env(tmp_path / "gw", server.url, AIPLANE_DISCOVERY__CONFIG_SOURCE=str(org_source))
    result = subprocess.run([AIPLANE, "gateway", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "agents/broken.md:2: agent.broken.mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_reload_keeps_the_good_config_when_the_new_one_is_bad(make_gateway, org_source):
    gateway = make_gateway("reload", AIPLANE_DISCOVERY__CONFIG_SOURCE=str(org_source))
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    user = {"authorization": f"Bearer {gateway.token()}"}
    assert httpx.post(gateway.url + "/v1/admin/reload", headers=user).status_code == 403

    (org_source / "agents" / "broken.md").write_text("---\nmode: superuser\n---\nx\n")
    rejected = httpx.post(gateway.url + "/v1/admin/reload", headers=admin)
    assert rejected.status_code == 422
    assert any("agents/broken.md:2" in p for p in rejected.json()["problems"])
    assert set(_doc(gateway)["config"]["agent"]) == {"reviewer", "security-auditor", "docs-writer"}

    (org_source / "agents" / "broken.md").write_text("---\ndescription: fixed\nmode: subagent\n---\nx\n")
    assert httpx.post(gateway.url + "/v1/admin/reload", headers=admin).json()["status"] == "reloaded"
    assert "broken" in _doc(gateway)["config"]["agent"]

    # SIGHUP does the same without an HTTP call.
    (org_source / "agents" / "broken.md").unlink()
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "broken" in _doc(gateway)["config"]["agent"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "broken" not in _doc(gateway)["config"]["agent"]


def _catalog_gateway(make_gateway, upstream, name: str, **extra: str):
    server, _ = upstream
    return make_gateway(name, AIPLANE_CATALOG__URL=server.url + "/catalog/api.json", AIPLANE_CATALOG__TIMEOUT_SECONDS="1", **extra)


def _chat_cost(gateway, model: str = "gpt-4o") -> float:
    before = len(gateway.usage_rows())
    response = httpx.post(
        gateway.url + "/openai/chat/completions",
        headers={"authorization": f"Bearer {gateway.token()}"},
        json={"model": model, "messages": []},
    )
    assert response.status_code == 200
    return gateway.wait_for_rows(before + 1)[-1]["cost_usd"]


def _models(gateway) -> dict:
    result = subprocess.run([AIPLANE, "models", "list", "--json"], env=gateway.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_catalog_refresh_feeds_prices_and_survives_restart(make_gateway, upstream):
    _server, state = upstream
    state.catalog_mode = "ok"
    gateway = _catalog_gateway(make_gateway, upstream, "cat-ok")
    # The double prices gpt-4o at 10/20 per Mtok (the bundled snapshot says 2.5/10).
    assert _chat_cost(gateway) == pytest.approx((100 * 10 + 20 * 1.0 + 30 * 20) / 1e6)
    listed = _models(gateway)
    assert listed["source"].endswith("/catalog/api.json") and len(listed["models"]) == 30
    gateway.stop()

    # The catalog URL now serves garbage: a restarted gateway keeps the stored good copy. (Within
    # the refresh interval a restart would not fetch at all: the refresh runs once per interval
    # across processes, store/jobs.py; forget the last run so this start fetches.)
    state.catalog_mode = "garbage"
    with sqlite3.connect(gateway.data_dir / "aiplane.db") as db:
        db.execute("DELETE FROM job_runs")
    again = _catalog_gateway(make_gateway, upstream, "cat-ok")  # same data dir, new process
    assert _chat_cost(again) == pytest.approx((100 * 10 + 20 * 1.0 + 30 * 20) / 1e6)
    assert "catalog refresh failed" in again.logs()
    state.catalog_mode = "ok"


@pytest.mark.parametrize("mode,reason", [("garbage", "malformed cost"), ("not-json", "not valid JSON"), ("error", "HTTP 500"), ("slow", "timed out"), ("shrunk", "shrank")])
def test_bad_catalog_never_replaces_the_good_one(make_gateway, upstream, mode, reason):
    _server, state = upstream
    state.catalog_mode = mode
    try:
        gateway = _catalog_gateway(make_gateway, upstream, f"cat-{mode}")
        deadline = time.monotonic() + 5
        while reason not in gateway.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reason in gateway.logs()
        # Still the bundled snapshot's price for gpt-4o, and a full catalog to list.
        assert _chat_cost(gateway) == pytest.approx((100 * 2.5 + 20 * 1.25 + 30 * 10) / 1e6)
        assert _models(gateway)["source"] == "bundled snapshot"
        assert _doc(gateway)["config"]["provider"]["openai"]["models"]
    finally:
        state.catalog_mode = "ok"


def test_models_refresh_cli_reports_failure_cleanly(tmp_path, upstream):
    from tests.conftest import clean_env

    server, state = upstream
    state.catalog_mode = "not-json"
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path), AIPLANE_CATALOG__URL=server.url + "/catalog/api.json")
    try:
        result = subprocess.run([AIPLANE, "models", "refresh"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "not valid JSON" in result.stderr and "unchanged" in result.stderr
        state.catalog_mode = "ok"
        result = subprocess.run([AIPLANE, "models", "refresh"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "stored 30 models" in result.stdout
        table = subprocess.run([AIPLANE, "models", "list", "--provider", "google"], env=env, capture_output=True, text=True, timeout=60)
        assert "gemini-2.5-pro" in table.stdout and "claude" not in table.stdout
    finally:
        state.catalog_mode = "ok"


def test_store_false_is_forced_on_openai_bodies(gateway, upstream):
    _server, state = upstream
    headers = {"authorization": f"Bearer {gateway.token()}"}
    for path, body in (
        ("/openai/chat/completions", {"model": "gpt-4o", "messages": [], "store": True}),
        ("/openai/responses", {"model": "gpt-5", "input": "hi"}),
        ("/compat/chat/completions", {"model": "openai/gpt-4o", "messages": []}),
    ):
        assert httpx.post(gateway.url + path, headers=headers, json=body).status_code == 200
        assert state.requests[-1].json()["store"] is False, path
    # Endpoints without server-side retention are left untouched (store would be rejected there).
    assert httpx.post(gateway.url + "/openai/embeddings", headers=headers, json={"model": "text-embedding-3-small", "input": "x"}).status_code == 200
    assert "store" not in state.requests[-1].json()
    # Anthropic has no such field: its bodies pass through as sent.
    httpx.post(gateway.url + "/anthropic/v1/messages", headers=headers, json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []})
    assert "store" not in state.requests[-1].json()


def test_catalog_by_refs_refuses_a_huge_body_before_reading_it(gateway):
    url = gateway.url + "/api/catalog/entities/by-refs"
    headers = {"authorization": f"Bearer {gateway.token()}", "content-type": "application/json"}
    assert httpx.post(url, content=b'{"entityRefs": []}').status_code == 401  # no token: nothing is read

    def chunks():
        yield b'{"entityRefs": ["' + b"a" * (64 * 1024)
        for _ in range(255):
            yield b"a" * (64 * 1024)
        yield b'"]}'

    for body in (b'{"entityRefs": ["' + b"a" * (16 * 1024 * 1024) + b'"]}', chunks()):  # Content-Length, then chunked
        started = time.monotonic()
        response = httpx.post(url, content=body, headers=headers, timeout=30)
        assert time.monotonic() - started < 5.0
        assert response.status_code == 413 and response.json()["error"]["name"] == "PayloadTooLargeError"
    ok = httpx.post(url, json={"entityRefs": ["component:default/nope"]}, headers=headers)
    assert ok.status_code == 200 and ok.json() == {"items": [None]}


def test_gateway_warns_at_start_about_literal_secrets_in_the_org_config(make_gateway, org_source):
    from tests.test_orgconfig import GITHUB_TOKEN, LITERAL_KEY, SECRETS_SOURCE, _write

    _write(org_source, SECRETS_SOURCE)
    gateway = make_gateway("disc-literal", AIPLANE_DISCOVERY__CONFIG_SOURCE=str(org_source))  # starts: a warning, not an error
    assert LITERAL_KEY in httpx.get(gateway.url + "/.well-known/opencode").text  # what the warning is about
    warnings = [json.loads(line) for line in gateway.logs().splitlines() if "literal secret in the served org config" in line]
    assert {(w["level"], w["where"], w["key"]) for w in warnings} >= {
        ("warning", "config/providers.yaml:6", "provider.acme.options.apiKey"),
        ("warning", "config/mcp.toml:5", "mcp.github.environment.GITHUB_TOKEN"),
    }
    assert LITERAL_KEY not in gateway.logs() and GITHUB_TOKEN not in gateway.logs()
