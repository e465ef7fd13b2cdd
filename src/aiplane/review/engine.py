"""Running a review: change analysis, risk tier, reviewer selection, deterministic checks, and
the AI reviewers when a model is configured.

Without a model, a review says plainly that the AI reviewers did not run and never invents findings.
"""

from __future__ import annotations

import dataclasses
import secrets as _random
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiplane.config import ModelEndpoint, Settings
from aiplane.repository.tree import RepoTree, TreeBase
from aiplane.review.agents import AgentError, AgentSet, AgentSpec, load_agents, select
from aiplane.review.changes import ChangeSet, analyze, git
from aiplane.review.hunks import around_hunks, hunk_ranges
from aiplane.review.judge import consolidate, supported
from aiplane.review.repo_settings import RepoReviewSettings
from aiplane.review.report import Finding, Review
from aiplane.review.runner import WorkerResult, run_worker
from aiplane.review.sanitize import safe_path, strip_boundary_tags
from aiplane.review.tiering import TierRule, decide

MAX_CONTEXT_DOC_BYTES = 8 * 1024
MAX_AGENTS_MD_READ_BYTES = 1024 * 1024
# Token counts in the engine are estimates (the product ships no tokenizer): characters / 4.
CHARS_PER_TOKEN = 4
MAX_FILL_FILE_BYTES = 512 * 1024

NO_MODEL_NOTICE = (
    "AI reviewers did not run: no model is configured. Deterministic checks ran: risk tier, "
    "noise filter and secret scan."
)


@dataclass
class Prepared:
    """What plugins contributed for one change before any model ran."""

    findings: list[Finding] = field(default_factory=list)
    agent_notes: dict[str, str] = field(default_factory=dict)
    rule_links: dict[str, str] = field(default_factory=dict)


@dataclass
class ReviewRequest:
    repo: Path
    base: str | None = None
    head: str = "HEAD"
    dry_run: bool = False
    rule: TierRule = TierRule()
    settings: Settings | None = None
    log_path: Path | None = None
    on_event: Callable[[dict, int], None] | None = None
    title: str | None = None
    body: str | None = None
    # From plugins: extra reviewers, shared-context sections, per-change contributions, and
    # model routing through the gateway ({"gateway": {url, token}, "routes": ..., "remote": ...}).
    extra_agents: list[AgentSpec] = field(default_factory=list)
    extra_context: list[str] = field(default_factory=list)
    # What the previous round said and what changed since (CI memory); data, like the change itself.
    previous_review: str = ""
    prepare: Callable[[ChangeSet, Review], Prepared] | None = None
    routing: dict | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    # Where reviewer overrides (`.aiplane/agents/`) come from: in CI the base commit, so a change
    # cannot redefine its own reviewers; locally the working tree. None: shipped agents only.
    config_tree: RepoTree | None = None
    repo_settings: RepoReviewSettings = field(default_factory=RepoReviewSettings)
    # Problems with repository settings, shown on the review.
    setting_notices: list[str] = field(default_factory=list)
    # Forced by the user (`--tier`) or by an eval ablation: this tier instead of the decided one,
    # and only these reviewers (by name) instead of the tier's selection.
    force_tier: str | None = None
    only_agents: tuple[str, ...] | None = None
    _agents: AgentSet | None = field(default=None, repr=False)

    def agent_set(self) -> AgentSet:
        """Shipped agents, the trusted tree's overrides, then plugins' agents; read once per review."""
        if self._agents is None:
            self._agents = load_agents(self.config_tree)
            self._agents.agents.update({a.name: a for a in self.extra_agents})
        return self._agents


def plan(request: ReviewRequest) -> tuple[ChangeSet, Review]:
    """Everything up to (not including) running reviewers: what changed, its tier and who reviews it."""
    change = analyze(request.repo, request.base, request.head)
    rule = request.rule
    if request.repo_settings.sensitive_paths:
        rule = dataclasses.replace(rule, sensitive_globs=rule.sensitive_globs + tuple(request.repo_settings.sensitive_paths))
    decision = decide(change, rule)
    tier, reasons = decision.tier, decision.reasons
    if request.force_tier is not None and request.force_tier != tier:
        tier, reasons = request.force_tier, [f"tier forced to {request.force_tier} (decided: {decision.tier})", *decision.reasons]
    agent_set = request.agent_set()
    if request.only_agents is not None:
        unknown = [name for name in request.only_agents if name not in agent_set.agents]
        if unknown:
            raise AgentError(f"unknown reviewer(s): {', '.join(unknown)}; known: {', '.join(sorted(agent_set.agents))}")
        agents = [agent_set.agents[name] for name in request.only_agents]
    else:
        agents = select(agent_set.agents, tier, change)
    review = Review(
        repository=str(request.repo),
        base=change.base,
        head=change.head,
        tier=tier,
        tier_reasons=reasons,
        agents=[a.name for a in agents],
        files_reviewed=len(change.reviewable),
        files_skipped=[{"path": f.path, "reason": f.noise_reason or ""} for f in change.noise],
    )
    review.notices.extend(request.setting_notices + agent_set.problems)
    return change, review


