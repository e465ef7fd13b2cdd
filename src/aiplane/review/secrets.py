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

Precision (docs/review.md, "What is critical"): a finding's severity follows what was found and
where, never what the change says about itself:

- a real-format credential (every detector but the keyword and basic-auth ones: AWS `AKIA...`,
  GitHub `ghp_...`, private key blocks, Slack, Stripe, JWT, ...) is critical wherever it is, test
  folders included; only a value that spells out an example (`AKIAIOSFODNN7EXAMPLE`, a key body
  cut short with `...`) is a warning;
- a keyword or basic-auth hit (`password = "..."`, `API_KEY: ...`, `user:pass@host`) whose value
  is an obvious placeholder (`dummy`, `example`, `changeme`, `xxx`, `test`, `fake`, `<...>`,
  `${...}`, just `password`, three distinct characters or fewer, ...) is dropped;
- any other such hit in a test file or a documentation file is a warning; elsewhere, config
  files included (read as config, so `password: value` and `KEY=value` count unquoted), it stays
  critical.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from detect_secrets.core.scan import scan_diff
from detect_secrets.filters.allowlist import is_line_allowlisted
from detect_secrets.plugins.keyword import DENYLIST_REGEX
from detect_secrets.settings import default_settings, get_filters, get_plugins, get_settings
from detect_secrets.util.code_snippet import CodeSnippet

from aiplane.review.changes import ChangedFile, ChangeSet, texts
from aiplane.review.report import Finding

# Entropy detectors flag hashes and ids constantly; the specific detectors are what we trust.
NOISY_TYPES = {"Base64 High Entropy String", "Hex High Entropy String"}
# Not credentials: entropy-only detectors (hashes, ids) and public IP addresses.
OFF_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector")
# Base versions are read this far, for pragmas; heads too, for private-key blocks.
MAX_FILE_BYTES = 2 * 1024 * 1024
# Binary files are scanned up to this size; a bigger one is a warning finding.
MAX_BINARY_BYTES = 16 * 1024 * 1024
# Files in a review scanned as binaries: each at most this big, all together at most the total.
MAX_BINARY_TOTAL_BYTES = 64 * 1024 * 1024
PIECE = 4096
KEYWORD_PIECE = 256
KEYWORD_BATCH = 2000
DEFAULT_KEYWORD_SECONDS = 60.0
BLANK_RUN = re.compile(r"[ \t]{17,}")
PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{8,}")
BEGIN_KEY = re.compile(r"BEGIN[ A-Z0-9]*PRIVATE KEY")
# Lines the keyword detector could flag name one of its keywords (detect_secrets.plugins.keyword.DENYLIST).
KEYWORD_HINT = re.compile(DENYLIST_REGEX, re.IGNORECASE)
ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"
PRIVATE_KEY = "Private Key"
KEYWORD_TYPE = "Secret Keyword"
# Detectors that judge a value by what names it (a keyword, a URL's user:password), not by its format.
KEYWORD_LIKE = {KEYWORD_TYPE, "Basic Auth Credentials"}
CONFIG_FILE = re.compile(r"\.(ya?ml|ini|cfg|conf|cnf|properties|toml|env)$|(^|/)\.env(\.[^/]*)?$", re.IGNORECASE)
DOC_FILE = re.compile(r"\.(md|markdown|rst|adoc|txt)$|(^|/)docs?/", re.IGNORECASE)
# A value that is just the name of what it stands for.
NAME_ONLY = re.compile(r"^(password|passwd|pass|pwd|secret|token|key|apikey|api_key|api-key|credentials?|none|null|true|false)$",
                       re.IGNORECASE)
# Words no real credential spells out: a value holding one is a placeholder.
PLACEHOLDER_WORDS = re.compile(
    r"dummy|example|changeme|change_me|change-me|placeholder|sample|fake|mock|xxx|test|redacted|your[_-]|"
    r"insert|replace|secret_here|password_here|todo|foobar|lorem", re.IGNORECASE)
