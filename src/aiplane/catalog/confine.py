"""A location's own tree: every local file a catalog reads must resolve inside it.

The tree of a target named on the command line is that directory (or, for a file, the directory
holding it). Location targets and `$text`/`$json`/`$yaml` placeholders found in its files are
resolved against the file that names them, symlinks included, and refused unless the real path
is inside the tree: `../`, absolute paths and symlinks that lead out are all the same case.

Reading then goes through `repository.tree.WorkTree` on the resolved, symlink-free relative
path, which opens every component with O_NOFOLLOW and reads only regular files, bounded: a link
swapped in between the check and the read fails closed, and a FIFO or device never blocks us.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiplane.repository.tree import HIDDEN, WorkTree

YAML_SUFFIXES = (".yaml", ".yml")
MAX_WALK_DEPTH = 32


class Refused(Exception):
    """A path may not be read; the message says why (and names only the path asked for)."""


@dataclass(frozen=True, slots=True)
class WalkItem:
    relative: str | None  # the real path inside the tree, or None when refused
    shown: str  # the path as found, for messages
    problem: str | None = None
    rule: str = "confinement"


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._files = WorkTree(self.root)

    def __str__(self) -> str:
        return str(self.root)

    def absolute(self, relative: str) -> Path:
        return self.root / relative if relative else self.root

    def locate(self, candidate: str | os.PathLike[str]) -> str:
        """The symlink-free path of `candidate` relative to the root; Refused when it leads outside."""
        if "\0" in os.fspath(candidate):
            raise Refused("the path contains a NUL byte")
        try:
            real = os.path.realpath(candidate)
            relative = os.path.relpath(real, self.root)
        except (OSError, ValueError) as exc:
            raise Refused(f"cannot be resolved ({exc.__class__.__name__})") from None
        if relative == ".":
            return ""
        if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
            raise Refused(f"resolves outside the location's tree ({self.root})")
        if any(part in HIDDEN for part in relative.split(os.sep)):
            raise Refused("lies inside a .git directory")
        return relative.replace(os.sep, "/")

    def kind(self, relative: str) -> str | None:
        try:
            mode = os.stat(self.absolute(relative), follow_symlinks=False).st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISREG(mode):
            return "file"
        return "other"

    def read(self, relative: str, max_bytes: int) -> bytes:
        """A regular file's bytes; Refused with the reason otherwise."""
        try:
            info = os.stat(self.absolute(relative), follow_symlinks=False)
        except FileNotFoundError:
            raise Refused("does not exist") from None
        except OSError as exc:
            raise Refused(f"cannot be read ({exc.__class__.__name__})") from None
        if not stat.S_ISREG(info.st_mode):
            raise Refused("is not a regular file")
        if info.st_size > max_bytes:
            raise Refused(f"is larger than {max_bytes} bytes")
        data = self._files.read_bytes(relative, max_bytes)
        if data is None:
            raise Refused("cannot be read (changed while reading, or a link on the way)")
        return data

    def walk(self, relative: str, limit: int) -> Iterator[WalkItem]:
        """YAML files under a directory, sorted; symlinks followed only when they stay inside."""
        stack = [relative]
        seen = 0
        found: list[WalkItem] = []
        while stack:
            current = stack.pop()
            if current.count("/") >= MAX_WALK_DEPTH:
                found.append(WalkItem(None, str(self.absolute(current)), f"directories nested deeper than {MAX_WALK_DEPTH} levels are not read", "limit"))
                continue
            for entry in self._files.list_dir(current):
                seen += 1
                if seen > limit:
                    found.append(WalkItem(None, str(self.absolute(current)), f"more than {limit} entries; the rest is not read", "limit"))
                    stack.clear()
                    break
                if entry.kind == "dir":
                    stack.append(entry.path)
                elif entry.kind == "file" and entry.path.endswith(YAML_SUFFIXES):
                    found.append(WalkItem(entry.path, str(self.absolute(entry.path))))
                elif entry.kind == "symlink":
                    shown = str(self.absolute(entry.path))
                    try:
                        target = self.locate(self.absolute(entry.path))
                    except Refused as exc:
                        if entry.path.endswith(YAML_SUFFIXES):
                            found.append(WalkItem(None, shown, f"symlink {exc}; not read"))
                        continue
                    # A link to a directory inside the tree is walked under its real name anyway.
                    if entry.path.endswith(YAML_SUFFIXES) and self.kind(target) == "file":
                        found.append(WalkItem(target, shown))
        return iter(sorted(found, key=lambda item: item.shown))
