"""Deterministic secret scan of the lines a change adds (detect-secrets, with its false-positive filters).

The change under review cannot waive it:

- every changed file is scanned, noise included: a lock-file name, a `vendor/` folder or an
  `@generated` header decides what the AI reviewers read, not what the scan sees;
- files are scanned under neutral names, so a name (`*.lock`, `*swagger*`, `*.css`) cannot
  switch the scan off, and a path can never place a file outside the scan's own directory;
- a suppression pragma (`# pragma: allowlist secret`) counts only where it already exists in the
  base version of the file;
- content git would call binary, non-UTF-8 text and files too big to scan whole are still scanned:
  big files by their added lines, binary files by the lines the base version does not have.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.filters.allowlist import is_line_allowlisted
from detect_secrets.filters.heuristic import IGNORED_FILE_EXTENSIONS
from detect_secrets.settings import default_settings, get_settings
from detect_secrets.util.code_snippet import CodeSnippet
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from aiplane.review.changes import ChangedFile, ChangeSet, texts
from aiplane.review.report import Finding

# Entropy detectors flag hashes and ids constantly; the specific detectors are what we trust.
NOISY_TYPES = {"Base64 High Entropy String", "Hex High Entropy String"}
# Files up to this size are scanned whole (detect-secrets parses YAML and config files as a whole).
MAX_FILE_BYTES = 2 * 1024 * 1024
# Binary files are compared line by line with their base version up to this size.
MAX_BINARY_BYTES = 8 * 1024 * 1024
ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"


def _scan_name(index: int, path: str) -> str:
    """A neutral file name that keeps the extension detect-secrets parses by, unless it is one it skips."""
    ext = os.path.splitext(path.rsplit("/", 1)[-1])[1].lower()
    if not ext or ext in IGNORED_FILE_EXTENSIONS or not ext[1:].isalnum() or len(ext) > 10:
        ext = ".txt"
    return f"{index:05d}{ext}"


def _added_text(changed: ChangedFile) -> dict[int, str]:
    try:
        patched = PatchSet(changed.patch)
    except UnidiffParseError:
        return {}
    return {line.target_line_no: line.value.rstrip("\n") for file in patched for hunk in file for line in hunk
            if line.is_added and line.target_line_no}


def _sparse(lines: dict[int, str]) -> str:
    """Only the given lines, at their line numbers; every other line blank."""
    if not lines:
        return ""
    last = max(lines)
    return "\n".join(lines.get(n, "") for n in range(1, last + 1)) + "\n"


def scan(change: ChangeSet) -> tuple[list[Finding], list[str]]:
    """Findings for secrets on added lines, and notices for files that could not be scanned."""
    notices: list[str] = []
    candidates = [f for f in change.files if f.status != "deleted" and not f.is_symlink and f.mode != "160000"]
    small = [f.path for f in candidates if (change.head_tree.size(f.path) or 0) <= MAX_FILE_BYTES]
    head = texts(change.head_tree, small, MAX_FILE_BYTES, errors="replace")
    base_paths = [f.path for f in candidates if f.status != "added"]
    base = texts(change.base_tree, base_paths, MAX_BINARY_BYTES, errors="replace")
    targets: list[tuple[ChangedFile, str, set[int]]] = []
    for changed in candidates:
        if changed.binary:
            content = _binary_text(change, changed)
            if content is None:
                notices.append(f"Not scanned for secrets: {changed.path} (binary, larger than {MAX_BINARY_BYTES // (1024 * 1024)} MiB).")
                continue
            old = Counter(base.get(changed.path, "").replace("\0", "\n").splitlines())
            added = set()
            for number, line in enumerate(content.splitlines(), start=1):
                if old[line] > 0:
                    old[line] -= 1
                else:
                    added.add(number)
            targets.append((changed, content, added))
        elif changed.added_lines:
            content = head.get(changed.path)
            if content is None:
                content = _sparse(_added_text(changed))  # too big to scan whole: its added lines
            targets.append((changed, content, set(changed.added_lines)))
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="aiplane-secrets-") as tmp, default_settings():
        get_settings().disable_filters(ALLOWLIST_FILTER)
        root = Path(tmp)
        names: dict[str, tuple[ChangedFile, set[int]]] = {}
        for index, (changed, content, added) in enumerate(targets):
            name = _scan_name(index, changed.path)
            (root / name).write_text(content, encoding="utf-8", errors="replace")
            names[name] = (changed, added)
        collection = SecretsCollection(root=str(root))
        for name in names:
            collection.scan_file(name)
        seen: set[tuple[str, int]] = set()
        for name, secret in collection:
            changed, added = names[name]
            line = secret.line_number
            if secret.type in NOISY_TYPES or line not in added or (changed.path, line) in seen:
                continue
            if _allowlisted_in_base(name, _line(root / name, line), base.get(changed.path)):
                continue
            seen.add((changed.path, line))
            findings.append(_finding(changed.path, line, secret.type))
    return findings, notices


def _binary_text(change: ChangeSet, changed: ChangedFile) -> str | None:
    if (change.head_tree.size(changed.path) or 0) > MAX_BINARY_BYTES:
        return None
    found = texts(change.head_tree, [changed.path], MAX_BINARY_BYTES, errors="replace").get(changed.path)
    return None if found is None else found.replace("\0", "\n")


def _line(path: Path, number: int) -> str:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for current, text in enumerate(handle, start=1):
            if current == number:
                return text.rstrip("\n")
    return ""


def _allowlisted_in_base(name: str, line: str, base_text: str | None) -> bool:
    """A pragma counts only where the base version already had this line with it (and its line before)."""
    if not base_text or not line.strip():
        return False
    lines = base_text.splitlines()
    for index, candidate in enumerate(lines):
        if candidate.rstrip() != line.rstrip():
            continue
        start = max(index - 1, 0)
        snippet = CodeSnippet(lines[start : index + 1], start + 1, index - start)
        if is_line_allowlisted(name, candidate, snippet):
            return True
    return False


def _finding(path: str, line: int, kind: str) -> Finding:
    return Finding(
        file=path,
        start_line=line,
        end_line=line,
        category="security",
        severity="critical",
        title=f"{kind} committed",
        explanation=(
            f"Line {line} adds a credential that detect-secrets identifies ({kind}). A secret "
            "in version control is exposed to everyone with read access and stays in history."
        ),
        suggestion="Remove it, rotate the credential, and load it from the environment or a secret manager.",
        confidence=0.9,
        rule_id=None,
        source="secret-scan",
    )

