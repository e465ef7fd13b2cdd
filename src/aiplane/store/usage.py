"""Usage records: batched writes off the request path, a spool file so none is lost, and reports."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aiplane.logs import log_fields
from aiplane.store.schema import LATENCY_BUCKETS_MS, usage, usage_daily_users, usage_hourly, usage_hourly_models

log = logging.getLogger("aiplane.usage")

GroupBy = Literal["user", "model", "provider"]
GROUP_COLUMNS = {"user": usage.c.user_id, "model": usage.c.model, "provider": usage.c.provider}


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    user_id: str
    provider: str
    model: str
    endpoint: str
    streamed: bool
    status: int
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    error: str | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and showed up in gateway profiles.
        return {name: getattr(self, name) for name in _COLUMNS} | {"streamed": int(self.streamed)}


_COLUMNS = tuple(f for f in UsageRecord.__dataclass_fields__)


class UsageWriter:
    """Queues records and writes them in batches.

    A failed batch goes to a JSONL spool file in the data dir and is replayed at the next start,
    so a database outage or a crash between flushes loses nothing that reached the spool.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        spool_path: Path,
        batch_size: int = 500,
        flush_interval: float = 0.25,
    ) -> None:
        self._engine = engine
        self._spool_path = spool_path
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._pending: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, record: UsageRecord) -> None:
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        await self._replay_spool()
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def _run(self) -> None:
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                del self._pending[: len(batch)]
                await self._write(batch)

    async def _write(self, batch: list[UsageRecord]) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(usage.insert(), [r.row() for r in batch])
                await add_to_rollup(conn, batch)
        except Exception:
            log.exception("usage batch write failed; spooling", extra=log_fields(records=len(batch)))
            self._spool(batch)

    def _spool(self, batch: list[UsageRecord]) -> None:
        self._spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spool_path.open("a", encoding="utf-8") as fh:
            for record in batch:
                row = record.row()
                row["ts"] = record.ts.isoformat()
                fh.write(json.dumps(row) + "\n")
            fh.flush()

    async def _replay_spool(self) -> None:
        if not self._spool_path.exists():
            return
        replaying = self._spool_path.with_suffix(".replaying")
        self._spool_path.replace(replaying)
        rows = []
        for line in replaying.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                row["ts"] = datetime.fromisoformat(row["ts"])
                rows.append(row)
            except (ValueError, KeyError, TypeError):
                log.warning("skipping unreadable usage spool line")
        try:
            if rows:
                async with self._engine.begin() as conn:
                    await conn.execute(usage.insert(), rows)
                    await add_to_rollup(conn, [UsageRecord(**row) for row in rows])
            replaying.unlink()
            log.info("replayed usage spool", extra=log_fields(records=len(rows)))
        except Exception:
            log.exception("usage spool replay failed; keeping it for the next start")
            replaying.replace(self._spool_path)

    async def close(self) -> None:
        """Stop the background task and write everything still queued."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()


_ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "latency_ms_sum")
_BUCKET_COLUMNS = tuple(f"lat_b{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1))


def latency_bucket(latency_ms: float) -> int:
    return bisect.bisect_right(LATENCY_BUCKETS_MS, latency_ms)


def rollup_rows(records: list[UsageRecord]) -> list[dict[str, Any]]:
    """Aggregate records into hourly rollup increments keyed by (hour, provider, model, user)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        ts = r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=UTC)
        hour = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = (hour, r.provider, r.model, r.user_id)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"hour": hour, "provider": r.provider, "model": r.model, "user_id": r.user_id}
            row.update({name: 0 for name in _ROLLUP_SUMS + _BUCKET_COLUMNS})
        row["requests"] += 1
        row["errors"] += int(r.status >= 400)
        row["input_tokens"] += r.input_tokens
        row["output_tokens"] += r.output_tokens
        row["cached_tokens"] += r.cached_tokens
        row["cost_usd"] += r.cost_usd or 0.0
        row["latency_ms_sum"] += r.latency_ms
        row[f"lat_b{latency_bucket(r.latency_ms)}"] += 1
    return list(rows.values())


def _regroup(rows: list[dict[str, Any]], keys: tuple[str, ...], day: bool = False) -> list[dict[str, Any]]:
    """Re-aggregate rollup increments on fewer key columns (optionally by day instead of hour)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        values = {k: row[k] for k in keys}
        if day:
            values = {"day": row["hour"].replace(hour=0), **{k: v for k, v in values.items() if k != "hour"}}
        key = tuple(values.values())
        target = merged.get(key)
        if target is None:
            merged[key] = {**values, **{name: row[name] for name in _ROLLUP_SUMS + _BUCKET_COLUMNS}}
        else:
            for name in _ROLLUP_SUMS + _BUCKET_COLUMNS:
                target[name] += row[name]
    return list(merged.values())


async def add_to_rollup(conn: AsyncConnection, records: list[UsageRecord]) -> None:
    """Add records to both hourly rollups, in the caller's transaction."""
    rows = rollup_rows(records)
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for table, key, batch in (
        (usage_hourly, ["hour", "provider", "model", "user_id"], rows),
        (usage_hourly_models, ["hour", "provider", "model"], _regroup(rows, ("hour", "provider", "model"))),
        (usage_daily_users, ["day", "user_id"], _regroup(rows, ("hour", "user_id"), day=True)),
    ):
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=key,
            set_={c: table.c[c] + statement.excluded[c] for c in _ROLLUP_SUMS + _BUCKET_COLUMNS},
        )
        await conn.execute(statement, batch)


_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime:
    """Accept '24h', '7d', '30m', '2w' or an ISO 8601 timestamp; default is the last 24 hours."""
    now = now or datetime.now(UTC)
    if value is None or value == "":
        return now - timedelta(hours=24)
    match = _RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("since must be like 24h, 7d, 30m, 2w or an ISO 8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def aggregate(engine: AsyncEngine, group_by: GroupBy, since: datetime) -> list[dict[str, Any]]:
    key = GROUP_COLUMNS[group_by]
    query = (
        select(
            key.label("key"),
            func.count().label("requests"),
            func.sum(case((usage.c.status >= 400, 1), else_=0)).label("errors"),
            func.coalesce(func.sum(usage.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(usage.c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(usage.c.cached_tokens), 0).label("cached_tokens"),
            func.coalesce(func.sum(usage.c.cost_usd), 0.0).label("cost_usd"),
            func.sum(case((usage.c.cost_usd.is_(None), 1), else_=0)).label("unpriced_requests"),
            func.avg(usage.c.latency_ms).label("avg_latency_ms"),
        )
        .where(usage.c.ts >= since)
        .group_by(key)
        .order_by(func.coalesce(func.sum(usage.c.cost_usd), 0.0).desc(), func.count().desc())
    )
    async with engine.connect() as conn:
        result = await conn.execute(query)
        rows = []
        for row in result.mappings():
            item = dict(row)
            item["cost_usd"] = round(float(item["cost_usd"] or 0.0), 6)
            item["avg_latency_ms"] = round(float(item["avg_latency_ms"] or 0.0), 2)
            for name in ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "unpriced_requests"):
                item[name] = int(item[name] or 0)
            rows.append(item)
        return rows
