"""Risk tiers: how much review a change gets."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

from aiplane.review.changes import ChangeSet

Tier = Literal["trivial", "lite", "full"]

DEFAULT_SENSITIVE_GLOBS = (
    "*auth*", "*crypto*", "*secret*", "*permission*", "*password*", "*token*", "*session*", "*oauth*",
    "*.pem", "*.key", "*sudoers*", "*iam*", "*rbac*", "*acl*", "Dockerfile", "*.tf",
    # What configures tools and agents rather than the product: CI, code owners, git attributes,
    # the reviewer's own settings and reviewers. A change here changes who checks what.
    ".github/workflows/*", ".gitlab-ci.yml", "codeowners", ".gitattributes", ".gitmodules", ".aiplane",
    "aiplane.toml",
)


@dataclass(frozen=True)
class TierRule:
    max_files_full: int = 50
    trivial_max_lines: int = 10
    lite_max_lines: int = 100
    max_files_small: int = 20
    sensitive_globs: tuple[str, ...] = DEFAULT_SENSITIVE_GLOBS


@dataclass
class TierDecision:
    tier: Tier
    reasons: list[str] = field(default_factory=list)
    sensitive_paths: list[str] = field(default_factory=list)


def _sensitive(path: str, globs: tuple[str, ...]) -> bool:
    lowered = path.lower()
    parts = lowered.split("/")
    return any(fnmatch.fnmatch(lowered, g) or any(fnmatch.fnmatch(p, g) for p in parts) for g in globs)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def decide(change: ChangeSet, rule: TierRule = TierRule()) -> TierDecision:
    files = change.reviewable
    lines = change.changed_lines
    # A symlink or a submodule pointer is never harmless by its name: either can point anywhere.
    sensitive = [f.path for f in change.files if f.is_symlink or f.mode == "160000"
                 or (f.noise_reason in (None, "generated file (@generated)") and _sensitive(f.path, rule.sensitive_globs))]
    counts = (
        f"{_plural(len(files), 'file')}, {_plural(lines, 'changed line')} after dropping "
        f"{_plural(len(change.noise), 'noise file')}"
    )
    if len(files) > rule.max_files_full:
        return TierDecision("full", [f"more than {rule.max_files_full} files ({counts})"], sensitive)
    if sensitive:
        return TierDecision("full", [f"security-sensitive paths: {', '.join(sensitive[:5])}", counts], sensitive)
    if lines <= rule.trivial_max_lines and len(files) <= rule.max_files_small:
        return TierDecision("trivial", [counts])
    if lines <= rule.lite_max_lines and len(files) <= rule.max_files_small:
        return TierDecision("lite", [counts])
    return TierDecision("full", [counts])
