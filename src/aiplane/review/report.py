"""Findings and the review: the JSON schema, the markdown comment and SARIF 2.1.0."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import quote

SCHEMA_VERSION = "1.0"
Severity = Literal["critical", "warning", "suggestion", "nit"]
Verdict = Literal["approve", "approve_with_comments", "request_changes"]
SEVERITY_ORDER = {"critical": 0, "warning": 1, "suggestion": 2, "nit": 3}
BADGES = {"critical": "🔴 critical", "warning": "🟠 warning", "suggestion": "🔵 suggestion", "nit": "⚪ nit"}
VERDICT_TEXT = {
    "approve": "✅ Approve",
    "approve_with_comments": "💬 Approve with comments",
    "request_changes": "⛔ Request changes",
}
SARIF_LEVEL = {"critical": "error", "warning": "warning", "suggestion": "note", "nit": "note"}


@dataclass
class Finding:
    file: str
    start_line: int
    end_line: int
    category: str
    severity: Severity
    title: str
    explanation: str
    suggestion: str | None = None
    confidence: float = 0.5
    rule_id: str | None = None
    source: str = "model"
    rule_link: str | None = None
    # Tells apart findings with the same title in one file (e.g. two different committed keys),
    # so memory across rounds treats them as two; never shown.
    discriminator: str | None = None


@dataclass
class Review:
    repository: str
    base: str
    head: str
    tier: str
    tier_reasons: list[str]
    agents: list[str]
    findings: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    files_reviewed: int = 0
    files_skipped: list[dict[str, str]] = field(default_factory=list)
    ai_ran: bool = False
    usage: list[dict[str, Any]] = field(default_factory=list)
    # Who broke glass: a human asked to approve without review; the verdict is then approve.
    break_glass_by: str | None = None

    @property
    def verdict(self) -> Verdict:
        if self.break_glass_by is not None:
            return "approve"
        if any(f.severity == "critical" and f.category == "security" for f in self.findings):
            return "request_changes"
        if any(f.severity == "critical" for f in self.findings):
            return "request_changes"
        return "approve_with_comments" if self.findings else "approve"

    def ordered(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.category, f.file, f.start_line))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "repository": self.repository,
            "base": self.base,
            "head": self.head,
            "verdict": self.verdict,
            "tier": self.tier,
            "tier_reasons": self.tier_reasons,
            "agents": self.agents,
            "ai_reviewers_ran": self.ai_ran,
            "files_reviewed": self.files_reviewed,
            "files_skipped": self.files_skipped,
            "notices": self.notices,
            "findings": [asdict(f) for f in self.ordered()],
            "usage": self.usage,
            "break_glass": self.break_glass_by is not None,
        }


def render_markdown(review: Review, max_chars: int | None = None) -> str:
    """The review as one markdown comment; with `max_chars`, findings past the budget are counted, not shown."""
    lines = [f"## {VERDICT_TEXT[review.verdict]}", ""]
    lines.append(
        f"**Tier:** {review.tier} ({_safe('; '.join(review.tier_reasons), inline=True)}) · **Reviewers:** "
        f"{_safe(', '.join(review.agents), inline=True) or 'none'}"
    )
    if review.break_glass_by is not None:
        lines += ["", f"> 🔓 **Break glass**: approved without review at the request of "
                      f"{_safe('@' + review.break_glass_by, inline=True)}. This is recorded."]
    for notice in review.notices:
        lines += ["", f"> ⚠️ {_safe(notice, inline=True)}"]
    main = [f for f in review.ordered() if f.severity != "nit"]
    nits = [f for f in review.ordered() if f.severity == "nit"]
    if not review.findings:
        lines += ["", "No findings."]
    budget = [max_chars - sum(len(line) + 1 for line in lines) - 2000 if max_chars else None, 0]

    def fits(text: str) -> bool:
        if budget[0] is None:
            return True
        if budget[0] - len(text) < 0:
            budget[1] += 1
            return False
        budget[0] -= len(text)
        return True

    by_category: dict[str, list[Finding]] = {}
    for finding in main:
        by_category.setdefault(finding.category, []).append(finding)
    for category, items in by_category.items():
        shown = [text for text in (_finding_markdown(f) for f in items) if fits(text)]
        if shown:
            lines += ["", f"### {_safe(category.replace('_', ' ').title())}"]
            for text in shown:
                lines += ["", text]
    shown_nits = [text for text in (_finding_markdown(f) for f in nits) if fits(text)]
    if shown_nits:
        lines += ["", f"<details><summary>{len(shown_nits)} nit{'s' if len(shown_nits) != 1 else ''}</summary>", ""]
        for text in shown_nits:
            lines += [text, ""]
        lines.append("</details>")
    if budget[1]:
        lines += ["", f"> {budget[1]} more finding(s) did not fit in this comment; the JSON and SARIF output list them all."]
    if review.files_skipped:
        skipped = ", ".join(f"{_code(s['path'])} ({_safe(s['reason'], inline=True)})" for s in review.files_skipped[:10])
        more = f" and {len(review.files_skipped) - 10} more" if len(review.files_skipped) > 10 else ""
        lines += ["", f"<sub>Not reviewed: {skipped}{more}.</sub>"]
    return "\n".join(lines) + "\n"


_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_MENTION = re.compile(r"@[A-Za-z0-9][A-Za-z0-9_./-]*")


def _markers(text: str) -> str:
    return text.replace("<!--", "&lt;!--").replace("-->", "--&gt;")


def _safe(text: str, inline: bool = False) -> str:
    """Model and user text as markdown: no hidden markers, HTML, images or mentions in our comments.

    Code spans are kept as CommonMark finds them on one line (a backslash-escaped backtick opens
    none; a line break ends the chance, since a new line can start a block), since they render
    literally; a backtick run that closes nothing is escaped so it cannot pair with another later.
    Outside them `<` before a tag or comment, image openers and @mentions are neutralised, and
    markers are broken up everywhere. `inline` makes it one line (tier reasons, notices).
    """
    if inline:
        text = " ".join(text.split())
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in _PUNCTUATION:
            out.append(text[i : i + 2])  # an escaped character is literal text
            i += 2
            continue
        if ch == "`":
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            close = _closing_run(text, i + run, run)
            if close is not None:
                out.append(text[i : close + run])
                i = close + run
                continue
            out.append("\\`" * run)
            i += run
            continue
        if ch == "<" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] in "/!?"):
            out.append("&lt;")
        elif ch == "!" and i + 1 < n and text[i + 1] == "[":
            out.append("!\\")
        elif ch == "@" and (i == 0 or not (text[i - 1].isascii() and text[i - 1].isalnum())) and (mention := _MENTION.match(text, i)):
            out.append(f"`{mention.group(0)}`")  # shown, never a notification
            i = mention.end()
            continue
        else:
            out.append(ch)
        i += 1
    return _markers("".join(out))


def _closing_run(text: str, start: int, run: int) -> int | None:
    """Where a backtick run of exactly `run` backticks closes a code span opened before `start`, on the same line."""
    line_end = text.find("\n", start)
    limit = len(text) if line_end < 0 else line_end
    position = start
    while True:
        found = text.find("`" * run, position, limit)
        if found < 0:
            return None
        end = found + run
        while end < limit and text[end] == "`":
            end += 1
        if end - found == run:
            return found
        position = end


def _code(text: str) -> str:
    """A path or other untrusted name as one inline code span, whatever backticks or line breaks it holds."""
    shown = _markers("".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


_RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-\d{2,3}$")
_RULE_LINK = re.compile(r"^(?:https?://[^\s()<>]+|[A-Za-z0-9._/#-]+)$")


def _rule(f: Finding) -> str:
    """A codex rule reference; a rule id or link that is not one (a model can write anything) is left out."""
    if not f.rule_id or not _RULE_ID.match(f.rule_id):
        return ""
    return f" · [{f.rule_id}]({f.rule_link})" if f.rule_link and _RULE_LINK.match(f.rule_link) else f" · `{f.rule_id}`"


_BLOCK_START = re.compile(r"^(\s*)(\d*)([#=>|+*.)-])")


def _block(text: str, indent: str = "") -> str:
    """Multi-line untrusted text: every line indented into its list item, and none starts a block of
    its own (a heading that looks like our verdict, a quote, a list, a table)."""
    lines = (_BLOCK_START.sub(lambda m: m.group(1) + m.group(2) + "\\" + m.group(3), line) for line in text.splitlines() or [""])
    return ("\n" + indent).join(_safe(line) for line in lines)


def _finding_markdown(f: Finding) -> str:
    where = _code(f"{f.file}:{f.start_line}") + (f"–{f.end_line}" if f.end_line != f.start_line else "")
    text = f"- **{BADGES[f.severity]}** {where} — **{shown_title(f)}**{_rule(f)}\n  {_block(f.explanation, '  ')}"
    if f.suggestion:
        text += f"\n  _Suggested fix:_ {_block(f.suggestion, '  ')}"
    return text


def shown_title(f: Finding) -> str:
    """The title as our comments show it: one line."""
    return _safe(" ".join(f.title.split()))


def inline_markdown(f: Finding) -> str:
    """The body of an inline comment on the finding's line."""
    text = f"**{BADGES[f.severity]}** — **{shown_title(f)}**{_rule(f)}\n\n{_block(f.explanation)}"
    if f.suggestion:
        text += f"\n\n_Suggested fix:_ {_block(f.suggestion)}"
    return text + f"\n\n<sub>aiplane review · {_safe(f.source)}</sub>"


