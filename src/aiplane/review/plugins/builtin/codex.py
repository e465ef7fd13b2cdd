"""The Engineering Codex in reviews: deterministic rule checks on added lines, and the AI-judged
rules in scope handed to the codex-compliance reviewer, which cites rule IDs.

The rules come from the operator's `codex.path`, or the repository's `.aiplane/review.toml`
(`codex = "folder"`). A codex inside the checkout is read from the trusted tree (the base commit
in CI), so a change cannot delete or weaken the rules it is checked against.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiplane.repository.tree import TreeBase
from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl


def _relative(path: Path, root: Path) -> str | None:
    """`path` inside `root` by its name (never through links the checkout may hold), or None."""
    for folder in {Path(os.path.abspath(root)), root.resolve()}:
        lexical = Path(os.path.abspath(path))
        if lexical == folder or folder in lexical.parents:
            return lexical.relative_to(folder).as_posix() if lexical != folder else ""
    return None


def codex_source(ctx: PluginContext, repo: Path) -> tuple[Path | TreeBase, str] | None:
    configured = ctx.settings.codex.path
    tree = ctx.config_tree
    if configured is not None:
        relative = _relative(configured, repo)
        if isinstance(tree, TreeBase) and relative is not None:
            # Inside the checkout: the trusted tree's copy (the base commit in CI), found by name.
            return tree.sub(relative), f"{relative or '.'} ({tree.describe()})"
        return configured, str(configured)
    if ctx.repo_settings.codex and isinstance(tree, TreeBase):
        return tree.sub(ctx.repo_settings.codex), f"{ctx.repo_settings.codex} ({tree.describe()})"
    return None


class CodexPlugin:
    @hookimpl
    def aiplane_review_prepare(self, ctx: PluginContext, change, review) -> None:  # noqa: ANN001
        source = codex_source(ctx, change.repo)
        if source is None:
            return
        from aiplane.review.engine import codex_checks

        findings, ai_rules_text, links = codex_checks(change, source[0], source[1], ctx.settings.codex.link_base, review)
        ctx.add_findings(findings)
        ctx.add_rule_links(links)
        if ai_rules_text:
            ctx.add_agent_note("codex-compliance", ai_rules_text)


plugin = CodexPlugin()