def codex_checks(
    change: ChangeSet, source: Path | TreeBase, label: str, link_base: str, review: Review
) -> tuple[list[Finding], str, dict[str, str]]:
    """Deterministic codex checks on the added lines of every changed file (noise too: a change cannot
    opt out by how it names a file), and the text of the AI-judged rules in scope."""
    from aiplane.codex.checks import scan_text
    from aiplane.codex.rules import load

    codex = load(source)
    if codex.problems:
        review.notices.append(f"The codex at {label} has {len(codex.problems)} problem(s); its rules were not applied.")
        return [], "", {}
    if not codex.rules:
        review.notices.append(f"The codex at {label} has no rules; none were applied.")
        return [], "", {}
    paths = [f.path for f in change.files if f.status != "deleted"]
    rules = codex.for_paths(paths)
    contents = change.head_texts()
    findings = []
    for rule in (r for r in rules if r.deterministic):
        for changed in change.files:
            if not rule.applies_to(changed.path) or changed.status == "deleted":
                continue
            text = contents.get(changed.path)
            if text is None:  # too big to read whole, or binary: its added lines, in place
                text = "\n".join(changed.added_text.get(n, "") for n in range(1, max(changed.added_text, default=0) + 1))
            for violation in scan_text(rule, changed.path, text, set(changed.added_lines)):
                findings.append(
                    Finding(
                        file=changed.path, start_line=violation.line, end_line=violation.line, category="codex",
                        severity=rule.severity, title=f"{rule.title} ({rule.id})",
                        explanation=rule.statement.strip(), suggestion=None, confidence=0.95,
                        rule_id=rule.id, source="codex", rule_link=rule.link(link_base),
                    )
                )
    ai_rules = [r for r in rules if r.check == "ai"]
    text = "\n\n".join(f"Rule {r.id}: {r.title}\n{r.statement.strip()}\nApplies to: {', '.join(r.scope.globs)}" for r in ai_rules)
    links = {r.id: r.link(link_base) for r in codex.rules}
    return findings, ("Codex rules to check (cite the rule ID in rule_id):\n\n" + text) if ai_rules else "", links


def _endpoint_json(endpoint: ModelEndpoint) -> dict:
    data = endpoint.model_dump(mode="json")
    data["api_key"] = endpoint.api_key.get_secret_value() if endpoint.api_key else None
    return data


def write_run_files(run_dir: Path, context: str, change: ChangeSet) -> dict[str, str]:
    """The shared context file, written once, and one patch file per changed file."""
    (run_dir / "patches").mkdir(parents=True, exist_ok=True)
    (run_dir / "context.md").write_text(context, encoding="utf-8")
    files = {}
    for index, changed in enumerate(change.reviewable):
        target = run_dir / "patches" / f"{index:05d}.patch"
        target.write_text(strip_boundary_tags(changed.patch), encoding="utf-8", errors="surrogateescape")
        files[changed.path] = str(target)
    return files


def min_cacheable_tokens(endpoint: ModelEndpoint | None) -> int:
    """The shortest prefix a provider caches (Anthropic per model; OpenAI 1024)."""
    if endpoint is None:
        return 1024
    model = endpoint.model.lower()
    if endpoint.kind == "anthropic":
        if any(name in model for name in ("opus-4-5", "opus-4-6", "haiku-4-5")):
            return 4096
        if "haiku" in model or "sonnet-4-6" in model:
            return 2048
    return 1024


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass
class SharedPrefix:
    text: str  # the first part of every reviewer's first user turn
    inlined: set[str]  # changed files whose patch it holds
    surroundings: set[str]  # changed files whose lines around the hunks it holds
    context: str  # the change context alone (title, files, conventions), without patches


