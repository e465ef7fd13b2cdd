"""Running one reviewer agent: read-only tools confined to the checkout, structured findings out.

Every reviewer of one review sends the same prefix, byte for byte, so a provider's prompt cache
serves it once and every later reviewer reads it at the cached rate:

1. the tool list: every reviewer gets all four tools; which ones a reviewer may use is checked
   inside each tool, never by leaving tools out (that would change the prefix);
2. the system message: the output rules, nothing else (never the change's text);
3. the first part of the first user turn: the change and its patches, as data inside boundary tags.

Then a cache breakpoint (Anthropic `cache_control`; OpenAI routes by `prompt_cache_key`), then
this reviewer's own part: its role, what to flag and not, its files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from aiplane.llm.chat import ModelError, Text, Usage, scrub_secret
from aiplane.llm.client import ModelHandle
from aiplane.llm.toolloop import RequestLimitReached, Tool, ToolRetry, Unusable, run_loop
from aiplane.repository import git
from aiplane.repository.tree import GitTree, clean_path
from aiplane.review.agents import AgentSpec
from aiplane.review.hunks import around_hunks, hunk_ranges
from aiplane.review.report import Finding
from aiplane.review.sanitize import safe_path, strip_boundary_tags

MAX_READ_BYTES = 64 * 1024
# A file is read whole from git objects to cut a window from it; past this, grep is the tool.
MAX_FILE_READ_BYTES = 4 * 1024 * 1024
MAX_GREP_MATCHES = 50
MAX_GREP_PATTERN = 512
BACK_REFERENCE = re.compile(r"\\[1-9]")
MAX_GREP_OUTPUT = 2 * 1024 * 1024
OUTPUT_RULES = resources.files("aiplane.review").joinpath("prompts/output-rules.md").read_text(encoding="utf-8")
ALL_TOOLS = ("read_patch", "read_file", "grep", "list_dir")
# read_file on an unchanged file without a range: its first lines.
DEFAULT_READ_LINES = 200


class FindingOut(BaseModel):
    file: str
    start_line: int = Field(ge=1)
    end_line: int | None = Field(default=None, ge=1)
    severity: Literal["critical", "warning", "suggestion", "nit"]
    title: str = Field(min_length=1, max_length=200)
    explanation: str = Field(min_length=1, max_length=2000)
    suggestion: str | None = Field(default=None, max_length=2000)
    confidence: float = Field(ge=0, le=1)
    rule_id: str | None = Field(default=None, max_length=64)


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
    # The tools this reviewer may use (all are offered, so every reviewer's tool list is the same).
    allowed: frozenset[str] = frozenset(ALL_TOOLS)
    # Past its budget a reviewer's tools are withdrawn and it must answer.
    budget: ReviewerBudget | None = None
    # Changed files whose whole patch is in the shared prefix: read_file does not repeat its lines.
    inlined: frozenset[str] = frozenset()
    # Changed files whose lines around the hunks are in the shared prefix too.
    surroundings: frozenset[str] = frozenset()

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

    def scoped(self, paths: list[str], allowed: frozenset[str] | None = None, budget: ReviewerBudget | None = None) -> Workspace:
        return Workspace(self.repo, self.head, {p: self.patches[p] for p in paths}, self._tree,
                         self.allowed if allowed is None else allowed, budget, self.inlined, self.surroundings)

    def hunks(self, path: str) -> list[tuple[int, int]]:
        """The head-side line ranges of a changed file's hunks."""
        found = self.changed(path)
        return hunk_ranges(self.patches[found]) if found is not None else []


@dataclass
class ReviewBudget:
    """Input tokens of the whole review, shared by its reviewers (one worker, one event loop)."""

    limit: int = 0  # 0: no limit
    spent: dict[str, int] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.spent.values())

    def exhausted(self) -> bool:
        return bool(self.limit) and self.total >= self.limit


