"""Deterministic rule checks: a rule's regex over the files (or added lines) its scope covers."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiplane.codex.rules import RegexCheck, Rule

MAX_FILE_BYTES = 1024 * 1024
SKIP_DIRS = {".git", "node_modules", "vendor", "third_party", ".venv", "venv", "dist", "build", "__pycache__", "target"}


@dataclass(frozen=True)
class Violation:
    rule_id: str
    file: str
    line: int
    text: str


def repository_files(repo: Path) -> list[str]:
    """Tracked files when the folder is a git checkout, else every file below it (minus build dirs)."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, timeout=60)
    if listed.returncode == 0 and listed.stdout:
        return [p for p in listed.stdout.decode("utf-8", "replace").split("\0") if p]
    files = []
    for path in repo.rglob("*"):
        if path.is_file() and not (set(path.relative_to(repo).parts) & SKIP_DIRS):
            files.append(path.relative_to(repo).as_posix())
    return sorted(files)


_COMPILED: dict[str, re.Pattern[str]] = {}


def _compiled(rule: Rule) -> re.Pattern[str]:
    assert isinstance(rule.check, RegexCheck)
    pattern = _COMPILED.get(rule.check.regex)
    if pattern is None:
        # Rules are written per line (^ and $ anchor lines); MULTILINE lets one search cover a file.
        pattern = _COMPILED[rule.check.regex] = re.compile(rule.check.regex, re.MULTILINE)
    return pattern


def scan_text(rule: Rule, path: str, text: str, only_lines: set[int] | None = None) -> list[Violation]:
    """Matches of a rule in a file, one per line; searching the whole text at once keeps it in C."""
    pattern = _compiled(rule)
    found = []
    seen_lines: set[int] = set()
    for match in pattern.finditer(text):
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.start())
        if match.end() > (end if end >= 0 else len(text)) and match.start() != start:
            continue  # a match that spans lines is not a per-line rule hit
        number = text.count("\n", 0, match.start()) + 1
        if number in seen_lines or (only_lines is not None and number not in only_lines):
            continue
        seen_lines.add(number)
        found.append(Violation(rule.id, path, number, text[start : end if end >= 0 else len(text)].strip()[:200]))
    return found


class ScopeIndex:
    """Files per glob set, computed once: rules share globs, and fnmatch per rule per file adds up."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        self._names = {f: f.rsplit("/", 1)[-1] for f in files}
        self._cache: dict[tuple[str, ...], list[str]] = {}

    def in_scope(self, rule: Rule) -> list[str]:
        key = tuple(rule.scope.globs)
        if key not in self._cache:
            matched: set[str] = set()
            for glob in key:
                matched.update(fnmatch.filter(self.files, glob))
                pattern = re.compile(fnmatch.translate(glob))
                matched.update(f for f, name in self._names.items() if pattern.match(name))
            self._cache[key] = [f for f in self.files if f in matched]
        return self._cache[key]


def scan_repository(
    repo: Path, rules: list[Rule], files: list[str] | None = None, scopes: ScopeIndex | None = None
) -> dict[str, tuple[list[str], list[Violation]]]:
    """For each deterministic rule: (files in scope, violations)."""
    files = files if files is not None else repository_files(repo)
    scopes = scopes or ScopeIndex(files)
    results: dict[str, tuple[list[str], list[Violation]]] = {}
    texts: dict[str, str | None] = {}
    for rule in rules:
        if not rule.deterministic:
            continue
        in_scope = scopes.in_scope(rule)
        violations: list[Violation] = []
        for path in in_scope:
            if path not in texts:
                texts[path] = _read(repo / path)
            text = texts[path]
            if text is not None:
                violations.extend(scan_text(rule, path, text))
        results[rule.id] = (in_scope, violations)
    return results


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
