"""What changed between two commits: files, line counts, and which files are noise."""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

# Files whose diffs say nothing a reviewer should read. Migrations are deliberately absent.
NOISE_GLOBS = (
    "*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock", "poetry.lock",
    "uv.lock", "Cargo.lock", "go.sum", "composer.lock", "Gemfile.lock", "*.min.js", "*.min.css", "*.map",
)
VENDORED_DIRS = ("vendor/", "third_party/", "node_modules/", "vendored/", "_vendor/")
GENERATED_MARKER = "@generated"
MAX_DIFF_BYTES = 50 * 1024 * 1024


class ChangeError(Exception):
    """The repository or refs cannot be read; the message says which and why."""


@dataclass
class ChangedFile:
    path: str
    status: str  # added, modified, deleted, renamed
    added: int
    removed: int
    patch: str
    binary: bool = False
    noise_reason: str | None = None
    added_lines: list[int] = field(default_factory=list)

    @property
    def changed_lines(self) -> int:
        return self.added + self.removed


MAX_HEAD_FILE_BYTES = 8 * 1024 * 1024


@dataclass
class ChangeSet:
    repo: Path
    base: str
    head: str
    files: list[ChangedFile]
    _head_texts: dict[str, str] | None = field(default=None, repr=False)

    def head_texts(self) -> dict[str, str]:
        """Text of every reviewable file at head, read once (one git cat-file) and shared by all checks."""
        if self._head_texts is None:
            paths = [f.path for f in self.reviewable if f.status != "deleted" and not f.binary]
            self._head_texts = read_blobs(self.repo, self.head, paths, MAX_HEAD_FILE_BYTES)
        return self._head_texts

    @property
    def reviewable(self) -> list[ChangedFile]:
        return [f for f in self.files if f.noise_reason is None]

    @property
    def noise(self) -> list[ChangedFile]:
        return [f for f in self.files if f.noise_reason is not None]

    @property
    def changed_lines(self) -> int:
        return sum(f.changed_lines for f in self.reviewable)


def git(repo: Path, *args: str, check: bool = True, timeout: float = 120) -> str:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ChangeError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise ChangeError(f"git {args[0]} timed out") from None
    if check and result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ChangeError(f"git {args[0]} failed: {message}")
    return result.stdout


def read_blobs(repo: Path, rev: str, paths: list[str], max_bytes: int) -> dict[str, str]:
    """File contents at `rev`, all through one `git cat-file --batch` (one process, not one per file)."""
    paths = [p for p in paths if "\n" not in p]  # the batch protocol is line-based
    if not paths:
        return {}
    request = "".join(f"{rev}:{p}\n" for p in paths).encode()
    try:
        result = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"], input=request, capture_output=True, timeout=300)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        raise ChangeError("git cat-file failed") from None
    out, position, blobs = result.stdout, 0, {}
    for path in paths:
        newline = out.find(b"\n", position)
        if newline < 0:
            break
        header = out[position:newline].split()
        position = newline + 1
        if len(header) != 3:  # "<name> missing"
            continue
        size = int(header[2])
        content = out[position : position + size]
        position += size + 1
        if header[1] == b"blob" and size <= max_bytes:
            try:
                blobs[path] = content.decode("utf-8")
            except UnicodeDecodeError:
                continue  # binary content: nothing for a text scanner
    return blobs


def default_base(repo: Path, head: str) -> str:
    """The merge base of HEAD with the default branch (origin's HEAD, else main, else master)."""
    candidates = []
    remote_head = git(repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False).strip()
    if remote_head:
        candidates.append(remote_head)
    candidates += ["origin/main", "main", "origin/master", "master"]
    for ref in candidates:
        if git(repo, "rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False).strip():
            base = git(repo, "merge-base", ref, head, check=False).strip()
            if base:
                return base
    raise ChangeError("cannot find the default branch to compare with; pass --base")


def _noise_reason(path: str, added_text: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(name, pattern) for pattern in NOISE_GLOBS):
        return "lock or minified file"
    if any(path.startswith(d) or f"/{d}" in path for d in VENDORED_DIRS):
        return "vendored code"
    if GENERATED_MARKER in added_text[:2000]:
        return "generated file (@generated)"
    return None


def analyze(repo: Path, base: str | None, head: str = "HEAD") -> ChangeSet:
    if not (repo / ".git").exists() and not git(repo, "rev-parse", "--git-dir", check=False).strip():
        raise ChangeError(f"{repo} is not a git repository")
    head_sha = git(repo, "rev-parse", "--verify", head + "^{commit}").strip()
    base_sha = git(repo, "rev-parse", "--verify", (base or default_base(repo, head_sha)) + "^{commit}").strip()
    diff = git(repo, "diff", "--no-color", "--no-ext-diff", "--find-renames", "--unified=3", base_sha, head_sha)
    if len(diff.encode()) > MAX_DIFF_BYTES:
        raise ChangeError(f"the diff is larger than {MAX_DIFF_BYTES // (1024 * 1024)} MiB; review a smaller range")
    try:
        patch = PatchSet(diff)
    except UnidiffParseError as exc:
        raise ChangeError(f"cannot parse the diff: {exc}") from None
    files = []
    for patched in patch:
        status = "added" if patched.is_added_file else "deleted" if patched.is_removed_file else (
            "renamed" if patched.is_rename else "modified"
        )
        path = patched.path
        added_lines = [line.target_line_no for hunk in patched for line in hunk if line.is_added and line.target_line_no]
        added_text = "".join(line.value for hunk in patched for line in hunk if line.is_added)
        files.append(
            ChangedFile(
                path=path,
                status=status,
                added=patched.added,
                removed=patched.removed,
                patch=str(patched),
                binary=patched.is_binary_file,
                noise_reason=_noise_reason(path, added_text),
                added_lines=added_lines,
            )
        )
    return ChangeSet(repo=repo, base=base_sha, head=head_sha, files=files)
