"""Usage records: batched writes off the request path, a spool file so none is lost, and reports."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, case, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aiplane.logs import log_fields
from aiplane.store.files import FILE_MODE, open_private_append, private_dir, tighten
from aiplane.store.schema import LATENCY_BUCKETS_MS, usage, usage_daily_users, usage_hourly, usage_hourly_models

log = logging.getLogger("aiplane.usage")

GroupBy = Literal["user", "model", "provider"]
GROUP_COLUMNS = {"user": usage.c.user_id, "model": usage.c.model, "provider": usage.c.provider}


# One request never uses more tokens than this; anything larger is clamped to it. A sum of
# millions of such counts still fits the 64-bit columns (usage and the rollups).
MAX_TOKENS = 10**12
# A cost above this is clamped to it: it keeps rollup sums finite whatever the price table says.
MAX_COST_USD = 1e12
_TEXT_LIMITS = {"request_id": 64, "user_id": 36, "provider": 64, "model": 200, "endpoint": 200, "error": 64}
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens")


def clamp_tokens(value: Any) -> int:
    """A token count as stored: an int in [0, MAX_TOKENS]; a negative int is 0, a larger one MAX_TOKENS,
    and anything that is not an int (bool, float, string, null, object) is 0."""
    if type(value) is not int:
        return 0
    return value if 0 <= value <= MAX_TOKENS else (MAX_TOKENS if value > 0 else 0)


def clamp_cost(value: Any) -> float | None:
    """A cost as stored: a finite float in [0, MAX_COST_USD], or None (unknown) for anything else."""
    if type(value) is not float and type(value) is not int:
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, MAX_COST_USD)


def _text(value: Any, limit: int) -> str:
    if type(value) is not str:
        value = str(value)
    if not value.isascii() or "\x00" in value:
        # NUL and lone surrogates are refused by PostgreSQL and SQLite's UTF-8 encoder alike.
        value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


@dataclass(slots=True)
class UsageRecord:
    """One request's usage. Values are made storable on construction: see clamp_tokens and clamp_cost."""

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

    def __post_init__(self) -> None:
        for name in _TOKEN_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_TOKENS:
                setattr(self, name, clamp_tokens(value))
        if self.cost_usd is not None:
            self.cost_usd = clamp_cost(self.cost_usd)
        for name, limit in _TEXT_LIMITS.items():
            value = getattr(self, name)
            if value is not None and (type(value) is not str or len(value) > limit or not value.isascii() or "\x00" in value):
                setattr(self, name, _text(value, limit))
        latency = self.latency_ms
        if type(latency) is not float or not 0 <= latency < math.inf:
            self.latency_ms = float(latency) if type(latency) in (int, float) and 0 <= latency < math.inf else 0.0
        if type(self.status) is not int or not 0 <= self.status <= 999:
            self.status = 0
        self.streamed = bool(self.streamed)
        if not isinstance(self.ts, datetime):
            self.ts = datetime.now(UTC)
        elif self.ts.tzinfo is None:
            self.ts = self.ts.replace(tzinfo=UTC)

    def row(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and showed up in gateway profiles.
        return {name: getattr(self, name) for name in _COLUMNS} | {"streamed": int(self.streamed)}

    def spool_row(self) -> dict[str, Any]:
        return self.row() | {"ts": self.ts.isoformat()}


_COLUMNS = tuple(f for f in UsageRecord.__dataclass_fields__)

# Failures that belong to the rows being written (their values), not to the database: the batch is
# retried row by row and a row that still fails is quarantined. Anything else (connection lost,
# schema missing, database locked) spools the rows for the next start.
_ROW_FAULTS = (sa_exc.IntegrityError, sa_exc.DataError, TypeError, ValueError, ArithmeticError)


def _row_fault(exc: BaseException) -> bool:
    if isinstance(exc, _ROW_FAULTS):
        return True
    # A parameter the driver could not bind, raised before the statement reached the database.
    return isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)


