"""Reviewer agent definitions: markdown files with frontmatter, shipped as package data.

A repository may add agents or replace shipped ones (same name) with files in `.aiplane/agents/`.
"""

from __future__ import annotations

import fnmatch
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiplane.frontmatter import split_frontmatter
from aiplane.review.changes import ChangeSet
from aiplane.review.tiering import Tier

ToolName = Literal["read_file", "grep", "list_dir", "read_patch"]


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=1, max_length=300)
    model_tier: Literal["coordinator", "specialist", "light"] = "specialist"
    globs: list[str] = Field(default_factory=lambda: ["*"])
    tools: list[ToolName] = Field(default_factory=list)
    tiers: list[Literal["trivial", "lite", "full"]] = Field(default_factory=lambda: ["full"])
    category: str = "quality"
    prompt: str = ""

    def matches(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], g) for g in self.globs)


class AgentError(Exception):
    pass


def parse_agent(text: str, origin: str) -> AgentSpec:
    try:
        front, body, _ = split_frontmatter(text)
        if front is None:
            raise ValueError("an agent file starts with YAML frontmatter between '---' lines")
        data = yaml.safe_load(front) or {}
    except ValueError as exc:
        raise AgentError(f"{origin}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at frontmatter line {mark.line + 1}" if mark else ""
        raise AgentError(f"{origin}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise AgentError(f"{origin}: frontmatter must be a mapping")
    try:
        spec = AgentSpec(**data, prompt=body.strip() + "\n")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise AgentError(f"{origin}: {problems}") from None
    if "What to flag" not in spec.prompt or "What NOT to flag" not in spec.prompt:
        raise AgentError(f"{origin}: the prompt needs a 'What to flag' and a 'What NOT to flag' section")
    return spec


def load_agents(repo: Path | None = None) -> dict[str, AgentSpec]:
    agents: dict[str, AgentSpec] = {}
    shipped = resources.files("aiplane.review").joinpath("agents")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            spec = parse_agent(entry.read_text(encoding="utf-8"), f"aiplane/review/agents/{entry.name}")
            agents[spec.name] = spec
    local = (repo / ".aiplane" / "agents") if repo else None
    if local and local.is_dir():
        for path in sorted(local.glob("*.md")):
            spec = parse_agent(path.read_text(encoding="utf-8"), str(path.relative_to(repo)))
            agents[spec.name] = spec
    return agents


def select(agents: dict[str, AgentSpec], tier: Tier, change: ChangeSet) -> list[AgentSpec]:
    """Agents for a tier: trivial = the generalist; lite = quality + docs + the best-matching other; full = all."""
    paths = [f.path for f in change.reviewable]

    def relevant(spec: AgentSpec) -> int:
        return sum(1 for p in paths if spec.matches(p))

    candidates = [a for a in agents.values() if tier in a.tiers]
    if tier != "lite":
        return sorted((a for a in candidates if relevant(a)), key=lambda a: a.name)
    core = [a for a in candidates if a.name in ("code-quality", "docs") and relevant(a)]
    others = sorted((a for a in candidates if a not in core and relevant(a)), key=lambda a: (-relevant(a), a.name))
    return sorted(core + others[:1], key=lambda a: a.name)
