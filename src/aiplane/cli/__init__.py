"""The ``aiplane`` command line. Thin: parse arguments, load settings, call into the packages."""

from __future__ import annotations

import sys as _sys

if _sys.argv[1:2] == ["review"]:
    # Before anything else is imported: `aiplane review` pre-starts its model worker, whose imports
    # (httpx, pydantic, the reviewer) then overlap with this process's own start and its reading of
    # the change (docs/review.md, "Start-up").
    from aiplane.review.prewarm import maybe_prestart

    maybe_prestart(_sys.argv[2:])

import asyncio
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from aiplane import __version__

app = typer.Typer(
    help="aiplane: a self-hostable AI engineering platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
usage_app = typer.Typer(help="Usage and cost reports.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
codex_app = typer.Typer(help="The Engineering Codex: rules with IDs, as a skill, in reviews and audits.", no_args_is_help=True)
models_app = typer.Typer(help="The model catalog (models.dev format) behind pricing and discovery.", no_args_is_help=True)
app.add_typer(usage_app, name="usage")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(codex_app, name="codex")

from aiplane.cli.common import (  # noqa: E402 - shared by every command group
    EXIT_CONFIG,
    ConfigOption,
    _fail,
    _run_with_db,
    _seconds,
    _settings,
    err,
    out,
)


@app.command()
def version() -> None:
    """Print the aiplane version."""
    out.print(__version__)


@app.command()
def login(
    gateway: Annotated[Optional[str], typer.Option(help="Gateway URL; asks it how to log in.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Dev mode: who the token is for (default: git user.email).")] = None,
    ttl: Annotated[str, typer.Option(help="Dev mode: token lifetime, for example 12h.")] = "12h",
    config: ConfigOption = None,
) -> None:
    """Print a gateway token on stdout: a dev-mode token, or an SSO token via the OIDC device flow.

    OpenCode runs this from the gateway's /.well-known/opencode document during `opencode auth login`.
    """
    from aiplane.gateway import devkeys
    from aiplane.gateway.login import (
        GatewayAuthInfo,
        LoginError,
        device_flow,
        gateway_auth_info,
        git_email,
        notify_stderr,
    )

    try:
        if gateway:
            info = asyncio.run(gateway_auth_info(gateway))
        else:
            local = _settings(config).auth
            info = GatewayAuthInfo(local.mode, local.issuer, local.device_client_id, tuple(local.device_scopes))
        if info.mode == "oidc":
            token = asyncio.run(device_flow(info, notify=notify_stderr))
        else:
            settings = _settings(config)
            if settings.auth.mode != "dev":
                raise LoginError("the gateway is in dev mode but this machine's settings are not; run this on the gateway host")
            who = (user or git_email() or "").strip()
            if not who:
                raise LoginError("dev mode needs --user EMAIL (or git config user.email)")
            token = devkeys.issue_token(settings.data_dir, who, _seconds(ttl), admin_claim=settings.auth.admin_claim)
    except LoginError as exc:
        raise _fail(f"login failed: {exc}") from None
    typer.echo(token)


@usage_app.command("report")
def usage_report(
    group_by: Annotated[str, typer.Option("--group-by", help="user, model or provider.")] = "user",
    since: Annotated[str, typer.Option(help="Window start: 24h, 7d, 30m, 2w or an ISO 8601 time.")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Print usage and cost aggregates from the gateway database."""
    from aiplane.store.database import DatabaseError, create_engine, migrate
    from aiplane.store.usage import aggregate, parse_since

    if group_by not in ("user", "model", "provider"):
        raise _fail("--group-by must be user, model or provider", EXIT_CONFIG)
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    settings = _settings(config)

    async def run() -> list[dict]:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return await aggregate(engine, group_by, start)  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    try:
        rows = asyncio.run(run())
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except Exception as exc:  # noqa: BLE001 - the driver's message may contain the DSN
        raise _fail(f"cannot read usage from the database ({exc.__class__.__name__})") from None
    if as_json:
        typer.echo(json.dumps({"group_by": group_by, "since": start.isoformat(), "rows": rows}, indent=2))
        return
    table = Table(title=f"Usage by {group_by} since {start:%Y-%m-%d %H:%M} UTC")
    for name, justify in (
        (group_by, "left"),
        ("requests", "right"),
        ("errors", "right"),
        ("input", "right"),
        ("output", "right"),
        ("cached", "right"),
        ("cost (USD)", "right"),
        ("avg ms", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        cost = f"{row['cost_usd']:.4f}" + ("*" if row["unpriced_requests"] else "")
        table.add_row(
            str(row["key"]),
            str(row["requests"]),
            str(row["errors"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['cached_tokens']:,}",
            cost,
            f"{row['avg_latency_ms']:.1f}",
        )
    out.print(table)
    if any(row["unpriced_requests"] for row in rows):
        out.print("* includes requests for models with no known price")
    if not rows:
        out.print("no usage recorded in this window")


@models_app.command("list")
def models_list(
    provider: Annotated[Optional[str], typer.Option(help="Only this provider id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the catalog the gateway serves: the last good fetched copy, else the bundled snapshot."""
    from aiplane.modelcatalog.catalog import bundled, load_last_good

    settings = _settings(config)

    async def work(engine):  # noqa: ANN001, ANN202
        return await load_last_good(engine) or bundled()

    catalog = _run_with_db(settings, work)
    rows = catalog.rows(provider)
    if as_json:
        fetched = catalog.fetched_at.isoformat() if catalog.fetched_at else None
        typer.echo(json.dumps({"source": catalog.source, "fetched_at": fetched, "models": rows}, indent=2))
        return
    when = f", fetched {catalog.fetched_at:%Y-%m-%d %H:%M} UTC" if catalog.fetched_at else ""
    table = Table(title=f"Model catalog ({catalog.source}{when})")
    table.add_column("provider")
    table.add_column("model", no_wrap=True)
    for name in ("in $/M", "out $/M", "cached $/M", "context"):
        table.add_column(name, justify="right")

    def money(value) -> str:  # noqa: ANN001
        return "-" if value is None else f"{value:g}"

    for row in rows:
        table.add_row(
            row["provider"],
            row["model"],
            money(row["input_per_mtok"]),
            money(row["output_per_mtok"]),
            money(row["cache_read_per_mtok"]),
            "-" if row["context"] is None else f"{row['context']:,}",
        )
    out.print(table)
    if not rows:
        out.print(f"no models for provider '{provider}'" if provider else "the catalog is empty")


@models_app.command("refresh")
def models_refresh(config: ConfigOption = None) -> None:
    """Fetch the catalog from catalog.url now and store it as the last good copy."""
    import aiohttp

    from aiplane.modelcatalog.catalog import CatalogError, fetch, save

    settings = _settings(config)
    if not settings.catalog.url:
        raise _fail("catalog.url is empty: there is nothing to refresh from", EXIT_CONFIG)

    async def work(engine):  # noqa: ANN001, ANN202
        async with aiohttp.ClientSession(trust_env=False) as session:
            try:
                catalog = await fetch(session, settings.catalog.url, settings.catalog.timeout_seconds)
            except CatalogError as exc:
                raise _fail(f"{exc}; the stored catalog is unchanged") from None
        await save(engine, catalog)
        return catalog

    catalog = _run_with_db(settings, work)
    out.print(f"stored {catalog.model_count} models from {len(catalog.data)} providers")


def _lazy_http_session():  # noqa: ANN202 - (the sessions made, a factory) for JWKS fetches
    """An aiohttp session created on first use, inside the server's event loop."""
    import aiohttp

    sessions: list[aiohttp.ClientSession] = []

    def session() -> aiohttp.ClientSession:
        if not sessions:
            sessions.append(aiohttp.ClientSession(trust_env=False))
        return sessions[0]

    return sessions, session


def _load_codex(rules_dir: Path):  # noqa: ANN202
    from aiplane.codex.rules import load

    codex = load(rules_dir)
    if codex.problems:
        for problem in codex.problems:
            err.print(str(problem), markup=False)
        raise _fail(f"{rules_dir}: {len(codex.problems)} problem(s) in the codex")
    return codex


@codex_app.command("validate")
def codex_validate(rules_dir: Annotated[Path, typer.Argument(help="Codex folder of rule files.")]) -> None:
    """Check rules: IDs (format, duplicates), required fields, globs, checks and links."""
    codex = _load_codex(rules_dir)
    out.print(f"{rules_dir}: {len(codex.rules)} rules, {sum(r.deterministic for r in codex.rules)} with deterministic checks")


@codex_app.command("skill")
def codex_skill(
    rules_dir: Annotated[Path, typer.Argument(help="Codex folder of rule files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the skill folder goes.")] = Path("skills"),
    name: Annotated[str, typer.Option(help="Skill name (and folder name).")] = "engineering-codex",
) -> None:
    """Emit an Agent Skills folder: SKILL.md index, references/<domain>.md, scripts/check.py."""
    from aiplane.codex.skill import SkillError, write_skill

    codex = _load_codex(rules_dir)
    try:
        problems = write_skill(codex, output, name)
    except (SkillError, OSError) as exc:
        raise _fail(str(exc)) from None
    if problems:
        for problem in problems:
            err.print(problem, markup=False)
        raise _fail("the skill would not be valid; nothing was written")
    out.print(f"wrote {output / name if output.name != name else output} ({len(codex.rules)} rules)")


@codex_app.command("ask")
def codex_ask(
    question: Annotated[str, typer.Argument(help="What you want to know.")],
    rules_dir: Annotated[Path, typer.Option("--rules", help="Codex folder.")] = Path("codex"),
    config: ConfigOption = None,
) -> None:
    """Answer from the rules that match, citing IDs; without a model, list the matching rules."""
    from aiplane.codex.ask import answer_prompt, rank
    from aiplane.llm.client import NoModelConfigured, for_tier

    codex = _load_codex(rules_dir)
    matches = rank(codex.active(), question)
    if not matches:
        out.print("No rule in the codex matches that question.")
        return
    settings = _settings(config)
    try:
        handle = for_tier(settings, "light")
    except NoModelConfigured:
        out.print("No model is configured; the rules that match:")
        for rule in matches:
            out.print(f"- {rule.id}: {rule.title} ({rules_dir / rule.path})\n  {rule.statement.strip()}")
        return
    from pydantic_ai import Agent

    try:
        result = Agent(handle.model).run_sync(answer_prompt(question, matches))
    except Exception as exc:  # noqa: BLE001 - fall back to the deterministic answer
        err.print(f"the model did not answer ({exc.__class__.__name__}); the rules that match:", markup=False)
        for rule in matches:
            out.print(f"- {rule.id}: {rule.title}")
        return
    out.print(result.output)
    out.print("Rules: " + ", ".join(r.id for r in matches))


@codex_app.command("audit")
def codex_audit(
    path: Annotated[Path, typer.Argument(help="Repository to audit.")],
    rules_dir: Annotated[Path, typer.Option("--rules", help="Codex folder.")] = Path("codex"),
    fmt: Annotated[str, typer.Option("--format", help="markdown or json.")] = "markdown",
    passes: Annotated[int, typer.Option(help="Independent model passes per AI-judged rule.")] = 3,
    config: ConfigOption = None,
) -> None:
    """Score each rule COMPLIANT / PARTIAL / NON-COMPLIANT with evidence and remediation."""
    from aiplane.codex.audit import audit, render_json, render_markdown
    from aiplane.llm.client import NoModelConfigured, for_tier

    if fmt not in ("markdown", "json"):
        raise _fail("--format must be markdown or json", EXIT_CONFIG)
    if not path.is_dir():
        raise _fail(f"{path} is not a directory", EXIT_CONFIG)
    if not 1 <= passes <= 9:
        raise _fail("--passes must be between 1 and 9", EXIT_CONFIG)
    codex = _load_codex(rules_dir)
    settings = _settings(config)
    try:
        model = for_tier(settings, "specialist").model
    except NoModelConfigured:
        model = None
    results = audit(codex, path.resolve(), model=model, passes=passes)
    typer.echo(render_json(results) if fmt == "json" else render_markdown(results, path.resolve()), nl=False)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply database migrations (the gateway also does this at startup)."""
    from aiplane.store.database import DatabaseError, create_engine, migrate

    settings = _settings(config)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except Exception as exc:  # noqa: BLE001 - the driver's message may contain the DSN
        raise _fail(f"migration failed ({exc.__class__.__name__})") from None
    out.print("database schema is up to date")


from aiplane.cli import agentsmd as _agentsmd  # noqa: E402 - the agents-md command group
from aiplane.cli import catalog as _catalog  # noqa: E402 - registers the catalog command group
from aiplane.cli import config as _config  # noqa: E402 - registers the config command group
from aiplane.cli import gateway as _gateway  # noqa: E402 - registers the gateway command group
from aiplane.cli import portal as _portal  # noqa: E402 - registers the portal command group
from aiplane.cli import quota as _quota  # noqa: E402 - registers the quota command group
from aiplane.cli import review as _review  # noqa: E402 - registers the review command groups
from aiplane.cli import review_eval as _review_eval  # noqa: E402, F401 - registers review eval and eval-prepare

app.add_typer(_catalog.catalog_app, name="catalog")
app.add_typer(_config.config_app, name="config")
app.add_typer(_gateway.gateway_app, name="gateway")
app.add_typer(_quota.quota_app, name="quota")
app.add_typer(_portal.portal_app, name="portal")
app.add_typer(_review.review_app, name="review")
app.add_typer(_review.review_config_app, name="review-config")
app.add_typer(_agentsmd.agentsmd_app, name="agents-md")


def main() -> None:
    app()
