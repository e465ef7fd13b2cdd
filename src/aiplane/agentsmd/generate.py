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


def _section(a: Analysis, heading_level: str = "##") -> list[str]:
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


def generate(root: Path, catalog: dict[str, str] | None = None) -> tuple[Analysis, str]:
    analysis = analyze(root)
    text = render(analysis, root.resolve().name, catalog)
    verify_commands(text, analysis)
    return analysis, text


@dataclass
class Staleness:
    stale_commands: list[str] = field(default_factory=list)
    missing_paths: list[str] = field(default_factory=list)
    touched_watched: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_commands or self.missing_paths or self.touched_watched)


def check(root: Path, base: str | None = None) -> Staleness:
    text = (root / "AGENTS.md").read_text(encoding="utf-8")
    analysis = analyze(root)
    result = Staleness()
    allowed = analysis.commands()
    result.stale_commands = [c for c in commands_in(text) if c not in allowed]
    for code in _CODE.findall(text):
        candidate = code.strip().rstrip("/")
        if ("/" in candidate or candidate.endswith((".py", ".ts", ".go", ".rs", ".toml", ".json", ".md"))) and " " not in candidate and "*" not in candidate:
            if not (root / candidate).exists():
                result.missing_paths.append(code.strip())
    if base:
        changed = subprocess.run(["git", "-C", str(root), "diff", "--name-only", f"{base}...HEAD"], capture_output=True, text=True, timeout=60)
        referenced = {c.strip().rstrip("/") for c in _CODE.findall(text)}
        for path in changed.stdout.splitlines():
            if any(path == w or path.startswith(w) for w in WATCHED) or any(path == r or path.startswith(r + "/") for r in referenced):
                result.touched_watched.append(path)
    return result
