"""`aiplane gateway`: run the gateway (one process or N workers on one port) and mint dev tokens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _seconds, _settings, err

gateway_app = typer.Typer(help="The LLM gateway.", no_args_is_help=True)
token_app = typer.Typer(help="Dev-mode tokens for a gateway without an SSO provider.", no_args_is_help=True)
gateway_app.add_typer(token_app, name="token")

MAX_WORKERS = 64
# uvicorn kills a worker that does not answer its supervisor's ping within this time (its default, 5 s,
# kills busy workers on a loaded machine, and with them their requests in flight).
WORKER_HEALTHCHECK_SECONDS = 30


@gateway_app.command("serve")
def gateway_serve(
    config: ConfigOption = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default from settings: 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default from settings: 8787).")] = None,
    workers: Annotated[int, typer.Option(help="Processes sharing the port; more than 1 needs PostgreSQL (docs/deploy.md).")] = 1,
) -> None:
    """Run the gateway under uvicorn."""

    from aiplane.gateway.app import create_app
    from aiplane.gateway.discovery import OrgConfigError
    from aiplane.logs import configure_logging
    from aiplane.store.database import DatabaseError

    if not 1 <= workers <= MAX_WORKERS:
        raise _fail(f"--workers must be from 1 to {MAX_WORKERS}", EXIT_CONFIG)
    settings = _settings(config)
    configure_logging(settings.log.level)
    if workers > 1 and not settings.database_url.startswith("postgresql"):
        raise _fail(
            f"--workers {workers} needs a database every process can share: set database.url "
            "(AIPLANE_DATABASE__URL) to postgresql+asyncpg://...; SQLite serves one process (docs/deploy.md)",
            EXIT_CONFIG,
        )
    if workers > 1 and settings.quotas.rules and settings.redis.url is None:
        raise _fail(
            f"--workers {workers} with quotas.rules needs redis.url (AIPLANE_REDIS__URL): without Redis each "
            "process would count only its own requests",
            EXIT_CONFIG,
        )
    try:
        # Built once here as well: bad settings fail before any worker starts, and one-time state
        # (the dev signing key) is created by one process, not raced by N.
        application = create_app(settings)
    except OrgConfigError as exc:
        for problem in exc.problems:
            err.print(str(problem), highlight=False, markup=False, soft_wrap=True)
        raise _fail(f"discovery.config_source is invalid: {exc}", EXIT_CONFIG) from None
    except (DatabaseError, ValueError, OSError) as exc:
        raise _fail(f"cannot start the gateway: {exc}", EXIT_CONFIG) from None
    from aiplane import httpserver

    gateway = settings.gateway
    options = dict(timeout_graceful_shutdown=30, timeout_keep_alive=30)
    limits = (gateway.head_timeout_seconds, gateway.max_head_bytes, gateway.max_connections)
    if workers == 1:
        httpserver.run(application, host or gateway.host, port or gateway.port, *limits, **options)
        return
    if config is not None:
        os.environ["AIPLANE_CONFIG"] = str(Path(config).resolve())  # what each worker loads
    httpserver.run("aiplane.gateway.worker:app", host or gateway.host, port or gateway.port, *limits,
                   factory=True, workers=workers, timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS, **options)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The user's email or subject.")],
    ttl: Annotated[str, typer.Option(help="Lifetime, for example 30m, 12h or 7d.")] = "12h",
    admin: Annotated[bool, typer.Option(help="Put the user in the admin group (usage reports).")] = False,
    group: Annotated[Optional[list[str]], typer.Option("--group", help="A group for the token (repeatable), e.g. for MCP portal policies.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print a dev-mode token signed by the gateway's local key."""
    from aiplane.gateway import devkeys

    settings = _settings(config)
    if settings.auth.mode != "dev":
        raise _fail("dev tokens need auth.mode = 'dev'; this gateway verifies SSO tokens", EXIT_CONFIG)
    if not user.strip():
        raise _fail("--user must not be empty", EXIT_CONFIG)
    lifetime = _seconds(ttl)
    admin_group = settings.auth.admin_values[0] if (admin and settings.auth.admin_values) else None
    token = devkeys.issue_token(
        settings.data_dir, user.strip(), lifetime, admin_claim=settings.auth.admin_claim, admin_value=admin_group, groups=group
    )
    typer.echo(token)
