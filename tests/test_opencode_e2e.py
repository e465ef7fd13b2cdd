"""The real OpenCode CLI against the gateway: one login configures everything, and calls are metered.

Uses the npm package pinned in tests/e2e/package.json (installed by .ci/run), with isolated
HOME/XDG dirs and a local models file, so nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.doubles.providers import ANTHROPIC_KEY

ROOT = Path(__file__).resolve().parent.parent
OPENCODE = os.environ.get("OPENCODE_BIN") or str(ROOT / "tests" / "e2e" / "node_modules" / ".bin" / "opencode")
MODELS = ROOT / "src" / "aiplane" / "modelcatalog" / "data" / "models-snapshot.json"
EXAMPLE = ROOT / "examples" / "org-config"

if not Path(OPENCODE).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"OpenCode CLI not found at {OPENCODE}; .ci/run installs it with npm install --prefix tests/e2e")
    pytest.skip("OpenCode CLI not installed (npm install --prefix tests/e2e)", allow_module_level=True)


@pytest.fixture()
def developer(tmp_path, make_gateway):
    return _developer(tmp_path, make_gateway)


def _developer(tmp_path, make_gateway, portal: bool = False):  # noqa: ANN202
    """A gateway serving the example org config, and a developer machine with nothing configured."""
    source = tmp_path / "org-config"
    shutil.copytree(EXAMPLE, source)
    extra = {}
    if portal:
        # The example's portal entry, switched on, with a real MCP server (mcp-server-time) behind it.
        mcp = source / "config" / "mcp.yaml"
        mcp.write_text(mcp.read_text().replace('url: "{baseURL}/mcp?mode=codemode"\n    enabled: false',
                                               'url: "{baseURL}/mcp?mode=codemode"\n    enabled: true'))
        extra["AIPLANE_PORTAL__UPSTREAMS__TIME__COMMAND"] = str(Path(sys.executable).parent / "mcp-server-time")
    gateway = make_gateway("e2e", AIPLANE_DISCOVERY__CONFIG_SOURCE=str(source), **extra)
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "config", "user.email", "dev@example.com"], check=True)
    env = clean_env(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        # Keep OpenCode's optional background work (default plugins, share, LSP downloads) off.
        OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
        OPENCODE_DISABLE_SHARE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_MODELS_PATH=str(MODELS),
        # `aiplane login` (the auth command) must be on PATH; dev mode shares the gateway's data dir.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AIPLANE_DATA_DIR=str(gateway.data_dir),
    )
    for name in list(env):
        if name.endswith("_API_KEY"):
            del env[name]

    def opencode(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [OPENCODE, *args], env=env, cwd=project, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    return gateway, opencode, project, home


def test_one_login_configures_opencode_and_calls_are_metered(developer, upstream):
    gateway, opencode, project, home = developer
    _server, state = upstream

    login = opencode("auth", "login", gateway.url)
    assert login.returncode == 0, login.stdout + login.stderr
    auth = json.loads((home / ".local" / "share" / "opencode" / "auth.json").read_text())
    assert auth[gateway.url]["type"] == "wellknown" and auth[gateway.url]["key"] == "AIPLANE_TOKEN"

    debug = opencode("debug", "config")
    assert debug.returncode == 0, debug.stderr
    config = json.loads(debug.stdout)
    assert config["provider"]["anthropic"]["options"]["baseURL"] == gateway.url + "/anthropic/v1"
    assert config["provider"]["openai"]["options"]["baseURL"] == gateway.url + "/openai"
    assert {"reviewer", "security-auditor", "docs-writer"} <= set(config["agent"])
    assert {"review", "security-check"} <= set(config["command"])
    assert {"time", "aiplane-portal"} <= set(config["mcp"])
    assert config["model"] == "anthropic/claude-sonnet-4-5"

    run = opencode("run", "-m", "anthropic/claude-haiku-4-5", "--format", "json", "say hi")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert "Hello from the double." in texts

    sent = [r for r in state.requests if r.path == "/v1/messages"][-1]
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in sent.headers
    user_id = json.loads(sent.headers["x-aiplane-metadata"])["userId"]

    rows = gateway.wait_for_rows(1)
    assert rows and all(r["provider"] == "anthropic" and r["status"] == 200 for r in rows)
    conn = sqlite3.connect(gateway.data_dir / "aiplane.db")
    (mapped,) = conn.execute("SELECT user_id FROM identities WHERE subject = 'dev@example.com'").fetchone()
    conn.close()
    assert {r["user_id"] for r in rows} == {mapped} == {user_id}
    assert any(r["model"] == "claude-haiku-4-5" and r["output_tokens"] == 40 for r in rows)


def test_local_config_overrides_the_served_one(developer):
    gateway, opencode, project, _home = developer
    assert opencode("auth", "login", gateway.url).returncode == 0
    (project / "opencode.json").write_text(
        json.dumps({"$schema": "https://opencode.ai/config.json", "model": "openai/gpt-4o", "agent": {"reviewer": {"temperature": 0.7}}})
    )
    config = json.loads(opencode("debug", "config").stdout)
    assert config["model"] == "openai/gpt-4o"  # the project's choice beats the organisation default
    assert config["agent"]["reviewer"]["temperature"] == 0.7
    assert config["agent"]["reviewer"]["mode"] == "subagent"  # the rest of the served agent is kept


def test_opencode_connects_to_the_mcp_portal_after_one_login(tmp_path, make_gateway):
    gateway, opencode, _project, _home = _developer(tmp_path, make_gateway, portal=True)
    assert opencode("auth", "login", gateway.url).returncode == 0
    listed = opencode("mcp", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "aiplane-portal" in line)
    assert "connected" in line.lower() and "failed" not in line.lower(), listed.stdout
