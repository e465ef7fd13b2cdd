"""`aiplane portal`: the MCP portal served on its own (the gateway also serves it at /mcp)."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from aiplane.cli.common import EXIT_CONFIG, ConfigOption, _fail, _settings

portal_app = typer.Typer(help="The MCP portal: many MCP servers behind one endpoint, with Code Mode.", no_args_is_help=True)


@portal_app.command("serve")
def portal_serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; MCP is at /mcp (?mode=codemode or ?mode=aggregate).")] = 8789,
    config: ConfigOption = None,
) -> None:
    """Serve the MCP portal over streamable HTTP; clients sign in with a gateway token (JWT or dev token)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aiplane.cli import _lazy_http_session
    from aiplane.gateway.auth import AuthError, make_verifier
    from aiplane.logs import configure_logging
    from aiplane.portal.core import Portal
    from aiplane.portal.oauth import ProtectedResource
    from aiplane.portal.server import PortalEndpoint, authenticator
    from aiplane.store.database import create_engine, migrate
    from aiplane.store.identities import IdentityMap

    settings = _settings(config)
    if not settings.portal.upstreams:
        raise _fail("no upstream MCP servers are configured ([portal.upstreams.<name>] with command or url)", EXIT_CONFIG)
    configure_logging(settings.log.level)
    engine = create_engine(settings.database_url)
    sessions, session = _lazy_http_session()
    verifier = make_verifier(settings, session)
    portal = Portal(settings.portal, engine)
    oauth = ProtectedResource.from_settings(settings)
    endpoint = PortalEndpoint(portal, authenticator(verifier.token_from_headers, verifier.verify, IdentityMap(engine).user_id, AuthError),
                              oauth)

    async def healthz(_request):  # noqa: ANN001, ANN202
        return JSONResponse({"status": "ok", "upstreams": portal.status()})

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # noqa: ANN001, ANN202
        await migrate(engine)
        async with endpoint.lifespan():
            yield
        for open_session in sessions:
            await open_session.close()
        await engine.dispose()

    routes = [Route("/mcp", endpoint=endpoint), Route("/healthz", healthz), *(oauth.routes() if oauth else [])]
    app_ = Starlette(routes=routes, lifespan=lifespan)
    from aiplane import httpserver

    httpserver.run(app_, host, port)
