"""Memory across review rounds: fingerprints hidden in our comments, and the re-review rules.

Every inline comment we post carries `<!-- aiplane-review:finding fp=… severity=… -->`; the one
summary comment carries `<!-- aiplane-review:summary … -->` with the state of the round (head
reviewed, every finding's fingerprint and severity). The next round reads them back and applies:

- fixed (no longer reported) → omitted, and its thread resolved;
- still present → kept, and not posted again;
- worse (higher severity) → re-raised at the new severity;
- resolved, or answered "won't fix" / "acknowledged", by a human the host says may (`authorized`)
  → respected unless worse; anyone else's word does not silence a finding.

Break glass is a comment whose whole first line is the command, from such a human too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiplane.repository.git import is_object_id
from aiplane.review.report import SEVERITY_ORDER, Finding
from aiplane.vcs.model import Comment, Thread

SUMMARY_MARKER = "<!-- aiplane-review:summary"
_SUMMARY = re.compile(r"<!-- aiplane-review:summary (v1|v2) ([A-Za-z0-9+/=_-]{1,200000}) -->")
MAX_STATE_BYTES = 1024 * 1024
_FINDING = re.compile(r"<!-- aiplane-review:finding fp=([0-9a-f]{16}) severity=(critical|warning|suggestion|nit) -->")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_WORD = re.compile(r"[a-z0-9]+")
# A dismissal is an answer that starts with it: "won't fix", "wontfix", "will not fix", "acknowledged",
# "ack'd" (curly quotes too). "This is NOT a won't fix" or "please acknowledge" say the opposite.
_DISMISSAL = re.compile(r" {0,3}(won['’]?t[ -]?fix|will not fix|acknowledged|ack['’]?d)\b", re.IGNORECASE)
# What our inline comments show: the badge, then the title (see report.inline_markdown).
_SHOWN = re.compile(r"\*\*\S+ (critical|warning|suggestion|nit)\*\* — \*\*(.+?)\*\*")
# The whole first line and nothing else: "break glass" or "break-glass", an optional leading "/"
# and trailing "." or "!", any case, at most three leading spaces (four make a code block). ASCII
# only (re.ASCII, or IGNORECASE would take the Kelvin sign for k and the long s for s), so
# look-alike letters, zero-width and other format characters, fullwidth forms and HTML entities
# are not the command; nor is it inside a code block, an HTML comment, a quote or a sentence.
_BREAK_GLASS = re.compile(r" {0,3}/?break[ -]glass[.!]?[ \t]*", re.IGNORECASE | re.ASCII)

# Whether a comment's author may break glass or dismiss a finding (the host's `authorized`).
Authorizer = Callable[[Comment], bool]


def nobody(_comment: Comment) -> bool:
    return False


def fingerprint(finding: Finding) -> str:
    """Stable across rounds: file, rule or category and the title's words; never the line, which moves."""
    words = " ".join(_WORD.findall(finding.title.lower()))
    key = f"{finding.file}\0{finding.rule_id or finding.category}\0{words}"
    if finding.discriminator:
        key += f"\0{finding.discriminator}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def finding_marker(finding: Finding) -> str:
    return f"<!-- aiplane-review:finding fp={fingerprint(finding)} severity={finding.severity} -->"


def summary_marker(state: dict[str, Any]) -> str:
    """v2: compressed, so a review with hundreds of findings still fits in one comment."""
    packed = base64.urlsafe_b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 9)).decode()
    return f"{SUMMARY_MARKER} v2 {packed} -->"


def read_summary_state(body: str) -> dict[str, Any] | None:
    # Ours is the last marker in the body: anything before it is text we quoted, never state.
    matches = _SUMMARY.findall(body)
    if not matches:
        return None
    version, packed = matches[-1]
    try:
        raw = base64.urlsafe_b64decode(packed)
        if version == "v2":
            inflate = zlib.decompressobj()
            raw = inflate.decompress(raw, MAX_STATE_BYTES)  # a marker is data: bounded, even compressed
            if inflate.unconsumed_tail:
                return None
        state = json.loads(raw)
    except (ValueError, binascii.Error, zlib.error, RecursionError):
        return None
    return state if isinstance(state, dict) else None


def read_finding_marker(body: str) -> tuple[str, str] | None:
    matches = _FINDING.findall(body)
    return matches[-1] if matches else None


def is_dismissal(body: str) -> bool:
    """Whether a reply dismisses the finding: its first line starts with won't fix / acknowledged."""
    return _DISMISSAL.match(body.split("\n", 1)[0]) is not None


def is_break_glass(body: str) -> bool:
    """Whether the comment is a break-glass request: its whole first line is the command."""
    first = body.split("\n", 1)[0].removesuffix("\r")
    return first.isascii() and _BREAK_GLASS.fullmatch(first) is not None


