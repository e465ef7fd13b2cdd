"""`aiplane agents-md`: analyse a repository, generate AGENTS.md from verified facts, roll it out, check staleness."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _run_with_db, _settings, err, out

agentsmd_app = typer.Typer(help="AGENTS.md: verified facts, short files, staleness checks.", no_args_is_help=True)


def _repository_folder(path: Path) -> Path:
    """The folder to analyse, refused (exit 2) when it is not a directory or when the way to it from
    the enclosing repository's root goes through a symlink: a committed `pkg -> /elsewhere` given as
    the folder would have the analysis read, and --write write, outside the repository. A symlink
    to the repository itself, or above it, is the operator's own and is followed."""
    if not path.is_dir():
        raise _fail(f"{path} is not a directory", EXIT_CONFIG)
    # Not normalised: in `inner/..` the `..` is taken from where the symlink `inner` points.
    raw = (Path.cwd() / path).parts
    for folder in (Path(*raw[:end]) for end in range(len(raw), 0, -1)):
        if folder.is_symlink() and any((above / ".git").exists() for above in folder.parents):
            raise _fail(f"{path} goes through a symlink inside a repository ({folder.name}); it is not followed", EXIT_CONFIG)
        if (folder / ".git").exists() and not folder.is_symlink():
            break  # the repository's root: what is above it is the operator's own
    return path


