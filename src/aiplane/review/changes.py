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
        """UTF-8 text of every changed regular file at head (noise too), read once (one git cat-file) and shared by all checks."""
        if self._head_texts is None:
            paths = [f.path for f in self.files if f.status != "deleted" and not f.binary and not f.is_symlink]
            self._head_texts = texts(self.head_tree, paths, MAX_HEAD_FILE_BYTES)
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


def unquote_path(path: str) -> str:
    """A path as git prints it in a patch header: C-quoted ("a\\nb", octal bytes) when unusual."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    raw, body, i = bytearray(), path[1:-1], 0
    escapes = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            following = body[i + 1]
            if following in escapes:
                raw.append(escapes[following])
                i += 2
                continue
            if body[i + 1 : i + 4].isdigit() and len(body[i + 1 : i + 4]) == 3:
                raw.append(int(body[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
        raw.extend(char.encode("utf-8", "surrogateescape"))
        i += 1
    return raw.decode("utf-8", "surrogateescape")


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


def _noise_reason(path: str, added_text: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(name, pattern) for pattern in NOISE_GLOBS):
        return "lock or minified file"
    if any(path.startswith(d) or f"/{d}" in path for d in VENDORED_DIRS):
        return "vendored code"
    if GENERATED_MARKER in added_text[:2000]:
        return "generated file (@generated)"
    return None


def _modes(repo: Path, base: str, head: str) -> dict[str, str]:
    """The git mode of every changed path at head (at base for deletions), from `git diff --raw -z`."""
    raw = gitrun.run(repo, "diff", "--raw", "-z", "--no-abbrev", "--find-renames", "--end-of-options", base, head,
                     max_output=MAX_DIFF_BYTES)
    fields = raw.split(b"\0")
    modes: dict[str, str] = {}
    i = 0
    while i < len(fields) and fields[i].startswith(b":"):
        meta = fields[i][1:].split()
        status = meta[4][:1] if len(meta) > 4 else b"M"
        paths = 2 if status in (b"R", b"C") else 1
        if i + paths >= len(fields):
            break
        path = fields[i + paths].decode("utf-8", "surrogateescape")
        new_mode, old_mode = meta[1].decode(), meta[0].decode()
        modes[path] = old_mode if status == b"D" else new_mode
        i += 1 + paths
    return modes


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
        modes = _modes(repo, base_sha, head_sha)
    except gitrun.GitError as exc:
        if "printed more than" in str(exc):
            raise ChangeError(f"the diff is larger than {MAX_DIFF_BYTES // (1024 * 1024)} MiB; review a smaller range") from None
        raise ChangeError(str(exc)) from None
    try:
        patch = PatchSet(diff)
    except UnidiffParseError as exc:
        raise ChangeError(f"cannot parse the diff: {exc}") from None
    files = []
    for patched in patch:
        status = "added" if patched.is_added_file else "deleted" if patched.is_removed_file else (
            "renamed" if patched.is_rename else "modified"
        )
        path = unquote_path(patched.path)
        added_lines = [line.target_line_no for hunk in patched for line in hunk if line.is_added and line.target_line_no]
        added_text = "".join(line.value for hunk in patched for line in hunk if line.is_added)
        mode = modes.get(path, "")
        files.append(
            ChangedFile(
                path=path,
                status=status,
                added=patched.added,
                removed=patched.removed,
                patch=str(patched),
                binary=patched.is_binary_file,
                noise_reason=None if mode == "120000" else _noise_reason(path, added_text),
                added_lines=added_lines,
                mode=mode,
            )
        )
    return ChangeSet(repo=repo, base=base_sha, head=head_sha, files=files)
