"""AGENTS.md analysis, generation and staleness on fixture repositories built here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.generate import MAX_WORDS, InventedCommand, check, generate, verify_commands
from tests.conftest import AIPLANE, clean_env


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


PY_UV = {
    "pyproject.toml": '[project]\nname = "svc"\nrequires-python = ">=3.11"\n\n[tool.uv]\ndev-dependencies = []\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.ruff]\nline-length = 100\n',
    "uv.lock": "version = 1\n",
    "src/svc/__init__.py": "x = 1\n",
    "tests/test_svc.py": "def test_x():\n    assert True\n",
}
PY_POETRY = {
    "pyproject.toml": '[tool.poetry]\nname = "lib"\n\n[tool.pytest.ini_options]\n\n[tool.mypy]\nstrict = true\n',
    "lib/__init__.py": "y = 2\n",
}
NODE_PNPM = {
    "package.json": json.dumps({"name": "root", "private": True, "scripts": {"test": "vitest", "lint": "eslint ."}, "engines": {"node": ">=20"}}, indent=2),
    "pnpm-lock.yaml": "lockfileVersion: 9\n",
    "pnpm-workspace.yaml": "packages:\n  - packages/*\n",
    "packages/ui/package.json": json.dumps({"name": "ui", "scripts": {"test": "vitest", "typecheck": "tsc --noEmit"}}, indent=2),
    "packages/ui/src/index.ts": "export const a = 1;\n",
}
GO = {"go.mod": "module example.com/svc\n\ngo 1.23\n", "main.go": "package main\n\nfunc main() {}\n", "main_test.go": "package main\n", ".golangci.yml": "linters: {}\n"}
RUST = {"Cargo.toml": '[package]\nname = "crate"\nversion = "0.1.0"\n', "rust-toolchain.toml": '[toolchain]\nchannel = "1.82"\n', "src/lib.rs": "pub fn a() {}\n"}


@pytest.mark.parametrize(
    "files,tests,lints,runtime",
    [
        (PY_UV, ["uv run pytest"], ["uv run ruff check .", "uv run ruff format --check ."], "Python >=3.11"),
        (PY_POETRY, ["poetry run pytest"], ["poetry run mypy ."], None),
        (NODE_PNPM, ["pnpm test"], ["pnpm run lint"], "Node >=20"),
        (GO, ["go test ./..."], ["golangci-lint run"], "Go 1.23"),
        (RUST, ["cargo test"], ["cargo clippy", "cargo fmt --check"], "Rust 1.82"),
    ],
)
def test_detected_commands_with_evidence(tmp_path, files, tests, lints, runtime):
    result = analyze(_write(tmp_path, files))
    assert [f.value for f in result.test] == tests
    assert [f.value for f in result.lint] == lints
    assert all(":" in f.evidence and (tmp_path / f.evidence.split(":")[0]).exists() for f in result.test + result.lint)
    if runtime:
        assert runtime in [f.value for f in result.runtime]


def test_pnpm_workspace_packages_get_their_own_facts(tmp_path):
    result = analyze(_write(tmp_path, NODE_PNPM))
    (ui,) = result.packages
    assert ui.root == "packages/ui" and [f.value for f in ui.test] == ["npm test"] and "npm run typecheck" in [f.value for f in ui.lint]


def test_polyglot_monorepo_and_word_limit(tmp_path):
    files = {f"api/{k}": v for k, v in GO.items()} | {f"web/{k}": v for k, v in NODE_PNPM.items() if not k.startswith("pnpm-workspace")}
    files |= {f"ml/{k}": v for k, v in PY_UV.items()} | {f"core/{k}": v for k, v in RUST.items()}
    root = _write(tmp_path, files)
    analysis, text = generate(root)
    assert {p.root for p in analysis.packages} == {"api", "web", "ml", "core"}
    assert {"Go", "Rust", "Python", "TypeScript"} <= set(analysis.languages)
    assert len(text.split()) <= MAX_WORDS
    assert "`go test ./...`" in text and "`uv run pytest`" in text


def test_invented_commands_are_rejected(tmp_path):
    analysis = analyze(_write(tmp_path, PY_UV))
    verify_commands("Run `uv run pytest` and `uv run ruff check .`.", analysis)
    with pytest.raises(InventedCommand, match="make test"):
        verify_commands("Run `make test` before pushing.", analysis)


def test_generate_write_keeps_an_existing_file_and_staleness_after_rename(tmp_path):
    root = _write(tmp_path, NODE_PNPM)
    env = clean_env()
    assert subprocess.run([AIPLANE, "agents-md", "generate", str(root), "--write", "--claude"], env=env, capture_output=True).returncode == 0
    assert (root / "CLAUDE.md").read_text() == "@AGENTS.md\n"
    assert subprocess.run([AIPLANE, "agents-md", "check", str(root)], env=env, capture_output=True).returncode == 0
    original = (root / "AGENTS.md").read_text()

    package = json.loads((root / "package.json").read_text())
    package["scripts"] = {"unit": "vitest", "lint": "eslint ."}  # the test script is renamed
    (root / "package.json").write_text(json.dumps(package))
    stale = subprocess.run([AIPLANE, "agents-md", "check", str(root)], env=env, capture_output=True, text=True)
    assert stale.returncode == 1 and "stale command: pnpm test" in stale.stdout

    again = subprocess.run([AIPLANE, "agents-md", "generate", str(root), "--write"], env=env, capture_output=True, text=True)
    assert "left as it is" in again.stdout and (root / "AGENTS.md").read_text() == original
    assert "pnpm run unit" not in (root / "AGENTS.md.proposed").read_text()  # only known test scripts count


def test_check_flags_changed_manifests_since_base(tmp_path):
    root = _write(tmp_path, GO)
    _, text = generate(root)
    (root / "AGENTS.md").write_text(text)
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q", "-b", "main")
    git("-c", "user.email=a@b.c", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "base")
    git("add", "-A")
    git("-c", "user.email=a@b.c", "-c", "user.name=t", "commit", "-q", "-m", "files")
    git("checkout", "-q", "-b", "change")
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.24\n")
    git("-c", "user.email=a@b.c", "-c", "user.name=t", "commit", "-q", "-am", "bump go")
    assert check(root, base="main").touched_watched == ["go.mod"]