@dataclass
class BreakGlass:
    """Who asked to break glass: the first authorised human, and those before them who may not."""

    by: Comment | None = None
    ignored: list[Comment] = field(default_factory=list)
    # Requests in comments edited after posting: the host names the author, not whoever edited.
    edited: list[Comment] = field(default_factory=list)
    # Requests already spent on an earlier head: one comment approves one push, not every later one.
    spent: list[Comment] = field(default_factory=list)


def break_glass(comments: list[Comment], authorized: Authorizer, spent: dict[str, str] | None = None,
                head: str = "") -> BreakGlass:
    """Break-glass requests from humans, judged in order (checked before any model call).

    `spent` maps the ids of comments that already approved a head to that head (from our summary's
    state): such a comment still counts for that head, never for a later push.
    """
    found = BreakGlass()
    for comment in comments:
        if comment.is_bot or not is_break_glass(comment.body):
            continue
        if comment.edited:
            found.edited.append(comment)
            continue
        if spent and comment.id in spent and spent[comment.id] != head:
            found.spent.append(comment)
            continue
        if authorized(comment):
            found.by = comment
            break
        found.ignored.append(comment)
    return found


def is_our_summary(body: str) -> bool:
    """Our summary's shape: its last line is a marker whose state names the head it reviewed. A
    comment by the same account in any other shape (another workflow's) is never ours."""
    if not _last_line(body).startswith(SUMMARY_MARKER):
        return False
    state = read_summary_state(body)
    return state is not None and (is_object_id(state.get("head")) or state.get("head") == "")


def latest_state(comments: list[Comment], bot: str) -> dict[str, Any]:
    """The state in our newest summary comment (empty when there is none)."""
    ours = [c for c in comments if c.author == bot and is_our_summary(c.body)]
    return (read_summary_state(ours[-1].body) or {}) if ours else {}


def spent_break_glass(state: dict[str, Any]) -> dict[str, str]:
    """Break-glass comments that approved a head, as our state recorded them: {comment id: head}."""
    spent = state.get("break_glass")
    found: dict[str, str] = {}
    for item in spent if isinstance(spent, list) else []:
        if isinstance(item, dict) and isinstance(item.get("comment"), str) and is_object_id(item.get("head")):
            found[item["comment"][:64]] = item["head"]
    return found


def _last_line(body: str) -> str:
    return body.rstrip().rsplit("\n", 1)[-1].strip()


def worse(new: str, old: str) -> bool:
    return SEVERITY_ORDER[new] < SEVERITY_ORDER[old]


@dataclass
class Prior:
    """One finding from an earlier round: from the summary state, with its thread when it had one."""

    fingerprint: str
    severity: str
    title: str = ""
    thread: Thread | None = None
    # What the thread shows (severity, title); a thread counts only for the finding it shows.
    shown: tuple[str, str] | None = None
    # Whose word counts here: the host's check, set by `recall`; nobody's until then.
    authorized: Authorizer = field(default=nobody, repr=False, compare=False)

    def _attempts(self) -> list[Comment]:
        """Humans who resolved the thread or answered won't fix / acknowledged, whatever their authority."""
        thread = self.thread
        if thread is None:
            return []
        resolver = thread.resolver()
        found = [resolver] if resolver is not None and resolver.author != thread.author and not resolver.is_bot else []
        return found + [reply for reply in thread.replies if not reply.is_bot and not reply.edited and is_dismissal(reply.body)]

    def dismissal(self) -> Comment | None:
        """The first authorised human who resolved it or answered won't fix / acknowledged."""
        return next((who for who in self._attempts() if self.authorized(who)), None)

    @property
    def dismissed(self) -> bool:
        """An authorised human resolved it, or answered won't fix / acknowledged."""
        return self.dismissal() is not None

    def unheeded(self) -> list[str]:
        """Who tried to dismiss it without the authority to (empty once someone authorised has)."""
        if self.dismissed:
            return []
        return list(dict.fromkeys(who.author for who in self._attempts()))


@dataclass
class Memory:
    previous_summary: str | None = None
    previous_head: str | None = None
    priors: dict[str, Prior] = field(default_factory=dict)

    def describe(self) -> str:
        """For the reviewers' shared context: what we said before and what people answered."""
        if self.previous_summary is None and not self.priors:
            return ""
        lines = [f"Previous review of {self.previous_head or 'an earlier head'}."]
        for prior in self.priors.values():
            where = f"{prior.thread.path}:{prior.thread.line}" if prior.thread and prior.thread.path else "summary only"
            status = "resolved" if prior.thread and prior.thread.resolved else "open"
            if prior.dismissed:
                status = "dismissed by an authorised reviewer"
            elif prior.unheeded():
                status += "; a dismissal by someone without the authority to dismiss findings does not count"
            lines.append(f"- [{prior.severity}] {prior.title} ({where}; {status})")
            for reply in prior.thread.replies if prior.thread else []:
                who = "us" if reply.is_bot else "an authorised reviewer" if prior.authorized(reply) else "someone without authority to dismiss"
                lines.append(f"  - reply from {who}: {reply.body[:300]}")
        return "\n".join(lines)


