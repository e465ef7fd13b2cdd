"""What one eval unit runs: the real review pipeline (optionally with a forced tier or a subset
of reviewers, for ablations) or the single-prompt baseline, on one case."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from aiplane.config import Settings
from aiplane.review.evaluation.dataset import Case

TIERS = ("trivial", "lite", "full")
BASELINE_PROMPT = resources.files("aiplane.review").joinpath("prompts/eval-baseline.md").read_text(encoding="utf-8")
# The baseline pastes the whole diff; past this it is cut, and the unit says so.
MAX_BASELINE_DIFF_CHARS = 400_000
_AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class VariantError(ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    kind: Literal["review", "baseline"] = "review"
    tier: str | None = None
    agents: tuple[str, ...] | None = None


def parse_variant(text: str) -> Variant:
    """`review`, `baseline`, `tier=lite`, `agents=security+correctness`, or `tier=full,agents=security`."""
    spec = text.strip()
    if spec in ("review", ""):
        return Variant("review")
    if spec == "baseline":
        return Variant("baseline", "baseline")
    tier, agents = None, None
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise VariantError(f"variant {spec!r}: expected review, baseline, tier=NAME or agents=A+B")
        if key == "tier":
            if value not in TIERS:
                raise VariantError(f"variant {spec!r}: tier must be one of {', '.join(TIERS)}")
            tier = value
        elif key == "agents":
            names = tuple(n for n in value.split("+") if n)
            if not names or not all(_AGENT_NAME.fullmatch(n) for n in names):
                raise VariantError(f"variant {spec!r}: agents are reviewer names joined with +")
            agents = names
        else:
            raise VariantError(f"variant {spec!r}: unknown key {key!r} (tier, agents)")
    return Variant(spec, "review", tier, agents)


@dataclass
class UnitResult:
    """What a run produced, before judging; one line of results.jsonl once judged."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""
    tier: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_s: float = 0.0
    notices: list[str] = field(default_factory=list)
    error: str | None = None


def run_unit(case: Case, repo: Path, variant: Variant, settings: Settings, environ: dict[str, str]) -> UnitResult:
    started = time.monotonic()
    try:
        result = _baseline(case, repo, settings) if variant.kind == "baseline" else _review(case, repo, variant, settings, environ)
    except Exception as exc:  # noqa: BLE001 - one failed unit is recorded, the eval goes on
        message = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
        result = UnitResult(error=f"{exc.__class__.__name__}: {message}")
    result.latency_s = round(time.monotonic() - started, 3)
    return result


def _review(case: Case, repo: Path, variant: Variant, settings: Settings, environ: dict[str, str]) -> UnitResult:
    from dataclasses import asdict

    from aiplane.repository.tree import GitTree
    from aiplane.review.changes import resolve
    from aiplane.review.ci import _request, configure
    from aiplane.review.engine import run
    from aiplane.review.plugins.context import ReviewOptions
    from aiplane.review.repo_settings import load_repo_settings

    base, head = resolve(repo, case.base, "base"), resolve(repo, case.head, "head")
    options = ReviewOptions(vcs="local", repo=repo, base=base, head=head)
    host, ctx, config = configure(options, settings, environ)
    try:
        request, _change_request = _request(options, settings, config, ctx, host)
        # As in CI: what the repository says about its own review comes from the base commit.
        trusted = GitTree(repo, base)
        request.config_tree = trusted
        request.repo_settings, request.setting_notices = load_repo_settings(trusted)
        request.title, request.body = case.title or None, case.description or None
        request.force_tier, request.only_agents = variant.tier, variant.agents
        review = run(request)
    finally:
        config.vcs.close()
    if not review.ai_ran:
        raise RuntimeError("the AI reviewers did not run (is a model configured? see `aiplane review`'s notices): "
                           + "; ".join(review.notices)[:200])
    costs = [u.get("cost_usd") for u in review.usage]
    return UnitResult(
        findings=[asdict(f) for f in review.findings], verdict=review.verdict, tier=review.tier,
        input_tokens=sum(int(u.get("input_tokens") or 0) for u in review.usage),
        output_tokens=sum(int(u.get("output_tokens") or 0) for u in review.usage),
        cached_tokens=sum(int(u.get("cached_tokens") or 0) for u in review.usage),
        cost_usd=None if any(c is None for c in costs) else round(sum(costs), 6), notices=list(review.notices),
    )


def _baseline(case: Case, repo: Path, settings: Settings) -> UnitResult:
    import asyncio

    from pydantic import BaseModel, Field
    from pydantic_ai import Agent

    from aiplane.llm.client import for_tier
    from aiplane.modelcatalog.catalog import bundled
    from aiplane.modelcatalog.pricing import TokenCounts
    from aiplane.review.changes import analyze, resolve
    from aiplane.review.sanitize import strip_boundary_tags

    class BaselineFinding(BaseModel):
        file: str = Field(max_length=1_000)
        start_line: int = Field(ge=1)
        end_line: int = Field(ge=1)
        severity: Literal["critical", "warning", "suggestion", "nit"]
        title: str = Field(max_length=300)
        explanation: str = Field(max_length=4_000)

    class BaselineReview(BaseModel):
        findings: list[BaselineFinding] = Field(default_factory=list, max_length=100)

    handle = for_tier(settings, "specialist")
    change = analyze(repo, resolve(repo, case.base, "base"), resolve(repo, case.head, "head"))
    diff = "\n".join(strip_boundary_tags(f.patch) for f in change.reviewable)
    notices = []
    if len(diff) > MAX_BASELINE_DIFF_CHARS:
        diff = diff[:MAX_BASELINE_DIFF_CHARS]
        notices.append(f"the diff was cut to {MAX_BASELINE_DIFF_CHARS} characters")
    prompt = (f"<mr_details>\nTitle: {strip_boundary_tags(case.title[:2_000])}\n\n{strip_boundary_tags(case.description[:20_000])}\n"
              f"</mr_details>\n\nThe diff:\n<mr_input>\n{diff}\n</mr_input>")
    agent = Agent(handle.model, output_type=BaselineReview, instructions=BASELINE_PROMPT, retries=1)
    result = asyncio.run(agent.run(prompt, model_settings={"max_tokens": handle.endpoint.max_output_tokens}))
    usage = result.usage
    tokens_in, tokens_out = int(usage.input_tokens or 0), int(usage.output_tokens or 0)
    cached = int(getattr(usage, "cache_read_tokens", 0) or 0)
    endpoint = handle.endpoint
    cost = bundled().prices.cost(endpoint.catalog_id or endpoint.kind, endpoint.model, TokenCounts(tokens_in, tokens_out, cached))
    findings = [{**f.model_dump(), "category": "baseline", "source": "baseline", "confidence": 0.5} for f in result.output.findings]
    severities = {f["severity"] for f in findings}
    verdict = "request_changes" if "critical" in severities else "approve_with_comments" if findings else "approve"
    return UnitResult(findings=findings, verdict=verdict, tier="baseline", input_tokens=tokens_in, output_tokens=tokens_out,
                      cached_tokens=cached, cost_usd=None if cost is None else round(cost, 6), notices=notices)