@dataclass
class ReviewerBudget:
    agent: str
    limit: int = 0  # 0: no limit
    review: ReviewBudget | None = None
    cut: str | None = None  # "reviewer" or "review" once the budget made this reviewer answer early
    base: int = 0  # what this reviewer spent on models tried before this one

    def allows_more(self, input_tokens: int) -> bool:
        """Whether another tool round fits, given the input tokens this run has sent so far."""
        if self.review is not None:
            self.review.spent[self.agent] = self.base + input_tokens
        if self.limit and input_tokens >= self.limit:
            self.cut = self.cut or "reviewer"
        elif self.review is not None and self.review.exhausted():
            self.cut = self.cut or "review"
        if self.cut and self.review is not None:
            self.review.cut.add(self.agent)
        return self.cut is None


def _clean(path: str) -> str:
    clean = clean_path(path.removeprefix("./"))
    if clean is None:
        raise ToolRetry(f"{safe_path(path)} is not a path inside the repository")
    return clean


def _permitted(ws: Workspace, tool: str) -> None:
    if tool not in ws.allowed:
        raise ToolRetry(f"{tool} is not available to you; use {', '.join(sorted(ws.allowed)) or 'no tool'} or answer")


def _lines(numbered: list[str], first: int, last: int) -> list[str]:
    return [f"{i}: {numbered[i - 1]}" for i in range(first, last + 1)]


def read_patch(ws: Workspace, path: str) -> str:
    """The unified diff of one changed file you were given (the patches above may be cut short)."""
    _permitted(ws, "read_patch")
    found = ws.changed(path)
    if found is None:
        raise ToolRetry(f"no patch for {safe_path(path)}; yours are: {', '.join(sorted(safe_path(p) for p in ws.patches))}")
    return strip_boundary_tags(ws.patches[found][:MAX_READ_BYTES])  # cut, then strip: no half tags


def read_file(ws: Workspace, path: str, start: int | None = None, end: int | None = None) -> str:
    """Lines of a file at the reviewed commit, numbered. Without start and end, a changed file shows
    40 lines either side of each changed hunk, any other file its first 200 lines; give start and
    end (1-based, inclusive) for other lines."""
    _permitted(ws, "read_file")
    clean, tree = _clean(path), ws.tree
    kind = tree.kind(clean)
    if kind == "symlink":
        target = tree.symlink_target(clean) or "?"
        return f"{safe_path(clean)} is a symbolic link to {safe_path(target)!r}; links are not followed."
    if kind != "file":
        raise ToolRetry(f"{safe_path(clean)} is {'a directory' if kind == 'dir' else 'not a file'} at the reviewed commit")
    data = tree.read_bytes(clean, MAX_FILE_READ_BYTES)
    if data is None:
        raise ToolRetry(f"{safe_path(clean)} is larger than {MAX_FILE_READ_BYTES // (1024 * 1024)} MiB; use grep on it")
    lines = data.decode("utf-8", "replace").splitlines()
    total = len(lines)
    hunks = ws.hunks(clean) if start is None and end is None else []
    found = ws.changed(clean)
    if hunks and found in ws.surroundings and found in ws.inlined:
        shown = (f"({safe_path(clean)}: {total} lines. Its patch and the 40 lines around each hunk are in the first "
                 "message already; give start and end to read other lines.)")
    elif hunks:
        # The lines of a patch already in the prompt are not sent again: only what surrounds them.
        skip = found in ws.inlined
        parts = around_hunks(lines, hunks, skip)
        note = "; the lines of its hunks are in the patch above and not repeated" if skip else ""
        head = f"({safe_path(clean)}: {total} lines; 40 lines around each changed hunk{note}; gaps marked ...)"
        shown = head + "\n" + ("\n...\n".join(parts) if parts else "(nothing beyond the patch above)")
    else:
        first = max(start or 1, 1)
        last = min(max(end or first + DEFAULT_READ_LINES - 1, first), total)
        shown = "\n".join(_lines(lines, first, last)) if first <= total else f"({safe_path(clean)} has {total} lines)"
        if last < total and end is None:
            shown += f"\n... ({total} lines in all; ask for start and end to read more)"
    return strip_boundary_tags(shown[:MAX_READ_BYTES])


