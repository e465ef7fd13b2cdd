"""Engine creation and schema migration."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aiplane.store.files import FILE_MODE, create_private_file, private_dir, tighten

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class DatabaseError(Exception):
    """The database URL is unusable; the message never contains its password."""


def create_engine(url: str) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseError("database.url is not a valid SQLAlchemy URL") from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise DatabaseError(
            f"database.url driver '{parsed.drivername}' is not supported; use one of {', '.join(SUPPORTED_DRIVERS)}"
        )
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            private_sqlite_file(Path(parsed.database))
        engine = create_async_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)


def private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm files take the same mode),
    in a 0700 folder when the folder is new; tighten an existing file and its -wal/-shm if ours."""
    private_dir(path.parent, tighten_existing=False)  # the folder may be shared; the data dir is tightened by its owner
    if not create_private_file(path):
        for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            tighten(candidate, FILE_MODE)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types vary by driver
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read reports while the gateway writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


# Any constant: the key of the advisory lock that serialises migrations across processes.
_MIGRATION_LOCK = 0x616970_6C616E


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration. On PostgreSQL, gateway processes and replicas that
    start together take turns (an advisory lock held until the migration commits)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade)