def shared_prefix(request: ReviewRequest, change: ChangeSet, tier: str, reviewers: int,
                  settings: Settings | None) -> SharedPrefix:
    """The first part of every reviewer's first user turn, byte-identical across reviewers.

    The change context (with the base commit's AGENTS.md on full reviews only), then the patches
    within `review.shared_patch_tokens`, then, when reviewers are several, the head lines around
    each hunk (what a careful reviewer reads first) within `review.shared_context_tokens`: sent
    once into the cached prefix instead of once per reviewer in tool results. A trivial review is
    one call with the patch alone.
    """
    context = shared_context(request, change, with_conventions=tier == "full")
    review_settings = settings.review if settings is not None else None
    budget = (review_settings.shared_patch_tokens if review_settings else 12_000) * CHARS_PER_TOKEN
    inlined: list[str] = []
    pieces: list[str] = []
    used = 0
    for changed in change.reviewable:
        patch = strip_boundary_tags(changed.patch)
        if used + len(patch) > budget:
            continue
        used += len(patch)
        inlined.append(changed.path)
        pieces.append(patch)
    text = context
    if pieces:
        text += "\n\nThe patches:\n<mr_input>\n" + "".join(p if p.endswith("\n") else p + "\n" for p in pieces) + "</mr_input>"
    shown: set[str] = set()
    if reviewers > 1:
        limit = (review_settings.shared_context_tokens if review_settings else 8_000) * CHARS_PER_TOKEN
        filled, shown = _hunk_context(change, set(inlined), limit)
        if filled:
            text += ("\n\nThe changed files around their hunks (head version, 40 lines either side; the hunks' own "
                     "lines are in the patches above):\n<mr_input>\n" + filled + "</mr_input>")
    return SharedPrefix(text, set(inlined), shown, context)


def _hunk_context(change: ChangeSet, inlined: set[str], limit: int) -> tuple[str, set[str]]:
    """Head lines around each hunk of the changed files whose patch is inlined, numbered, up to
    `limit` characters; and which files are shown."""
    out: list[str] = []
    shown: set[str] = set()
    size = 0
    # One `git cat-file --batch` for all of them (read once, shared with the secret scan), not one
    # git process per file: 50 files cost 50 process starts, about 0.2 s.
    heads = change.head_texts()
    for changed in change.reviewable:
        if changed.path not in inlined or changed.binary or changed.is_symlink or changed.status == "deleted":
            continue
        text = heads.get(changed.path)
        if text is None or (change.head_tree.size(changed.path) or 0) > MAX_FILL_FILE_BYTES:
            continue
        runs = around_hunks(text.splitlines(), hunk_ranges(changed.patch), skip_hunks=True)
        piece = strip_boundary_tags(f"--- {safe_path(changed.path)}\n" + ("\n...\n".join(runs) or "(all of it is in the patch)") + "\n")
        if size + len(piece) > limit:
            continue
        out.append(piece)
        shown.add(changed.path)
        size += len(piece)
    return "".join(out), shown


def build_job(request: ReviewRequest, change: ChangeSet, review: Review, settings: Settings, run_dir: Path) -> dict:
    """Everything the worker needs, sent over stdin (keys included: never argv, never logs)."""
    shared = shared_prefix(request, change, review.tier, len(review.agents), settings)
    specs = request.agent_set().agents
    return {
        # For the log: the shared part's size against the shortest prefix the provider caches.
        "shared_tokens_estimate": estimate_tokens(shared.text),
        "cache_floor_tokens": min_cacheable_tokens(settings.llm.models.get("specialist")),
        "inlined": sorted(shared.inlined),
        "surroundings": sorted(shared.surroundings),
        # One call with the patch alone: no tools on a trivial review.
        "single_call": review.tier == "trivial",
        # One key per review: OpenAI routes requests with the same key to the same prompt cache.
        "cache_key": f"aiplane-review-{_random.token_hex(8)}",
        "warmup": settings.review.warmup,
        "budgets": {"reviewer_input_tokens": settings.review.reviewer_input_tokens,
                    "review_input_tokens": settings.review.review_input_tokens},
        "repo": str(change.repo),
        "head": change.head,
        "tier": review.tier,
        "agents": review.agents,
        "agent_specs": [specs[name].model_dump() for name in review.agents],
        "routing": request.routing,
        "context": shared.text,
        "patch_files": write_run_files(run_dir, shared.context, change),
        "models": {tier: _endpoint_json(e) for tier, e in settings.llm.models.items()},
        "failback": {tier: [_endpoint_json(e) for e in chain] for tier, chain in settings.llm.failback.items()},
        "max_concurrency": settings.review.max_concurrency,
    }