# Real-format keys are random: only these (not "test": Stripe's sk_test_ keys are real) mark an
# example: a value ending in EXAMPLE / EXAMPLEKEY, as AWS's documented keys do, or a placeholder word.
EXAMPLE_WORDS = re.compile(r"example(key)?$|dummy|placeholder|changeme|x{6,}", re.IGNORECASE)
TEMPLATE = re.compile(r"^[<{\[(].*[>}\])]$|^\$\{?[A-Za-z_]|^%\(?[A-Za-z_]|^\*+$|^\.+$")
TEST_DIR = re.compile(r"(^|/)(tests?|__tests__|spec|specs|testdata|test_data|test-data|fixtures?|__fixtures__|__mocks__|mocks?)/",
                      re.IGNORECASE)
TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test\.[A-Za-z0-9]+|[^/]*\.(test|spec)\.[A-Za-z0-9]+|conftest\.py)$", re.IGNORECASE)


def is_placeholder(value: str | None) -> bool:
    """A keyword hit's value that cannot be a real credential (the rule in docs/review.md)."""
    if value is None:
        return False
    text = value.strip().strip("\"'`")
    return (not text or len(set(text.lower())) <= 3 or PLACEHOLDER_WORDS.search(text) is not None
            or TEMPLATE.search(text) is not None or NAME_ONLY.search(text) is not None)


def is_config(path: str) -> bool:
    return CONFIG_FILE.search(path) is not None


def in_tests(path: str) -> bool:
    return TEST_DIR.search(path) is not None or TEST_FILE.search(path) is not None


def severity_for(kind: str, path: str, value: str | None) -> str | None:
    """critical, warning, or None (dropped): the documented precision rule."""
    if kind not in KEYWORD_LIKE:
        example = value is not None and (EXAMPLE_WORDS.search(value) is not None or "..." in value or "\u2026" in value)
        return "warning" if example else "critical"
    if is_placeholder(value):
        return None
    return "warning" if in_tests(path) or DOC_FILE.search(path) else "critical"


@dataclass
class _Line:
    path: str
    number: int  # git's line number at head; 0 for the file's name or link target
    text: str
    previous: str | None = None  # the line before, for a "nextline" pragma
    noise: bool = False


@dataclass
class _Lines:
    """The lines to scan, each with where it came from."""

    origin: list[_Line] = field(default_factory=list)

    def add(self, path: str, number: int, line: str, previous: str | None = None, noise: bool = False) -> None:
        self.origin.append(_Line(path, number, _calm(line), previous, noise))

    def pieces(self, size: int, only: Callable[[_Line], bool] | None = None) -> tuple[list[str], list[int]]:
        """Lines cut into overlapping pieces of at most `size` characters, and each piece's line."""
        texts_, owners = [], []
        step = size - size // 4
        for index, line in enumerate(self.origin):
            if only is not None and not only(line):
                continue
            text = line.text
            for start in range(0, max(len(text), 1), step) if len(text) > size else [0]:
                texts_.append(text[start : start + size])
                owners.append(index)
        return texts_, owners


def _calm(line: str) -> str:
    """A line as git sees it (a bare carriage return or form feed does not start a new one here),
    without NULs (UTF-16 text in a file git calls text), and no run of blanks longer than 16."""
    for odd in ("\r", "\x0b", "\x0c", "\x85"):
        if odd in line:
            line = line.replace(odd, " ")
    if "\x00" in line:
        line = line.replace("\x00", "")
    return BLANK_RUN.sub(" " * 16, line)


_UTF16_LE = re.compile(rb"(?:[\x20-\x7e]\x00){8,}")
_UTF16_BE = re.compile(rb"(?:\x00[\x20-\x7e]){8,}")
_UTF32_LE = re.compile(rb"(?:[\x20-\x7e]\x00\x00\x00){8,}")
_UTF32_BE = re.compile(rb"(?:\x00\x00\x00[\x20-\x7e]){8,}")


def decode_binary(data: bytes) -> list[str]:
    """Text in content git calls binary, wherever it sits: printable ASCII runs, and UTF-16 and
    UTF-32 runs in either byte order (no byte-order mark needed, no guess from the first bytes)."""
    found = [run.decode("ascii") for run in PRINTABLE_RUN.findall(data)]
    if b"\x00" in data:
        found += [run.decode("utf-16-le", "replace") for run in _UTF16_LE.findall(data)]
        found += [run.decode("utf-16-be", "replace") for run in _UTF16_BE.findall(data)]
        found += [run.decode("utf-32-le", "replace") for run in _UTF32_LE.findall(data)]
        found += [run.decode("utf-32-be", "replace") for run in _UTF32_BE.findall(data)]
    lines: list[str] = []
    for run in found:
        lines += run.splitlines()
    return lines


