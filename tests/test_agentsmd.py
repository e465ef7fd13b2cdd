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


def _model_env(server, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        AIPLANE_DATA_DIR=str(tmp_path / "data"),
        AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=server.url + "/v1",
        AIPLANE_LLM__MODELS__SPECIALIST__MODEL="gpt-4o-mini",
        AIPLANE_LLM__MODELS__SPECIALIST__API_KEY="sk-x",
    )


def test_model_phrasing_is_kept_only_without_new_commands(tmp_path, model):
    server, _state = model
    good = _write(tmp_path / "svc-good", GO)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(good), "--model"], env=_model_env(server, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0 and "## Conventions (house rules)" in result.stdout and "`go test ./...`" in result.stdout

    invented = _write(tmp_path / "svc-invent", GO)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(invented), "--model"], env=_model_env(server, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0 and "make deploy" not in result.stdout
    assert "rejected the model's version: commands not found by the analysis: make deploy" in result.stderr
    assert "## Conventions\n" in result.stdout  # the verified template was kept


def test_catalog_metadata(tmp_path):
    repo = _write(tmp_path / "billing", GO)
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "https://github.com/acme/billing.git"], check=True)
    catalog = _write(
        tmp_path / "catalog",
        {
            "billing.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: billing\n  annotations:\n"
            "    github.com/project-slug: acme/billing\nspec:\n  type: service\n  lifecycle: production\n  owner: team-pay\n"
            "  system: payments\n  dependsOn: ['resource:billing-db']\n",
            "db.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n  name: billing-db\nspec:\n  type: database\n  owner: team-pay\n",
        },
    )
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    subprocess.run([AIPLANE, "catalog", "ingest", str(catalog)], env=env, check=True, capture_output=True)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(repo), "--catalog"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "## Dependencies" in result.stdout and "Owner: group:default/team-pay" in result.stdout
    assert "Depends on: resource:default/billing-db" in result.stdout and "System: payments" in result.stdout


def test_rollout_is_idempotent_and_reports_each_repository(tmp_path):
    repos = []
    for name, files in (("go-svc", GO), ("rust-lib", RUST)):
        repo = _write(tmp_path / name, files)
        subprocess.run(["git", "-C", str(repo), "init", "-q", "-b", "main"], check=True)
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b.c", "-c", "user.name=t", "commit", "-q", "-m", "init"], check=True)
        repos.append(repo)
    listing = tmp_path / "repos.txt"
    listing.write_text("\n".join(str(r) for r in repos) + f"\n{tmp_path / 'missing'}\n")
    env = clean_env()
    first = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--json"], env=env, capture_output=True, text=True)
    assert first.returncode == 1  # the missing one failed
    outcomes = {Path(r["repo"]).name: (r["outcome"], r["reason"]) for r in json.loads(first.stdout)}
    assert outcomes["go-svc"][0] == "created" and outcomes["rust-lib"][0] == "created"
    assert outcomes["missing"] == ("failed", "not a git repository")
    branch_file = subprocess.run(["git", "-C", str(repos[0]), "show", "aiplane/agents-md:AGENTS.md"], capture_output=True, text=True).stdout
    assert "`go test ./...`" in branch_file
    assert not (repos[0] / "AGENTS.md").exists()  # the checkout itself is untouched

    second = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--json"], env=env, capture_output=True, text=True)
    again = {Path(r["repo"]).name: r["outcome"] for r in json.loads(second.stdout)}
    assert again["go-svc"] == "unchanged" and again["rust-lib"] == "unchanged"


# -- rollout through code hosts (wire-format doubles of GitHub and GitLab) ----------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=dev@example.com", "-c", "user.name=Dev", *args],
                          check=True, capture_output=True, text=True).stdout


