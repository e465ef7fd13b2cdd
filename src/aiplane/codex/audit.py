"""Auditing a codebase against the codex: COMPLIANT / PARTIAL / NON-COMPLIANT per rule, with evidence.

Deterministic rules are judged by their checks. Rules marked `ai` get N independent model passes;
the majority status is reported with its agreement ratio, and disagreement is shown, not hidden.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from aiplane.codex.checks import ScopeIndex, Violation, repository_files, scan_repository
from aiplane.codex.rules import Codex, Rule

Status = Literal["COMPLIANT", "PARTIAL", "NON-COMPLIANT", "NOT ASSESSED"]
PARTIAL_SHARE = 0.2  # violations in at most this share of in-scope files is PARTIAL
MAX_EVIDENCE = 10
MAX_SAMPLE_BYTES = 24 * 1024


@dataclass
class RuleResult:
    rule_id: str
    title: str
    severity: str
    status: Status
    method: str
    files_in_scope: int
    evidence: list[str] = field(default_factory=list)
    violation: str = ""
    remediation: str = ""
    agreement: float | None = None
    votes: dict[str, int] = field(default_factory=dict)


class Verdict(BaseModel):
    status: Literal["COMPLIANT", "PARTIAL", "NON-COMPLIANT"]
    evidence: list[str] = Field(default_factory=list, description="file:line references")
    violation: str = ""
    remediation: str = ""


def _deterministic(rule: Rule, in_scope: list[str], violations: list[Violation]) -> RuleResult:
    bad_files = {v.file for v in violations}
    if not in_scope:
        status: Status = "COMPLIANT"
    elif not violations:
        status = "COMPLIANT"
    elif len(bad_files) <= max(1, int(len(in_scope) * PARTIAL_SHARE)) and len(in_scope) > 1:
        status = "PARTIAL"
    else:
        status = "NON-COMPLIANT"
    return RuleResult(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        status=status,
        method="check",
        files_in_scope=len(in_scope),
        evidence=[f"{v.file}:{v.line}: {v.text}" for v in violations[:MAX_EVIDENCE]],
        violation=f"{len(violations)} match(es) in {len(bad_files)} of {len(in_scope)} files" if violations else "",
        remediation=rule.statement.strip() if violations else "",
    )


def _sample(repo: Path, files: list[str]) -> str:
    parts, size = [], 0
    for path in files:
        try:
            text = (repo / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        numbered = "\n".join(f"{i}: {line}" for i, line in enumerate(text.splitlines()[:200], 1))
        chunk = f"### {path}\n{numbered}\n"
        if size + len(chunk) > MAX_SAMPLE_BYTES:
            break
        parts.append(chunk)
        size += len(chunk)
    return "\n".join(parts)


async def _ai_rule(rule: Rule, repo: Path, in_scope: list[str], model, passes: int) -> RuleResult:  # noqa: ANN001
    from pydantic_ai import Agent

    sample = _sample(repo, in_scope)
    instructions = (
        "You audit code against one engineering rule. Answer with the status COMPLIANT, PARTIAL or "
        "NON-COMPLIANT, evidence as file:line references from the code shown, the violation in one "
        "sentence, and one remediation step. Judge only the code shown.\n\n"
        f"Rule {rule.id}: {rule.title}\n{rule.statement}\nWhy: {rule.rationale}"
    )

    async def one() -> Verdict | None:
        agent = Agent(model, output_type=Verdict, instructions=instructions, retries=1)
        try:
            result = await agent.run(f"The code in scope:\n{sample}", model_settings={"temperature": 0.7})
            return result.output
        except Exception:  # noqa: BLE001 - a failed pass is a missing vote, not a crash
            return None

    verdicts = [v for v in await asyncio.gather(*(one() for _ in range(passes))) if v is not None]
    if not verdicts:
        return RuleResult(rule.id, rule.title, rule.severity, "NOT ASSESSED", "ai", len(in_scope), violation="every model pass failed")
    votes = Counter(v.status for v in verdicts)
    (status, count), *rest = votes.most_common()
    tied = bool(rest) and rest[0][1] == count
    chosen = next(v for v in verdicts if v.status == status)
    result = RuleResult(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        status=status,
        method=f"ai ({len(verdicts)} passes)",
        files_in_scope=len(in_scope),
        evidence=chosen.evidence[:MAX_EVIDENCE],
        violation=chosen.violation,
        remediation=chosen.remediation,
        agreement=round(count / len(verdicts), 2),
        votes=dict(votes),
    )
    if tied or count < len(verdicts):
        result.violation = (result.violation + " " if result.violation else "") + (
            f"[passes disagree: {', '.join(f'{k} x{v}' for k, v in votes.items())}]"
        )
    return result


def audit(codex: Codex, repo: Path, model=None, passes: int = 3) -> list[RuleResult]:  # noqa: ANN001
    files = repository_files(repo)
    rules = codex.active()
    scopes = ScopeIndex(files)
    checked = scan_repository(repo, rules, files, scopes)
    results: list[RuleResult] = []
    pending = []
    for rule in rules:
        in_scope = scopes.in_scope(rule)
        if rule.deterministic:
            results.append(_deterministic(rule, *checked[rule.id]))
        elif rule.check == "ai" and model is not None and in_scope:
            pending.append((rule, in_scope))
        else:
            reason = "no files in scope" if not in_scope else ("no model configured" if rule.check == "ai" else "rule has no check")
            status: Status = "COMPLIANT" if not in_scope else "NOT ASSESSED"
            results.append(RuleResult(rule.id, rule.title, rule.severity, status, "none", len(in_scope), violation=reason))
    if pending:
        async def run_all() -> list[RuleResult]:
            return list(await asyncio.gather(*(_ai_rule(r, repo, s, model, passes) for r, s in pending)))

        results.extend(asyncio.run(run_all()))
    order = {r.id: i for i, r in enumerate(rules)}
    return sorted(results, key=lambda r: order[r.rule_id])


def render_markdown(results: list[RuleResult], repo: Path) -> str:
    counts = Counter(r.status for r in results)
    lines = [
        f"# Codex audit of {repo.name}",
        "",
        " · ".join(f"**{status}** {counts.get(status, 0)}" for status in ("COMPLIANT", "PARTIAL", "NON-COMPLIANT", "NOT ASSESSED")),
        "",
        "| Rule | Title | Severity | Status | Agreement | Method |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        agreement = f"{r.agreement:.0%}" if r.agreement is not None else "—"
        lines.append(f"| {r.rule_id} | {r.title} | {r.severity} | {r.status} | {agreement} | {r.method} |")
    for r in results:
        if r.status == "COMPLIANT":
            continue
        lines += ["", f"## {r.rule_id}: {r.title} — {r.status}", ""]
        if r.violation:
            lines.append(f"**Violation:** {r.violation}")
        if r.evidence:
            lines += ["", "**Evidence:**"] + [f"- `{e}`" for e in r.evidence]
        if r.remediation:
            lines += ["", f"**Remediation:** {r.remediation}"]
    return "\n".join(lines) + "\n"


def render_json(results: list[RuleResult]) -> str:
    return json.dumps({"schema_version": "1.0", "results": [asdict(r) for r in results]}, indent=2) + "\n"
