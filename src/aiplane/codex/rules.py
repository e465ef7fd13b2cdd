"""Loading and validating codex rules: markdown files with YAML frontmatter, one rule per file."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aiplane.frontmatter import load_yaml, split_frontmatter
from aiplane.repository.tree import TreeBase, WorkTree

RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-\d{2,3}$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    languages: list[str] = Field(default_factory=list)
    globs: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class RegexCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regex: str
    message: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID.pattern)
    title: str = Field(min_length=3, max_length=120)
    statement: str = Field(min_length=10)
    rationale: str = Field(min_length=10)
    severity: Literal["critical", "warning", "suggestion", "nit"]
    scope: Scope
    owner: str = Field(min_length=1)
    lifecycle: Literal["draft", "active", "deprecated"] = "active"
    source: str = Field(min_length=1)
    domain: str = Field(default="general", pattern=r"^[a-z0-9][a-z0-9-]*$")
    check: RegexCheck | Literal["ai"] | None = None
    body: str = ""
    path: str = ""

    @field_validator("scope")
    @classmethod
    def _globs_are_sane(cls, scope: Scope) -> Scope:
        for glob in scope.globs:
            if not glob or glob.startswith("/") or ".." in glob.split("/") or glob.count("[") != glob.count("]"):
                raise ValueError(f"bad glob '{glob}' (relative, no '..', balanced brackets)")
        return scope

    def applies_to(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(name, g) for g in self.scope.globs)

    @property
    def deterministic(self) -> bool:
        return isinstance(self.check, RegexCheck)

    def link(self, base: str = "") -> str:
        return f"{base}{self.path}" if base else self.path


@dataclass
class CodexProblem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


@dataclass
class Codex:
    root: Path
    rules: list[Rule] = field(default_factory=list)
    problems: list[CodexProblem] = field(default_factory=list)

    def active(self) -> list[Rule]:
        return [r for r in self.rules if r.lifecycle == "active"]

    def for_paths(self, paths: list[str]) -> list[Rule]:
        return [r for r in self.active() if any(r.applies_to(p) for p in paths)]

    def by_domain(self) -> dict[str, list[Rule]]:
        domains: dict[str, list[Rule]] = {}
        for rule in sorted(self.rules, key=lambda r: (r.domain, r.id)):
            domains.setdefault(rule.domain, []).append(rule)
        return domains


MAX_RULE_BYTES = 256 * 1024


def load(root: Path | TreeBase) -> Codex:
    """Every rule file under `root`: a folder on disk, or a folder of a repository view (e.g. a base commit).

    Files are read as data: no symlink is followed, and a file over 256 KiB is a problem, not a rule.
    """
    tree = WorkTree(root) if isinstance(root, Path) else root
    codex = Codex(root=root if isinstance(root, Path) else Path(tree.describe()))
    if not tree.is_dir(""):
        codex.problems.append(CodexProblem(tree.describe(), "", "codex folder does not exist"))
        return codex
    seen: dict[str, str] = {}
    for entry in tree.files("", frozenset({".git", "node_modules"}), limit=20_000):
        rel = entry.path
        if not rel.endswith(".md"):
            continue
        name = rel.rsplit("/", 1)[-1]
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if name.lower() in ("readme.md", "skill.md"):
            continue
        text = tree.read_text(rel, MAX_RULE_BYTES)
        if text is None:
            codex.problems.append(CodexProblem(rel, "", f"cannot read file (not UTF-8, or larger than {MAX_RULE_BYTES // 1024} KiB)"))
            continue
        try:
            front, body, _ = split_frontmatter(text)
        except ValueError as exc:
            codex.problems.append(CodexProblem(rel, "", str(exc)))
            continue
        if front is None:
            codex.problems.append(CodexProblem(rel, "", "a rule file starts with YAML frontmatter between '---' lines"))
            continue
        try:
            data = load_yaml(front) or {}
        except yaml.YAMLError as exc:
            codex.problems.append(CodexProblem(rel, "", f"invalid YAML: {getattr(exc, 'problem', None) or exc}"))
            continue
        if not isinstance(data, dict):
            codex.problems.append(CodexProblem(rel, "", "frontmatter must be a mapping"))
            continue
        data.setdefault("domain", parent.split("/")[0] if parent else "general")
        try:
            rule = Rule(**data, body=body.strip(), path=rel)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                codex.problems.append(CodexProblem(rel, where, error["msg"].removeprefix("Value error, ")))
            continue
        if rule.id in seen:
            codex.problems.append(CodexProblem(rel, "id", f"duplicate rule id {rule.id} (also in {seen[rule.id]})"))
            continue
        seen[rule.id] = rel
        for target in _LINK.findall(body):
            if "://" in target or target.startswith("#") or target.startswith("mailto:"):
                continue
            linked = posixpath.normpath(posixpath.join(parent, target.split("#")[0]))
            if linked.startswith("../") or linked == ".." or not tree.exists(linked):
                codex.problems.append(CodexProblem(rel, "body", f"broken link to {target}"))
        if not re.match(r"^(https?://|rfc:|docs/|\.{0,2}/)", rule.source):
            codex.problems.append(CodexProblem(rel, "source", "must be a URL (https://...) or a repository path"))
        codex.rules.append(rule)
    return codex