def scan(change: ChangeSet, keyword_seconds: float = DEFAULT_KEYWORD_SECONDS) -> tuple[list[Finding], list[str]]:
    """Secrets on added lines as critical findings, plus notices about what could not be read."""
    notices: list[str] = []
    findings: list[Finding] = []
    candidates = [f for f in change.files if f.status != "deleted" and f.mode != "160000"]
    readable = [f for f in candidates if not f.is_symlink]
    base = texts(change.base_tree, [f.path for f in readable if f.status != "added"], MAX_FILE_BYTES, errors="replace")
    heads = change.head_texts()
    lines = _Lines()
    key_blocks: list[Hit] = []
    binary_budget, binaries_seen = MAX_BINARY_TOTAL_BYTES, set()
    for changed in readable:
        noise = changed.noise_reason is not None
        if changed.binary:
            size = change.head_tree.size(changed.path) or 0
            oid = change.head_tree.object_id(changed.path)
            if oid in binaries_seen:
                continue  # the same content again: scanned once
            if size > MAX_BINARY_BYTES or size > binary_budget:
                findings.append(_unscanned(changed.path, f"this binary file is {size // (1024 * 1024)} MiB, over the "
                                           f"secret scan's {MAX_BINARY_BYTES // (1024 * 1024)} MiB per-file or "
                                           f"{MAX_BINARY_TOTAL_BYTES // (1024 * 1024)} MiB per-review limit"))
                continue
            binary_budget -= size
            binaries_seen.add(oid)
            data = change.head_tree.read_bytes(changed.path, MAX_BINARY_BYTES) or b""
            before = change.base_tree.read_bytes(changed.path, MAX_BINARY_BYTES) if changed.status != "added" else None
            old = Counter(decode_binary(before or b""))
            for number, line in enumerate(decode_binary(data), start=1):
                if old[line] > 0:
                    old[line] -= 1
                else:
                    lines.add(changed.path, number, line, noise=noise)
            continue
        for number, text in changed.added_text.items():
            lines.add(changed.path, number, text, changed.context_text.get(number - 1), noise)
        key_blocks += _key_blocks(heads.get(changed.path), changed, set(changed.added_text))
    for changed in candidates:  # line 0: the file's name or link target, not a line of it
        lines.add(changed.path, 0, changed.path)
        if changed.is_symlink:
            lines.add(changed.path, 0, change.head_tree.symlink_target(changed.path) or "")
    hits, _ = _scan_lines(lines, keyword=False, deadline=None)
    deadline = time.monotonic() + keyword_seconds
    keyword_hits, finished = _scan_lines(lines, keyword=True, deadline=deadline)
    if finished:
        config_hits, finished = _scan_lines(lines, keyword=True, deadline=deadline, config=True)
        keyword_hits += config_hits
    if not finished:
        findings.append(_unscanned(
            "", f"the keyword check (\"password = ...\") did not finish within {keyword_seconds:g} s; the specific "
            "detectors (AWS, GitHub, private keys and others) did finish"))
    seen: set[tuple[str, int, str]] = set()
    # A private key is told apart by its block (every RSA key's BEGIN line reads alike).
    blocks = {(hit[0], hit[1]): hit[3] for hit in key_blocks}
    block_texts = {(hit[0], hit[1]): hit[5] for hit in key_blocks}
    for hit in key_blocks + hits + keyword_hits:
        path, number, kind, secret_hash, line, value = hit
        if kind == PRIVATE_KEY:
            secret_hash = blocks.get((path, number), secret_hash)
            value = block_texts.get((path, number), value)
        if (path, number, kind) in seen or (path, -1, secret_hash) in seen:
            continue
        if _allowlisted_in_base(path, line, base.get(path)):
            continue
        seen.update({(path, number, kind), (path, -1, secret_hash)})
        severity = severity_for(kind, path, value)
        if severity is not None:
            findings.append(_finding(path, number, kind, secret_hash, severity))
    return findings, notices


# path, line, type, what tells this secret apart, the line scanned, the value found (kept in memory only)
Hit = tuple[str, int, str, str, _Line, str | None]


