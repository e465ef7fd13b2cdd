"""Deterministic secret scan of the lines a change adds (detect-secrets, with its false-positive filters).

The change under review cannot waive it:

- every changed file is scanned, noise included: a lock-file name, a `vendor/` folder or an
  `@generated` header decides what the AI reviewers read, not what the scan sees;
- scan files get neutral names, so a name (`*.lock`, `*swagger*`, `*.css`) cannot switch the
  scan off, and a path can never place a file outside the scan's own directory;
- every added line is scanned on its own, as plain text, the way detect-secrets scans a diff: no
  parser decides that a YAML comment, a list item or an INI comment is not worth reading; a
  private key whose BEGIN line was already there counts when its block gains an added line;
- lines are numbered as git numbers them (a bare carriage return is not a line break), and very
  long lines are scanned in overlapping pieces;
- the specific detectors (AWS, GitHub, private keys, Slack, Stripe, ...) always finish: they are
  linear. Only the keyword detector ("password = ...") is slow on hostile lines (its patterns
  backtrack), so it runs second, under `review.secret_scan_seconds`; what it could not finish
  is a warning finding, never silence;
- a suppression pragma (`# pragma: allowlist secret`) counts only where the base version of the
  file already has that line with it;
- binary content is still scanned: UTF-16/UTF-32 text is decoded, other binaries by their
  printable strings; a file too big to scan at all is a warning finding, never silence;
- file names and symlink targets are scanned too.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from detect_secrets.core.scan import scan_diff
from detect_secrets.filters.allowlist import is_line_allowlisted
from detect_secrets.settings import default_settings, get_filters, get_settings
from detect_secrets.util.code_snippet import CodeSnippet

from aiplane.review.changes import ChangeSet, parse_hunks, texts
from aiplane.review.report import Finding

# Entropy detectors flag hashes and ids constantly; the specific detectors are what we trust.
NOISY_TYPES = {"Base64 High Entropy String", "Hex High Entropy String"}
# Not credentials: entropy-only detectors (hashes, ids) and public IP addresses.
OFF_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector")
# Base versions are read this far, for pragmas; heads too, for private-key blocks.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Binary files are scanned up to this size; a bigger one is a warning finding.
MAX_BINARY_BYTES = 64 * 1024 * 1024
PIECE = 4096
KEYWORD_PIECE = 256
KEYWORD_BATCH = 2000
DEFAULT_KEYWORD_SECONDS = 60.0
BLANK_RUN = re.compile(r"[ \t]{17,}")
PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{8,}")
BEGIN_KEY = re.compile(r"BEGIN[ A-Z0-9]*PRIVATE KEY")
ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"
PRIVATE_KEY = "Private Key"


@dataclass
class _Lines:
    """The lines to scan, each with where it came from: (path, git line number, the line)."""

    origin: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, path: str, number: int, line: str) -> None:
        self.origin.append((path, number, _calm(line)))

    def pieces(self, size: int) -> tuple[list[str], list[int]]:
        """Lines cut into overlapping pieces of at most `size` characters, and each piece's line."""
        texts, owners = [], []
        for index, (_path, _number, line) in enumerate(self.origin):
            step = size - size // 4
            for start in range(0, max(len(line), 1), step) if len(line) > size else [0]:
                texts.append(line[start : start + size])
                owners.append(index)
        return texts, owners


def _calm(line: str) -> str:
    """A line as git sees it: a bare carriage return or form feed does not start a new one here."""
    return BLANK_RUN.sub(" " * 16, line.replace("\r", " ").replace("\x0b", " ").replace("\x0c", " ").replace("\x85", " "))


