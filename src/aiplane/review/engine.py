"""Running a review: change analysis, risk tier, agent selection and the deterministic checks.

The model-driven specialists and the judge are the next stage of this pipeline; until they
run, a review says plainly that the AI reviewers did not run and never invents findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiplane.review import secrets
from aiplane.review.agents import load_agents, select
from aiplane.review.changes import ChangeSet, analyze
from aiplane.review.report import Review
from aiplane.review.tiering import TierRule, decide

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
    review.findings.extend(secrets.scan(change))
    review.notices.append(NO_MODEL_NOTICE)
    return review