def _scan_lines(lines: _Lines, keyword: bool, deadline: float | None, config: bool = False) -> tuple[list[Hit], bool]:
    """Added lines as one synthetic diff through detect-secrets' own diff scanner, so each line is
    read as plain text. `keyword` runs only the keyword detector, on lines that name a keyword,
    the change's reviewed files before its noise, in batches until `deadline`. With `config`, only
    config files' lines, read as config (`password: value` and `KEY=value` need no quotes there)."""
    name = "scan.ini" if config else "scan.txt"
    if keyword:
        texts_, owners = lines.pieces(KEYWORD_PIECE, lambda line: KEYWORD_HINT.search(line.text) is not None
                                      and (not config or is_config(line.path)))
        order = sorted(range(len(texts_)), key=lambda i: lines.origin[owners[i]].noise)
        texts_, owners = [texts_[i] for i in order], [owners[i] for i in order]
    else:
        texts_, owners = lines.pieces(PIECE)
    hits: list[Hit] = []
    with default_settings():
        settings = get_settings()
        others = [name for name in settings.plugins if name != "KeywordDetector"]
        settings.disable_plugins(*(others if keyword else ["KeywordDetector", *OFF_PLUGINS]))
        # Lines of a diff we wrote; the file does not exist, and pragmas are judged against the base.
        off = [ALLOWLIST_FILTER, "detect_secrets.filters.common.is_invalid_file"]
        if not keyword:
            # "x = os.getenv('X', 'AKIA...')" is a literal key all the same; the filter is for keyword guesses.
            off.append("detect_secrets.filters.heuristic.is_indirect_reference")
        settings.disable_filters(*off)
        get_filters.cache_clear()
        get_plugins.cache_clear()
        # Outside config files every detector and filter left on judges a line by its own text alone
        # (the one filter that reads neighbouring lines, the pragma, is off), so each distinct text is
        # scanned once and its hits go to every line that holds it.
        groups = _distinct(texts_, owners) if not config else [(text, [owner]) for text, owner in zip(texts_, owners, strict=True)]
        if not keyword:
            groups = [groups[i] for i in _could_match(get_plugins(), [text for text, _ in groups])]
        batch = KEYWORD_BATCH if keyword else len(groups) or 1
        for start in range(0, len(groups), batch):
            if deadline is not None and time.monotonic() > deadline:
                get_filters.cache_clear()
                get_plugins.cache_clear()
                return hits, False
            chunk = groups[start : start + batch]
            body = "".join(f"+{text}\n" for text, _ in chunk)
            for secret in scan_diff(f"--- a/{name}\n+++ b/{name}\n@@ -0,0 +1,{len(chunk)} @@\n{body}"):
                if secret.type in NOISY_TYPES or not 1 <= secret.line_number <= len(chunk):
                    continue
                for owner in chunk[secret.line_number - 1][1]:
                    line = lines.origin[owner]
                    hits.append((line.path, line.number, secret.type, secret.secret_hash, line, secret.secret_value))
    get_filters.cache_clear()
    get_plugins.cache_clear()
    if not keyword:
        # Private keys detect-secrets does not list (PKCS#8 "ENCRYPTED PRIVATE KEY" and the like).
        hits += [(line.path, line.number, PRIVATE_KEY, hashlib.sha1(line.text.encode()).hexdigest(), line, None)
                 for line in lines.origin if BEGIN_KEY.search(line.text)]
    return hits, True


def _distinct(texts_: list[str], owners: list[int]) -> list[tuple[str, list[int]]]:
    """Each distinct text once, in first-seen order, with every line that holds it."""
    grouped: dict[str, list[int]] = {}
    for text, owner in zip(texts_, owners, strict=True):
        grouped.setdefault(text, []).append(owner)
    return list(grouped.items())


# Characters Python's str.splitlines breaks at that the scanned diff might treat as line ends too:
# searched as "\n" so that a detector's ^ and $ see the same boundaries either way.
_LINE_BREAKS = str.maketrans({c: "\n" for c in "\x1c\x1d\x1e\u2028\u2029"})


