"""What every command group shares: settings loading, clean failures, consoles, the database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from aiplane.config import ConfigError, Settings, load_settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_CONFIG = 2

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Settings file (default: ./aiplane.toml when present, or $AIPLANE_CONFIG)."),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _settings(config: Path | None, untrusted: Path | None = None) -> Settings:
    try:
        return load_settings(config, untrusted)
    except ConfigError as exc:
        raise _fail(str(exc).replace("[", r"\["), EXIT_CONFIG) from None


_DURATION = re.compile(r"^(\d+)([smhd])$")


def _seconds(value: str) -> int:
    match = _DURATION.match(value.strip())
    if not match:
        raise typer.BadParameter("use a number with s, m, h or d, for example 12h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _run_with_db(settings: Settings, work):  # noqa: ANN001, ANN202 - async callable taking the engine
    """Run ``work(engine)`` on a migrated database; map failures to clean exits."""
    from aiplane.store.database import DatabaseError, create_engine, migrate

    async def run():  # noqa: ANN202
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DatabaseError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's message may contain the DSN
        raise _fail(f"database error ({exc.__class__.__name__})") from None