# Where a rule's help lives when a finding names no link of its own: the review docs, whose
# "Findings in SARIF" section describes every category. Deployments point it at their own copy
# (`review.docs_url`; the GitHub Action sets it to the action's own repository).
DEFAULT_DOCS_URL = "https://github.com/your-org/aiplane/blob/main/docs/review.md"
CATEGORY_HELP = {
    "security": "Exploitable vulnerabilities the change introduces: injection, broken authorization, secrets, SSRF and the like.",
    "performance": "Performance regressions on hot paths: complexity, I/O in loops, N+1 queries.",
    "quality": "Correctness and maintainability: logic errors, error handling, missing tests.",
    "docs": "Documentation the change makes wrong or leaves missing: README, docs, docstrings, CLI help.",
    "release": "Release impact: breaking changes, migrations, configuration and dependency changes.",
    "codex": "Violations of the organisation's engineering codex rules that apply to the changed files.",
    "agents_md": "Places where AGENTS.md no longer matches the repository after the change.",
    "secrets": "Credentials committed in the change.",
}
# GitHub code scanning ranks security alerts by this CVSS-like score (critical > 9.0, high 7.0-8.9,
# medium 4.0-6.9, low 0.1-3.9): https://docs.github.com/en/code-security/code-scanning
SECURITY_SEVERITY = {"critical": "9.1", "warning": "7.0", "suggestion": "4.0", "nit": "2.0"}
PROBLEM_SEVERITY = {"critical": "error", "warning": "warning", "suggestion": "recommendation", "nit": "recommendation"}
FINGERPRINT_KEY = "aiplaneFinding/v1"
_CATEGORY_ID = re.compile(r"[^a-z0-9_-]+")
_TEXT_LIMIT = 4000


