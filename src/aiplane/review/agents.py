"""Reviewer agent definitions: markdown files with frontmatter, shipped as package data.

A repository may add agents or replace shipped ones (same name) with files in `.aiplane/agents/`,
read from a trusted tree: in CI the base commit, so a change cannot redefine its own reviewers.
A repository file that is broken, oversized or not a regular file is skipped with a visible
problem; the shipped agents and every other check still run.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiplane.frontmatter import load_yaml, split_frontmatter
from aiplane.repository.tree import RepoTree
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
        data = load_yaml(front) or {}
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


REPO_AGENTS_DIR = ".aiplane/agents"
MAX_AGENT_BYTES = 64 * 1024
MAX_REPO_AGENTS = 50


@dataclass
class AgentSet:
    agents: dict[str, AgentSpec]
    # Repository agent files that were skipped, each a sentence for the review's notices.
    problems: list[str] = field(default_factory=list)


@cache
def shipped_agents() -> tuple[AgentSpec, ...]:
    shipped = resources.files("aiplane.review").joinpath("agents")
    return tuple(
        parse_agent(entry.read_text(encoding="utf-8"), f"aiplane/review/agents/{entry.name}")
        for entry in sorted(shipped.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".md")
    )


def load_agents(tree: RepoTree | None = None) -> AgentSet:
    """The shipped agents, plus the repository's from `tree` (its `.aiplane/agents/*.md`)."""
    result = AgentSet({spec.name: spec for spec in shipped_agents()})
    if tree is None:
        return result
    entries = [e for e in tree.list_dir(REPO_AGENTS_DIR) if e.name.endswith(".md")]
    if len(entries) > MAX_REPO_AGENTS:
        result.problems.append(f"{REPO_AGENTS_DIR} has {len(entries)} agent files; only the first {MAX_REPO_AGENTS} were read.")
    for entry in entries[:MAX_REPO_AGENTS]:
        if entry.kind != "file":
            result.problems.append(f"Repository agent {entry.path} is not a regular file (a {entry.kind}); it was ignored.")
            continue
        text = tree.read_text(entry.path, MAX_AGENT_BYTES)
        if text is None:
            result.problems.append(f"Repository agent {entry.path} is unreadable, not UTF-8 or larger than "
                                   f"{MAX_AGENT_BYTES // 1024} KiB; it was ignored.")
            continue
        try:
            spec = parse_agent(text, entry.path)
        except AgentError as exc:
            result.problems.append(f"Repository agent {str(exc)[:300]}; it was ignored and the review ran without it.")
            continue
        result.agents[spec.name] = spec
    return result


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
