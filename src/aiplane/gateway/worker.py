"""The app factory each process of `aiplane gateway serve --workers N` calls for itself.

The parent has validated the settings, created the dev signing key and refused SQLite; every
worker loads the same settings (the parent exports its --config as AIPLANE_CONFIG), applies the
request-head limits in its own process, and builds its own gateway: own event loop, own database
pool, own usage writer. What must be shared lives in PostgreSQL and Redis (docs/deploy.md).
"""

from __future__ import annotations

from starlette.applications import Starlette


def app() -> Starlette:
    from aiplane import httpserver
    from aiplane.config import load_settings
    from aiplane.gateway.app import create_app
    from aiplane.logs import configure_logging

    settings = load_settings(None)
    configure_logging(settings.log.level)
    gateway = settings.gateway
    httpserver.configure(gateway.head_timeout_seconds, gateway.max_head_bytes, gateway.max_connections)
    return create_app(settings)
