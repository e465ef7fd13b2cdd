"""AGENTS.md staleness in reviews: when a change touches build manifests, CI, lint configs or
paths the file names, or the file states commands and paths that no longer exist, say so.
Deterministic: the facts come from `aiplane.agentsmd`, never from a model. Everything is read from
the head commit's git objects, never the checkout: a manifest that is a symlink is not followed.
Against the base commit, only what this change broke is reported: commands and paths that worked
before and do not now, and the files AGENTS.md depends on when the facts it states moved."""

from __future__ import annotations

from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl
from aiplane.review.report import Finding

FILE = "AGENTS.md"


class AgentsMdPlugin:
    @hookimpl
    def aiplane_review_prepare(self, ctx: PluginContext, change, review) -> None:  # noqa: ANN001
        tree = change.head_tree
        if not tree.is_file(FILE):
            return
        from aiplane.agentsmd.generate import MAX_AGENTS_MD_BYTES, check
        from aiplane.agentsmd.safe import printable

        staleness = check(tree, base=change.base_tree, changed=[f.path for f in change.files])
        if not staleness.stale:
            return
        text = (tree.read_text(FILE, MAX_AGENTS_MD_BYTES, errors="replace") or "").splitlines()

        def line_of(needle: str) -> int:
            return next((i for i, line in enumerate(text, start=1) if needle in line), 1)

        findings = [
            _finding(line_of(command), f"AGENTS.md names a command the repository no longer has: `{printable(command)}`")
            for command in staleness.stale_commands
        ]
        findings += [
            _finding(line_of(path), f"AGENTS.md names a path that no longer exists: `{printable(path)}`") for path in staleness.missing_paths
        ]
        touched = [p for p in staleness.touched_watched if p != FILE]
        if touched and FILE not in {f.path for f in change.reviewable}:
            listed = ", ".join(f"`{printable(p)}`" for p in touched[:5]) + (" …" if len(touched) > 5 else "")
            findings.append(_finding(1, f"This change touches {listed}, which AGENTS.md depends on; check it is still accurate",
                                     severity="nit"))
        ctx.add_findings(findings)


def _finding(line: int, title: str, severity: str = "suggestion") -> Finding:
    return Finding(file=FILE, start_line=line, end_line=line, category="agents-md", severity=severity,  # type: ignore[arg-type]
                   title=title, explanation="Run `aiplane agents-md check .` locally and update the file "
                   "(`aiplane agents-md generate . --write` proposes a minimal update).", confidence=0.95, source="agents-md-check")


plugin = AgentsMdPlugin()
