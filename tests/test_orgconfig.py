"""`aiplane config build/check`: agents and commands as code, validated against OpenCode's schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AIPLANE, clean_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "org-config"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "config", *args], env=clean_env(), capture_output=True, text=True, timeout=60, cwd=cwd)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


GOOD_AGENT = "---\ndescription: Reviews code\nmode: subagent\n---\nYou review code.\n"


def test_example_org_config_builds(tmp_path):
    out = tmp_path / "opencode.json"
    result = _run("build", str(EXAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads(out.read_text())
    assert set(config["agent"]) == {"reviewer", "security-auditor", "docs-writer"}
    assert set(config["command"]) == {"review", "security-check"}
    assert config["agent"]["reviewer"]["mode"] == "subagent"
    assert "What NOT to flag" in config["agent"]["security-auditor"]["prompt"]
    assert config["command"]["review"]["template"].startswith("Review the changes")
    assert config["command"]["review"]["agent"] == "reviewer"
    assert config["$schema"] == "https://opencode.ai/config.json"
    assert _run("check", str(EXAMPLE)).returncode == 0


def test_nested_paths_become_names_and_bodies_become_prompts(tmp_path):
    src = _write(tmp_path / "src", {"agents/team/backend.md": GOOD_AGENT, "commands/ops/deploy.md": "Deploy $ARGUMENTS\n"})
    result = _run("build", str(src), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "out.json").read_text())
    assert config["agent"]["team/backend"]["prompt"] == "You review code.\n"
    assert config["command"]["ops/deploy"] == {"template": "Deploy $ARGUMENTS\n"}


@pytest.mark.parametrize(
    "files,expected",
    [
        ({"agents/a.md": "---\nmode: primary\n"}, "agents/a.md:1: frontmatter opened with '---' is never closed"),
        ({"agents/a.md": "---\nmode: [primary\n---\nbody\n"}, "agents/a.md:3: invalid YAML frontmatter"),
        ({"agents/a.md": "---\n- just\n- a list\n---\nbody\n"}, "agents/a.md:1: frontmatter must be a YAML mapping"),
        ({"agents/a.md": "---\nmode: superuser\n---\nbody\n"}, "agents/a.md:2: agent.a.mode: 'superuser' is not one of ['subagent', 'primary', 'all'] (rule: enum)"),
        ({"agents/a.md": "---\ntemperature: hot\n---\nbody\n"}, "agents/a.md:2: agent.a.temperature: 'hot' is not of type 'number' (rule: type)"),
        ({"agents/a.md": "---\nprompt: inline\n---\nbody\n"}, "agents/a.md:2: agent.a.prompt: comes from the markdown body"),
        ({"commands/c.md": "---\nagnt: build\n---\nDo it\n"}, "commands/c.md:2: command.c.agnt: unknown key (rule: additionalProperties"),
        ({"commands/c.md": "---\ndescription: empty\n---\n"}, "command.c: 'template' is a required property (rule: required)"),
        ({"agents/a.md": GOOD_AGENT, "agents/b.md": "---\nname: A\n---\nx\n"}, "duplicate agent name"),
        ({"agents/rev.md": GOOD_AGENT, "config/x.yaml": "agent:\n  rev:\n    mode: primary\n"}, "agents/rev.md:1: agent.rev: duplicate agent name (also defined in config/x.yaml:2)"),
        ({"config/x.yaml": "permission:\n  edit: maybe\n"}, "config/x.yaml:2: permission.edit: 'maybe' is not one of ['ask', 'allow', 'deny'] (rule: enum)"),
        ({"config/x.yaml": "mcp:\n  svc:\n    type: remote\n"}, "config/x.yaml:2: mcp.svc: 'url' is a required property (rule: required)"),
        ({"config/x.yaml": "mcp: [unclosed\n"}, "config/x.yaml:2: invalid YAML"),
        ({"config/x.toml": "model = \n"}, "config/x.toml:1: invalid TOML"),
        ({"config/x.toml": "colour = 'red'\n"}, "config/x.toml:1: colour: unknown key (rule: additionalProperties"),
        ({"config/a.toml": "model = 'a/b'\n", "config/b.toml": "model = 'c/d'\n"}, "config/b.toml:1: model: defined twice (also in config/a.toml:1)"),
        ({"agents/bin.md": b"---\n\xff\xfe\n---\n"}, "agents/bin.md: file is not UTF-8 text"),
    ],
)
def test_every_error_names_file_line_key_and_rule(tmp_path, files, expected):
    src = _write(tmp_path / "src", files)
    out = tmp_path / "opencode.json"
    out.write_text('{"previous": "good"}')
    result = _run("build", str(src), "-o", str(out))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
    assert "nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(out.read_text()) == {"previous": "good"}  # the old file is untouched


def test_all_problems_are_reported_in_one_run(tmp_path):
    src = _write(
        tmp_path / "src",
        {"agents/a.md": "---\nmode: superuser\n---\nx\n", "commands/c.md": "---\nagnt: x\n---\ny\n", "config/x.toml": "bogus = 1\n"},
    )
    result = _run("check", str(src))
    assert result.returncode == 1
    assert "3 problems" in result.stderr
    for fragment in ("agent.a.mode", "command.c.agnt", "bogus: unknown key"):
        assert fragment in result.stderr


def test_check_writes_nothing_and_missing_source_is_clean(tmp_path):
    src = _write(tmp_path / "src", {"agents/a.md": GOOD_AGENT})
    result = _run("check", str(src), cwd=tmp_path)
    assert result.returncode == 0 and "valid against the OpenCode" in result.stdout
    assert not (tmp_path / "opencode.json").exists()
    missing = _run("check", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


# Fake credentials in real formats, and the {env:NAME} forms that are fine.
LITERAL_KEY = "sk-proj-" + "Zq3" * 12
GITHUB_TOKEN = "ghp_" + "a1B2" * 9
PLAIN_PASSWORD = "hunter2-but-longer"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
SECRETS_SOURCE = {
    "config/providers.yaml": (
        "provider:\n"
        "  acme:\n"
        "    npm: '@ai-sdk/openai-compatible'\n"
        "    options:\n"
        "      baseURL: https://llm.acme.example/v1\n"
        f"      apiKey: {LITERAL_KEY}\n"
        "      headers:\n"
        f"        Authorization: Bearer {JWT}\n"
        "        X-Team: platform\n"
        "  fine:\n"
        "    npm: '@ai-sdk/openai-compatible'\n"
        "    options:\n"
        "      baseURL: https://fine.example/v1\n"
        "      apiKey: ''\n"
        "      headers:\n"
        "        Authorization: Bearer {env:AIPLANE_TOKEN}\n"
    ),
    "config/mcp.toml": (
        "[mcp.github]\n"
        "type = 'local'\n"
        "command = ['github-mcp']\n"
        "[mcp.github.environment]\n"
        f"GITHUB_TOKEN = '{GITHUB_TOKEN}'\n"
        "GITHUB_HOST = 'github.com'\n"
        "[mcp.wiki]\n"
        "type = 'remote'\n"
        "url = 'https://wiki.example/mcp'\n"
        "[mcp.wiki.headers]\n"
        f"x-wiki-password = '{PLAIN_PASSWORD}'\n"
        "x-api-key = '{env:WIKI_KEY}'\n"
    ),
    "agents/helper.md": "---\ndescription: Helps\n---\nUse the deploy key AKIAABCDEFGHIJKLMNOP when asked.\n",
}


def test_literal_secrets_are_warned_about_not_refused(tmp_path):
    src = _write(tmp_path / "src", SECRETS_SOURCE)
    for args in (("check", str(src)), ("build", str(src), "-o", str(tmp_path / "out.json"))):
        result = _run(*args)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 5, result.stderr
        for where in (
            "config/providers.yaml:6: provider.acme.options.apiKey: looks like an OpenAI/Anthropic-style key",
            "config/providers.yaml:8: provider.acme.options.headers.Authorization: looks like a JWT",
            "config/mcp.toml:5: mcp.github.environment.GITHUB_TOKEN: looks like a GitHub token",
            "config/mcp.toml:11: mcp.wiki.headers.x-wiki-password: 'x-wiki-password' holds a literal value",
            "agents/helper.md:4: agent.helper.prompt: looks like an AWS access key id",
        ):
            assert any(w.startswith(f"warning: {where}") for w in warnings), (where, warnings)
        assert all("{env:NAME}" in w for w in warnings)
        for secret in (LITERAL_KEY, GITHUB_TOKEN, PLAIN_PASSWORD, JWT, "AKIAABCDEFGHIJKLMNOP"):
            assert secret not in result.stderr and secret not in result.stdout
    assert "warning" not in _run("check", str(EXAMPLE)).stderr
