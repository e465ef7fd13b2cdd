"""What changed between two commits: files, line counts, and which files are noise."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from aiplane.repository import git as gitrun
from aiplane.repository.tree import GitTree

# Files whose diffs say nothing a reviewer should read. Migrations are deliberately absent.
NOISE_GLOBS = (
    "*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock", "poetry.lock",
    "uv.lock", "Cargo.lock", "go.sum", "composer.lock", "Gemfile.lock", "*.min.js", "*.min.css", "*.map",
)
VENDORED_DIRS = ("vendor/", "third_party/", "node_modules/", "vendored/", "_vendor/")
GENERATED_MARKER = "@generated"
GENERATED_HEADER_LINES = 5
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
    # The git mode at head (at base for a deletion): 120000 is a symlink, 160000 a submodule.
    mode: str = ""
    # The head side of the hunks, by line number: what each added line says, and the lines around
    # it (a pragma on the line before counts for the next one).
    added_text: dict[int, str] = field(default_factory=dict, repr=False)
    context_text: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def changed_lines(self) -> int:
        return self.added + self.removed

    @property
    def is_symlink(self) -> bool:
        """A symlink is reviewed as a symlink: its target path is data, never followed."""
        return self.mode == "120000"


MAX_HEAD_FILE_BYTES = 8 * 1024 * 1024


@dataclass
class ChangeSet:
    repo: Path
    base: str
    head: str
    files: list[ChangedFile]
    _head_texts: dict[str, str] | None = field(default=None, repr=False)
    _trees: dict[str, GitTree] = field(default_factory=dict, repr=False)

    @property
    def head_tree(self) -> GitTree:
        """The head commit's files, read through git objects (never the checkout on disk)."""
        return self._trees.setdefault("head", GitTree(self.repo, self.head))

    @property
    def base_tree(self) -> GitTree:
        return self._trees.setdefault("base", GitTree(self.repo, self.base))

    def head_texts(self) -> dict[str, str]:
        """Text of every changed regular file at head up to 8 MiB (noise too), read once (one git cat-file) and
        shared by all checks. Not UTF-8 is decoded with replacement characters: a file in latin-1 is checked too."""
        if self._head_texts is None:
            paths = [f.path for f in self.files if f.status != "deleted" and not f.binary and not f.is_symlink]
            self._head_texts = texts(self.head_tree, paths, MAX_HEAD_FILE_BYTES, errors="replace")
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
    """git on the repository under review, isolated from its checkout (see `aiplane.repository.git`)."""
    try:
        return gitrun.text(repo, *args, check=check, timeout=timeout)
    except gitrun.GitError as exc:
        raise ChangeError(str(exc)) from None


def resolve(repo: Path, rev: str, what: str) -> str:
    """A revision the user or the host named, as a commit id; never read as an option."""
    try:
        sha = gitrun.resolve_commit(repo, rev)
    except gitrun.GitError as exc:
        raise ChangeError(str(exc)) from None
    if sha is None:
        raise ChangeError(f"{what} {rev[:80]!r} is not a commit in this repository")
    return sha


def texts(tree: GitTree, paths: list[str], max_bytes: int, errors: str = "strict") -> dict[str, str]:
    """Regular files of a tree as text (one `git cat-file --batch`); binary content is left out when strict."""
    try:
        blobs = tree.read_many(paths, max_bytes)
    except gitrun.GitError as exc:
        raise ChangeError(str(exc)) from None
    found = {}
    for path, data in blobs.items():
        try:
            found[path] = data.decode("utf-8", errors)
        except UnicodeDecodeError:
            continue  # binary content: nothing for a text scanner
    return found


def default_base(repo: Path, head: str) -> str:
    """The merge base of HEAD with the default branch (origin's HEAD, else main, else master)."""
    candidates = []
    remote_head = git(repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False).strip()
    if remote_head:
        candidates.append(remote_head)
    candidates += ["origin/main", "main", "origin/master", "master"]
    for ref in candidates:
        sha = gitrun.resolve_commit(repo, ref)
        if sha:
            base = git(repo, "merge-base", "--end-of-options", sha, gitrun.object_id(head), check=False).strip()
            if gitrun.is_object_id(base):
                return base
    raise ChangeError("cannot find the default branch to compare with; pass --base")


def _noise_reason(change: ChangeSet, changed: ChangedFile) -> str | None:
    path = changed.path
    name = path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(name, pattern) for pattern in NOISE_GLOBS):
        return "lock or minified file"
    if any(path.startswith(d) or f"/{d}" in path for d in VENDORED_DIRS):
        return "vendored code"
    if GENERATED_MARKER in changed.patch and changed.status != "deleted" and _generated(change, changed):
        return "generated file (@generated)"
    return None


def _header(tree: GitTree, path: str) -> str:
    blob = tree.read_bytes(path, MAX_HEAD_FILE_BYTES) if tree.kind(path) == "file" else None
    return "\n".join((blob or b"")[:4096].decode("utf-8", "replace").splitlines()[:GENERATED_HEADER_LINES])


def _generated(change: ChangeSet, changed: ChangedFile) -> bool:
    """Generated by the file's own header, and a change cannot declare a hand-written file generated:
    a file that existed must have carried the marker in its header before the change too."""
    if GENERATED_MARKER not in _header(change.head_tree, changed.path):
        return False
    return changed.status == "added" or GENERATED_MARKER in _header(change.base_tree, changed.path)


