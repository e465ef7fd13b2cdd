"""Reading a config source folder: agents and commands as markdown, settings as TOML or YAML.

Layout::

    agents/**/*.md      frontmatter = agent fields, body = prompt, relative path = agent name
    commands/**/*.md    frontmatter = command fields, body = template, relative path = command name
    config/*.toml|yaml  top-level OpenCode keys: provider, mcp, permission, model, ...

Every value remembers the file (and line, where the format gives one) it came from, so a
schema error can point at it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiplane.frontmatter import NestedTooDeeply, split_frontmatter

Path_ = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Origin:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Problem:
    origin: Origin
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.key}: {self.message}" if self.key else f"{self.origin}: {self.message}"


@dataclass
class SourceTree:
    """The merged document plus where each part of it came from."""

    root: Path
    document: dict[str, Any] = field(default_factory=dict)
    origins: dict[Path_, Origin] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def origin_of(self, path: Path_) -> Origin:
        """The most specific recorded origin for a JSON path."""
        for end in range(len(path), -1, -1):
            found = self.origins.get(path[:end])
            if found is not None:
                return found
        return Origin(".")

    def problem(self, origin: Origin, key: Path_ | str, message: str) -> None:
        dotted = key if isinstance(key, str) else ".".join(key)
        self.problems.append(Problem(origin, dotted, message))


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that also reports the line of every mapping key."""


def _yaml_with_lines(text: str, file: str, line_offset: int) -> tuple[Any, dict[Path_, int]]:
    try:
        return _yaml_with_lines_unguarded(text, line_offset)
    except RecursionError:
        raise NestedTooDeeply() from None


def _yaml_with_lines_unguarded(text: str, line_offset: int) -> tuple[Any, dict[Path_, int]]:
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}

    def walk(current, path: Path_) -> None:  # noqa: ANN001 - yaml node types
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = (*path, str(key_node.value))
                    lines[child] = key_node.start_mark.line + 1 + line_offset
                    walk(value_node, child)

    if node is not None:
        walk(node, ())
    return yaml.safe_load(text), lines


_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")


def _toml_lines(text: str) -> dict[Path_, int]:
    """Line numbers of TOML tables and keys (tomllib gives none); quoted and dotted keys are split."""
    lines: dict[Path_, int] = {}
    table: Path_ = ()

    def split(dotted: str) -> Path_:
        return tuple(part.strip().strip("\"'") for part in dotted.split("."))

    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(line)
        if header:
            table = split(header.group(1))
            lines.setdefault(table, number)
            continue
        key = _TOML_KEY.match(line)
        if key:
            lines.setdefault((*table, *split(key.group(1))), number)
    return lines


def _relative_name(path: Path, base: Path) -> str:
    return path.relative_to(base).with_suffix("").as_posix()


def _read_text(path: Path, tree: SourceTree, rel: str) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        tree.problem(Origin(rel), "", "file is not UTF-8 text")
    except OSError as exc:
        tree.problem(Origin(rel), "", f"cannot read file ({exc.__class__.__name__})")
    return None


def _load_markdown_entries(tree: SourceTree, folder: str, section: str, body_key: str) -> None:
    base = tree.root / folder
    if not base.is_dir():
        return
    seen: dict[str, str] = {}
    for path in sorted(base.rglob("*.md")):
        rel = path.relative_to(tree.root).as_posix()
        text = _read_text(path, tree, rel)
        if text is None:
            continue
        try:
            front_text, body, offset = split_frontmatter(text)
        except ValueError as exc:
            tree.problem(Origin(rel, 1), "", str(exc))
            continue
        front: Any = {}
        lines: dict[Path_, int] = {}
        if front_text is not None:
            try:
                front, lines = _yaml_with_lines(front_text, rel, offset)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 1 + offset if mark is not None else None
                tree.problem(Origin(rel, line), "", f"invalid YAML frontmatter: {getattr(exc, 'problem', None) or exc}")
                continue
            front = {} if front is None else front
        if not isinstance(front, dict):
            tree.problem(Origin(rel, 1), "", "frontmatter must be a YAML mapping of keys to values")
            continue
        name = front.pop("name", None) or _relative_name(path, base)
        if not isinstance(name, str) or not name.strip():
            tree.problem(Origin(rel, lines.get(("name",))), "name", "must be a non-empty string")
            continue
        folded = name.lower()
        if folded in seen:
            tree.problem(
                Origin(rel, lines.get(("name",), 1)),
                f"{section}.{name}",
                f"duplicate {section} name (also defined by {seen[folded]})",
            )
            continue
        seen[folded] = rel
        if body_key in front:
            tree.problem(Origin(rel, lines.get((body_key,))), f"{section}.{name}.{body_key}", "comes from the markdown body; remove it from the frontmatter")
            continue
        entry = dict(front)
        if body.strip():
            entry[body_key] = body.strip() + "\n"
        tree.document.setdefault(section, {})[name] = entry
        tree.origins[(section, name)] = Origin(rel, 1)
        tree.origins[(section, name, body_key)] = Origin(rel, (offset + len((front_text or "").splitlines()) + 2) if front_text is not None else 1)
        for key_path, line in lines.items():
            if key_path and key_path[0] != "name":
                tree.origins[(section, name, *key_path)] = Origin(rel, line)


