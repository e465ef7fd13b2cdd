"""A review as CI runs it: plugins, the VCS, memory of earlier rounds, one living comment.

Order: plugins bootstrap (concurrent, non-fatal) → configure (sequential, fatal) → post_configure
(async) → assemble → read the change request and our earlier comments → break glass? (before any
model) → engine → re-review rules → publish (inline comments, the summary, the status) → the
plugins' publish hooks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiplane.config import Settings
from aiplane.logs import log_fields
from aiplane.repository import git as gitrun
from aiplane.repository.tree import GitTree, WorkTree
from aiplane.review import memory
from aiplane.review.changes import ChangeError, ChangeSet, git
from aiplane.review.engine import Prepared, ReviewRequest, plan, run
from aiplane.review.plugins.context import PluginContext, ReviewOptions, RunConfig
from aiplane.review.plugins.host import PluginHost
from aiplane.review.repo_settings import load_repo_settings
from aiplane.review.report import BADGES, Finding, Review, inline_markdown, render_markdown
from aiplane.vcs.model import ChangeRequest, VcsError, VcsHost

log = logging.getLogger("aiplane.review")
MAX_PREVIOUS_DIFF_CHARS = 20_000
MAX_PREVIOUS_SUMMARY_CHARS = 8_000
# GitHub refuses comments over 65,536 characters; GitLab allows 1,000,000. Stay under both.
MAX_SUMMARY_CHARS = 60_000


class PublishError(Exception):
    """The review ran but could not be published; the message is safe to print."""


@dataclass
class Outcome:
    review: Review
    duration_s: float
    break_glass: bool = False
    inline_posted: int = 0
    inline_skipped: int = 0
    resolved: int = 0
    raised_again: int = 0
    summary_id: str | None = None
    # The summary comment's web address, for CI outputs ("" when the host has none).
    summary_url: str = ""
    publish_error: str | None = None
    plan: memory.Plan | None = None
    # Break-glass comments and the head each approved, carried in our summary's state.
    break_glass_spent: dict[str, str] = field(default_factory=dict)


def configure(options: ReviewOptions, settings: Settings, environ: dict[str, str]) -> tuple[PluginHost, PluginContext, RunConfig]:
    """Load plugins and run the lifecycle up to an assembled configuration (raises on fatal steps)."""
    host = PluginHost.load(frozenset(settings.review.disabled_plugins))
    ctx = PluginContext(options, settings, environ)
    host.bootstrap(ctx)
    host.configure(ctx)
    host.post_configure(ctx)
    return host, ctx, ctx.assemble()


def review_change(options: ReviewOptions, settings: Settings, environ: dict[str, str]) -> Outcome:
    started = time.monotonic()
    host, ctx, config = configure(options, settings, environ)
    vcs = config.vcs
    try:
        try:
            return _review(options, settings, host, ctx, config, started)
        except ChangeError as exc:
            # The review could not run (a diff we cannot read, a commit we cannot fetch): the change
            # gets an honest "error" status, never silence; the job itself still fails small.
            if not options.dry_run and "vcs:status" in config.permissions:
                try:
                    vcs.set_status("error", f"Review did not run: {exc}")
                except VcsError as status_error:
                    log.warning("could not set the error status", extra=log_fields(error=str(status_error)))
            raise
    finally:
        try:
            vcs.close()
        except VcsError as exc:
            log.warning("could not save review state", extra=log_fields(error=str(exc)))


def _review(options: ReviewOptions, settings: Settings, host: PluginHost, ctx: PluginContext, config: RunConfig,
            started: float) -> Outcome:
    vcs = config.vcs
    request, change_request = _request(options, settings, config, ctx, host)
    if request.repo_settings.max_inline_comments is not None:
        options = dataclasses.replace(options, max_inline=min(options.max_inline, request.repo_settings.max_inline_comments))
    if options.dry_run:
        request.dry_run = True
        return Outcome(run(request), time.monotonic() - started)
    comments = vcs.comments()
    spent = memory.spent_break_glass(memory.latest_state(comments, vcs.whoami()))
    asked = memory.break_glass(comments, vcs.authorized, spent, change_request.head_sha)
    if asked.by is not None:
        # Before any model call, by rule: an authorised human has taken responsibility for this change.
        review = _break_glass_review(request, change_request)
        review.break_glass_by = asked.by.author
        outcome = Outcome(review, 0.0, break_glass=True)
        spent[asked.by.id] = change_request.head_sha  # this comment approves this head, and no later one
        log.warning("break glass", extra=log_fields(vcs=vcs.name, change=change_request.number, comment_id=asked.by.id,
                                                    user=asked.by.author))
    else:
        remembered = memory.recall(comments, vcs.threads(), vcs.whoami(), vcs.authorized)
        request.previous_review = _previous_review(remembered, request.repo, request.head)
        review = run(request)
        outcome = Outcome(review, 0.0)
        _apply_memory(outcome, remembered, vcs.authority_rule())
    for who in dict.fromkeys(c.author for c in asked.ignored):
        outcome.review.notices.append(f"A break-glass request from @{who} was ignored: they are not authorised to "
                                      f"approve without review (needs {vcs.authority_rule()}).")
        log.warning("break glass refused", extra=log_fields(vcs=vcs.name, change=change_request.number, user=who))
    outcome.break_glass_spent = spent
    for comment in asked.spent:
        outcome.review.notices.append(f"The break-glass request by @{comment.author} approved an earlier push "
                                      f"({spent[comment.id][:12]}); it does not cover this one. Post a new one to approve it.")
    for who in dict.fromkeys(c.author for c in asked.edited):
        outcome.review.notices.append(f"A break-glass request in a comment by @{who} was ignored: the comment was edited "
                                      "after it was posted, and anyone with write access can edit comments. Post a new one.")
    for listing in getattr(vcs, "truncated", []):
        outcome.review.notices.append(f"Only part of a long conversation was read: {listing}.")
    outcome.duration_s = time.monotonic() - started
    if change_request.repository:
        outcome.review.repository = change_request.repository
    # Plugin failures so far (bootstrap, prepare) belong in the published comment too.
    outcome.review.notices.extend(n for n in ctx.notices if n not in outcome.review.notices)
    try:
        _publish(outcome, config, settings, change_request, options)
    except VcsError as exc:
        outcome.publish_error = str(exc)
    host.each(ctx, "aiplane_review_publish", outcome=outcome)
    outcome.review.notices.extend(n for n in ctx.notices if n not in outcome.review.notices)
    return outcome


def _break_glass_review(request: ReviewRequest, change_request: ChangeRequest) -> Review:
    """The plan of the change for the record; break glass approves even a change we cannot read."""
    try:
        return plan(request)[1]
    except ChangeError as exc:
        return Review(repository=str(request.repo), base=change_request.base_sha, head=change_request.head_sha,
                      tier="unknown", tier_reasons=[f"the change could not be analysed ({exc})"], agents=[])


def _request(options: ReviewOptions, settings: Settings, config: RunConfig, ctx: PluginContext,
             host: PluginHost) -> tuple[ReviewRequest, ChangeRequest]:
    vcs = config.vcs
    change_request = vcs.change_request()
    repo = options.repo.resolve()
    if vcs.name == "local":
        base, head, title, body = options.base, options.head, None, None
    else:
        for sha in (change_request.base_sha, change_request.head_sha):
            _ensure_commit(repo, sha)
        base, head = change_request.base_sha, change_request.head_sha
        title, body = change_request.title, change_request.body

    def prepare(change: ChangeSet, review: Review) -> Prepared:
        ctx.findings.clear()
        host.each(ctx, "aiplane_review_prepare", change=change, review=review)
        return Prepared(list(ctx.findings), {a: "\n\n".join(t) for a, t in ctx.agent_notes.items()}, dict(ctx.rule_links))

    routing = None
    gateway = config.providers.get("gateway")
    if gateway is not None and (config.routes or config.routing):
        routing = {"gateway": {"url": gateway.url, "token": gateway.token}, "routes": config.routes,
                   "remote": config.routing.to_job() if config.routing else None}
    # What the repository may say about its own review: in CI the base commit's, so the change
    # under review cannot reconfigure it; locally the working tree, read without following links.
    trusted = WorkTree(repo) if vcs.name == "local" else GitTree(repo, base)
    repo_settings, problems = load_repo_settings(trusted)
    ctx.config_tree, ctx.repo_settings = trusted, repo_settings
    request = ReviewRequest(
        repo=repo, base=base, head=head, settings=settings, title=title, body=body,
        extra_agents=config.agents, extra_context=list(config.prompt_sections), prepare=prepare,
        routing=routing, worker_env=config.env, config_tree=trusted, repo_settings=repo_settings,
        setting_notices=problems, force_tier=options.tier,
    )
    return request, change_request


def _ensure_commit(repo: Path, sha: str) -> None:
    """CI checkouts are often shallow or on a merge ref; fetch what the review needs."""
    if not gitrun.is_object_id(sha):
        raise ChangeError("the code host named a base or head that is not a commit id")

    def present() -> bool:
        try:
            return gitrun.has_commit(repo, sha)
        except gitrun.GitError as exc:
            raise ChangeError(str(exc)) from None

    if present():
        return
    git(repo, "fetch", "--quiet", "--no-tags", "--end-of-options", "origin", sha, check=False, timeout=300)
    if not present():
        raise ChangeError(f"commit {sha[:12]} is not in the checkout and could not be fetched; check out with full history "
                          "(GitHub: actions/checkout fetch-depth: 0; GitLab: GIT_DEPTH: 0)")


def _previous_review(remembered: memory.Memory, repo: Path, head: str) -> str:
    described = remembered.describe()
    if not described:
        return ""
    parts = [described]
    if remembered.previous_summary:
        text = remembered.previous_summary[:MAX_PREVIOUS_SUMMARY_CHARS]
        parts.append(f"The previous review comment:\n{text}")
    previous = remembered.previous_head
    try:
        # The previous head comes from our own marker, but is checked like any untrusted revision.
        current = gitrun.resolve_commit(repo, head)
        if previous and current and gitrun.is_object_id(previous) and gitrun.has_commit(repo, previous):
            diff = gitrun.run(repo, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options", previous,
                              current, "--", max_output=MAX_PREVIOUS_DIFF_CHARS, truncate=True, check=False)
            body = diff.decode("utf-8", "replace")[:MAX_PREVIOUS_DIFF_CHARS] or "(no changes)"
            parts.append(f"The diff since the previously reviewed head {previous[:12]}:\n{body}")
    except gitrun.GitError as exc:
        log.warning("no diff since the previous review", extra=log_fields(error=str(exc)))
    return "\n\n".join(parts)


def _apply_memory(outcome: Outcome, remembered: memory.Memory, authority_rule: str) -> None:
    review = outcome.review
    decided = memory.reconcile(review.findings, remembered)
    review.findings = decided.findings
    outcome.plan = decided
    if decided.fixed:
        review.notices.append(f"{decided.fixed} finding(s) from the previous review are fixed.")
    if decided.respected:
        review.notices.append(f"{decided.respected} finding(s) a reviewer resolved or answered won't fix / acknowledged were not raised again.")
    if decided.raise_again:
        review.notices.append(f"{len(decided.raise_again)} finding(s) got worse since the previous review and were raised again.")
    if decided.unheeded:
        names = ", ".join(f"@{who}" for who in decided.unheeded)
        review.notices.append(f"Won't fix / acknowledged / resolved from {names} did not dismiss any finding: only someone "
                              f"authorised may (needs {authority_rule}).")


def _status(review: Review) -> tuple[str, str]:
    if review.break_glass_by is not None:
        return "success", f"Break glass by {review.break_glass_by}: approved without review"
    if review.verdict == "request_changes":
        return "failure", "Request changes: see the review comment"
    count = len(review.findings)
    return "success", f"Approved with {count} comment(s)" if count else "Approved"


def _publish(outcome: Outcome, config: RunConfig, settings: Settings, change_request: ChangeRequest,
             options: ReviewOptions) -> None:
    """Status first (it carries the verdict), then inline comments, the summary and approval. One step
    failing never stops the others; the first failure is raised at the end."""
    vcs, review, allowed = config.vcs, outcome.review, config.permissions
    errors: list[str] = []

    def step(action: Callable[[], object]) -> None:
        try:
            action()
        except VcsError as exc:
            errors.append(str(exc))

    if "vcs:status" in allowed:
        state, description = _status(review)
        step(lambda: vcs.set_status(state, description))  # type: ignore[arg-type]
    if outcome.plan is not None and "vcs:inline" in allowed:
        step(lambda: _publish_inline(outcome, vcs, change_request, options))
    if "vcs:comment" in allowed:
        def summary() -> None:
            marker = memory.summary_marker(memory.round_state(review.head, review.findings, outcome.break_glass_spent))
            footer = _footer(outcome)
            body = render_markdown(review, MAX_SUMMARY_CHARS - len(marker) - len(footer)) + footer + "\n" + marker + "\n"
            outcome.summary_id = vcs.upsert_summary(memory.is_our_summary, body)
            comment_url = getattr(vcs, "comment_url", None)  # a VCS plugin may not have one
            if comment_url is not None:
                outcome.summary_url = comment_url(change_request.url, str(outcome.summary_id))
        step(summary)
    if "vcs:approve" in allowed:
        if review.break_glass_by is not None:
            step(lambda: vcs.approve(True))
        elif settings.review.approve:
            step(lambda: vcs.approve(review.verdict != "request_changes"))
    if errors:
        raise VcsError("; ".join(dict.fromkeys(errors)))


def _publish_inline(outcome: Outcome, vcs: VcsHost, change_request: ChangeRequest, options: ReviewOptions) -> None:
    decided = outcome.plan
    assert decided is not None
    budget = options.max_inline
    for finding in decided.post:
        if budget <= 0:
            outcome.inline_skipped += 1
            continue
        if vcs.post_inline(finding.file, finding.start_line, _inline_body(finding)) is None:
            outcome.inline_skipped += 1  # not a line the host shows in the diff; the summary has it
        else:
            outcome.inline_posted += 1
            budget -= 1
    for prior, finding in decided.raise_again:
        assert prior.thread is not None
        vcs.edit_inline(prior.thread, _inline_body(finding))
        vcs.reply(prior.thread, f"This got worse: now **{BADGES[finding.severity]}** (was {prior.severity}).")
        outcome.raised_again += 1
    for prior in decided.resolve:
        assert prior.thread is not None
        short = change_request.head_sha[:12] or "the latest change"
        vcs.edit_inline(prior.thread, f"✅ Fixed in {short}.\n\n<details><summary>Original comment</summary>\n\n"
                        f"{prior.thread.body}\n\n</details>")
        vcs.resolve(prior.thread)
        outcome.resolved += 1


def _inline_body(finding: Finding) -> str:
    """An inline comment: the finding, then the hidden marker the next round recognises it by."""
    return inline_markdown(finding) + "\n\n" + memory.finding_marker(finding)


def _footer(outcome: Outcome) -> str:
    bits = []
    if outcome.inline_posted:
        bits.append(f"{outcome.inline_posted} new inline comment(s)")
    if outcome.inline_skipped:
        bits.append(f"{outcome.inline_skipped} finding(s) only in this summary")
    if outcome.resolved:
        bits.append(f"{outcome.resolved} thread(s) resolved as fixed")
    tail = f" · {'; '.join(bits)}" if bits else ""
    return f"\n<sub>aiplane review · head {outcome.review.head[:12]}{tail} · updated in place on every push</sub>\n"
