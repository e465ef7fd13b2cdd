"""`aiplane review` and `aiplane review-config`: the reviewer locally and in CI, and its central routing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _run_with_db, _settings, err
from aiplane.config import inside

EXIT_REQUEST_CHANGES = 3
review_app = typer.Typer(help="Multi-agent code review, locally or in CI (GitHub, GitLab).", invoke_without_command=True)
review_config_app = typer.Typer(help="Central model routing for reviewers, stored in the gateway database.", no_args_is_help=True)


@review_app.callback()
def review(
    ctx: typer.Context,
    repo: Annotated[Path, typer.Option(help="The git repository to review (the CI checkout).")] = Path("."),
    base: Annotated[Optional[str], typer.Option(help="Base ref for --vcs local (default: merge base with the default branch).")] = None,
    head: Annotated[str, typer.Option(help="Head ref for --vcs local.")] = "HEAD",
    vcs: Annotated[str, typer.Option(help="Where the change lives and the review is published: local, github, gitlab.")] = "local",
    change: Annotated[Optional[str], typer.Option(help="PR number / MR IID (default: from the pipeline's variables).")] = None,
    max_inline: Annotated[Optional[int], typer.Option(min=0, max=100, help="Inline comments per run (default: review.max_inline_comments).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown, json or sarif.")] = "markdown",
    output: Annotated[Optional[Path], typer.Option(help="Write the review here instead of stdout.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the tier and reviewers; review and publish nothing.")] = False,
    tier: Annotated[Optional[str], typer.Option(help="Force the risk tier: trivial, lite or full (default: decided from the change).")] = None,
    strict: Annotated[bool, typer.Option(help="Fail (exit 1) on the reviewer's own errors instead of failing small.")] = False,
    fail_on_request_changes: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_REQUEST_CHANGES} when the verdict is request changes.")
    ] = True,
    outputs: Annotated[Optional[Path], typer.Option(
        help="Append verdict, findings and comment-url as name=value lines (GitHub Actions: \"$GITHUB_OUTPUT\").")] = None,
    dotenv: Annotated[Optional[Path], typer.Option(
        help="Write AIPLANE_VERDICT, AIPLANE_FINDINGS and AIPLANE_COMMENT_URL as a dotenv file (GitLab: artifacts:reports:dotenv).")] = None,
    config: ConfigOption = None,
) -> None:
    """Review a change and publish one living comment (plus inline comments) to the VCS.

    Exit codes: 0 reviewed (or the reviewer failed small), 3 request changes, 1 with --strict on
    the reviewer's own failure, 2 bad arguments.
    """
    if ctx.invoked_subcommand is not None:
        return

    from aiplane.review.agents import AgentError
    from aiplane.review.changes import ChangeError
    from aiplane.review.ci import review_change
    from aiplane.review.plugins.context import AssemblyError, ReviewOptions
    from aiplane.review.plugins.host import ConfigureError
    from aiplane.review.report import render
    from aiplane.vcs.model import VcsError

    if fmt not in ("markdown", "json", "sarif"):
        raise _fail("--format must be markdown, json or sarif", EXIT_CONFIG)
    if tier is not None and tier not in ("trivial", "lite", "full"):
        raise _fail("--tier must be trivial, lite or full", EXIT_CONFIG)
    if vcs not in ("local", "github", "gitlab") and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", vcs):
        raise _fail("--vcs must be local, github, gitlab or a VCS plugin's name", EXIT_CONFIG)
    # In CI the checkout is the change under review: nothing in it may configure the review.
    checkout = repo.resolve() if vcs != "local" else None
    if (checkout is not None and config is None and not os.environ.get("AIPLANE_CONFIG")
            and os.path.lexists("aiplane.toml") and inside(Path.cwd(), checkout)):
        err.print("aiplane review: ignoring ./aiplane.toml: in CI the review's settings never come from the change under "
                  "review (see docs/review.md, Threat model)", markup=False)
    settings = _settings(config, checkout)
    options = ReviewOptions(
        vcs=vcs, repo=repo.resolve(), base=base, head=head, change=change, dry_run=dry_run, tier=tier,
        max_inline=settings.review.max_inline_comments if max_inline is None else max_inline,
    )
    ci_outputs = CiOutputs(outputs, dotenv)
    try:
        outcome = review_change(options, settings, dict(os.environ))
    except (ConfigureError, AssemblyError, ChangeError, AgentError, VcsError) as exc:
        ci_outputs.write("not_reviewed", None, "")
        return _fail_small(str(exc), strict)
    except Exception as exc:  # noqa: BLE001 - fail small: the reviewer must never break the pipeline
        ci_outputs.write("not_reviewed", None, "")
        return _fail_small(f"internal error ({exc.__class__.__name__})", strict)
    result = outcome.review
    ci_outputs.write("not_reviewed" if dry_run else result.verdict, None if dry_run else len(result.findings), outcome.summary_url)
    if outcome.publish_error:
        err.print(f"aiplane review: the review ran but could not be published: {outcome.publish_error}", markup=False)
    text = render(result, fmt, str(settings.review.docs_url) if settings.review.docs_url else None)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail_small(f"cannot write {output} ({exc.__class__.__name__})", strict)
    else:
        typer.echo(text, nl=False)
    if outcome.publish_error and strict:
        raise typer.Exit(1)
    if result.verdict == "request_changes" and fail_on_request_changes and not dry_run:
        raise typer.Exit(EXIT_REQUEST_CHANGES)


@review_app.command("plugins")
def review_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """List installed review plugins and their status (loading and bootstrap)."""
    import os

    from aiplane.review.plugins.context import PluginContext, ReviewOptions
    from aiplane.review.plugins.host import PluginHost

    settings = _settings(config)
    host = PluginHost.load(frozenset(settings.review.disabled_plugins))
    host.bootstrap(PluginContext(ReviewOptions(), settings, dict(os.environ)))
    hooks = {name: sorted(h.name.removeprefix("aiplane_review_") for h in host.manager.get_hookcallers(plugin) or [])
             for name, plugin in host.manager.list_name_plugin()}
    rows = [{"name": i.name, "source": i.source, "status": i.status, "error": i.error, "hooks": hooks.get(i.name, [])}
            for i in host.infos.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "status", "hooks", "source")
    for row in rows:
        status = row["status"] + (f": {row['error']}" if row["error"] else "")
        table.add_row(row["name"], status, ", ".join(row["hooks"]), row["source"])
    Console(soft_wrap=True).print(table)


_SAFE_URL = re.compile(r"https?://[\x21-\x7e]{1,2000}")


class CiOutputs:
    """The review's result for the pipeline: GitHub step outputs (`verdict`, `findings`,
    `comment-url`) and a GitLab dotenv report (`AIPLANE_VERDICT`, `AIPLANE_FINDINGS`,
    `AIPLANE_COMMENT_URL`). Values are one line each: a URL with a line break or a space (the host
    answered something odd) is left out rather than let it write another output."""

    def __init__(self, outputs: Path | None, dotenv: Path | None) -> None:
        self.outputs = outputs
        self.dotenv = dotenv

    def write(self, verdict: str, findings: int | None, comment_url: str) -> None:
        url = comment_url if _SAFE_URL.fullmatch(comment_url or "") else ""
        count = "" if findings is None else str(findings)
        try:
            if self.outputs is not None:
                _write_no_follow(self.outputs, f"verdict={verdict}\nfindings={count}\ncomment-url={url}\n", os.O_APPEND)
            if self.dotenv is not None:
                _write_no_follow(self.dotenv, f"AIPLANE_VERDICT={verdict}\nAIPLANE_FINDINGS={count}\nAIPLANE_COMMENT_URL={url}\n",
                                 os.O_TRUNC)
        except OSError as exc:
            # Said, never fatal: the review itself ran (or failed small) and is published.
            err.print(f"aiplane review: could not write the CI outputs ({exc.__class__.__name__}: {exc.strerror})", markup=False)


def _write_no_follow(path: Path, text: str, mode: int) -> None:
    """GitLab's dotenv report lives in the checkout, which the merge request controls: a committed
    symlink by that name must not redirect our write elsewhere (O_NOFOLLOW refuses it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | mode, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _fail_small(message: str, strict: bool) -> None:
    err.print(f"aiplane review: {message}; the review did not run" + ("" if strict else " (failing small: exit 0)"), markup=False)
    if strict:
        raise typer.Exit(1)
    raise typer.Exit(0)


@review_config_app.command("get")
def review_config_get(config: ConfigOption = None) -> None:
    """Print the routing document in force (JSON)."""
    from aiplane.llm.routing import EMPTY
    from aiplane.store import reviewconfig

    settings = _settings(config)
    stored = _run_with_db(settings, reviewconfig.latest)
    if stored is None:
        err.print("No review config has been set; this is the default (every reviewer uses local model settings).", markup=False)
        typer.echo(json.dumps(EMPTY.model_dump(mode="json", exclude_none=True), indent=2))
        return
    err.print(f"Set {stored['updated_at']} by {stored['updated_by']}.", markup=False)
    typer.echo(json.dumps(stored["document"], indent=2))


@review_config_app.command("set")
def review_config_set(
    file: Annotated[Path, typer.Argument(help="A JSON routing document, or - for stdin.")],
    config: ConfigOption = None,
) -> None:
    """Replace the routing document (kept as history; the newest is in force within 5 s).

    Example: {"agents": {"security": {"model": "anthropic/claude-sonnet-4-5", "failback": ["openai/gpt-5"]}},
    "providers": {"openai": {"enabled": false}}}
    """
    import getpass
    import sys

    from aiplane.llm.routing import RoutingError, parse
    from aiplane.store import reviewconfig

    settings = _settings(config)
    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file} ({exc.__class__.__name__})", EXIT_CONFIG) from None
    try:
        document = parse(raw)
    except RoutingError as exc:
        raise _fail(f"{file}: invalid review config: {exc}", EXIT_CONFIG) from None
    actor = f"cli:{getpass.getuser()}"
    _run_with_db(settings, lambda engine: reviewconfig.save(engine, document.model_dump(mode="json", exclude_none=True), actor))
    err.print(f"Review config saved; reviews pick it up within 5 seconds. Agents: {', '.join(document.agents) or 'none'}; "
              f"providers off: {', '.join(p for p, s in document.providers.items() if not s.enabled) or 'none'}.", markup=False)