@agentsmd_app.command("analyze")
def agentsmd_analyze(
    path: Annotated[Path, typer.Argument(help="Repository root.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Detect languages, tools, test/lint commands, layout and runtime, each with evidence."""
    from aiplane.agentsmd.analyze import analyze

    _repository_folder(path)
    result = analyze(path)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    out.print(f"languages: {', '.join(f'{k} {v:.0%}' for k, v in result.languages.items()) or 'none detected'}", markup=False)
    rows = [("build", result.build), ("runtime", result.runtime), ("test", result.test), ("one test", result.single_test),
            ("build first", result.build_commands), ("check", result.lint)]
    for label, facts in rows:
        for fact in facts:
            where = f" in {fact.cwd}/" if fact.cwd else ""
            kind = f" [{fact.kind}]" if label == "check" else ""
            runs = f" (runs {fact.runs})" if fact.runs else ""
            out.print(f"{label}{kind}: {fact.value}{where}{runs}  ({fact.evidence})", markup=False)
    for package in result.packages:
        out.print(f"package {package.root}: " + "; ".join(f.value for f in package.test + package.lint), markup=False)


@agentsmd_app.command("generate")
def agentsmd_generate(
    path: Annotated[Path, typer.Argument(help="Repository root.")],
    write: Annotated[bool, typer.Option("--write", help="Write AGENTS.md (an existing one is kept; see the proposal).")] = False,
    claude: Annotated[bool, typer.Option("--claude", help="Also write CLAUDE.md containing @AGENTS.md.")] = False,
    model: Annotated[bool, typer.Option("--model", help="Let the configured model phrase the verified facts.")] = False,
    catalog: Annotated[bool, typer.Option("--catalog", help="Add owner, system and dependencies from the service catalog.")] = False,
    config: ConfigOption = None,
) -> None:
    """Render a short AGENTS.md from verified facts (at most ~400 words, commands only from the analysis)."""
    from aiplane.agentsmd.generate import InventedCommand, catalog_facts, generate, phrase

    _repository_folder(path)
    settings = _settings(config) if (model or catalog) else None
    facts: dict[str, str] = {}
    if catalog and settings is not None:
        from aiplane.catalog.store import load_index

        async def work(engine):  # noqa: ANN001, ANN202
            return await load_index(engine)

        facts = catalog_facts(path, _run_with_db(settings, work))
        if not facts:
            err.print("no catalog entity matches this repository; the Dependencies section is left out", markup=False)
    try:
        analysis, text = generate(path, facts or None)
    except InventedCommand as exc:
        raise _fail(str(exc)) from None
    if model and settings is not None:
        from aiplane.llm.client import NoModelConfigured, for_tier

        try:
            text, warning = phrase(text, analysis, for_tier(settings, "light").model)
        except NoModelConfigured:
            warning = "no model is configured; kept the template"
        if warning:
            err.print(warning, markup=False)
    if not write:
        typer.echo(text, nl=False)
        return
    from aiplane.agentsmd.safe import UnsafeWrite, write_file
    from aiplane.repository.tree import WorkTree

    try:
        try:
            target = write_file(path, "AGENTS.md", text)
            out.print(f"wrote {target} ({len(text.split())} words)", markup=False)
        except FileExistsError:
            proposal = write_file(path, "AGENTS.md.proposed", text, replace=True)
            out.print(f"AGENTS.md exists and was left as it is; the proposal is in {proposal}", markup=False)
        if claude and WorkTree(path).kind("CLAUDE.md") is None:  # an existing one (a file or a link) is left alone
            write_file(path, "CLAUDE.md", "@AGENTS.md\n")
    except UnsafeWrite as exc:
        raise _fail(f"not written: {exc}", EXIT_CONFIG) from None
    except OSError as exc:
        raise _fail(f"cannot write in {path} ({exc.strerror or exc.__class__.__name__})", EXIT_CONFIG) from None


@agentsmd_app.command("rollout")
def agentsmd_rollout(
    repos_file: Annotated[Optional[Path], typer.Option("--repos", help="A file of repositories: 'PATH [owner/name]' per line.")] = None,
    catalog: Annotated[bool, typer.Option("--catalog", help="Take the repositories from the ingested service catalog (Components with a project-slug and source-location).")] = False,
    workspace: Annotated[Path, typer.Option(help="Where --catalog clones repositories.")] = Path("agents-md-workspace"),
    vcs: Annotated[str, typer.Option(help="local (branch only), github or gitlab (push and open a PR/MR).")] = "local",
    api_url: Annotated[Optional[str], typer.Option(help="The host's API (default: GITHUB_API_URL / CI_API_V4_URL, else the public one).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Repositories processed in parallel.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Propose AGENTS.md in many repositories: a branch (aiplane/agents-md), a commit and, with
    --vcs github|gitlab, a pushed branch and one PR/MR each (tokens: GITHUB_TOKEN, GITLAB_TOKEN).

    Idempotent: repositories whose proposal is current are reported unchanged, and a proposal a
    human has edited is never overwritten. Exits 1 if any repository failed.
    """
    import os

    from rich.progress import Progress

    from aiplane.agentsmd.rollout import Target, rollout, slug_from_remote, source_clone_url

    if (repos_file is None) == (not catalog):
        raise _fail("give exactly one of --repos FILE or --catalog", EXIT_CONFIG)
    if vcs not in ("local", "github", "gitlab"):
        raise _fail("--vcs must be local, github or gitlab", EXIT_CONFIG)
    token = os.environ.get("GITHUB_TOKEN" if vcs == "github" else "GITLAB_TOKEN", "") if vcs != "local" else ""
    if vcs != "local" and not token:
        raise _fail(f"--vcs {vcs} needs {'GITHUB_TOKEN' if vcs == 'github' else 'GITLAB_TOKEN'} in the environment", EXIT_CONFIG)
    api = api_url or os.environ.get("GITHUB_API_URL" if vcs == "github" else "CI_API_V4_URL") or (
        "https://api.github.com" if vcs == "github" else "https://gitlab.com/api/v4")

    def host_for(slug: str | None):  # noqa: ANN202 - a factory, or None for local
        if vcs == "local":
            return None
        if not slug:
            raise _fail("cannot tell the repository's owner/name: add it after the path in --repos", EXIT_CONFIG)
        if vcs == "github":
            from aiplane.vcs.github import GitHubRepository

            return lambda: GitHubRepository(slug, token, api)
        from aiplane.vcs.gitlab import GitLabProject

        return lambda: GitLabProject(slug, token, api)

    facts = None
    targets: list[Target] = []
    if repos_file is not None:
        try:
            lines = repos_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise _fail(f"cannot read {repos_file} ({exc.__class__.__name__})", EXIT_CONFIG) from None
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            path_text, _, slug = line.strip().partition(" ")
            path = Path(path_text).expanduser()
            slug = slug.strip() or (slug_from_remote(path) if vcs != "local" and (path / ".git").exists() else None)
            targets.append(Target(path, host_for(slug)))
    else:
        from aiplane.agentsmd.generate import catalog_facts
        from aiplane.catalog.store import load_index

        settings = _settings(config)
        index = _run_with_db(settings, load_index)
        annotation = "gitlab.com/project-slug" if vcs == "gitlab" else "github.com/project-slug"
        refs: dict[Path, str] = {}
        for entity in index.entities.values():
            if str(entity.get("kind", "")).lower() != "component":
                continue
            slug = (entity.get("metadata", {}).get("annotations") or {}).get(annotation)
            clone_url = source_clone_url(entity)
            if not slug or not clone_url:
                continue
            if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+", slug) or ".." in slug.split("/"):
                err.print(f"skipping {entity.get('metadata', {}).get('name')}: {annotation} {slug!r} is not owner/name", markup=False)
                continue
            metadata = entity.get("metadata", {})
            path = workspace / slug
            refs[path] = f"component:{metadata.get('namespace') or 'default'}/{metadata['name']}"
            targets.append(Target(path, host_for(slug), clone_url))
        if not targets:
            raise _fail(f"no Component in the catalog has both {annotation} and backstage.io/source-location: url:...", EXIT_CONFIG)

        def facts(root: Path) -> dict[str, str]:
            return catalog_facts(root, index, refs.get(root))

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("AGENTS.md", total=len(targets))
        results = rollout(targets, catalog=facts, workers=workers, on_done=lambda _r: progress.advance(task))
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        table = Table(title="AGENTS.md rollout")
        for column in ("repository", "outcome", "reason", "url"):
            table.add_column(column)
        for r in results:
            table.add_row(r.repo, r.outcome, r.reason, r.url)
        out.print(table)
    if any(r.outcome == "failed" for r in results):
        raise typer.Exit(1)


@agentsmd_app.command("check")
def agentsmd_check(
    path: Annotated[Path, typer.Argument(help="Repository root.")],
    base: Annotated[Optional[str], typer.Option(help="Also flag changes since this ref to manifests, CI, lint configs or referenced paths.")] = None,
) -> None:
    """Report what AGENTS.md states that is no longer true. Exits 1 when it is stale."""
    from aiplane.agentsmd.generate import check
    from aiplane.agentsmd.safe import printable
    from aiplane.repository.tree import WorkTree

    _repository_folder(path)
    if WorkTree(path.resolve()).kind("AGENTS.md") != "file":
        raise _fail(f"{path} has no AGENTS.md (a symlink is not followed)", EXIT_CONFIG)
    result = check(path.resolve(), base)
    # What AGENTS.md says is the repository's text: shown with control and bidi characters escaped.
    for command in result.stale_commands:
        out.print(f"stale command: {printable(command)} (not found by the analysis)", markup=False)
    for missing in result.missing_paths:
        out.print(f"missing path: {printable(missing)}", markup=False)
    for touched in result.touched_watched:
        out.print(f"changed since {printable(base or '')}: {printable(touched)} (AGENTS.md may need an update)", markup=False)
    if result.stale:
        raise typer.Exit(1)
    out.print("AGENTS.md matches the repository")
