"""Reading a hostile repository's data, and writing next to it, without trusting it.

- Loaders read through a tree view (no symlink followed, regular files only, bounded) and parse
  TOML, JSON or YAML into a bounded copy: at most `MAX_NODES` values and `MAX_DEPTH` levels, so an
  alias bomb or a deep nesting is refused as a whole instead of being walked.
- Typed getters (`as_str`, `as_dict`, `strs`, `dig`) answer a default for any value of the wrong
  type: a manifest never decides our control flow with an unexpected type.
- Everything that reaches the markdown goes through one of the `clean_*` validators: one line,
  an allowed character set and a length bound, or it is dropped.
- `write_file` creates a file inside a directory without following a symlink anywhere on the way.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import yaml

from aiplane.repository.tree import TreeBase, clean_path

_Work = TypeVar("_Work")


@contextmanager
def shared_work(var: ContextVar[_Work | None], fresh: Callable[[], _Work]) -> Iterator[None]:
    """Give `var` a fresh budget for everything inside (one analysis, one script); a nested call
    shares the outer one, so a budget opened around an analysis bounds all its parts together."""
    if var.get() is not None:
        yield
        return
    token = var.set(fresh())
    try:
        yield
    finally:
        var.reset(token)

MAX_MANIFEST_BYTES = 256 * 1024  # pyproject.toml, package.json, Cargo.toml, pom.xml, ...
MAX_CI_BYTES = 512 * 1024  # a workflow or pipeline file
MAX_SCRIPT_BYTES = 64 * 1024  # a shell script, Makefile, noxfile or test file read for a name
MAX_NODES = 100_000
MAX_DEPTH = 64


class TooBig(Exception):
    """A parsed document over the node or depth bound."""


def bounded(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """A copy of parsed data with plain types only (dict with str keys, list, str, int, float, bool,
    None), at most MAX_NODES values and MAX_DEPTH levels. Shared (aliased) nodes are copied each
    time they are reached, so the budget also bounds an alias bomb."""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise TooBig
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: bounded(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v, budget, depth + 1) for v in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)  # dates and other scalar types become text


def read_text(tree: TreeBase, path: str, max_bytes: int = MAX_MANIFEST_BYTES) -> str:
    """A regular file's text (invalid UTF-8 replaced), or "" when missing, too big or not a file."""
    try:
        return tree.read_text(path, max_bytes, errors="replace") or ""
    except (OSError, ValueError):
        return ""


def load_toml(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = bounded(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, TooBig, RecursionError, ValueError, MemoryError):
        return {}
    return data if isinstance(data, dict) else {}


def load_json(text: str) -> Any:
    if not text:
        return None
    try:
        return bounded(json.loads(text))
    except (ValueError, TooBig, RecursionError, MemoryError):
        return None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that tolerates unknown tags (GitLab's !reference, CloudFormation's !Ref): their
    values are kept as plain data, never constructed into objects."""


def _unknown_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:  # noqa: ARG001
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _unknown_tag)
_Loader.add_multi_constructor("tag:", _unknown_tag)


def _shallow(text: str) -> bool:
    """Whether the document nests at most MAX_DEPTH collections deep, judged from the parser's
    events before anything is composed. libyaml's parser keeps its own stack, but the composer
    behind the C loader recurses in C once per level: 100 KB of `[[[...` (50,000 levels) overflow
    the C stack and kill the process (SIGSEGV) before any bound on the parsed data applies."""
    depth = 0
    # Nodes: `bounded` counts every value (a mapping's key and value are two nodes here, one there),
    # so past twice its bound the document is refused now, before loading and composing it (about 80%
    # of the time of a 500 KB flow list of 250,000 items).
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):  # noqa: S506 - events only, nothing is built
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > 2 * MAX_NODES + 2:
                return False
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return True


def load_yaml(text: str) -> Any:
    if not text:
        return None
    try:
        if not _shallow(text):
            return None
        return bounded(yaml.load(text, Loader=_Loader))  # noqa: S506 - a safe loader with inert unknown tags
    except (yaml.YAMLError, TooBig, RecursionError, ValueError, TypeError, MemoryError):
        return None


def load_yaml_with_lines(text: str) -> tuple[Any, dict[str, int]]:
    """YAML data and the line (1-based) of every mapping key path, e.g. 'jobs.test.steps.2.run'."""
    data = load_yaml(text)
    if data is None:
        return None, {}
    lines: dict[str, int] = {}
    try:
        node = yaml.compose(text, Loader=_Loader)  # noqa: S506 - composing builds no objects
    except (yaml.YAMLError, RecursionError, ValueError, MemoryError):
        return data, {}
    budget = [MAX_NODES]

    def walk(n: yaml.Node | None, prefix: str, depth: int) -> None:
        budget[0] -= 1
        if n is None or budget[0] < 0 or depth > MAX_DEPTH:
            return
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                path = f"{prefix}.{name}" if prefix else name
                lines.setdefault(path, key.start_mark.line + 1)
                walk(value, path, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                path = f"{prefix}.{index}" if prefix else str(index)
                lines.setdefault(path, item.start_mark.line + 1)
                walk(item, path, depth + 1)

    walk(node, "", 0)
    return data, lines


# -- typed getters ------------------------------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def strs(value: Any) -> list[str]:
    """A list of strings from a list (non-strings dropped) or a single string."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# -- values that reach the markdown --------------------------------------------------------------

_PATH_CHARS = re.compile(r"^[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)*/?$")
_VERSION = re.compile(r"^[0-9A-Za-z.*^~<>=!, |_+/-]{1,40}$")
_NAME = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+ /-]{0,79}$")
_PM_VERSION = re.compile(r"^(npm|pnpm|yarn|bun)@(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.]+)?)(?:\+[0-9A-Za-z.]+)?$")
PACKAGE_MANAGERS = ("npm", "pnpm", "yarn", "bun")


