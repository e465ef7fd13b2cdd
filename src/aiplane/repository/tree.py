"""Read-only views of a repository's files that are safe on hostile repositories.

Two views with one interface:

- `GitTree`: a commit's tree, read through git objects. A symlink is an entry of its own kind
  whose target is data; a submodule is never entered; nothing on disk is touched.
- `WorkTree`: a directory on disk, read with no-follow semantics. Every path component is opened
  with `O_NOFOLLOW`, only regular files are read (never a FIFO, device or symlink target), and
  `.git` is invisible.

Both refuse absolute paths, `..` and empty components, and read at most `max_bytes` of a file:
a file over the bound reads as None, like a missing one. Callers say what they do with None.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from aiplane.repository import git

Kind = Literal["file", "dir", "symlink", "submodule", "other"]
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_TREE_ENTRIES = 500_000
HIDDEN = frozenset({".git"})


@dataclass(frozen=True)
class Entry:
    path: str
    kind: Kind
    size: int = 0

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def clean_path(path: str) -> str | None:
    """A repository-relative path in normal form, or None when it could escape or is malformed."""
    if not isinstance(path, str) or "\0" in path:
        return None
    try:
        os.fsencode(path)  # a lone surrogate (JSON "\ud800") names no file: treat it as missing, never raise
    except (UnicodeError, ValueError):
        return None
    path = path.strip("/") if path not in ("", ".") else ""
    if not path:
        return ""
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or path.startswith("/"):
        return None
    return path


class RepoTree(Protocol):
    def kind(self, path: str) -> Kind | None: ...

    def read_bytes(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None: ...

    def list_dir(self, path: str = "") -> list[Entry]: ...

    def files(self, under: str = "", skip_dirs: frozenset[str] = frozenset(), limit: int = MAX_TREE_ENTRIES) -> list[Entry]: ...

    def symlink_target(self, path: str) -> str | None: ...

    def describe(self) -> str: ...


class TreeBase:
    """What both views derive from kind(), read_bytes(), list_dir() and files()."""

    def kind(self, path: str) -> Kind | None:
        raise NotImplementedError

    def read_bytes(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
        raise NotImplementedError

    def list_dir(self, path: str = "") -> list[Entry]:
        raise NotImplementedError

    def files(self, under: str = "", skip_dirs: frozenset[str] = frozenset(), limit: int = MAX_TREE_ENTRIES) -> list[Entry]:
        """Regular files below `under` (paths relative to it), not entering `skip_dirs` or any symlink."""
        raise NotImplementedError

    def is_file(self, path: str) -> bool:
        return self.kind(path) == "file"

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "dir"

    def exists(self, path: str) -> bool:
        return self.kind(path) is not None

    def read_text(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES, errors: str = "strict") -> str | None:
        """UTF-8 text of a regular file within the bound; None if missing, too big, not a file or (strict) not UTF-8."""
        data = self.read_bytes(path, max_bytes)
        if data is None:
            return None
        try:
            return data.decode("utf-8", errors)
        except UnicodeDecodeError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Directories and files matching a slash-separated glob (`*` within one segment, `**` any depth)."""
        segments = [s for s in pattern.strip("/").split("/") if s not in ("", ".")]
        if not segments or any(s == ".." for s in segments):
            return []
        found: list[str] = []

        def walk(prefix: str, rest: list[str], budget: list[int]) -> None:
            if budget[0] <= 0:
                return
            budget[0] -= 1
            if not rest:
                found.append(prefix)
                return
            head, tail = rest[0], rest[1:]
            if head == "**":
                walk(prefix, tail, budget)
                for entry in self.list_dir(prefix):
                    if entry.kind == "dir":
                        walk(entry.path, rest, budget)
                return
            if not any(c in head for c in "*?["):
                candidate = f"{prefix}/{head}" if prefix else head
                if tail and self.kind(candidate) != "dir":
                    return
                if not tail and self.kind(candidate) is None:
                    return
                walk(candidate, tail, budget)
                return
            for entry in self.list_dir(prefix):
                if fnmatch.fnmatchcase(entry.name, head) and (entry.kind == "dir" or not tail):
                    walk(entry.path, tail, budget)

        walk("", segments, [10_000])
        return sorted(set(found))

    def sub(self, prefix: str) -> SubTree:
        return SubTree(self, prefix)


