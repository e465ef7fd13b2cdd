"""Verified facts about a repository, each with its evidence (file and line). No model involved."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiplane.repository.tree import TreeBase, WorkTree

SKIP_DIRS = {".git", "node_modules", "vendor", "third_party", ".venv", "venv", "dist", "build", "target", "__pycache__", ".tox", ".mypy_cache"}
LANGUAGES = {
    ".py": "Python", ".ts": "TypeScript", ".tsx": "TypeScript", ".js": "JavaScript", ".jsx": "JavaScript", ".mjs": "JavaScript",
    ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin", ".rb": "Ruby", ".c": "C", ".h": "C", ".cc": "C++",
    ".cpp": "C++", ".hpp": "C++", ".cs": "C#", ".swift": "Swift", ".php": "PHP", ".scala": "Scala",
}
TEST_WORDS = re.compile(r"\b(pytest|tox|nox|go test|cargo test|cargo nextest|mvn( -[\w.=-]+)* (test|verify)|gradlew? test|npm (run )?test|pnpm (run )?test|yarn (run )?test|bun test|make test|just test|vitest|jest)\b")
LINT_WORDS = re.compile(r"\b(ruff( check| format)?|mypy|pyright|eslint|prettier|golangci-lint|cargo clippy|cargo fmt|pre-commit run|prek run|tsc --noEmit|black|flake8)\b")
MAX_FILES = 50_000
# Manifests and CI files are read as data: at most this much of any one, never through a symlink.
MAX_MANIFEST_BYTES = 1024 * 1024


@dataclass
class Fact:
    value: str
    evidence: str  # file:line


@dataclass
class Analysis:
    root: str
    languages: dict[str, float] = field(default_factory=dict)
    build: list[Fact] = field(default_factory=list)
    test: list[Fact] = field(default_factory=list)
    lint: list[Fact] = field(default_factory=list)
    runtime: list[Fact] = field(default_factory=list)
    source_roots: list[str] = field(default_factory=list)
    test_roots: list[str] = field(default_factory=list)
    boundaries: list[Fact] = field(default_factory=list)
    packages: list[Analysis] = field(default_factory=list)

    def commands(self) -> set[str]:
        found = {f.value for f in self.test + self.lint}
        for package in self.packages:
            found |= package.commands()
        return found

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _read(tree: TreeBase, name: str) -> str:
    return tree.read_text(name, MAX_MANIFEST_BYTES) or ""


def _languages(files: list) -> dict[str, float]:  # noqa: ANN001 - tree entries
    # Bytes per language, as GitHub's linguist counts them: no file has to be opened.
    sizes: dict[str, int] = {}
    for entry in files:
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        language = LANGUAGES.get(suffix)
        if language is not None:
            sizes[language] = sizes.get(language, 0) + entry.size
    total = sum(sizes.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v / total >= 0.01}


def _python(root: TreeBase, a: Analysis) -> None:
    text = _read(root, "pyproject.toml")
    data: dict[str, Any] = {}
    if text:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
    tool = data.get("tool", {})
    runner = ""
    if root.exists("uv.lock") or "uv" in tool:
        a.build.append(Fact("uv", "uv.lock:1" if root.exists("uv.lock") else f"pyproject.toml:{_line_of(text, '[tool.uv')}"))
        runner = "uv run "
    elif "poetry" in tool:
        a.build.append(Fact("poetry", f"pyproject.toml:{_line_of(text, '[tool.poetry')}"))
        runner = "poetry run "
    elif "pdm" in tool:
        a.build.append(Fact("pdm", f"pyproject.toml:{_line_of(text, '[tool.pdm')}"))
        runner = "pdm run "
    elif "hatch" in tool or "hatchling" in text:
        a.build.append(Fact("hatch", f"pyproject.toml:{_line_of(text, 'hatch')}"))
    elif text:
        a.build.append(Fact("setuptools" if "setuptools" in text else "pip", "pyproject.toml:1"))
    elif root.exists("requirements.txt"):
        a.build.append(Fact("pip", "requirements.txt:1"))
    pytest_configured = "pytest" in tool or root.exists("pytest.ini") or "[tool:pytest]" in _read(root, "setup.cfg")
    if pytest_configured or root.is_dir("tests") and any(fnmatch.fnmatch(e.name, "test_*.py") for e in root.list_dir("tests")):
        where = f"pyproject.toml:{_line_of(text, '[tool.pytest')}" if "pytest" in tool else ("pytest.ini:1" if root.exists("pytest.ini") else "tests/:1")
        a.test.append(Fact(f"{runner}pytest", where))
    if "ruff" in tool or root.exists("ruff.toml"):
        where = f"pyproject.toml:{_line_of(text, '[tool.ruff')}" if "ruff" in tool else "ruff.toml:1"
        a.lint += [Fact(f"{runner}ruff check .", where), Fact(f"{runner}ruff format --check .", where)]
    if "mypy" in tool:
        a.lint.append(Fact(f"{runner}mypy .", f"pyproject.toml:{_line_of(text, '[tool.mypy')}"))
    requires = data.get("project", {}).get("requires-python")
    if requires:
        a.runtime.append(Fact(f"Python {requires}", f"pyproject.toml:{_line_of(text, 'requires-python')}"))
    if root.exists(".python-version"):
        a.runtime.append(Fact(f"Python {_read(root, '.python-version').strip()}", ".python-version:1"))
    for name in ("tox.ini", "noxfile.py"):
        if root.exists(name):
            a.test.append(Fact("tox" if name == "tox.ini" else "nox", f"{name}:1"))


def _node(root: TreeBase, a: Analysis) -> None:
    text = _read(root, "package.json")
    if not text:
        return
    try:
        data = json.loads(text)
    except ValueError:
        return
    manager = "npm"
    for lock, name in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"), ("bun.lock", "bun")):
        if root.exists(lock):
            manager = name
            break
    if isinstance(data.get("packageManager"), str):
        manager = data["packageManager"].split("@")[0]
    a.build.append(Fact(manager, f"package.json:{_line_of(text, 'packageManager') if 'packageManager' in data else 1}"))
    scripts = data.get("scripts") or {}
    for script in scripts:
        command = f"{manager} test" if script == "test" else f"{manager} run {script}"
        if script in ("test", "test:unit"):
            a.test.append(Fact(command, f"package.json:{_line_of(text, json.dumps(script))}"))
        elif script in ("lint", "format", "typecheck", "check", "format:check"):
            a.lint.append(Fact(command, f"package.json:{_line_of(text, json.dumps(script))}"))
    engines = (data.get("engines") or {}).get("node")
    if engines:
        a.runtime.append(Fact(f"Node {engines}", f"package.json:{_line_of(text, 'engines')}"))
    for name in (".nvmrc", ".node-version"):
        if root.exists(name):
            a.runtime.append(Fact(f"Node {_read(root, name).strip()}", f"{name}:1"))


def _go(root: TreeBase, a: Analysis) -> None:
    text = _read(root, "go.mod")
    if not text:
        return
    a.build.append(Fact("go modules", "go.mod:1"))
    a.test.append(Fact("go test ./...", "go.mod:1"))
    version = re.search(r"^go (\S+)", text, re.M)
    if version:
        a.runtime.append(Fact(f"Go {version.group(1)}", f"go.mod:{_line_of(text, version.group(0))}"))
    for config in (".golangci.yml", ".golangci.yaml", ".golangci.toml"):
        if root.exists(config):
            a.lint.append(Fact("golangci-lint run", f"{config}:1"))


def _rust(root: TreeBase, a: Analysis) -> None:
    text = _read(root, "Cargo.toml")
    if not text:
        return
    a.build.append(Fact("cargo", "Cargo.toml:1"))
    a.test.append(Fact("cargo test", "Cargo.toml:1"))
    a.lint += [Fact("cargo clippy", "Cargo.toml:1"), Fact("cargo fmt --check", "Cargo.toml:1")]
    for name in ("rust-toolchain.toml", "rust-toolchain"):
        toolchain = _read(root, name)
        if toolchain:
            channel = re.search(r'channel\s*=\s*"([^"]+)"', toolchain)
            a.runtime.append(Fact(f"Rust {channel.group(1) if channel else toolchain.strip()}", f"{name}:1"))


def _make(root: TreeBase, a: Analysis) -> None:
    for name, runner in (("Makefile", "make"), ("justfile", "just")):
        text = _read(root, name)
        for target in re.findall(r"^([A-Za-z][\w-]*):", text, re.M):
            fact = Fact(f"{runner} {target}", f"{name}:{_line_of(text, target + ':')}")
            if target in ("test", "tests", "check-tests"):
                a.test.append(fact)
            elif target in ("lint", "fmt", "format", "typecheck", "check"):
                a.lint.append(fact)


def _ci(root: TreeBase, a: Analysis) -> None:
    workflows = [e.path for e in root.list_dir(".github/workflows") if e.kind == "file" and fnmatch.fnmatch(e.name, "*.y*ml")]
    for rel in [*workflows, ".gitlab-ci.yml"]:
        text = _read(root, rel)
        if not text:
            continue
        for line_no, line in enumerate(text.splitlines(), 1):
            stripped = line.strip().removeprefix("- ").removeprefix("run:").strip().strip("'\"")
            if (
                not stripped
                or stripped.startswith(("#", "uses:", "name:", "if:", "with:", "key:"))
                or re.match(r"^[\w-]+:", stripped)  # a YAML key, not a command
                or "install" in stripped
                or "${{" in stripped
            ):
                continue
            if TEST_WORDS.search(stripped) and len(stripped) < 160:
                a.test.append(Fact(stripped, f"{rel}:{line_no}"))
            elif LINT_WORDS.search(stripped) and len(stripped) < 160:
                a.lint.append(Fact(stripped, f"{rel}:{line_no}"))
    if root.exists(".pre-commit-config.yaml"):
        a.lint.append(Fact("pre-commit run --all-files", ".pre-commit-config.yaml:1"))


def _layout(root: TreeBase, a: Analysis, files: list) -> None:  # noqa: ANN001 - tree entries
    for name in ("src", "lib", "pkg", "cmd", "internal", "app", "crates", "packages"):
        if root.is_dir(name):
            a.source_roots.append(f"{name}/")
    for name in ("tests", "test", "spec", "__tests__", "e2e"):
        if root.is_dir(name):
            a.test_roots.append(f"{name}/")
    if any(p.name.endswith("_test.go") for p in files):
        a.test_roots.append("*_test.go next to the code")
    for name in ("vendor", "third_party", "generated", "gen", "dist", "build"):
        if root.is_dir(name):
            a.boundaries.append(Fact(f"{name}/ is generated or vendored; do not edit by hand", f"{name}/:1"))


def _workspace_members(root: TreeBase) -> list[str]:
    members: list[str] = []
    pnpm = _read(root, "pnpm-workspace.yaml")
    if pnpm:
        try:
            members += list((yaml.safe_load(pnpm) or {}).get("packages") or [])
        except yaml.YAMLError:
            pass
    try:
        package = json.loads(_read(root, "package.json") or "{}")
        workspaces = package.get("workspaces")
        members += workspaces if isinstance(workspaces, list) else list((workspaces or {}).get("packages") or [])
    except (ValueError, AttributeError):
        pass
    cargo = _read(root, "Cargo.toml")
    if "[workspace]" in cargo:
        try:
            members += tomllib.loads(cargo).get("workspace", {}).get("members", [])
        except tomllib.TOMLDecodeError:
            pass
    found: list[str] = []
    for pattern in members:
        if not isinstance(pattern, str):
            continue
        for match in root.glob(pattern.rstrip("/")):
            if match and root.is_dir(match) and match not in found:
                found.append(match)
    for sub in root.list_dir("") if not found else []:
        # A polyglot monorepo without a workspace file: top-level folders with their own manifest.
        if sub.kind == "dir" and sub.name not in SKIP_DIRS and any(root.exists(f"{sub.path}/{m}") for m in ("pyproject.toml", "package.json", "go.mod", "Cargo.toml")):
            found.append(sub.path)
    return found


def analyze(source: Path | TreeBase, depth: int = 0) -> Analysis:
    """Facts about a repository: a folder on disk (read without following symlinks) or a tree such
    as a commit's. Nothing is executed and no file is read past its size bound."""
    root = WorkTree(source.resolve()) if isinstance(source, Path) else source
    files = root.files("", frozenset(SKIP_DIRS), MAX_FILES)
    a = Analysis(root=str(source.resolve()) if isinstance(source, Path) else root.describe(), languages=_languages(files))
    for detector in (_python, _node, _go, _rust, _make, _ci):
        detector(root, a)
    _layout(root, a, files)
    if depth == 0:
        for member in _workspace_members(root):
            package = analyze(root.sub(member), depth + 1)
            package.root = member
            a.packages.append(package)
    # Same command from two places: keep the first evidence.
    for name in ("test", "lint", "build", "runtime"):
        unique: dict[str, Fact] = {}
        for fact in getattr(a, name):
            unique.setdefault(fact.value, fact)
        setattr(a, name, list(unique.values()))
    return a
