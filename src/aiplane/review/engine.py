"""Running a review: change analysis, risk tier, reviewer selection, deterministic checks, and
the AI reviewers when a model is configured.

Without a model, a review says plainly that the AI reviewers did not run and never invents findings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from aiplane.config import Settings
from aiplane.llm.client import NoModelConfigured, for_tier
from aiplane.modelcatalog.catalog import bundled
from aiplane.modelcatalog.pricing import TokenCounts
from aiplane.review import secrets
from aiplane.review.agents import load_agents, select
from aiplane.review.changes import ChangeSet, analyze, git
from aiplane.review.judge import consolidate
from aiplane.review.report import Review
from aiplane.review.sanitize import strip_boundary_tags
from aiplane.review.specialists import AgentRun, Workspace, run_specialist
from aiplane.review.tiering import TierRule, decide

MAX_CONTEXT_DOC_BYTES = 8 * 1024

NO_MODEL_NOTICE = (
    "AI reviewers did not run: no model is configured. Deterministic checks ran: risk tier, "
    "noise filter and secret scan."
)


@dataclass
class ReviewRequest:
    repo: Path
    base: str | None = None
    head: str = "HEAD"
    dry_run: bool = False
    rule: TierRule = TierRule()
    settings: Settings | None = None
    max_concurrency: int = 4
    title: str | None = None
    body: str | None = None
    extra: dict = field(default_factory=dict)


def plan(request: ReviewRequest) -> tuple[ChangeSet, Review]:
    """Everything up to (not including) running reviewers: what changed, its tier and who reviews it."""
    change = analyze(request.repo, request.base, request.head)
    decision = decide(change, request.rule)
    agents = select(load_agents(request.repo), decision.tier, change)
    review = Review(
        repository=str(request.repo),
        base=change.base,
        head=change.head,
        tier=decision.tier,
        tier_reasons=decision.reasons,
        agents=[a.name for a in agents],
        files_reviewed=len(change.reviewable),
        files_skipped=[{"path": f.path, "reason": f.noise_reason or ""} for f in change.noise],
    )
    return change, review


def run(request: ReviewRequest) -> Review:
    change, review = plan(request)
    if request.dry_run:
        review.notices.append("Dry run: nothing was reviewed; this is the plan.")
        return review
    findings = secrets.scan(change)
    settings = request.settings
    try:
        if settings is None:
            raise NoModelConfigured("no settings")
        handles = {tier: for_tier(settings, tier) for tier in ("light", "specialist", "coordinator")}
    except NoModelConfigured:
        review.findings = findings
        review.notices.append(NO_MODEL_NOTICE)
        return review
    agents = load_agents(request.repo)
    selected = [agents[name] for name in review.agents]
    runs = asyncio.run(_run_agents(request, change, selected, handles, review.tier))
    prices = bundled().prices
    for agent_run in runs:
        if agent_run.error:
            review.notices.append(f"The {agent_run.agent} reviewer produced no usable answer ({agent_run.error}); its part was skipped.")
        findings.extend(agent_run.findings)
        handle = next(h for h in handles.values() if h.label == agent_run.model)
        catalog_id = handle.endpoint.catalog_id or handle.endpoint.kind
        cost = prices.cost(catalog_id, handle.endpoint.model, TokenCounts(agent_run.input_tokens, agent_run.output_tokens, agent_run.cached_tokens))
        review.usage.append(
            {
                "agent": agent_run.agent,
                "model": agent_run.model,
                "requests": agent_run.requests,
                "input_tokens": agent_run.input_tokens,
                "output_tokens": agent_run.output_tokens,
                "cached_tokens": agent_run.cached_tokens,
                "cost_usd": cost,
            }
        )
    review.findings = consolidate(findings)
    review.ai_ran = any(not r.error for r in runs)
    return review


def shared_context(request: ReviewRequest, change: ChangeSet) -> str:
    """One context block, identical for every reviewer, so provider prompt caches hit."""
    title = request.title or git(change.repo, "log", "-1", "--format=%s", change.head, check=False).strip()
    body = request.body or git(change.repo, "log", "-1", "--format=%b", change.head, check=False).strip()
    files = "\n".join(f"- {f.path} ({f.status}, +{f.added} -{f.removed})" for f in change.reviewable)
    parts = [
        f"<mr_details>\nTitle: {strip_boundary_tags(title)}\n\n{strip_boundary_tags(body)[:20_000]}\n</mr_details>",
        f"<changed_files>\n{files}\n</changed_files>",
    ]
    agents_md = change.repo / "AGENTS.md"
    if agents_md.is_file():
        text = agents_md.read_text(encoding="utf-8", errors="replace")[:MAX_CONTEXT_DOC_BYTES]
        parts.append(f"Repository conventions (AGENTS.md):\n<mr_input>\n{strip_boundary_tags(text)}\n</mr_input>")
    return "\n\n".join(parts)


async def _run_agents(request: ReviewRequest, change: ChangeSet, selected, handles, request_tier: str) -> list[AgentRun]:  # noqa: ANN001
    context = shared_context(request, change)
    workspace = Workspace(change.repo, {f.path: strip_boundary_tags(f.patch) for f in change.reviewable})
    limit = asyncio.Semaphore(request.max_concurrency)

    async def one(spec):  # noqa: ANN001, ANN202
        async with limit:
            handle = handles["light" if spec.model_tier == "light" else "specialist"]
            try:
                return await run_specialist(spec, handle, context, workspace, inline_patches=request_tier == "trivial")
            except Exception as exc:  # noqa: BLE001 - one reviewer's failure must not sink the review
                return AgentRun(spec.name, handle.label, [], error=exc.__class__.__name__)

    return list(await asyncio.gather(*(one(spec) for spec in selected)))


async def record_run(settings: Settings, review: Review, duration_s: float) -> None:
    """One review_runs row per review that reached the AI reviewers (the dashboard's Reviews page)."""
    from datetime import UTC, datetime

    from aiplane.store.database import create_engine, migrate
    from aiplane.store.schema import review_runs

    counts = {s: sum(1 for f in review.findings if f.severity == s) for s in ("critical", "warning", "suggestion", "nit")}
    costs = [u["cost_usd"] for u in review.usage if u.get("cost_usd") is not None]
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(
                review_runs.insert().values(
                    ts=datetime.now(UTC),
                    repository=review.repository[:400],
                    change_id=review.head[:200],
                    tier=review.tier,
                    verdict=review.verdict,
                    findings_critical=counts["critical"],
                    findings_warning=counts["warning"],
                    findings_suggestion=counts["suggestion"],
                    findings_nit=counts["nit"],
                    cost_usd=sum(costs) if costs else None,
                    duration_s=duration_s,
                    break_glass=0,
                )
            )
    finally:
        await engine.dispose()
