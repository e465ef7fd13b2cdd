"""The Engineering Codex in reviews: deterministic rule checks on added lines, and the AI-judged
rules in scope handed to the codex-compliance reviewer, which cites rule IDs."""

from __future__ import annotations

from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl


class CodexPlugin:
    @hookimpl
    def aiplane_review_prepare(self, ctx: PluginContext, change, review) -> None:  # noqa: ANN001
        codex = ctx.settings.codex
        if codex.path is None:
            return
        from aiplane.review.engine import codex_checks

        findings, ai_rules_text, links = codex_checks(change, codex.path, codex.link_base, review)
        ctx.add_findings(findings)
        ctx.add_rule_links(links)
        if ai_rules_text:
            ctx.add_agent_note("codex-compliance", ai_rules_text)


plugin = CodexPlugin()