class UsageWriter:
    """Queues records and writes them in batches.

    A batch the database refuses is retried row by row; a row that still fails because of its own
    values goes to a quarantine file (``usage-quarantine.jsonl`` next to the spool) with one log
    line, and the others are written. When the database itself fails, the rows go to a JSONL spool
    file in the data dir and are replayed at the next start, so a database outage or a crash
    between flushes loses nothing that reached the spool. The replay treats bad rows the same way.
    """

    QUARANTINE_NAME = "usage-quarantine.jsonl"

    def __init__(
        self,
        engine: AsyncEngine,
        spool_path: Path,
        batch_size: int = 500,
        flush_interval: float = 0.25,
    ) -> None:
        self._engine = engine
        self._spool_path = spool_path
        self.quarantine_path = spool_path.with_name(self.QUARANTINE_NAME)
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
        self._secure_files()
        await self._replay_spool()
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    def _secure_files(self) -> None:
        """The spool's folder (the data dir) is 0700 and the files in it that are ours 0600."""
        private_dir(self._spool_path.parent)
        for path in (self._spool_path, self._replaying_path, self.quarantine_path):
            tighten(path, FILE_MODE)

    @property
    def _replaying_path(self) -> Path:
        return self._spool_path.with_suffix(".replaying")

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
        unwritten = await self._write_rows(batch)
        if unwritten:
            try:
                self._spool(unwritten)
            except OSError:
                log.exception("usage spool write failed; records lost", extra=log_fields(records=len(unwritten)))

    async def _insert(self, records: list[UsageRecord]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(usage.insert(), [r.row() for r in records])
            await add_to_rollup(conn, records)

    async def _write_rows(self, batch: list[UsageRecord]) -> list[UsageRecord]:
        """Write a batch; quarantine rows that cannot be written. Returns the rows left for the spool."""
        try:
            await self._insert(batch)
            return []
        except Exception as exc:  # noqa: BLE001 - sorted into row faults and database faults below
            if not _row_fault(exc):
                log.exception("usage batch write failed; spooling", extra=log_fields(records=len(batch)))
                return batch
            if len(batch) > 1:
                log.warning("usage batch refused; writing its rows one by one", extra=log_fields(records=len(batch)))
        for i, record in enumerate(batch):
            try:
                await self._insert([record])
            except Exception as exc:  # noqa: BLE001
                if not _row_fault(exc):
                    log.exception("usage write failed; spooling", extra=log_fields(records=len(batch) - i))
                    return batch[i:]
                self._quarantine(record.spool_row(), exc, record.request_id)
        return []

    def _spool(self, batch: list[UsageRecord]) -> None:
        private_dir(self._spool_path.parent)
        with open_private_append(self._spool_path) as fh:
            for record in batch:
                fh.write(json.dumps(record.spool_row()) + "\n")
            fh.flush()

    def _quarantine(self, row: dict[str, Any] | str, exc: BaseException, request_id: str | None) -> None:
        """Keep a row that cannot be written, for someone to look at; never replayed automatically."""
        entry = {"quarantined_at": datetime.now(UTC).isoformat(), "reason": exc.__class__.__name__, "record": row}
        try:
            private_dir(self._spool_path.parent)
            with open_private_append(self.quarantine_path) as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
        except OSError:
            log.exception("usage record could not be quarantined; dropped", extra=log_fields(request_id=request_id))
            return
        # The request id and the error type only: the row holds a user id, and exception messages
        # carry the statement's parameters.
        log.warning(
            "usage record quarantined",
            extra=log_fields(request_id=request_id, reason=exc.__class__.__name__, file=str(self.quarantine_path)),
        )

    def _read_spool(self, path: Path) -> list[UsageRecord]:
        records = []
        with path.open(encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row: Any = None
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise TypeError("a spool line must be an object")
                    row["ts"] = datetime.fromisoformat(row["ts"])
                    records.append(UsageRecord(**row))
                except (ValueError, KeyError, TypeError) as exc:
                    request_id = row.get("request_id") if isinstance(row, dict) and isinstance(row.get("request_id"), str) else None
                    self._quarantine(line.rstrip("\n"), exc, request_id)
        return records

    async def _replay_spool(self) -> None:
        if not self._spool_path.exists():
            return
        replaying = self._replaying_path
        try:
            self._spool_path.replace(replaying)
        except FileNotFoundError:
            return  # another process on this data dir (gateway serve --workers N) took it first
        try:
            records = self._read_spool(replaying)
        except OSError:
            log.exception("usage spool unreadable; keeping it for the next start")
            replaying.replace(self._spool_path)
            return
        unwritten: list[UsageRecord] = []
        for start in range(0, len(records), self._batch_size):
            chunk = records[start : start + self._batch_size]
            if unwritten:  # the database is failing: keep the rest for the next start
                unwritten += chunk
                continue
            unwritten += await self._write_rows(chunk)
        if unwritten:
            self._spool(unwritten)
            log.error("usage spool replay incomplete; kept for the next start", extra=log_fields(records=len(unwritten)))
        replaying.unlink()
        log.info("replayed usage spool", extra=log_fields(records=len(records) - len(unwritten)))

    async def close(self) -> None:
        """Stop the background task and write everything still queued."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()


_ROLLUP_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "unpriced_requests",
                "latency_ms_sum")
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
        row["unpriced_requests"] += int(r.cost_usd is None)
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
    for table, key, batch in (
        (usage_hourly, ("hour", "provider", "model", "user_id"), rows),
        (usage_hourly_models, ("hour", "provider", "model"), _regroup(rows, ("hour", "provider", "model"))),
        (usage_daily_users, ("day", "user_id"), _regroup(rows, ("hour", "user_id"), day=True)),
    ):
        await conn.execute(_rollup_upsert(conn.dialect.name, table, key), batch)


_UPSERTS: dict[tuple[str, str], Any] = {}


def _rollup_upsert(dialect: str, table: Table, key: tuple[str, ...]) -> Any:
    """The add-to-rollup upsert, built once per dialect and table: building it (70 summed columns)
    took about a tenth of the gateway's CPU when it was rebuilt for every usage batch."""
    cached = _UPSERTS.get((dialect, table.name))
    if cached is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(table)
        cached = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={c: table.c[c] + statement.excluded[c] for c in _ROLLUP_SUMS + _BUCKET_COLUMNS},
        )
        _UPSERTS[(dialect, table.name)] = cached
    return cached


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
