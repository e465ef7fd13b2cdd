"""Running one reviewer agent: read-only tools confined to the checkout, structured findings out."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.usage import UsageLimits

from aiplane.llm.client import ModelHandle
from aiplane.repository import git
from aiplane.repository.tree import GitTree, clean_path
from aiplane.review.agents import AgentSpec
from aiplane.review.report import Finding
from aiplane.review.sanitize import safe_path, strip_boundary_tags

MAX_READ_BYTES = 64 * 1024
# A file is read whole from git objects to cut a window from it; past this, grep is the tool.
MAX_FILE_READ_BYTES = 4 * 1024 * 1024
MAX_GREP_MATCHES = 50
MAX_GREP_OUTPUT = 2 * 1024 * 1024
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
    """What a reviewer may read: its patches, and the head commit's files through git objects only.

    Never the checkout on disk: the CI checkout holds `.git/config` (with the job's token) and
    whatever symlinks the change adds; a commit's tree has neither a token nor a way out.
    """

    repo: Path
    head: str
    patches: dict[str, str]
    _tree: GitTree | None = field(default=None, repr=False)

    @property
    def tree(self) -> GitTree:
        if self._tree is None:
            self._tree = GitTree(self.repo, self.head)
        return self._tree

    def changed(self, path: str) -> str | None:
        """The changed file a reviewer means: by its path, or as the prompt showed it (`safe_path`)."""
        if path in self.patches:
            return path
        return next((p for p in self.patches if safe_path(p) == path), None)

    def scoped(self, paths: list[str]) -> Workspace:
        return Workspace(self.repo, self.head, {p: self.patches[p] for p in paths}, self._tree)


def _clean(path: str) -> str:
    clean = clean_path(path.removeprefix("./"))
    if clean is None:
        raise ModelRetry(f"{safe_path(path)} is not a path inside the repository")
    return clean


def _tools(spec: AgentSpec):  # noqa: ANN202 - pydantic-ai tool callables
    def read_patch(ctx: RunContext[Workspace], path: str) -> str:
        """The unified diff of one changed file you were given."""
        found = ctx.deps.changed(path)
        if found is None:
            raise ModelRetry(f"no patch for {safe_path(path)}; yours are: {', '.join(sorted(safe_path(p) for p in ctx.deps.patches))}")
        return strip_boundary_tags(ctx.deps.patches[found][:MAX_READ_BYTES])  # cut, then strip: no half tags

    def read_file(ctx: RunContext[Workspace], path: str, start: int = 1, end: int = 400) -> str:
        """Lines start..end (1-based) of a file at the reviewed commit."""
        clean, tree = _clean(path), ctx.deps.tree
        kind = tree.kind(clean)
        if kind == "symlink":
            target = tree.symlink_target(clean) or "?"
            return f"{safe_path(clean)} is a symbolic link to {safe_path(target)!r}; links are not followed."
        if kind != "file":
            raise ModelRetry(f"{safe_path(clean)} is {'a directory' if kind == 'dir' else 'not a file'} at the reviewed commit")
        data = tree.read_bytes(clean, MAX_FILE_READ_BYTES)
        if data is None:
            raise ModelRetry(f"{safe_path(clean)} is larger than {MAX_FILE_READ_BYTES // (1024 * 1024)} MiB; use grep on it")
        lines = data.decode("utf-8", "replace").splitlines()
        first = max(start, 1)
        chunk = lines[first - 1 : max(end, first)]
        text = "\n".join(f"{i}: {line}" for i, line in enumerate(chunk, start=first))[:MAX_READ_BYTES]
        return strip_boundary_tags(text)

    def grep(ctx: RunContext[Workspace], pattern: str, path_glob: str = "*") -> str:
        """Lines matching a regular expression in the reviewed commit's files (at most 50)."""
        head = ctx.deps.head
        try:
            out = git.run(ctx.deps.repo, "grep", "-n", "-I", "-E", "--full-name", "-e", pattern, head, "--", path_glob,
                          timeout=20, max_output=MAX_GREP_OUTPUT, truncate=True, check=False)
        except git.GitError as exc:
            raise ModelRetry(f"grep failed ({exc}); use a narrower pattern or path_glob") from None
        lines = [line.removeprefix(f"{head}:") for line in out.decode("utf-8", "replace").splitlines()]
        shown = "\n".join(lines[:MAX_GREP_MATCHES]) + (f"\n... {len(lines) - MAX_GREP_MATCHES} more" if len(lines) > MAX_GREP_MATCHES else "")
        return strip_boundary_tags(shown)

    def list_dir(ctx: RunContext[Workspace], path: str = ".") -> str:
        """Entries of a directory at the reviewed commit."""
        clean, tree = _clean(path), ctx.deps.tree
        if tree.kind(clean) != "dir":
            raise ModelRetry(f"{safe_path(clean)} is not a directory at the reviewed commit")
        suffix = {"dir": "/", "symlink": " (symbolic link, not followed)", "submodule": " (submodule)"}
        return "\n".join(safe_path(e.name) + suffix.get(e.kind, "") for e in tree.list_dir(clean))

    available = {"read_patch": read_patch, "read_file": read_file, "grep": grep, "list_dir": list_dir}
    return [available[name] for name in spec.tools]


def instructions(spec: AgentSpec, notes: str = "") -> str:
    """The system message: only what we wrote or the operator/base commit trusts; never the change's text."""
    extra = f"\n\n{notes}" if notes else ""
    return f"{OUTPUT_RULES}\nYou are the {spec.name} reviewer: {spec.description}\n\n{spec.prompt}{extra}"


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
    # The change (shared by every reviewer, so it is a common prefix) then this reviewer's patches:
    # all of it in the user turn, as data.
    if inline_patches:
        own = "The patches:\n<mr_input>\n" + "\n".join(workspace.patches[p] for p in mine) + "\n</mr_input>"
        # Patches were stripped whole when written, so nothing here was cut after stripping.
    else:
        own = "Your patches (read them with read_patch):\n" + "\n".join(f"- {safe_path(p)}" for p in mine)
    prompt = f"{shared_context}\n\n{own}"
    scoped = workspace.scoped(mine)
    budget = handle.endpoint.max_output_tokens
    last_error = None
    usage_total = AgentRun(spec.name, handle.label, [])
    for attempt in range(2):
        # No in-run output repair: a cut-off or broken answer ends the run, and the retry below
        # asks again with twice the token budget, which is what a truncation needs.
        agent = Agent(
            handle.model,
            output_type=ReviewerOutput,
            instructions=instructions(spec, notes),
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
        usage_total.findings = [_to_finding(f, spec, path) for f in result.output.findings if (path := scoped.changed(f.file))]
        return usage_total
    usage_total.error = last_error
    return usage_total


def _to_finding(out: FindingOut, spec: AgentSpec, path: str) -> Finding:
    # Findings outside the changed files were dropped: reviewers judge the change, not the repo.
    return Finding(
        file=path,
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