def recall(comments: list[Comment], threads: list[Thread], bot: str, authorized: Authorizer) -> Memory:
    """What earlier rounds left behind: only comments we wrote count, whatever their text claims;
    only `authorized` humans' dismissals count."""
    memory = Memory()
    ours = [c for c in comments if c.author == bot and is_our_summary(c.body)]
    if ours:
        memory.previous_summary = ours[-1].body
        state = read_summary_state(ours[-1].body) or {}
        # A marker is data even in our own comment: only a full commit id is ever used as a revision.
        memory.previous_head = state.get("head") if is_object_id(state.get("head")) else None
        for item in state.get("findings", []) if isinstance(state.get("findings"), list) else []:
            if (isinstance(item, dict) and isinstance(item.get("fp"), str) and _FINGERPRINT.match(item["fp"])
                    and isinstance(item.get("severity"), str) and item["severity"] in SEVERITY_ORDER):
                memory.priors[item["fp"]] = Prior(item["fp"], item["severity"], str(item.get("title", ""))[:200])
    by_fp: dict[str, list[tuple[str, Thread]]] = {}
    for thread in threads:
        marker = read_finding_marker(thread.body) if thread.author == bot else None
        if marker is not None:
            by_fp.setdefault(marker[0], []).append((marker[1], thread))
    for fp, candidates in by_fp.items():
        # Several rounds may have posted a thread for one finding (it got worse, or came back, or
        # someone without the authority resolved it): the live one is the most severe, open
        # before resolved, newest first.
        severity, thread = min(reversed(candidates), key=lambda c: (SEVERITY_ORDER[c[0]], c[1].resolved))
        prior = memory.priors.setdefault(fp, Prior(fp, severity))
        prior.thread = thread
        shown = _SHOWN.search(thread.body)
        prior.shown = (shown.group(1), shown.group(2)) if shown else None
    for prior in memory.priors.values():
        prior.authorized = authorized
    return memory


@dataclass
class Plan:
    """What this round shows and does, after applying the re-review rules."""

    findings: list[Finding] = field(default_factory=list)
    post: list[Finding] = field(default_factory=list)
    raise_again: list[tuple[Prior, Finding]] = field(default_factory=list)
    resolve: list[Prior] = field(default_factory=list)
    fixed: int = 0
    respected: int = 0
    # Who tried to dismiss a finding still present without the authority to.
    unheeded: list[str] = field(default_factory=list)


def reconcile(current: list[Finding], memory: Memory) -> Plan:
    plan = Plan()
    seen: set[str] = set()
    for finding in current:
        fp = fingerprint(finding)
        seen.add(fp)
        prior = memory.priors.get(fp)
        if prior is not None and prior.thread is not None and not _shows(prior, finding):
            # Anyone who can post as our account could plant a thread whose hidden marker names this
            # finding while it shows something else; only a thread that shows the finding is its thread.
            prior.thread = None
        if prior is None:
            plan.findings.append(finding)
            plan.post.append(finding)
            continue
        if prior.dismissed:
            if worse(finding.severity, prior.severity):
                plan.findings.append(finding)
                plan.post.append(finding)
            else:
                plan.respected += 1
            continue
        plan.unheeded.extend(who for who in prior.unheeded() if who not in plan.unheeded)
        if prior.thread is not None and prior.thread.resolved:
            # We resolved it once and it came back, or someone without the authority resolved it: a new thread.
            plan.findings.append(finding)
            plan.post.append(finding)
        elif worse(finding.severity, prior.severity):
            plan.findings.append(finding)
            if prior.thread is not None:
                plan.raise_again.append((prior, finding))
            else:
                plan.post.append(finding)
        else:
            plan.findings.append(finding)
            if prior.thread is None:
                plan.post.append(finding)  # summary-only before (over the cap); try inline now
    for fp, prior in memory.priors.items():
        if fp in seen:
            continue
        if prior.thread is None:
            plan.fixed += 1  # it was in the summary only
        elif not prior.thread.resolved:
            plan.resolve.append(prior)
            plan.fixed += 1
    return plan


def _shows(prior: Prior, finding: Finding) -> bool:
    from aiplane.review.report import shown_title

    if prior.shown is None:
        return False
    severity, title = prior.shown
    return severity == prior.severity and _WORD.findall(title.lower()) == _WORD.findall(shown_title(finding).lower())


def round_state(head: str, findings: list[Finding], break_glass_spent: dict[str, str] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"head": head, "findings": [{"fp": fingerprint(f), "severity": f.severity, "title": f.title[:120]}
                                                        for f in findings]}
    if break_glass_spent:
        state["break_glass"] = [{"comment": c, "head": h} for c, h in list(break_glass_spent.items())[-100:]]
    return state