def run(request: ReviewRequest) -> Review:
    change, review = plan(request)
    if request.dry_run:
        review.notices.append("Dry run: nothing was reviewed; this is the plan.")
        return review
    scan = SecretScan(change, request.settings.review.secret_scan_seconds if request.settings else None)
    notices_at = len(review.notices)
    settings = request.settings
    prepared = request.prepare(change, review) if request.prepare else Prepared()
    notes, rule_links = prepared.agent_notes, prepared.rule_links
    if "codex-compliance" in review.agents and "codex-compliance" not in notes:
        # Nothing for it to judge: no codex, or no AI-judged rule covers these files.
        review.agents.remove("codex-compliance")
    routed = bool(request.routing and (request.routing.get("routes") or request.routing.get("remote")))
    if settings is None or not (settings.llm.models or routed):
        findings = scan.result(review, notices_at) + prepared.findings
        review.findings = findings
        review.notices.append(NO_MODEL_NOTICE)
        return review
    with tempfile.TemporaryDirectory(prefix="aiplane-review-") as run_dir:
        def on_event(event: dict, pid: int) -> None:
            if event.get("type") == "step_start":
                scan.start()  # the first reviewer is about to call its model
            if request.on_event is not None:
                request.on_event(event, pid)

        result = run_worker(
            build_job(request, change, review, settings, Path(run_dir)) | {"agent_notes": notes},
            heartbeat_seconds=settings.review.heartbeat_seconds,
            memory_cap_bytes=settings.review.memory_cap_mb * 1024 * 1024,
            log_path=request.log_path,
            on_event=on_event,
            env=request.worker_env,
            cwd=Path(run_dir),
        )
    findings = scan.result(review, notices_at) + prepared.findings
    claims = _apply_events(review, result)
    for claim in claims:
        if claim.rule_id and claim.rule_id in rule_links:
            claim.rule_link = rule_links[claim.rule_id]
    texts = change.head_texts()
    # A file too big to read whole still has its lines: a claim about it is judged by the diff alone.
    file_lines = {f.path: texts[f.path].count("\n") + 1 if f.path in texts else 10**9 for f in change.files if f.status != "deleted"}
    changed = {f.path: set(f.added_lines) for f in change.reviewable}
    kept = [f for f in claims if supported(f, file_lines, changed)]
    if len(kept) < len(claims):
        review.notices.append(f"{len(claims) - len(kept)} finding(s) dropped: they pointed at lines this change did not touch or that do not exist.")
    review.findings = consolidate(findings + kept)
    return review