@dataclass(frozen=True)
class _Listed:
    """One changed file as `git diff --raw -z` lists it: exact paths, whatever bytes they hold."""

    status: str
    old_mode: str
    new_mode: str
    old_path: str
    path: str


def _listed(repo: Path, base: str, head: str) -> list[_Listed]:
    raw = gitrun.run(repo, "diff", "--raw", "-z", "--no-abbrev", "--find-renames", "--end-of-options", base, head,
                     max_output=MAX_DIFF_BYTES)
    fields = raw.split(b"\0")
    found, i = [], 0
    while i < len(fields) and fields[i].startswith(b":"):
        meta = fields[i][1:].split()
        status = meta[4][:1].decode() if len(meta) > 4 else "M"
        count = 2 if status in ("R", "C") else 1
        if i + count >= len(fields):
            break
        paths = [gitrun.decode_path(p) for p in fields[i + 1 : i + 1 + count]]
        found.append(_Listed(status, meta[0].decode(), meta[1].decode(), paths[0], paths[-1]))
        i += 1 + count
    return found


def _split(diff: str) -> list[str]:
    """The patch of each file, in order: every file's patch starts with a `diff --git` line, and no
    content line can (content lines start with a space, '+', '-' or a backslash)."""
    # Lines are gathered per file and joined once: appending to the last string was quadratic in a
    # file's patch size (a 400,000-line file took 20 s here).
    chunks: list[list[str]] = []
    for line in diff.splitlines(keepends=True):
        if line.startswith("diff --git ") or not chunks:
            chunks.append([line])
        else:
            chunks[-1].append(line)
    return [text for text in ("".join(lines) for lines in chunks) if text.startswith("diff --git ")]


def parse_hunks(chunk: str):  # noqa: ANN202 - a unidiff PatchedFile, or None for a patch without hunks
    """The hunks of one file's patch, parsed under a neutral header: the path comes from the raw
    listing, never from the patch header (a name holding " b/" makes that header ambiguous)."""
    start = chunk.find("\n@@ ")
    if start < 0:
        return None
    try:
        return PatchSet("--- a/file\n+++ b/file\n" + chunk[start + 1 :])[0]
    except (UnidiffParseError, IndexError) as exc:
        raise ChangeError(f"cannot parse the diff: {exc}") from None


_STATUS = {"A": "added", "C": "added", "D": "deleted", "R": "renamed"}


def analyze(repo: Path, base: str | None, head: str = "HEAD") -> ChangeSet:
    try:
        gitrun.git_dir(repo)
    except gitrun.GitError:
        raise ChangeError(f"{repo} is not a git repository") from None
    head_sha = resolve(repo, head, "head")
    base_sha = resolve(repo, base, "base") if base else default_base(repo, head_sha)
    try:
        diff = gitrun.text(repo, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--find-renames", "--unified=3",
                           "--end-of-options", base_sha, head_sha, max_output=MAX_DIFF_BYTES, timeout=300)
        listed = _listed(repo, base_sha, head_sha)
    except gitrun.GitError as exc:
        if "printed more than" in str(exc):
            raise ChangeError(f"the diff is larger than {MAX_DIFF_BYTES // (1024 * 1024)} MiB; review a smaller range") from None
        raise ChangeError(str(exc)) from None
    chunks = _split(diff)
    # A type change (file <-> symlink) is one listed entry but two patches: the old one removed,
    # the new one added.
    expected = sum(2 if entry.status == "T" else 1 for entry in listed)
    if len(chunks) != expected:
        raise ChangeError(f"cannot parse the diff: {len(chunks)} patches for {len(listed)} changed files")
    change = ChangeSet(repo=repo, base=base_sha, head=head_sha, files=[])
    position = 0
    for entry in listed:
        own = chunks[position : position + (2 if entry.status == "T" else 1)]
        position += len(own)
        parsed = [parse_hunks(chunk) for chunk in own]
        lines = [line for hunks in parsed if hunks is not None for hunk in hunks for line in hunk]
        added_lines = [line.target_line_no for line in lines if line.is_added and line.target_line_no]
        target = {line.target_line_no: line.value.rstrip("\n") for line in lines if line.target_line_no and not line.is_removed}
        headers = "".join(chunk[: chunk.find("\n@@ ") + 1] if hunks is not None else chunk for chunk, hunks in zip(own, parsed, strict=True))
        mode = entry.old_mode if entry.status == "D" else entry.new_mode
        change.files.append(
            ChangedFile(
                path=entry.path,
                status=_STATUS.get(entry.status, "modified"),
                added=sum(1 for line in lines if line.is_added),
                removed=sum(1 for line in lines if line.is_removed),
                patch="".join(own),
                binary=all(hunks is None for hunks in parsed) and ("\nBinary files " in headers or "\nGIT binary patch" in headers),
                added_lines=added_lines,
                mode=mode,
                added_text={n: target[n] for n in added_lines if n in target},
                context_text=target,
            )
        )
    for changed in change.files:
        if not changed.is_symlink:
            changed.noise_reason = _noise_reason(change, changed)
    return change
