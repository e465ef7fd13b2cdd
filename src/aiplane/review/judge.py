"""The coordinator's deterministic pass: drop weak findings and merge duplicates across reviewers."""

from __future__ import annotations

import re

from aiplane.review.report import SEVERITY_ORDER, Finding

MIN_CONFIDENCE = 0.5
DETERMINISTIC = ("secret-scan", "codex")
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def _same_issue(a: Finding, b: Finding) -> bool:
    if a.file != b.file:
        return False
    if a.rule_id and b.rule_id and a.rule_id != b.rule_id:
        return False  # two different rules broken on nearby lines are two findings
    if a.discriminator and b.discriminator and a.discriminator != b.discriminator:
        return False  # two different secrets on nearby lines are two findings
    overlap = a.start_line <= b.end_line + 2 and b.start_line <= a.end_line + 2
    if not overlap:
        return False
    if a.category == b.category:
        return True
    wa, wb = _words(a.title), _words(b.title)
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= 0.5


def supported(finding: Finding, file_lines: dict[str, int], changed: dict[str, set[int]], slack: int = 3) -> bool:
    """A claim must point at lines that exist and that the change touched (or sit right beside them)."""
    if finding.source in ("secret-scan", "codex"):
        return True
    length = file_lines.get(finding.file)
    if length is None or finding.start_line > length:
        return False
    touched = changed.get(finding.file, set())
    span = range(finding.start_line - slack, finding.end_line + slack + 1)
    return not touched or any(line in touched for line in span)


def consolidate(findings: list[Finding], min_confidence: float = MIN_CONFIDENCE) -> list[Finding]:
    """Keep one finding per issue: the most severe, most confident report, crediting every reviewer."""
    kept: list[Finding] = []
    # Deterministic findings lead their group: a model's finding merges into a secret-scan or codex
    # finding (crediting the model), never the other way round, so the deterministic one keeps its
    # identity (a secret's hash) and cannot be dismissed under the model's.
    ranked = sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.source not in DETERMINISTIC, -f.confidence))
    for finding in ranked:
        if finding.confidence < min_confidence and finding.source not in ("secret-scan", "codex"):
            continue
        twin = next((k for k in kept if _same_issue(k, finding)), None)
        if twin is None:
            kept.append(finding)
            continue
        sources = set(twin.source.split(", ")) | {finding.source}
        twin.source = ", ".join(sorted(sources))
        twin.confidence = max(twin.confidence, finding.confidence)
        twin.start_line = min(twin.start_line, finding.start_line)
        twin.end_line = max(twin.end_line, finding.end_line)
    return kept
