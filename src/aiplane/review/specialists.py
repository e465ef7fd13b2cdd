"""Running one reviewer agent: read-only tools confined to the checkout, structured findings out."""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.usage import UsageLimits

from aiplane.llm.client import ModelHandle
from aiplane.review.agents import AgentSpec
from aiplane.review.report import Finding

MAX_READ_BYTES = 64 * 1024
MAX_GREP_MATCHES = 50
OUTPUT_RULES = resources.files("aiplane.review").joinpath("prompts/output-rules.md").read_text(encoding="utf-8")


class FindingOut(BaseModel):
    file: str
    start_line: int = Field(ge=1)
    end_line: int | None = Field(default=None, ge=1)
    severity: Literal["critical", "warning", "suggestion", "nit"]
    title: str = Field(min_length=1, max_length=200)
    explanation: str = Field(min_length=1, max_length=2000)
    suggestion: str | None = Field(default=None, max_length=2000)
    confidence: float = Field(ge=0, le=1)
    rule_id: str | None = None


class ReviewerOutput(BaseModel):
    findings: list[FindingOut] = Field(default_factory=list)


@dataclass
class Workspace:
    repo: Path
    patches: dict[str, str]

    def resolve(self, path: str) -> Path:
        target = (self.repo / path).resolve()
        if target != self.repo and self.repo not in target.parents:
            raise ModelRetry(f"{path} is outside the repository")
        return target


def _tools(spec: AgentSpec):  # noqa: ANN202 - pydantic-ai tool callables
    def read_patch(ctx: RunContext[Workspace], path: str) -> str:
        """The unified diff of one changed file you were given."""
        if path not in ctx.deps.patches:
            raise ModelRetry(f"no patch for {path}; yours are: {', '.join(sorted(ctx.deps.patches))}")
        return ctx.deps.patches[path][:MAX_READ_BYTES]

    def read_file(ctx: RunContext[Workspace], path: str, start: int = 1, end: int = 400) -> str:
        """Lines start..end (1-based) of a file in the checkout."""
        target = ctx.deps.resolve(path)
        if not target.is_file():
            raise ModelRetry(f"{path} is not a file")
        lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
        chunk = lines[max(start, 1) - 1 : max(end, start)]
        return "\n".join(f"{i}: {line}" for i, line in enumerate(chunk, start=max(start, 1)))[:MAX_READ_BYTES]

    def grep(ctx: RunContext[Workspace], pattern: str, path_glob: str = "*") -> str:
        """Lines matching a regular expression in tracked files (at most 50)."""
        try:
            result = subprocess.run(
                ["git", "-C", str(ctx.deps.repo), "grep", "-n", "-I", "-E", "-e", pattern, "--", path_glob],
                capture_output=True, text=True, timeout=20,
            )
        except subprocess.TimeoutExpired:
            raise ModelRetry("grep took too long; use a narrower pattern or path_glob") from None
        lines = result.stdout.splitlines()
        return "\n".join(lines[:MAX_GREP_MATCHES]) + (f"\n... {len(lines) - MAX_GREP_MATCHES} more" if len(lines) > MAX_GREP_MATCHES else "")

    def list_dir(ctx: RunContext[Workspace], path: str = ".") -> str:
        """Entries of a directory in the checkout."""
        target = ctx.deps.resolve(path)
        if not target.is_dir():
            raise ModelRetry(f"{path} is not a directory")
        return "\n".join(sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir() if p.name != ".git"))

    available = {"read_patch": read_patch, "read_file": read_file, "grep": grep, "list_dir": list_dir}
    return [available[name] for name in spec.tools]


def instructions(spec: AgentSpec, shared_context: str, notes: str = "") -> str:
    # The rules and the shared context come first and are identical for every reviewer, so the
    # provider's prompt cache serves that prefix; only the reviewer's own part follows.
    extra = f"\n\n{notes}" if notes else ""
    return f"{OUTPUT_RULES}\n{shared_context}\n\nYou are the {spec.name} reviewer: {spec.description}\n\n{spec.prompt}{extra}"


@dataclass
class AgentRun:
    agent: str
    model: str
    findings: list[Finding]
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    error: str | None = None


async def run_specialist(
    spec: AgentSpec,
    handle: ModelHandle,
    shared_context: str,
    workspace: Workspace,
    inline_patches: bool = False,
    notes: str = "",
) -> AgentRun:
    """One agent run. A truncated or malformed answer is retried with a larger budget, then dropped.

    With `inline_patches` (trivial changes) the patches go into the prompt, so one model call suffices.
    """
    mine = sorted(p for p in workspace.patches if spec.matches(p))
    if inline_patches:
        prompt = "The patches:\n" + "\n".join(workspace.patches[p] for p in mine)
    else:
        prompt = "Your patches (read them with read_patch):\n" + "\n".join(f"- {p}" for p in mine)
    scoped = Workspace(workspace.repo, {p: workspace.patches[p] for p in mine})
    budget = handle.endpoint.max_output_tokens
    last_error = None
    usage_total = AgentRun(spec.name, handle.label, [])
    for attempt in range(2):
        # No in-run output repair: a cut-off or broken answer ends the run, and the retry below
        # asks again with twice the token budget, which is what a truncation needs.
        agent = Agent(
            handle.model,
            output_type=ReviewerOutput,
            instructions=instructions(spec, shared_context, notes),
            tools=_tools(spec),
            retries={"tools": 2, "output": 0},
            name=spec.name,
        )
        try:
            result = await agent.run(
                prompt,
                deps=scoped,
                model_settings={"max_tokens": budget * (2**attempt), "temperature": 0, "timeout": handle.endpoint.timeout_seconds},
                usage_limits=UsageLimits(request_limit=25),
            )
        except UnexpectedModelBehavior as exc:
            last_error = f"unusable model output ({exc.message[:120]})"
            continue
        usage = result.usage()
        usage_total.input_tokens += usage.input_tokens
        usage_total.output_tokens += usage.output_tokens
        usage_total.cached_tokens += usage.cache_read_tokens
        usage_total.requests += usage.requests
        usage_total.findings = [_to_finding(f, spec, scoped) for f in result.output.findings if _in_scope(f, scoped)]
        return usage_total
    usage_total.error = last_error
    return usage_total


def _in_scope(finding: FindingOut, workspace: Workspace) -> bool:
    # Findings outside the changed files are dropped: reviewers judge the change, not the repo.
    return finding.file in workspace.patches or any(fnmatch.fnmatch(finding.file, p) for p in workspace.patches)


def _to_finding(out: FindingOut, spec: AgentSpec, workspace: Workspace) -> Finding:
    return Finding(
        file=out.file,
        start_line=out.start_line,
        end_line=max(out.end_line or out.start_line, out.start_line),
        category=spec.category,
        severity=out.severity,
        title=out.title,
        explanation=out.explanation,
        suggestion=out.suggestion,
        confidence=out.confidence,
        rule_id=out.rule_id,
        source=spec.name,
    )
