"""Regression tests from the independent attack round on the AGENTS.md generator (issue 17).

Each test is one confirmed finding: rollout ran the repository's git hooks and fsmonitor; deeply
nested YAML killed every subcommand (and the reviewer) with SIGSEGV; `check` echoed control and
bidi characters from AGENTS.md; a committed symlink given as the folder was analysed and written
through; folders named like options became options in the "One test" line; a catalog's source
location reached `git clone` as an option.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from aiplane.agentsmd.rollout import Target, rollout
from aiplane.frontmatter import load_yaml
from tests.conftest import AIPLANE, clean_env

GIT_ID = ["-c", "user.email=a@b.c", "-c", "user.name=t"]


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run(["git", "-C", str(root), "init", "-q", "-b", "main"], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), *GIT_ID, "commit", "-q", "--no-verify", "-m", "init"], check=True)
    return root


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "agents-md", *args], env=clean_env(), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rollout_runs_no_hook_and_no_fsmonitor_of_the_repository(tmp_path):
    marker = tmp_path / "ran"
    hook = f"#!/bin/sh\necho \"$0\" >> {marker}\n"
    names = ["pre-commit", "commit-msg", "prepare-commit-msg", "post-commit", "post-checkout", "post-index-change",
             "reference-transaction"]
    repo = _repo(tmp_path / "repo", {"pyproject.toml": '[project]\nname = "y"\ndependencies = ["pytest"]\n',
                                      "tests/test_a.py": "def test_a():\n    pass\n",
                                      **{f".githooks/{name}": hook for name in names}})
    for name in names:
        os.chmod(repo / ".githooks" / name, 0o755)
        (repo / ".git" / "hooks" / name).write_text(hook)
        os.chmod(repo / ".git" / "hooks" / name, 0o755)
    # What husky or lefthook leave in a developer's checkout, and a fsmonitor command.
    subprocess.run(["git", "-C", str(repo), "config", "core.hooksPath", ".githooks"], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", f"echo fsmonitor >> {marker}; false #"], check=True)
    (result,) = rollout([Target(repo)])
    assert result.outcome == "created", result
    assert not marker.exists(), marker.read_text()
    # The proposal is the head's tree plus AGENTS.md (nothing lost without a checkout).
    files = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "aiplane/agents-md"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert sorted(files) == sorted(["AGENTS.md", "pyproject.toml", "tests/test_a.py", *(f".githooks/{n}" for n in names)])


@pytest.mark.parametrize("url", ["--upload-pack=touch /tmp/aiplane-pwned", "-uecho", "ext::sh -c touch% /tmp/aiplane-pwned"])
def test_rollout_never_passes_a_source_location_to_git_as_an_option(tmp_path, url):
    (result,) = rollout([Target(tmp_path / "ws" / "one", clone_url=url)])
    assert result.outcome == "failed" and "not a repository URL" in result.reason
    assert not Path("/tmp/aiplane-pwned").exists()


DEEP = "[" * 50_000 + "]" * 50_000


@pytest.mark.parametrize("name", [".github/workflows/ci.yml", ".gitlab-ci.yml", ".circleci/config.yml", "azure-pipelines.yml",
                                  ".travis.yml", "pnpm-workspace.yaml", "appveyor.yml"])
def test_deeply_nested_yaml_is_refused_not_a_crash(tmp_path, name):
    root = _repo(tmp_path / "repo", {name: f"on: push\njobs: {DEEP}\n", "go.mod": "module x\n", "a_test.go": "package x\n"})
    for args in (["analyze", str(root)], ["generate", str(root)]):
        result = _cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (result.returncode, result.stderr[-500:])
        assert "go test" in result.stdout


def test_frontmatter_nested_too_deeply_is_invalid_yaml():
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        load_yaml("a: " + DEEP)


def test_check_shows_control_and_bidi_characters_escaped(tmp_path):
    root = _repo(tmp_path / "repo", {"go.mod": "module x\n", "a_test.go": "package x\n",
                                      "AGENTS.md": "# AGENTS.md\n- Test: `npm run x\x1b]0;PWNED\x07\x1b[2J`\n"
                                                   "- Lint: `tox -e \u202eevil`\n- Docs: `make a`b`\n"})
    result = _cli("check", str(root))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b" in result.stdout and "\\u202e" in result.stdout


def test_a_committed_symlink_given_as_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "package.json").write_text(json.dumps({"name": "o", "scripts": {"test": "mocha"}}))
    root = _repo(tmp_path / "repo", {"package.json": json.dumps({"name": "x", "scripts": {"test": "jest"}})})
    (root / "pkg").symlink_to(outside)
    (root / "real").mkdir()
    (root / "real" / "inner").symlink_to("../pkg")
    for folder in ("pkg", "real/inner", "real/inner/..", str(root / "pkg")):
        for args in (["generate", folder, "--write", "--claude"], ["analyze", folder], ["check", folder]):
            result = _cli(*args, cwd=root)
            assert result.returncode == 2 and "symlink inside a repository" in result.stderr, (folder, args, result.stderr)
    assert sorted(p.name for p in outside.iterdir()) == ["package.json"]
    # A symlink to the repository itself is the operator's own.
    (tmp_path / "link").symlink_to(root)
    assert _cli("analyze", str(tmp_path / "link")).returncode == 0


@pytest.mark.parametrize("folder", ["-c", "--watchAll", "--config=evil.js", "-pevil"])
def test_folders_named_like_options_never_become_arguments(tmp_path, folder):
    root = _repo(tmp_path / "repo", {"package.json": json.dumps({"name": "x", "scripts": {"test": "jest"},
                                                                  "devDependencies": {"jest": "^29"}}),
                                      f"{folder}/a.test.js": "test('a', () => {});\n",
                                      f"tests/{folder}.rs": "#[test]\nfn a() {}\n",
                                      "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\n'})
    result = _cli("generate", str(root))
    assert result.returncode == 0, result.stderr
    assert f" {folder}" not in result.stdout and f"`{folder}" not in result.stdout, result.stdout
