"""Markdown files with YAML frontmatter, as used for agents, commands, reviewers and codex rules."""

from __future__ import annotations

from typing import Any

import yaml


class NestedTooDeeply(yaml.YAMLError):
    """PyYAML recurses once per nesting level and raises RecursionError, which is not a YAMLError:
    a deeply nested document is reported as invalid YAML like any other."""

    def __init__(self) -> None:
        super().__init__("nested too deeply")
        self.problem = "nested too deeply"


def load_yaml(text: str) -> Any:
    """yaml.safe_load (the pure-Python loader: it fails cleanly at Python's recursion limit) with
    every failure a yaml.YAMLError."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise NestedTooDeeply() from None


def split_frontmatter(text: str) -> tuple[str | None, str, int]:
    """Return (frontmatter text or None, body, line where the frontmatter starts)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text, 0
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), 1
    raise ValueError("frontmatter opened with '---' is never closed")