def grep(ws: Workspace, pattern: str, path_glob: str = "*") -> str:
    """Lines matching a regular expression in the reviewed commit's files (at most 50)."""
    _permitted(ws, "grep")
    # git grep -E is glibc's ERE: linear without back-references, exponential with them (a
    # pattern like (.*)(.*)\2\1z kept a core busy for 10 s a call).
    if len(pattern) > MAX_GREP_PATTERN:
        raise ToolRetry(f"the pattern is longer than {MAX_GREP_PATTERN} characters; use a shorter one")
    if BACK_REFERENCE.search(pattern):
        raise ToolRetry("back-references (\\1 ... \\9) are not supported; use a pattern without them")
    head = ws.head
    try:
        out = git.run(ws.repo, "grep", "-n", "-I", "-E", "--full-name", "-e", pattern, head, "--", path_glob,
                      timeout=20, max_output=MAX_GREP_OUTPUT, truncate=True, check=False)
    except git.GitError as exc:
        raise ToolRetry(f"grep failed ({exc}); use a narrower pattern or path_glob") from None
    lines = [line.removeprefix(f"{head}:") for line in out.decode("utf-8", "replace").splitlines()]
    shown = "\n".join(lines[:MAX_GREP_MATCHES]) + (f"\n... {len(lines) - MAX_GREP_MATCHES} more" if len(lines) > MAX_GREP_MATCHES else "")
    return strip_boundary_tags(shown)


def list_dir(ws: Workspace, path: str = ".") -> str:
    """Entries of a directory at the reviewed commit."""
    _permitted(ws, "list_dir")
    clean, tree = _clean(path), ws.tree
    if tree.kind(clean) != "dir":
        raise ToolRetry(f"{safe_path(clean)} is not a directory at the reviewed commit")
    suffix = {"dir": "/", "symlink": " (symbolic link, not followed)", "submodule": " (submodule)"}
    return "\n".join(safe_path(e.name) + suffix.get(e.kind, "") for e in tree.list_dir(clean))


_TOOLS = tuple(Tool.from_function(fn) for fn in (read_patch, read_file, grep, list_dir))
# Requests one reviewer run may make before it is given up.
REQUEST_LIMIT = 25


def tools() -> list[Tool]:
    """The same tools, in the same order, for every reviewer: part of the shared, cached prefix."""
    return list(_TOOLS)


def instructions() -> str:
    """The system message: only what we wrote; the same for every reviewer; never the change's text."""
    return OUTPUT_RULES.strip()


def reviewer_part(spec: AgentSpec, files: list[str], inlined: set[str], notes: str = "", with_tools: bool = True) -> str:
    """This reviewer's own part of the first user turn, after the shared prefix: trusted text (ours,
    the operator's or the base commit's), never the change's."""
    listed = "\n".join(f"- {safe_path(p)}" + ("" if p in inlined else " (patch not shown above: read it with read_patch)")
                       for p in files)
    usable = (", ".join(t for t in ALL_TOOLS if t in spec.tools) if with_tools else "") or "none: answer from the patches above"
    extra = f"\n\n{notes}" if notes else ""
    return (f"<reviewer_role>\nYou are the {spec.name} reviewer: {spec.description}\n\n{spec.prompt.strip()}{extra}\n\n"
            f"Tools you may use: {usable}.\nYour files (review only these):\n{listed}\n</reviewer_role>")


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
    budget_cut: str | None = None