class GitTree(TreeBase):
    """The tree of one commit, through git objects only."""

    def __init__(self, repo: Path, commit: str) -> None:
        self.repo = repo
        self.commit = git.object_id(commit, "tree revision")
        self._entries: dict[str, tuple[Kind, int, str]] | None = None
        self._children: dict[str, list[str]] | None = None

    def describe(self) -> str:
        return f"commit {self.commit[:12]}"

    def _load(self) -> dict[str, tuple[Kind, int, str]]:
        if self._entries is not None:
            return self._entries
        raw = git.run(self.repo, "ls-tree", "-r", "-t", "-z", "-l", "--full-tree", self.commit, timeout=120,
                      max_output=256 * 1024 * 1024)
        entries: dict[str, tuple[Kind, int, str]] = {}
        children: dict[str, list[str]] = {"": []}
        for record in raw.split(b"\0"):
            if not record or len(entries) >= MAX_TREE_ENTRIES:
                continue
            meta, _, name = record.partition(b"\t")
            fields = meta.split()
            if len(fields) != 4:
                continue
            mode, kind_name, oid, size = (f.decode("ascii", "replace") for f in fields)
            path = git.decode_path(name)  # the same form diffs use: encodable, one name per path
            kind: Kind
            if kind_name == "tree":
                kind = "dir"
            elif kind_name == "commit":
                kind = "submodule"
            elif mode == "120000":
                kind = "symlink"
            elif mode in ("100644", "100755"):
                kind = "file"
            else:
                kind = "other"
            entries[path] = (kind, int(size) if size.isdigit() else 0, oid)
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            children.setdefault(parent, []).append(path)
        self._entries, self._children = entries, children
        return entries

    def kind(self, path: str) -> Kind | None:
        clean = clean_path(path)
        if clean is None:
            return None
        if clean == "":
            return "dir"
        found = self._load().get(clean)
        return found[0] if found else None

    def object_id(self, path: str) -> str | None:
        """The blob or tree id at `path`: equal ids, equal content."""
        clean = clean_path(path)
        found = self._load().get(clean) if clean else None
        return found[2] if found else None

    def size(self, path: str) -> int | None:
        clean = clean_path(path)
        found = self._load().get(clean) if clean else None
        return found[1] if found else None

    def _blob(self, oid: str, max_bytes: int) -> bytes | None:
        if not git.is_object_id(oid):
            return None
        return git.run(self.repo, "cat-file", "blob", oid, max_output=max_bytes + 1, timeout=60)

    def read_bytes(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
        clean = clean_path(path)
        found = self._load().get(clean) if clean else None
        if found is None or found[0] != "file" or found[1] > max_bytes:
            return None
        return self._blob(found[2], max_bytes)

    def read_many(self, paths: list[str], max_bytes: int = DEFAULT_MAX_BYTES, total_bytes: int = 256 * 1024 * 1024) -> dict[str, bytes]:
        """Several regular files through one `git cat-file --batch`, each within `max_bytes`, all within `total_bytes`."""
        entries = self._load()
        wanted: list[tuple[str, str, int]] = []
        budget = total_bytes
        for path in paths:
            clean = clean_path(path)
            found = entries.get(clean) if clean else None
            if found is None or found[0] != "file" or found[1] > max_bytes or found[1] > budget or not git.is_object_id(found[2]):
                continue
            budget -= found[1]
            wanted.append((path, found[2], found[1]))
        if not wanted:
            return {}
        request = "".join(f"{oid}\n" for _path, oid, _size in wanted).encode()
        out = git.run(self.repo, "cat-file", "--batch", input=request, timeout=300,
                      max_output=sum(size + 100 for _p, _o, size in wanted) + 1024)
        blobs: dict[str, bytes] = {}
        position = 0
        for path, _oid, _size in wanted:
            newline = out.find(b"\n", position)
            if newline < 0:
                break
            header = out[position:newline].split()
            position = newline + 1
            if len(header) != 3 or not header[2].isdigit():
                continue
            size = int(header[2])
            blobs[path] = out[position : position + size]
            position += size + 1
        return blobs

    def list_dir(self, path: str = "") -> list[Entry]:
        clean = clean_path(path)
        if clean is None:
            return []
        entries = self._load()
        assert self._children is not None
        result = []
        for child in self._children.get(clean, []):
            kind, size, _oid = entries[child]
            if child.rsplit("/", 1)[-1] in HIDDEN:
                continue
            result.append(Entry(child, kind, size))
        return sorted(result, key=lambda e: e.path)

    def files(self, under: str = "", skip_dirs: frozenset[str] = frozenset(), limit: int = MAX_TREE_ENTRIES) -> list[Entry]:
        clean = clean_path(under)
        if clean is None:
            return []
        prefix = f"{clean}/" if clean else ""
        found = []
        for path, (kind, size, _oid) in self._load().items():
            if kind != "file" or not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")[:-1]
            if skip_dirs and any(p in skip_dirs for p in parts):
                continue
            found.append(Entry(path[len(prefix):], "file", size))
            if len(found) >= limit:
                break
        return sorted(found, key=lambda e: e.path)

    def symlink_target(self, path: str) -> str | None:
        clean = clean_path(path)
        found = self._load().get(clean) if clean else None
        if found is None or found[0] != "symlink":
            return None
        data = self._blob(found[2], 4096)
        return data.decode("utf-8", "replace") if data is not None and len(data) <= 4096 else None


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _kind_of(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class WorkTree(TreeBase):
    """A directory on disk, read without following any symlink, inside it or on the way to a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _open_parent(self, clean: str) -> tuple[int, str] | None:
        """A descriptor of the directory holding `clean` (every component opened with no-follow) and the last name."""
        parts = clean.split("/")
        if any(p in HIDDEN for p in parts):
            return None
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _OPEN_DIR, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = next_fd
        return fd, parts[-1]

    def kind(self, path: str) -> Kind | None:
        clean = clean_path(path)
        if clean is None:
            return None
        if clean == "":
            return "dir" if self.root.is_dir() else None  # the root is the caller's choice; inside it nothing is followed
        opened = self._open_parent(clean)
        if opened is None:
            return None
        fd, name = opened
        try:
            return _kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_bytes(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
        clean = clean_path(path)
        if not clean:
            return None
        opened = self._open_parent(clean)
        if opened is None:
            return None
        parent, name = opened
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=parent)
        except OSError:
            return None
        finally:
            os.close(parent)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                return None
            os.set_blocking(fd, True)
            chunks, size = [], 0
            while size <= max_bytes:
                chunk = os.read(fd, min(1024 * 1024, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return None if size > max_bytes else b"".join(chunks)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _open_dir(self, clean: str) -> int | None:
        if clean == "":
            try:
                return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
        opened = self._open_parent(clean)
        if opened is None:
            return None
        parent, name = opened
        try:
            return os.open(name, _OPEN_DIR, dir_fd=parent)
        except OSError:
            return None
        finally:
            os.close(parent)

    def list_dir(self, path: str = "") -> list[Entry]:
        clean = clean_path(path)
        if clean is None:
            return []
        fd = self._open_dir(clean)
        if fd is None:
            return []
        try:
            with os.scandir(fd) as scan:
                entries = []
                for item in scan:
                    if item.name in HIDDEN:
                        continue
                    try:
                        info = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    entries.append(Entry(f"{clean}/{item.name}" if clean else item.name, _kind_of(info.st_mode), info.st_size))
                    if len(entries) >= MAX_TREE_ENTRIES:
                        break
        except OSError:
            return []
        finally:
            os.close(fd)
        return sorted(entries, key=lambda e: e.path)

    def files(self, under: str = "", skip_dirs: frozenset[str] = frozenset(), limit: int = MAX_TREE_ENTRIES) -> list[Entry]:
        clean = clean_path(under)
        if clean is None:
            return []
        found: list[Entry] = []
        stack = [clean]
        while stack and len(found) < limit:
            current = stack.pop()
            for entry in self.list_dir(current):
                if entry.kind == "dir":
                    if entry.name not in skip_dirs:
                        stack.append(entry.path)
                elif entry.kind == "file":
                    found.append(Entry(entry.path[len(clean) + 1:] if clean else entry.path, "file", entry.size))
                    if len(found) >= limit:
                        break
        return sorted(found, key=lambda e: e.path)

    def symlink_target(self, path: str) -> str | None:
        clean = clean_path(path)
        if not clean:
            return None
        opened = self._open_parent(clean)
        if opened is None:
            return None
        fd, name = opened
        try:
            return os.readlink(name, dir_fd=fd)
        except OSError:
            return None  # not a symlink, or gone
        finally:
            os.close(fd)


class SubTree(TreeBase):
    """A folder of another view, seen as a root (a workspace member, a codex folder)."""

    def __init__(self, parent: TreeBase, prefix: str) -> None:
        self.parent = parent
        self.prefix = clean_path(prefix) or ""

    def _full(self, path: str) -> str | None:
        clean = clean_path(path)
        if clean is None:
            return None
        return f"{self.prefix}/{clean}" if self.prefix and clean else (self.prefix or clean)

    def describe(self) -> str:
        return f"{self.parent.describe()}:{self.prefix}"

    def kind(self, path: str) -> Kind | None:
        full = self._full(path)
        return None if full is None else self.parent.kind(full)

    def read_bytes(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
        full = self._full(path)
        return None if full is None else self.parent.read_bytes(full, max_bytes)

    def list_dir(self, path: str = "") -> list[Entry]:
        full = self._full(path)
        if full is None:
            return []
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [Entry(e.path[cut:], e.kind, e.size) for e in self.parent.list_dir(full)]

    def files(self, under: str = "", skip_dirs: frozenset[str] = frozenset(), limit: int = MAX_TREE_ENTRIES) -> list[Entry]:
        full = self._full(under)
        return [] if full is None else self.parent.files(full, skip_dirs, limit)

    def symlink_target(self, path: str) -> str | None:
        full = self._full(path)
        return None if full is None else self.parent.symlink_target(full)