class SecretScan:
    """The secret scan of a change, run on a thread while the reviewers wait for their models: the
    models need nothing from it, and on a 50-file change it takes 0.2-0.5 s of CPU that would
    otherwise come before the first model request. It starts when the worker reports its first
    reviewer starting, so it never competes with the work before that request; without that
    report (a worker that died early) it runs when its result is asked for. An error in it is
    raised by `result`."""

    def __init__(self, change: ChangeSet, keyword_seconds: float | None) -> None:
        self.change, self.keyword_seconds = change, keyword_seconds
        self._thread: threading.Thread | None = None
        self._outcome: tuple[list[Finding], list[str]] | BaseException | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aiplane-secret-scan", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from aiplane.review import secrets  # detect-secrets: imported off the path to the first request

        try:
            self._outcome = secrets.scan(self.change, self.keyword_seconds or secrets.DEFAULT_KEYWORD_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._outcome = exc

    def result(self, review: Review, notices_at: int) -> list[Finding]:
        """The scan's findings; its notices go where they always stood among the review's."""
        if self._thread is None:
            self._run()
        else:
            self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        findings, notices = self._outcome
        review.notices[notices_at:notices_at] = notices
        return list(findings)


def _apply_events(review: Review, result: WorkerResult) -> list[Finding]:
    # Imported here, after the models have answered: the catalog brings SQLAlchemy and aiohttp
    # (0.3-0.6 s), which `aiplane review` must not pay before its first model request.
    from aiplane.modelcatalog.catalog import bundled
    from aiplane.modelcatalog.pricing import TokenCounts

    prices = bundled().prices
    findings: list[Finding] = []
    usage: dict[str, dict] = {}
    cuts: dict[str, list[tuple[str, str]]] = {}
    finished_ok = set()
    for event in result.events:
        kind = event.get("type")
        if kind == "finding":
            fields = {k: v for k, v in event.items() if k in Finding.__dataclass_fields__}
            try:
                findings.append(Finding(**fields))
            except TypeError:
                continue
        elif kind == "usage":
            row = usage.setdefault(event["agent"], {"agent": event["agent"], "model": event["model"], "requests": 0,
                                                    "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "cost_usd": 0.0})
            row["model"] = event["model"]
            for name in ("requests", "input_tokens", "output_tokens", "cached_tokens"):
                row[name] += int(event.get(name) or 0)
            _kind, _, model = event["model"].partition(":")
            cost = prices.cost(event.get("catalog_id") or _kind, model, TokenCounts(int(event.get("input_tokens") or 0), int(event.get("output_tokens") or 0), int(event.get("cached_tokens") or 0)))
            row["cost_usd"] = None if cost is None or row["cost_usd"] is None else row["cost_usd"] + cost
        elif kind == "error" and event.get("agent"):
            if event.get("kind") == "failback":
                review.notices.append(f"The {event['agent']} reviewer failed on {event.get('model')} ({event.get('message')}); trying the next model.")
            else:
                review.notices.append(f"The {event['agent']} reviewer produced no usable answer ({event.get('message')}); its part was skipped.")
        elif kind == "budget" and event.get("agent"):
            cuts.setdefault(str(event.get("scope")), []).append((str(event["agent"]), str(event.get("action"))))
        elif kind == "step_finish" and event.get("status") == "ok":
            finished_ok.add(event["agent"])
    for scope, agents in sorted(cuts.items()):
        what = "this review's" if scope == "review" else "its own"
        skipped = [a for a, action in agents if action == "skipped"]
        early = [a for a, action in agents if action != "skipped"]
        if early:
            review.notices.append(f"Token budget: {', '.join(early)} reached {what} input-token budget and answered "
                                  "before reading everything it asked for; its review may be incomplete.")
        if skipped:
            review.notices.append(f"Token budget: {', '.join(skipped)} did not run: this review's input-token budget "
                                  "was spent by the reviewers before it (review.review_input_tokens).")
    if result.malformed_lines:
        review.notices.append(f"The review worker wrote {result.malformed_lines} unreadable line(s); they were skipped.")
    review.usage = list(usage.values())
    review.ai_ran = bool(finished_ok)
    if not result.completed:
        review.notices.append(
            f"The review worker stopped unexpectedly (exit {result.exit_code}); the {len(findings)} findings it "
            "reported before that are kept."
        )
    return findings


def shared_context(request: ReviewRequest, change: ChangeSet, with_conventions: bool = True) -> str:
    """The change as the reviewers' user turn: everything in it is data written by the change's author.

    It never goes into the system message. Every piece is stripped of boundary tags and sits inside
    our own tags; it is identical for every reviewer, so provider prompt caches can share it.
    """
    title = request.title or git(change.repo, "log", "-1", "--format=%s", "--end-of-options", change.head, check=False).strip()
    body = request.body or git(change.repo, "log", "-1", "--format=%b", "--end-of-options", change.head, check=False).strip()
    files = "\n".join(f"- {safe_path(f.path)} ({f.status}{', symbolic link' if f.is_symlink else ''}, +{f.added} -{f.removed})"
                      for f in change.reviewable)
    parts = [
        # Cut, then strip: a cut made after stripping could leave half a tag ("</mr_details").
        f"<mr_details>\nTitle: {strip_boundary_tags(title[:2_000])}\n\n{strip_boundary_tags(body[:20_000])}\n</mr_details>",
        f"<changed_files>\n{files}\n</changed_files>",
        *(f"<mr_input>\n{strip_boundary_tags(section)}\n</mr_input>" for section in request.extra_context),
    ]
    if request.previous_review:
        parts.append(f"<previous_review>\n{strip_boundary_tags(request.previous_review)}\n</previous_review>")
    # The conventions in force are the base commit's: the change may rewrite AGENTS.md, and that
    # rewrite is reviewed in the diff, not obeyed.
    # A trivial change gets one reviewer and one call; conventions cost more than they help there.
    agents_md = change.base_tree.read_text("AGENTS.md", MAX_AGENTS_MD_READ_BYTES, errors="replace") if with_conventions else None
    if agents_md:
        text = strip_boundary_tags(agents_md[:MAX_CONTEXT_DOC_BYTES])
        parts.append(f"Repository conventions (AGENTS.md):\n<mr_input>\n{text}\n</mr_input>")
    return "\n\n".join(parts)


async def record_run(settings: Settings, review: Review, duration_s: float, break_glass: bool = False) -> None:
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
                    break_glass=int(break_glass),
                    break_glass_by=review.break_glass_by[:200] if break_glass and review.break_glass_by else None,
                    input_tokens=sum(int(u.get("input_tokens") or 0) for u in review.usage) if review.usage else None,
                    cached_tokens=sum(int(u.get("cached_tokens") or 0) for u in review.usage) if review.usage else None,
                )
            )
    finally:
        await engine.dispose()