async def run_specialist(
    spec: AgentSpec,
    handle: ModelHandle,
    shared_context: str,
    workspace: Workspace,
    inline_patches: bool = False,
    notes: str = "",
    *,
    inlined: set[str] | None = None,
    cache_key: str | None = None,
    budget: ReviewerBudget | None = None,
    on_first_response: Callable[[], None] | None = None,
    with_tools: bool = True,
) -> AgentRun:
    """One agent run. A truncated or malformed answer is retried with a larger budget, then dropped.

    `shared_context` is the shared first part of the user turn (the change, and the patches named in
    `inlined`). `inline_patches` is the older way to ask for every patch in the prompt: this
    reviewer's patches that the shared part does not hold are then appended to its own part.
    `on_first_response` is called once, when the first model response has arrived (the warm-up).
    Without `with_tools` (a trivial review) the reviewer answers in one call from what it was given.

    Caching: OpenAI routes requests with one `prompt_cache_key` to the same cache; Anthropic caches
    what precedes its breakpoints: one after the shared part, and one on the last block of each
    request, so a reviewer's later turns reuse its own earlier ones.
    """
    mine = sorted(p for p in workspace.patches if spec.matches(p))
    inlined = set(inlined or ())
    own = reviewer_part(spec, mine, inlined | (set(mine) if inline_patches else set()), notes, with_tools)
    if inline_patches and (missing := [p for p in mine if p not in inlined]):
        # Patches were stripped whole when written, so nothing here was cut after stripping.
        own = "Your patches:\n<mr_input>\n" + "\n".join(workspace.patches[p] for p in missing) + "\n</mr_input>\n\n" + own
    prompt = [Text(shared_context, cache_breakpoint=True), Text(own)]
    allowed = frozenset(t for t in spec.tools if t in ALL_TOOLS) if with_tools else frozenset()
    scoped = workspace.scoped(mine, allowed, budget)
    max_tokens = handle.endpoint.max_output_tokens
    last_error = None
    usage_total = AgentRun(spec.name, handle.label, [])
    notify = on_first_response

    def first_response() -> None:
        nonlocal notify
        if notify is not None:
            notify()
            notify = None

    # Past its budget a reviewer's tools are withdrawn, so the next answer must be the findings.
    offer = (lambda spent: budget.allows_more(spent)) if budget is not None else None
    try:
        for attempt in range(2):
            # A cut-off or broken answer ends the run, and the retry below asks again with twice
            # the token budget, which is what a truncation needs.
            usage = Usage()
            try:
                output = await run_loop(
                    handle.model, system=instructions(), prompt=prompt, tools=tools() if with_tools else [],
                    output=ReviewerOutput, deps=scoped, usage=usage, max_tokens=max_tokens * (2**attempt),
                    temperature=0, cache_key=cache_key if handle.endpoint.kind != "anthropic" else None,
                    offer=offer, on_response=first_response, request_limit=REQUEST_LIMIT,
                )
            except ModelError as exc:
                # The provider failed (after its retries): what was spent is kept and reported,
                # and the worker moves on to the next model in the chain.
                last_error = f"{exc.__class__.__name__}: {exc}"
                break
            except RequestLimitReached as exc:
                last_error = f"unusable model output ({exc})"  # asking again would only repeat the rounds
                break
            except Unusable as exc:
                last_error = f"unusable model output ({str(exc)[:120]})"
                continue
            except Exception as exc:  # noqa: BLE001 - anything else a hostile answer provokes ends this reviewer, not the review
                last_error = f"the reviewer failed ({exc.__class__.__name__})"
                break
            finally:
                usage_total.input_tokens += usage.input_tokens
                usage_total.output_tokens += usage.output_tokens
                usage_total.cached_tokens += usage.cache_read_tokens
                usage_total.requests += usage.requests
            key = handle.endpoint.api_key.get_secret_value() if handle.endpoint.api_key else None
            usage_total.findings = [_to_finding(f, spec, path, key, str(handle.endpoint.base_url)) for f in output.findings
                                    if (path := scoped.changed(f.file))]
            usage_total.budget_cut = budget.cut if budget is not None else None
            return usage_total
    finally:
        first_response()  # a failed first call releases the warm-up all the same
    usage_total.error = last_error
    usage_total.budget_cut = budget.cut if budget is not None else None
    return usage_total


def _to_finding(out: FindingOut, spec: AgentSpec, path: str, key: str | None = None, base_url: str | None = None) -> Finding:
    # Findings outside the changed files were dropped: reviewers judge the change, not the repo.
    # A provider that echoes our key or its own host in a finding does not get them published.
    def clean(text: str | None) -> str | None:
        return scrub_secret(text, key, base_url) if text is not None else None

    return Finding(
        file=path,
        start_line=out.start_line,
        end_line=max(out.end_line or out.start_line, out.start_line),
        category=spec.category,
        severity=out.severity,
        title=clean(out.title),  # type: ignore[arg-type]
        explanation=clean(out.explanation),  # type: ignore[arg-type]
        suggestion=clean(out.suggestion),
        confidence=out.confidence,
        rule_id=out.rule_id,
        source=spec.name,
    )