def _could_match(plugins: list, texts_: list[str]) -> list[int]:
    """The indexes of the texts at least one detector could flag, found by running every enabled
    detector's own patterns once over all texts together (a C loop) instead of detect-secrets'
    per-line, per-plugin dispatch (about 175 us a line: a 400,000-line file took 70 s).

    Sound by construction: each detector here flags a line only where one of its `denylist`
    patterns matches the line's right-stripped text; every such match is found in the joined text
    (searched with MULTILINE, so ^ and $ hold at each line's ends) or a match found there overlaps
    it, and every line a match touches is kept. A detector without a `denylist` keeps every line."""
    patterns = []
    for plugin in plugins:
        denylist = getattr(plugin, "denylist", None)
        if not denylist:
            return list(range(len(texts_)))
        patterns += [re.compile(regex.pattern, regex.flags | re.MULTILINE) for regex in denylist]
    stripped = [text.rstrip() for text in texts_]
    starts, offset = [], 0
    for text in stripped:
        starts.append(offset)
        offset += len(text) + 1
    joined = "\n".join(stripped).translate(_LINE_BREAKS)
    keep: set[int] = set()
    for pattern in patterns:
        for match in pattern.finditer(joined):
            first = bisect.bisect_right(starts, match.start()) - 1
            last = bisect.bisect_right(starts, max(match.end() - 1, match.start())) - 1
            keep.update(range(first, last + 1))
    return sorted(keep)


def _key_blocks(text: str | None, changed: ChangedFile, added: set[int]) -> list[Hit]:
    """Private keys in this file's added lines: told apart by their whole block (every RSA key's
    BEGIN line is alike), and caught when only the block's body changed under an old BEGIN line."""
    if text is None:
        text = "\n".join(changed.context_text.get(n, "") for n in range(1, max(changed.context_text, default=0) + 1))
    if "PRIVATE KEY" not in text:
        return []
    lines = text.split("\n")
    hits = []
    for index, line in enumerate(lines, start=1):
        if not BEGIN_KEY.search(line):
            continue
        # A whole key on one line (a JSON string with "\n" escapes) ends where it starts.
        same_line = "END" in line[BEGIN_KEY.search(line).end():]  # type: ignore[union-attr]
        end = index if same_line else next((n for n in range(index + 1, min(len(lines), index + 200) + 1)
                                            if "PRIVATE KEY" in lines[n - 1] and "END" in lines[n - 1]), min(len(lines), index + 200))
        first_added = next((n for n in range(index, end + 1) if n in added), None)
        if first_added is not None:
            block = "\n".join(lines[index - 1 : end])
            digest = hashlib.sha1(block.encode()).hexdigest()
            hits.append((changed.path, first_added, PRIVATE_KEY, digest,
                         _Line(changed.path, first_added, lines[first_added - 1], lines[first_added - 2] if first_added > 1 else None),
                         block))
    return hits


def _allowlisted_in_base(path: str, line: _Line, base_text: str | None) -> bool:
    """A pragma counts only where the change keeps it as the base version already had it: the same
    line with it (or the same line after the same "nextline" pragma line) existed in the base."""
    if not base_text or not line.text.strip() or not line.number:
        return False
    # The comment syntax detect-secrets expects follows the extension (YAML takes only `#`).
    name = "scan" + ("." + path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ".txt")
    here = [line.previous or "", line.text]
    if not is_line_allowlisted(name, line.text, CodeSnippet(here, 1, 1)):
        return False  # no pragma where the key is now
    lines = base_text.split("\n")
    for index, candidate in enumerate(lines):
        if _calm(candidate).rstrip() != line.text.rstrip():
            continue
        before = lines[index - 1] if index else ""
        same_line = is_line_allowlisted(name, candidate, CodeSnippet(["", candidate], 1, 1))
        if same_line or (_calm(before).rstrip() == (line.previous or "").rstrip()
                         and is_line_allowlisted(name, candidate, CodeSnippet([before, candidate], 1, 1))):
            return True
    return False


def _finding(path: str, line: int, kind: str, secret_hash: str, severity: str = "critical") -> Finding:
    where = f"Line {line} adds" if line else "This file's name or symlink target holds"
    if severity != "critical":
        why = ("in a test file, so it is likely a fixture" if kind == KEYWORD_TYPE
               else "but its value reads like a documentation example")
        return Finding(
            file=path, start_line=max(line, 1), end_line=max(line, 1), category="security", severity=severity,
            title=f"Possible {kind.lower()} committed",
            explanation=f"{where} what detect-secrets takes for a credential ({kind}), {why}. Check it is not a real one.",
            suggestion="If it is real, remove and rotate it; load credentials from the environment.",
            confidence=0.5, rule_id=None, source="secret-scan", discriminator=secret_hash[:16],
        )
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