def decode_binary(data: bytes) -> list[str]:
    """Lines of text from content git calls binary: UTF-16/32 decoded, anything else by its printable strings."""
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                       (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(codec, "replace").splitlines()
    sample = data[:4096]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return data.decode("utf-16-le", "replace").splitlines()
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return data.decode("utf-16-be", "replace").splitlines()
    return [run.decode("ascii") for run in PRINTABLE_RUN.findall(data)]


def scan(change: ChangeSet, keyword_seconds: float = DEFAULT_KEYWORD_SECONDS) -> tuple[list[Finding], list[str]]:
    """Secrets on added lines as critical findings, plus notices about what could not be read."""
    notices: list[str] = []
    findings: list[Finding] = []
    candidates = [f for f in change.files if f.status != "deleted" and f.mode != "160000"]
    readable = [f for f in candidates if not f.is_symlink]
    base = texts(change.base_tree, [f.path for f in readable if f.status != "added"], MAX_FILE_BYTES, errors="replace")
    lines = _Lines()
    key_blocks: list[Hit] = []
    for changed in readable:
        if changed.binary:
            size = change.head_tree.size(changed.path) or 0
            data = change.head_tree.read_bytes(changed.path, MAX_BINARY_BYTES) if size <= MAX_BINARY_BYTES else None
            if data is None:
                findings.append(_unscanned(changed.path, f"this binary file is {size // (1024 * 1024)} MiB, over the "
                                           f"secret scan's {MAX_BINARY_BYTES // (1024 * 1024)} MiB limit"))
                continue
            before = change.base_tree.read_bytes(changed.path, MAX_BINARY_BYTES) if changed.status != "added" else None
            old = Counter(decode_binary(before or b""))
            for number, line in enumerate(decode_binary(data), start=1):
                if old[line] > 0:
                    old[line] -= 1
                else:
                    lines.add(changed.path, number, line)
            continue
        added = {line.target_line_no: line.value.rstrip("\n")
                 for hunk in parse_hunks(changed.patch) or [] for line in hunk if line.is_added and line.target_line_no}
        for number, text in added.items():
            lines.add(changed.path, number, text)
        key_blocks += _key_blocks(change.head_texts().get(changed.path), changed.path, set(added))
    for changed in candidates:  # line 0: the file's name or link target, not a line of it
        lines.add(changed.path, 0, changed.path)
        if changed.is_symlink:
            lines.add(changed.path, 0, change.head_tree.symlink_target(changed.path) or "")
    hits, _ = _scan_lines(lines, keyword=False, deadline=None)
    keyword_hits, finished = _scan_lines(lines, keyword=True, deadline=time.monotonic() + keyword_seconds)
    if not finished:
        findings.append(_unscanned(
            "", f"the keyword check (\"password = ...\") did not finish within {keyword_seconds:g} s; the specific "
            "detectors (AWS, GitHub, private keys and others) did finish"))
    seen: set[tuple[str, int, str]] = set()
    for path, number, kind, secret_hash, text in hits + keyword_hits + key_blocks:
        if (path, number, kind) in seen or (path, -1, secret_hash) in seen:
            continue
        if _allowlisted_in_base(path, text, base.get(path)):
            continue
        seen.update({(path, number, kind), (path, -1, secret_hash)})
        findings.append(_finding(path, number, kind, secret_hash))
    return findings, notices


Hit = tuple[str, int, str, str, str]  # path, line, type, secret hash, original line


def _scan_lines(lines: _Lines, keyword: bool, deadline: float | None) -> tuple[list[Hit], bool]:
    """Added lines as one synthetic diff through detect-secrets' own diff scanner, so each line is
    read as plain text. `keyword` runs only the keyword detector, in batches, until `deadline`."""
    texts_, owners = lines.pieces(KEYWORD_PIECE if keyword else PIECE)
    hits: list[Hit] = []
    batch = KEYWORD_BATCH if keyword else len(texts_) or 1
    with default_settings():
        settings = get_settings()
        others = [name for name in settings.plugins if name != "KeywordDetector"]
        settings.disable_plugins(*(others if keyword else ["KeywordDetector", *OFF_PLUGINS]))
        # Lines of a diff we wrote; the file does not exist, and pragmas are judged against the base.
        settings.disable_filters(ALLOWLIST_FILTER, "detect_secrets.filters.common.is_invalid_file")
        get_filters.cache_clear()
        for start in range(0, len(texts_), batch):
            if deadline is not None and time.monotonic() > deadline:
                get_filters.cache_clear()
                return hits, False
            chunk = texts_[start : start + batch]
            body = "".join(f"+{text}\n" for text in chunk)
            for secret in scan_diff(f"--- a/scan.txt\n+++ b/scan.txt\n@@ -0,0 +1,{len(chunk)} @@\n{body}"):
                if secret.type in NOISY_TYPES or not 1 <= secret.line_number <= len(chunk):
                    continue
                path, number, text = lines.origin[owners[start + secret.line_number - 1]]
                hits.append((path, number, secret.type, secret.secret_hash, text))
    get_filters.cache_clear()
    return hits, True


def _key_blocks(text: str | None, path: str, added: set[int]) -> list[Hit]:
    """A private key whose BEGIN line was already there: its block gained an added line."""
    if not text or "PRIVATE KEY" not in text:
        return []
    lines = text.split("\n")
    hits = []
    for index, line in enumerate(lines, start=1):
        if index in added or not BEGIN_KEY.search(line):
            continue
        for number in range(index + 1, min(len(lines), index + 200) + 1):
            if "PRIVATE KEY" in lines[number - 1] and "END" in lines[number - 1]:
                break
            if number in added:
                digest = hashlib.sha1("\n".join(lines[index - 1 : index + 200]).encode()).hexdigest()
                hits.append((path, number, PRIVATE_KEY, digest, lines[number - 1]))
                break
    return hits


def _allowlisted_in_base(path: str, line: str, base_text: str | None) -> bool:
    """A pragma counts only where the base version already had this line with it (and its line before)."""
    if not base_text or not line.strip():
        return False
    # The comment syntax detect-secrets expects follows the extension (YAML takes only `#`).
    name = "scan" + ("." + path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ".txt")
    lines = base_text.split("\n")
    for index, candidate in enumerate(lines):
        if candidate.rstrip() != line.rstrip():
            continue
        start = max(index - 1, 0)
        if is_line_allowlisted(name, candidate, CodeSnippet(lines[start : index + 1], start + 1, index - start)):
            return True
    return False


def _finding(path: str, line: int, kind: str, secret_hash: str) -> Finding:
    where = f"Line {line} adds" if line else "This file's name or symlink target holds"
    return Finding(
        file=path,
        start_line=max(line, 1),
        end_line=max(line, 1),
        category="security",
        severity="critical",
        title=f"{kind} committed",
        explanation=(
            f"{where} a credential that detect-secrets identifies ({kind}). A secret "
            "in version control is exposed to everyone with read access and stays in history."
        ),
        suggestion="Remove it, rotate the credential, and load it from the environment or a secret manager.",
        confidence=0.9,
        rule_id=None,
        source="secret-scan",
        # Two different keys with the same title in one file are two findings: dismissing one
        # (an acknowledged test fixture) must not silence the other.
        discriminator=secret_hash[:16],
    )


def _unscanned(path: str, why: str) -> Finding:
    return Finding(
        file=path, start_line=1, end_line=1, category="security", severity="warning",
        title="Not fully scanned for secrets",
        explanation=f"The secret scan could not check everything this change adds: {why}.",
        suggestion="Check the change for credentials by hand, or split it.",
        confidence=1.0, rule_id=None, source="secret-scan",
    )
