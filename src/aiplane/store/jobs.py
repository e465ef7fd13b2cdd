"""Background jobs that run once per interval across every gateway process and replica.

A lock alone (a Postgres advisory lock, a Redis SET NX) keeps two runs from overlapping, but N
replicas whose timers are offset would still each run the job once per interval. Here a replica
runs the job only if its conditional UPDATE moves the job's last run forward by at least the
interval: the database serialises the UPDATEs, so exactly one replica wins each interval.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import job_runs

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def claim(engine: AsyncEngine, name: str, interval_seconds: float, now: datetime | None = None) -> bool:
    """True when this caller should run `name` now: nobody ran it within the interval.

    A little slack (5% of the interval, at most one second) lets a replica whose timer fires a
    hair early still win the next interval instead of skipping it.
    """
    now = now or datetime.now(UTC)
    slack = min(1.0, interval_seconds * 0.05)
    due_before = now - timedelta(seconds=interval_seconds - slack)
    async with engine.begin() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(insert(job_runs).values(name=name, last_run_at=_EPOCH).on_conflict_do_nothing())
        result = await conn.execute(
            update(job_runs).where(job_runs.c.name == name, job_runs.c.last_run_at <= due_before).values(last_run_at=now)
        )
        return result.rowcount == 1