def _plain(text: str, limit: int = _TEXT_LIMIT) -> str:
    """Model text as one bounded SARIF string (GitHub renders `text` as plain text)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _category_id(category: str) -> str:
    return _CATEGORY_ID.sub("-", category.lower()).strip("-")[:64] or "finding"


def _is_security(f: Finding) -> bool:
    return f.category in ("security", "secrets")


def _sarif_rule_id(f: Finding) -> str:
    """A codex rule keeps its own id (checked, since a model can write anything); everything else
    is a rule per reviewer category."""
    if f.rule_id and _RULE_ID.match(f.rule_id):
        return f.rule_id
    return f"aiplane/{_category_id(f.category)}"


def _help_uri(f: Finding, docs_url: str) -> str:
    if f.rule_id and _RULE_ID.match(f.rule_id) and f.rule_link and re.match(r"^https?://[^\s()<>]+$", f.rule_link):
        return f.rule_link
    return f"{docs_url}#findings-in-sarif"


def _sarif_rule(f: Finding, rule_id: str, docs_url: str) -> dict[str, Any]:
    category = _category_id(f.category)
    help_uri = _help_uri(f, docs_url)
    if rule_id.startswith("aiplane/"):
        name = "".join(part.title() for part in re.split(r"[_-]+", category)) + "Review"
        short = f"aiplane review: {category.replace('_', ' ')}"
        full = CATEGORY_HELP.get(category, f"Findings of the aiplane '{category}' reviewer.")
    else:
        # A Pascal-case friendly name, as SARIF2012 asks: API-001 → CodexRuleApi001.
        name = "CodexRule" + "".join(part.title() for part in rule_id.split("-"))
        short = f"Codex rule {rule_id}"
        full = f"The engineering codex rule {rule_id}: {_plain(shown_title(f), 500)}"
    tags = ["aiplane-review", category]
    if _is_security(f):
        tags.insert(0, "security")
    if not rule_id.startswith("aiplane/"):
        tags.append("codex")
    tags = list(dict.fromkeys(tags))  # the schema wants unique tags ("security" may be the category too)
    help_text = f"{full} The finding explains the problem at its location and usually suggests a fix. See {help_uri}"
    return {
        "id": rule_id,
        "name": name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": f"{full}\n\nThe finding explains the problem at its location and usually "
                                               f"suggests a fix. [More about this rule]({help_uri})."},
        "helpUri": help_uri,
        "defaultConfiguration": {"level": SARIF_LEVEL[f.severity]},
        "properties": {"tags": tags, "precision": "medium", "problem.severity": PROBLEM_SEVERITY[f.severity]},
    }


def _worse(a: Severity, b: Severity) -> bool:
    return SEVERITY_ORDER[a] < SEVERITY_ORDER[b]


def render_sarif(review: Review, docs_url: str | None = None) -> dict[str, Any]:
    """SARIF 2.1.0 as GitHub code scanning reads it: one rule per reviewer category or codex rule,
    with help; the memory fingerprint as a partial fingerprint, so an alert keeps its identity across
    pushes while its line moves; security findings scored (`security-severity`) and tagged."""
    # Imported here: memory builds on this module's Finding, and the fingerprint must be the one
    # memory keeps in our comments, so code scanning and the PR thread agree on "the same finding".
    from aiplane import __version__
    from aiplane.review.memory import fingerprint

    docs = (docs_url or DEFAULT_DOCS_URL).split("#", 1)[0]
    rules: dict[str, dict[str, Any]] = {}
    worst: dict[str, Severity] = {}
    results = []
    for f in review.ordered():
        rule_id = _sarif_rule_id(f)
        if rule_id not in rules:
            rules[rule_id] = {**_sarif_rule(f, rule_id, docs), "_index": len(rules)}
        rule = rules[rule_id]
        if rule_id not in worst or _worse(f.severity, worst[rule_id]):
            worst[rule_id] = f.severity
            rule["defaultConfiguration"]["level"] = SARIF_LEVEL[f.severity]
            rule["properties"]["problem.severity"] = PROBLEM_SEVERITY[f.severity]
            if _is_security(f):
                rule["properties"]["security-severity"] = SECURITY_SEVERITY[f.severity]
        title = _plain(f.title, 300).rstrip(".")
        message = f"{title}: {_plain(f.explanation)}"
        if f.suggestion:
            message += f" Fix: {_plain(f.suggestion)}"
        properties: dict[str, Any] = {"severity": f.severity, "confidence": f.confidence, "source": f.source,
                                      "category": f.category, "tags": rule["properties"]["tags"]}
        if _is_security(f):
            properties["security-severity"] = SECURITY_SEVERITY[f.severity]
        start = max(f.start_line, 1)
        results.append(
            {
                "ruleId": rule_id,
                "ruleIndex": rule["_index"],
                "level": SARIF_LEVEL[f.severity],
                "message": {"text": message if message.endswith((".", "!", "?")) else message + "."},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _artifact_uri(f.file), "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": start, "endLine": max(f.end_line, start)},
                        }
                    }
                ],
                "partialFingerprints": {FINGERPRINT_KEY: fingerprint(f)},
                "properties": properties,
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "aiplane-review",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": docs,
                        "rules": [{k: v for k, v in r.items() if k != "_index"} for r in rules.values()],
                    }
                },
                "results": results,
                "properties": {"verdict": review.verdict, "tier": review.tier},
            }
        ],
    }


def _artifact_uri(path: str) -> str:
    """A repository path as a relative URI reference (RFC 3986): spaces, '#', '%' and the like
    percent-encoded, never a scheme or an absolute path GitHub would refuse."""
    return quote(path.lstrip("/"), safe="/-._~!$&'()*+,;=:@") or "."


def render(review: Review, fmt: str, docs_url: str | None = None) -> str:
    if fmt == "json":
        return json.dumps(review.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "sarif":
        return json.dumps(render_sarif(review, docs_url), indent=2, ensure_ascii=False) + "\n"
    return render_markdown(review)