def one_line(text: Any, limit: int = 120) -> str | None:
    if not isinstance(text, str) or not text or len(text) > limit:
        return None
    if any(ord(c) < 32 or c in "`\u2028\u2029\x7f" for c in text):
        return None
    return text


def clean_rel_path(path: Any) -> str | None:
    """A repository-relative path safe to print: normal form, no `..`, a plain character set."""
    if not isinstance(path, str) or len(path) > 160:
        return None
    normal = clean_path(path)
    if not normal or not _PATH_CHARS.match(normal):
        return None
    # A folder or file named "-x" would read as an option wherever the path is an argument
    # (`npx jest -c/a.test.js` is jest's config option).
    if any(part.startswith("-") for part in normal.split("/")):
        return None
    return normal


def printable(text: str, limit: int = 160) -> str:
    """Text taken from a hostile file, made safe to show in a terminal, a CI log or a code span:
    control, format (bidi overrides, zero-width), separator and unassigned characters and backticks
    are written as escapes, and the result is cut to `limit` characters."""
    shown = []
    for char in text[: limit + 1]:
        if char == "`" or (unicodedata.category(char)[0] in "CZ" and char != " "):
            shown.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            shown.append(char)
    out = "".join(shown)
    return out[:limit] + "…" if len(out) > limit else out


def clean_version(value: Any) -> str | None:
    """A version or version range (`>=3.11`, `^20.0.0`, `1.82`, `lts/*`): one short line of version characters with a digit."""
    text = value.strip() if isinstance(value, str) else None
    if not text or not _VERSION.match(text) or not re.search(r"\d", text) or ".." in text.replace("...", ""):
        return None
    return text


def clean_name(value: Any) -> str | None:
    text = value.strip() if isinstance(value, str) else None
    return text if text and _NAME.match(text) else None


def package_manager(value: Any) -> tuple[str, str] | None:
    """(name, version) from package.json's `packageManager`, only for a known manager and a version pattern."""
    if not isinstance(value, str) or len(value) > 200:
        return None
    match = _PM_VERSION.match(value.strip())
    return (match.group(1), match.group(2)) if match else None


# -- writes that never follow a symlink ------------------------------------------------------------


class UnsafeWrite(Exception):
    """The target or a directory on the way to it is a symlink or not a regular file/directory."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def write_file(root: Path, rel: str, text: str, *, replace: bool = False) -> Path:
    """Write `rel` inside `root` without following a symlink in any component, including the last.

    A new file is created with O_EXCL. With `replace`, an existing regular file is replaced (the new
    content is written to a fresh file that is renamed over it); an existing symlink, directory or
    special file is refused. Raises FileExistsError when the file exists and `replace` is false."""
    normal = clean_path(rel)
    if not normal:
        raise UnsafeWrite(f"not a path inside the repository: {rel!r}")
    parts = normal.split("/")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnsafeWrite(f"cannot open {root}: {exc.strerror}") from None
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UnsafeWrite(f"{part}/ is not a plain directory ({exc.strerror})") from None
            os.close(fd)
            fd = next_fd
        name = parts[-1]
        try:
            existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if not stat.S_ISREG(existing.st_mode):
                raise UnsafeWrite(f"{normal} exists and is not a regular file (a symlink is never written through)")
            if not replace:
                raise FileExistsError(normal)
        temp = f".{name}.aiplane-{os.getpid()}.tmp" if existing is not None else name
        try:
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644, dir_fd=fd)
        except FileExistsError:
            if existing is None:
                raise FileExistsError(normal) from None
            raise UnsafeWrite(f"a leftover temporary file blocks writing {normal}") from None
        except OSError as exc:
            raise UnsafeWrite(f"cannot create {normal} ({exc.strerror})") from None
        try:
            data = text.encode("utf-8")
            view = memoryview(data)
            while view:
                written = os.write(out, view)
                view = view[written:]
        finally:
            os.close(out)
        if existing is not None:
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    return root / normal
