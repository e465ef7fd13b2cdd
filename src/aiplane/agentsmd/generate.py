"""Rendering AGENTS.md from verified facts, and checking an existing one for staleness.

Every command in the output must come from the analysis; `verify_commands` enforces that on any
text, including a model's phrasing, so nothing invented reaches the file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aiplane.agentsmd.analyze import Analysis, analyze
from aiplane.repository import git
from aiplane.repository.tree import TreeBase, WorkTree

MAX_WORDS = 400
_CODE = re.compile(r"`([^`\n]+)`")
_COMMAND_START = re.compile(r"^(uv|poetry|pdm|pytest|python|pip|npm|pnpm|yarn|bun|npx|go|cargo|make|just|tox|nox|ruff|mypy|mvn|gradle|\./gradlew|golangci-lint|pre-commit|prek|eslint|tsc)\b")
WATCHED = ("pyproject.toml", "package.json", "pnpm-workspace.yaml", "go.mod", "Cargo.toml", "Makefile", "justfile",
           "tox.ini", "noxfile.py", "ruff.toml", ".pre-commit-config.yaml", ".golangci.yml", ".github/workflows/", ".gitlab-ci.yml")


class InventedCommand(Exception):
    def __init__(self, commands: list[str]) -> None:
        super().__init__(f"commands not found by the analysis: {', '.join(commands)}")
        self.commands = commands


def commands_in(text: str) -> list[str]:
    return [c.strip() for c in _CODE.findall(text) if _COMMAND_START.match(c.strip())]


def verify_commands(text: str, analysis: Analysis) -> None:
    allowed = analysis.commands()
    invented = [c for c in commands_in(text) if c not in allowed]
    if invented:
        raise InventedCommand(invented)


def _section(a: Analysis) -> list[str]:
    lines = []
    runtime = ", ".join(f.value for f in a.runtime) or ", ".join(a.languages) or "unknown"
    tools = ", ".join(f.value for f in a.build)
    lines.append(f"- Runtime: {runtime}" + (f"; tools: {tools}" if tools else ""))
    if a.test:
        lines.append("- Test: " + "; ".join(f"`{f.value}`" for f in a.test[:3]))
    if a.lint:
        lines.append("- Lint/format: " + "; ".join(f"`{f.value}`" for f in a.lint[:4]))
    return lines


def render(a: Analysis, name: str, catalog: dict[str, str] | None = None) -> str:
    out = [f"# AGENTS.md — {name}", "", "## Repository"]
    out += _section(a)
    for package in a.packages:
        out.append(f"- `{package.root}/`: " + "; ".join(line.removeprefix("- ") for line in _section(package)))
    out += ["", "## How to navigate"]
    if a.source_roots:
        out.append("- Source: " + ", ".join(f"`{r}`" for r in a.source_roots))
    if a.test_roots:
        out.append("- Tests: " + ", ".join(f"`{r}`" for r in a.test_roots))
    if a.packages:
        out.append("- Packages: " + ", ".join(f"`{p.root}/`" for p in a.packages) + "; run commands from the package folder.")
    out += ["", "## Conventions", "- Run the test and lint commands above before proposing a change; keep them passing."]
    out += ["", "## Boundaries"]
    out += [f"- {b.value}" for b in a.boundaries] or ["- Do not commit secrets; configuration comes from the environment."]
    if catalog:
        out += ["", "## Dependencies"]
        out += [f"- {k}: {v}" for k, v in catalog.items()]
    text = "\n".join(out) + "\n"
    words = len(text.split())
    if words > MAX_WORDS:
        # Drop per-package lines first: they are the bulk in big monorepos.
        keep = [line for line in out if not line.startswith("- `") or "/`:" not in line]
        text = "\n".join(keep) + f"\n\n_{len(a.packages)} packages; see each package's own AGENTS.md._\n"
    return text


PHRASE_PROMPT = (
    "Improve the wording of this AGENTS.md for a coding agent. Keep every fact and every command in "
    "backticks exactly as written; add no commands, no project overview and nothing from a README; "
    "keep the section headings; stay under 400 words. Answer with the file only.\n\n"
)


def generate(root: Path, catalog: dict[str, str] | None = None) -> tuple[Analysis, str]:
    analysis = analyze(root)
    text = render(analysis, root.resolve().name, catalog)
    verify_commands(text, analysis)
    return analysis, text


def phrase(text: str, analysis: Analysis, model) -> tuple[str, str | None]:  # noqa: ANN001 - a pydantic-ai model
    """Let a model reword the verified draft; keep the draft if the result adds a command or grows too long."""
    from pydantic_ai import Agent

    try:
        result = Agent(model).run_sync(PHRASE_PROMPT + text)
        phrased = str(result.output).strip() + "\n"
    except Exception as exc:  # noqa: BLE001 - the deterministic draft is always good enough
        return text, f"the model did not answer ({exc.__class__.__name__}); kept the template"
    try:
        verify_commands(phrased, analysis)
    except InventedCommand as exc:
        return text, f"rejected the model's version: {exc}"
    if len(phrased.split()) > MAX_WORDS:
        return text, "rejected the model's version: longer than the word limit"
    return phrased, None


def catalog_facts(root: Path, index, ref: str | None = None) -> dict[str, str]:  # noqa: ANN001 - a catalog index
    """Owner, system and neighbours of the repository's catalog entity: `ref` when known, else the
    entity whose source location matches the git remote."""
    from aiplane.catalog import tools

    target = ref
    if target is None:
        remote = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=30)
        target = remote.stdout.strip() if remote.returncode == 0 and remote.stdout.strip() else root.resolve().name
    try:
        owned = tools.who_owns(index, target)
    except tools.ToolError:
        return {}
    ref = owned["entity"]["ref"]
    facts = {"Catalog entity": f"{ref} (evidence: catalog)"}
    if owned["owners"]:
        facts["Owner"] = ", ".join(o["ref"] for o in owned["owners"])
    if owned["entity"].get("system"):
        facts["System"] = owned["entity"]["system"]
    key = ref.lower()
    depends = [h.ref for h in index.dependencies(key, 1)]
    dependents = [h.ref for h in index.dependents(key, 1)]
    if depends:
        facts["Depends on"] = ", ".join(depends[:10])
    if dependents:
        facts["Used by"] = ", ".join(dependents[:10])
    return facts


@dataclass
class Staleness:
    stale_commands: list[str] = field(default_factory=list)
    missing_paths: list[str] = field(default_factory=list)
    touched_watched: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_commands or self.missing_paths or self.touched_watched)


MAX_AGENTS_MD_BYTES = 1024 * 1024


def check(source: Path | TreeBase, base: str | None = None, changed: list[str] | None = None) -> Staleness:
    """What AGENTS.md states that is no longer true, in a folder (no-follow reads) or a tree such as
    a commit's. `changed` (or, for a git folder, the files changed since `base`) adds the files
    AGENTS.md depends on that moved."""
    tree = WorkTree(source) if isinstance(source, Path) else source
    text = tree.read_text("AGENTS.md", MAX_AGENTS_MD_BYTES, errors="replace") or ""
    analysis = analyze(tree)
    result = Staleness()
    allowed = analysis.commands()
    result.stale_commands = [c for c in commands_in(text) if c not in allowed]
    for code in _CODE.findall(text):
        candidate = code.strip().rstrip("/")
        if ("/" in candidate or candidate.endswith((".py", ".ts", ".go", ".rs", ".toml", ".json", ".md"))) and " " not in candidate and "*" not in candidate:
            if not tree.exists(candidate):
                result.missing_paths.append(code.strip())
    if changed is None and base and isinstance(source, Path):
        changed = _changed_since(source, base)
    if changed:
        referenced = {c.strip().rstrip("/") for c in _CODE.findall(text)}
        for path in changed:
            if any(path == w or path.startswith(w) for w in WATCHED) or any(path == r or path.startswith(r + "/") for r in referenced):
                result.touched_watched.append(path)
    return result


def _changed_since(root: Path, base: str) -> list[str]:
    """Files changed between the merge base with `base` and HEAD (`git diff base...HEAD`)."""
    try:
        base_sha, head_sha = git.resolve_commit(root, base), git.resolve_commit(root, "HEAD")
        if not base_sha or not head_sha:
            return []
        out = git.run(root, "diff", "--name-only", "-z", "--no-renames", "--end-of-options", f"{base_sha}...{head_sha}", timeout=60)
    except git.GitError:
        return []
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