def _published(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare 'origin' with one commit on main, and a clone of it."""
    remote = tmp_path / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = _write(tmp_path / f"{name}-seed", files)
    _git(seed, "init", "-q", "-b", "main")
    _git(seed, "add", "-A")
    _git(seed, "commit", "-q", "-m", "init")
    _git(seed, "push", "-q", str(remote), "main")
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    return remote, clone


def test_rollout_opens_one_pull_request_per_repository_on_github(tmp_path):
    from tests.doubles import github as gh
    from tests.doubles.server import ServerThread

    remote, clone = _published(tmp_path, "go-svc", GO)
    listing = tmp_path / "repos.txt"
    listing.write_text(f"{clone} acme/widgets\n")
    state = gh.GitHubState()
    with ServerThread(gh.build_github_app(state)) as github:
        env = clean_env(GITHUB_TOKEN=gh.TOKEN)
        command = [AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--vcs", "github", "--api-url", github.url, "--json"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        (row,) = json.loads(first.stdout)
        assert row["outcome"] == "created" and row["url"] == "https://github.com/acme/widgets/pull/100"
        (pull,) = state.pulls
        assert pull["head"]["ref"] == "aiplane/agents-md" and pull["base"]["ref"] == "main" and "verified" in pull["title"]
        assert "`go test ./...`" in _git(remote, "show", "aiplane/agents-md:AGENTS.md")

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        (row,) = json.loads(second.stdout)
        assert (row["outcome"], row["reason"]) == ("unchanged", "the open proposal is current") and len(state.pulls) == 1

        # A human refines the proposal on the host; a later run must not overwrite it.
        human = tmp_path / "human"
        subprocess.run(["git", "clone", "-q", "-b", "aiplane/agents-md", str(remote), str(human)], check=True)
        (human / "AGENTS.md").write_text((human / "AGENTS.md").read_text() + "\nRun the linter before pushing.\n")
        _git(human, "commit", "-q", "-am", "Refine AGENTS.md")
        _git(human, "push", "-q", "origin", "aiplane/agents-md")
        (clone / "Makefile").write_text("lint:\n\tgolangci-lint run\n")
        _git(clone, "add", "-A")
        _git(clone, "commit", "-q", "-m", "add lint target")
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        (row,) = json.loads(third.stdout)
        assert row["outcome"] == "unchanged" and "human edits (dev@example.com)" in row["reason"]
        assert "Run the linter before pushing." in _git(remote, "show", "aiplane/agents-md:AGENTS.md")
        assert len(state.pulls) == 1


def test_rollout_from_the_catalog_opens_merge_requests_on_gitlab(tmp_path):
    from tests.doubles import gitlab as gl
    from tests.doubles.server import ServerThread

    remote, _clone = _published(tmp_path, "rust-lib", RUST)
    catalog = _write(tmp_path / "catalog", {
        "lib.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: rust-lib\n  annotations:\n"
        f"    gitlab.com/project-slug: acme/rust-lib\n    backstage.io/source-location: url:file://{remote}/-/tree/main/\n"
        "spec:\n  type: library\n  lifecycle: production\n  owner: team-core\n",
        "nolink.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: unlinked\nspec:\n"
        "  type: service\n  lifecycle: production\n  owner: team-core\n",
    })
    state = gl.GitLabState()
    with ServerThread(gl.build_gitlab_app(state)) as gitlab:
        env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"), GITLAB_TOKEN=gl.TOKEN)
        subprocess.run([AIPLANE, "catalog", "ingest", str(catalog)], env=env, check=True, capture_output=True)
        command = [AIPLANE, "agents-md", "rollout", "--catalog", "--vcs", "gitlab", "--workspace", str(tmp_path / "ws"),
                   "--api-url", gitlab.url + "/api/v4", "--json"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        (row,) = json.loads(first.stdout)
        assert row["outcome"] == "created" and row["url"].endswith("/acme/rust-lib/-/merge_requests/1")
        (mr,) = state.merge_requests
        assert mr["source_branch"] == "aiplane/agents-md" and mr["target_branch"] == "main"
        text = _git(remote, "show", "aiplane/agents-md:AGENTS.md")
        assert "`cargo test`" in text and "group:default/team-core" in text  # catalog facts too
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(second.stdout)[0]["outcome"] == "unchanged" and len(state.merge_requests) == 1


def test_rollout_refuses_a_host_without_a_token(tmp_path):
    listing = tmp_path / "repos.txt"
    listing.write_text(f"{tmp_path} acme/x\n")
    result = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--vcs", "github"],
                            env=clean_env(GITHUB_TOKEN=""), capture_output=True, text=True)
    assert result.returncode == 2 and "needs GITHUB_TOKEN" in result.stderr
    both = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--catalog"], env=clean_env(), capture_output=True, text=True)
    assert both.returncode == 2 and "exactly one of --repos FILE or --catalog" in both.stderr