def _merge(tree: SourceTree, target: dict[str, Any], incoming: dict[str, Any], path: Path_, origin_file: str, lines: dict[Path_, int]) -> None:
    for key, value in incoming.items():
        key = str(key)
        child = (*path, key)
        origin = Origin(origin_file, lines.get(child))
        if key in target:
            existing = target[key]
            if isinstance(existing, dict) and isinstance(value, dict):
                _merge(tree, existing, value, child, origin_file, lines)
                continue
            previous = tree.origin_of(child)
            tree.problem(origin, child, f"defined twice (also in {previous})")
            continue
        target[key] = value
        tree.origins[child] = origin
        if isinstance(value, dict):
            _record_origins(tree, value, child, origin_file, lines)


def _record_origins(tree: SourceTree, value: dict[str, Any], path: Path_, file: str, lines: dict[Path_, int]) -> None:
    for key, child_value in value.items():
        child = (*path, str(key))
        tree.origins[child] = Origin(file, lines.get(child))
        if isinstance(child_value, dict):
            _record_origins(tree, child_value, child, file, lines)


def _load_config_files(tree: SourceTree) -> None:
    base = tree.root / "config"
    if not base.is_dir():
        return
    files = sorted(p for p in base.iterdir() if p.suffix in (".toml", ".yaml", ".yml") and p.is_file())
    for path in files:
        rel = path.relative_to(tree.root).as_posix()
        text = _read_text(path, tree, rel)
        if text is None:
            continue
        lines: dict[Path_, int] = {}
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(text)
                lines = _toml_lines(text)
            else:
                data, lines = _yaml_with_lines(text, rel, 0)
        except tomllib.TOMLDecodeError as exc:
            at_line = re.search(r"at line (\d+)", str(exc))
            tree.problem(Origin(rel, int(at_line.group(1)) if at_line else None), "", f"invalid TOML: {exc}")
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            tree.problem(Origin(rel, mark.line + 1 if mark else None), "", f"invalid YAML: {getattr(exc, 'problem', None) or exc}")
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            tree.problem(Origin(rel, 1), "", "a config file must hold a mapping of top-level keys")
            continue
        _merge(tree, tree.document, data, (), rel, lines)


def read_source(root: Path) -> SourceTree:
    """Read a config source folder. Problems are collected, not raised, so all are reported at once."""
    tree = SourceTree(root=root)
    if not root.is_dir():
        tree.problem(Origin(str(root)), "", "config source folder does not exist")
        return tree
    _load_config_files(tree)
    from_config = {section: set((tree.document.get(section) or {}).keys()) for section in ("agent", "command")}
    markdown = SourceTree(root=root)
    _load_markdown_entries(markdown, "agents", "agent", "prompt")
    _load_markdown_entries(markdown, "commands", "command", "template")
    tree.problems.extend(markdown.problems)
    for section in ("agent", "command"):
        for name, entry in (markdown.document.get(section) or {}).items():
            clash = next((n for n in from_config[section] if n.lower() == name.lower()), None)
            if clash is not None:
                tree.problem(
                    markdown.origins[(section, name)],
                    f"{section}.{name}",
                    f"duplicate {section} name (also defined in {tree.origin_of((section, clash))})",
                )
                continue
            tree.document.setdefault(section, {})[name] = entry
    tree.origins.update({k: v for k, v in markdown.origins.items() if k[:1] in (("agent",), ("command",))})
    return tree
