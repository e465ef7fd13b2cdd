"""`aiplane catalog`: the service catalog (Backstage descriptors), its Backstage sync and its MCP server."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _run_with_db, _settings, err, out

catalog_app = typer.Typer(help="The service catalog (Backstage descriptors) and its MCP server.", no_args_is_help=True)


def _load_catalog(targets: list[str], remote: bool, settings, owners: dict[str, str] | None = None):  # noqa: ANN001, ANN202 - settings: Settings
    from aiplane.catalog.loader import load_all

    result = load_all(targets, follow_remote=remote, settings=settings.catalog_loader, owners=owners)
    for problem in result.problems:
        err.print(str(problem), highlight=False, markup=False, soft_wrap=True)
    return result


@catalog_app.command("ingest")
def catalog_ingest(
    targets: Annotated[list[str], typer.Argument(help="catalog-info.yaml files, directories or URLs.")],
    remote: Annotated[bool, typer.Option("--remote/--no-remote", help="Follow Location targets that are URLs.")] = True,
    config: ConfigOption = None,
) -> None:
    """Validate and upsert entities; bad documents are reported and skipped, valid ones still stored.

    Exits 1 when any document was rejected (after storing the valid ones).
    """
    from aiplane.catalog.index import CatalogIndex
    from aiplane.catalog.loader import printable
    from aiplane.catalog.store import load_index, owners, upsert

    settings = _settings(config)
    # Entities belong to the location that defined them first, also across runs.
    result = _load_catalog(targets, remote, settings, owners=_run_with_db(settings, owners))

    async def work(engine):  # noqa: ANN001, ANN202
        stored = await upsert(engine, list(result.entities.values()))
        return stored, await load_index(engine)

    stored, index = _run_with_db(settings, work)
    assert isinstance(index, CatalogIndex)
    for source, relation, target in index.dangling:
        err.print(f"warning: {printable(f'{source} {relation} {target}')}, which is not in the catalog (rule: reference)", highlight=False, markup=False)
    errors = len(result.errors)
    out.print(
        f"ingested {stored} entities ({errors} rejected); catalog now holds {len(index.entities)} entities, "
        f"{len(index.relations)} relations, {len(index.dangling)} dangling references"
    )
    if errors:
        raise typer.Exit(1)


@catalog_app.command("validate")
def catalog_validate(
    targets: Annotated[list[str], typer.Argument(help="catalog-info.yaml files, directories or URLs.")],
    remote: Annotated[bool, typer.Option("--remote/--no-remote", help="Follow Location targets that are URLs.")] = True,
    config: ConfigOption = None,
) -> None:
    """Check descriptors against Backstage's rules without writing anything."""
    from aiplane.catalog.index import CatalogIndex
    from aiplane.catalog.loader import printable

    result = _load_catalog(targets, remote, _settings(config))
    index = CatalogIndex(entity for entity, _ in result.entities.values())
    for source, relation, target in index.dangling:
        err.print(f"warning: {printable(f'{source} {relation} {target}')}, which is not in these files (rule: reference)", highlight=False, markup=False)
    errors = len(result.errors)
    out.print(f"{len(result.entities)} valid entities, {errors} rejected, {len(index.relations)} relations")
    if errors:
        raise typer.Exit(1)


@catalog_app.command("mcp")
def catalog_mcp(
    transport: Annotated[str, typer.Option(help="stdio or http (streamable HTTP at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8788,
    config: ConfigOption = None,
) -> None:
    """Serve the catalog to agents over MCP. HTTP requires a gateway token (Bearer)."""

    from aiplane.catalog.mcp_server import RequireToken, build_server
    from aiplane.catalog.store import LiveIndex
    from aiplane.gateway.auth import AuthError, make_verifier
    from aiplane.logs import configure_logging
    from aiplane.store.database import create_engine, migrate

    if transport not in ("stdio", "http"):
        raise _fail("--transport must be stdio or http", EXIT_CONFIG)
    settings = _settings(config)
    configure_logging(settings.log.level)
    engine = create_engine(settings.database_url)
    server = build_server(LiveIndex(engine))
    if transport == "stdio":

        async def serve_stdio() -> None:
            await migrate(engine)
            await server.run_stdio_async()

        asyncio.run(serve_stdio())
        return

    from aiplane.cli import _lazy_http_session

    sessions, session = _lazy_http_session()
    verifier = make_verifier(settings, session)

    async def authorize(headers: dict[str, str]) -> bool:
        token = verifier.token_from_headers(headers)
        if token is None:
            return False
        try:
            await verifier.verify(token)
        except AuthError:
            return False
        return True

    asyncio.run(migrate(engine))
    app = RequireToken(server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, host=host), authorize)
    from aiplane import httpserver

    httpserver.run(app, host, port)


@catalog_app.command("sync")
def catalog_sync(
    backstage_url: Annotated[str, typer.Option("--backstage-url", help="The Backstage backend (or its /api/catalog); default: backstage.url.")] = "",
    token_env: Annotated[str, typer.Option("--token-env", help="Read the Bearer token from this environment variable instead of backstage.token.")] = "",
    allow_shrink: Annotated[bool, typer.Option("--allow-shrink", help="Accept a pull much smaller than the last good copy.")] = False,
    config: ConfigOption = None,
) -> None:
    """Pull every entity from an existing Backstage's catalog API (paged) and serve it.

    Only a complete pull replaces what was synced from that Backstage before; on any failure the
    last good copy stays. Exits 1 when the pull failed or an entity was rejected.
    """
    import os

    from aiplane.catalog.store import load_index
    from aiplane.catalog.sync import SyncError, catalog_base, sync

    settings = _settings(config)
    url = backstage_url or settings.backstage.url
    if not url:
        raise _fail("no Backstage to sync from: pass --backstage-url or set backstage.url", EXIT_CONFIG)
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise _fail(f"--token-env {token_env}: that environment variable is empty", EXIT_CONFIG)
    else:
        token = settings.backstage.token.get_secret_value() if settings.backstage.token else None
    try:
        base = catalog_base(url)
    except SyncError as exc:
        raise _fail(f"{exc} (--backstage-url or backstage.url)", EXIT_CONFIG) from None

    async def work(engine):  # noqa: ANN001, ANN202
        try:
            result = await sync(engine, base, token, settings.backstage, allow_shrink)
        except SyncError as exc:
            return exc, None
        return result, await load_index(engine)

    result, index = _run_with_db(settings, work)
    if index is None:
        raise _fail(f"sync from {base} failed: {result}; the stored copy is unchanged")
    for problem in result.rejected[:200]:
        err.print(f"rejected: {problem}", highlight=False, markup=False, soft_wrap=True)
    for ref in result.conflicts[:200]:
        err.print(f"warning: {ref} is already ingested from another source; keeping that one (rule: conflict)", highlight=False, markup=False)
    kept = result.fetched - len(result.rejected)
    out.print(
        f"synced {kept} entities from {base} in {result.pages} pages ({len(result.rejected)} rejected, "
        f"{result.written} written, {result.deleted} removed); catalog now holds {len(index.entities)} entities"
    )
    if result.rejected:
        raise typer.Exit(1)
