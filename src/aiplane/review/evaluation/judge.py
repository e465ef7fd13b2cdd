"""Matching review findings to golden findings.

First a deterministic pre-match: same file, line ranges within LINE_SLACK of each other. Without a
judge model that is the whole match (a location-only estimate: golden comments with no file or
line can then never match, and the report says so). With a judge model, the LLM decides for each
(golden, finding) pair whether they describe the same issue, pre-matched pairs first; each golden
comment matches at most one finding and each finding at most one golden comment.

The judge sees only the two texts and the code location, inside boundary tags. Its prompt is a
data file (`prompts/eval-judge.md`), and its hash goes into every report.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiplane.review.sanitize import strip_boundary_tags

LINE_SLACK = 3
# Judge calls per case and run; past it the remaining pairs count as no match, and the report says so.
MAX_JUDGE_CALLS = 400
JUDGE_PROMPT = resources.files("aiplane.review").joinpath("prompts/eval-judge.md").read_text(encoding="utf-8")
PROMPT_SHA256 = hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest()


@dataclass(frozen=True)
class Candidate:
    """A review finding as the judge sees it."""

    file: str
    start_line: int
    end_line: int
    severity: str
    title: str
    explanation: str
    reviewers: tuple[str, ...] = ()

    def text(self) -> str:
        return f"{self.title}\n{self.explanation}".strip()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(file=str(data.get("file") or ""), start_line=int(data.get("start_line") or 0),
                   end_line=int(data.get("end_line") or data.get("start_line") or 0), severity=str(data.get("severity") or ""),
                   title=str(data.get("title") or ""), explanation=str(data.get("explanation") or ""),
                   reviewers=tuple(r for r in str(data.get("source") or "").split(", ") if r))


@dataclass
class Golden:
    text: str
    severity: str
    file: str | None
    lines: tuple[int, int] | None


@dataclass
class Matching:
    # golden index -> finding index
    pairs: dict[int, int] = field(default_factory=dict)
    method: dict[int, str] = field(default_factory=dict)  # golden index -> "location" or "judge"
    judge_calls: int = 0
    judge_input_tokens: int = 0
    judge_output_tokens: int = 0
    capped: bool = False
    errors: int = 0


def _path(value: str | None) -> str:
    text = (value or "").strip().replace("\\", "/")
    for prefix in ("./", "a/", "b/"):
        text = text.removeprefix(prefix)
    return text


def prematch(golden: Golden, finding: Candidate) -> bool:
    """Same file and overlapping lines (within LINE_SLACK); a golden comment with a file but no line
    pre-matches any finding in that file."""
    if not golden.file or _path(golden.file) != _path(finding.file):
        return False
    if golden.lines is None:
        return True
    start, end = golden.lines
    return finding.start_line <= end + LINE_SLACK and finding.end_line >= start - LINE_SLACK


JudgeFn = Callable[[Golden, Candidate], Awaitable[tuple[bool, int, int]]]


async def match(golden: list[Golden], findings: list[Candidate], judge: JudgeFn | None) -> Matching:
    result = Matching()
    taken: set[int] = set()
    if judge is None:
        for g_index, item in enumerate(golden):
            for f_index, finding in enumerate(findings):
                if f_index not in taken and prematch(item, finding):
                    result.pairs[g_index], result.method[g_index] = f_index, "location"
                    taken.add(f_index)
                    break
        return result
    for g_index, item in enumerate(golden):
        order = sorted((i for i in range(len(findings)) if i not in taken), key=lambda i: not prematch(item, findings[i]))
        for f_index in order:
            if result.judge_calls >= MAX_JUDGE_CALLS:
                result.capped = True
                return result
            result.judge_calls += 1
            try:
                same, tokens_in, tokens_out = await judge(item, findings[f_index])
            except Exception:  # noqa: BLE001 - a failed judgement is no match, counted and reported
                result.errors += 1
                continue
            result.judge_input_tokens += tokens_in
            result.judge_output_tokens += tokens_out
            if same:
                result.pairs[g_index], result.method[g_index] = f_index, "judge"
                taken.add(f_index)
                break
    return result


def judge_prompt(golden: Golden, finding: Candidate) -> str:
    where = lambda file, lines: (f"{strip_boundary_tags(file)}" + (f":{lines[0]}-{lines[1]}" if lines else "")) if file else "(no location)"  # noqa: E731
    return (
        f"<golden_comment>\nLocation: {where(golden.file, golden.lines)}\n{strip_boundary_tags(golden.text[:8_000])}\n</golden_comment>\n\n"
        f"<review_finding>\nLocation: {where(finding.file, (finding.start_line, finding.end_line))}\n"
        f"{strip_boundary_tags(finding.text()[:8_000])}\n</review_finding>"
    )


def llm_judge(endpoint) -> JudgeFn:  # noqa: ANN001 - a config.ModelEndpoint
    """A judge over the one model client; decisions cached by the texts they judged."""
    from pydantic import BaseModel
    from pydantic_ai import Agent

    from aiplane.llm.client import build

    class Verdict(BaseModel):
        same_issue: bool
        reason: str = ""

    # The harness matches each unit in its own thread and event loop (`asyncio.run` per unit), so
    # nothing bound to a loop is shared: an asyncio.Lock or one model client used from two loops
    # failed a judge call now and then ("bound to a different event loop"). The cache is guarded
    # by a thread lock (no await inside it), and each call builds its own agent (no network).
    cache: dict[str, bool] = {}
    lock = threading.Lock()

    async def judge(golden: Golden, finding: Candidate) -> tuple[bool, int, int]:
        prompt = judge_prompt(golden, finding)
        key = hashlib.sha256(prompt.encode()).hexdigest()
        with lock:
            if key in cache:
                return cache[key], 0, 0
        agent = Agent(build(endpoint), output_type=Verdict, instructions=JUDGE_PROMPT, retries=1)
        result = await agent.run(prompt, model_settings={"temperature": 0.0, "max_tokens": 300})
        usage = result.usage
        with lock:
            cache[key] = bool(result.output.same_issue)
        return cache[key], int(usage.input_tokens or 0), int(usage.output_tokens or 0)

    return judge
