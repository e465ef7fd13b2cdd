"""Dashboard aggregations. Usage questions read the hourly rollup, never the raw usage rows."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import (
    LATENCY_BUCKETS_MS,
    identities,
    review_runs,
    usage_daily_users,
    usage_hourly,
    usage_hourly_models,
)

BUCKETS = [f"lat_b{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1)]
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "unpriced_requests", "latency_ms_sum")
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
Dimension = Literal["provider", "model", "user_id"]
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    label: str

    @property
    def hourly(self) -> bool:
        return self.until - self.since <= timedelta(hours=48)

    @property
    def custom(self) -> bool:
        return self.label not in RANGES

    @property
    def first_day(self) -> str:
        return f"{self.since:%Y-%m-%d}"

    @property
    def last_day(self) -> str:
        """The last day the window touches (its end is exclusive): what the "To" field shows."""
        return f"{self.until - timedelta(microseconds=1):%Y-%m-%d}"


def window(range_name: str | None, start: str | None = None, end: str | None = None, now: datetime | None = None) -> Window:
    """24h / 7d / 30d ending now, or a custom range. Dates are whole days and the end day is
    included (From = To is that one day); ISO 8601 times are taken as given, end excluded."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if range_name == "custom":
        try:
            since = _parse(start)
            until = _parse(end, end_of_day=True) if end else now
        except (TypeError, ValueError):
            raise ValueError("custom range needs start (and optionally end) as YYYY-MM-DD or ISO 8601 times") from None
        if until <= since:
            raise ValueError("the range end must not be before its start")
        if until - since > timedelta(days=400):
            raise ValueError("custom ranges are limited to 400 days")
        return Window(since, until, f"{since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} UTC")
    name = range_name if range_name in RANGES else "24h"
    return Window(now - RANGES[name], now, name)


def _parse(value: str | None, end_of_day: bool = False) -> datetime:
    if not value:
        raise ValueError("missing")
    value = value.strip()
    parsed = datetime.fromisoformat(value)
    if end_of_day and _DATE_ONLY.fullmatch(value):
        parsed += timedelta(days=1)  # a date as the end means "through that day"
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _table(user_id: str | None, by: str | None = None):  # noqa: ANN202
    # Only questions about users need the (much larger) per-user rollup.
    return usage_hourly if user_id or by == "user_id" else usage_hourly_models


def _sums(table=usage_hourly_models, latency: bool = True) -> list[Any]:  # noqa: ANN001
    """Column sums; the 56 histogram columns only when the caller shows percentiles (they are most
    of the work on long windows)."""
    return [func.coalesce(func.sum(table.c[name]), 0).label(name) for name in _columns(latency)]


def _columns(latency: bool) -> tuple[str, ...]:
    return SUMS + tuple(BUCKETS) if latency else SUMS


def _where(query, table, win: Window, model: str | None, user_id: str | None):  # noqa: ANN001, ANN202
    query = query.where(table.c.hour >= win.since, table.c.hour < win.until)
    if model:
        query = query.where(table.c.model == model)
    if user_id:
        query = query.where(table.c.user_id == user_id)
    return query


def percentile_ms(histogram: list[int], fraction: float) -> float | None:
    """The latency below which `fraction` of requests fall, read from the histogram: the bucket
    holding that rank, interpolated geometrically inside it (bounds are about 1.26x apart, so the
    estimate is within a quarter of the true value). Past the last bound: that bound, as a floor;
    `percentile_is_floor` says so."""
    total = sum(histogram)
    if total == 0:
        return None
    needed = max(fraction * total, 1e-9)
    running = 0
    lower = 0.0
    for bound, count in zip((*LATENCY_BUCKETS_MS, math.inf), histogram, strict=True):
        if count and running + count >= needed:
            if bound == math.inf:
                return float(lower)
            share = (needed - running) / count
            if lower <= 0:
                return round(bound * share, 2)
            return round(lower * (bound / lower) ** share, 2)
        running += count
        lower = float(bound)
    return float(lower)


def percentile_is_floor(value: float | None) -> bool:
    """Whether a percentile is the top bound: requests slower than the histogram measures."""
    return value is not None and value >= LATENCY_BUCKETS_MS[-1]


def _cost(cost: float, requests: int, unpriced: int) -> float | None:
    """NULL when nothing in the group had a price: unknown, never $0."""
    return None if requests and unpriced >= requests else round(float(cost), 6)


def _shape(mapping: Any) -> dict[str, Any]:
    data = dict(mapping)
    histogram = [int(data.pop(b, 0) or 0) for b in BUCKETS]
    requests = int(data.get("requests") or 0)
    for name in ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "unpriced_requests"):
        data[name] = int(data.get(name) or 0)
    data["cost_usd"] = _cost(data.get("cost_usd") or 0.0, requests, data["unpriced_requests"])
    data["error_rate"] = round(data["errors"] / requests, 4) if requests else 0.0
    data["avg_latency_ms"] = round(float(data.pop("latency_ms_sum") or 0.0) / requests, 1) if requests else 0.0
    data["p50_ms"] = percentile_ms(histogram, 0.50)
    data["p95_ms"] = percentile_ms(histogram, 0.95)
    return data


async def totals(engine: AsyncEngine, win: Window, model: str | None = None, user_id: str | None = None,
                 latency: bool = True) -> dict[str, Any]:
    table = _table(user_id)
    async with engine.connect() as conn:
        row = (await conn.execute(_where(select(*_sums(table, latency)), table, win, model, user_id))).one()
    return _shape(row._mapping)


async def timeseries(engine: AsyncEngine, win: Window, model: str | None = None, user_id: str | None = None) -> list[dict[str, Any]]:
    table = _table(user_id)
    query = _where(select(table.c.hour, *_sums(table, latency=False)), table, win, model, user_id).group_by(table.c.hour)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    step = timedelta(hours=1) if win.hourly else timedelta(days=1)
    buckets: dict[datetime, dict[str, float]] = {}
    for row in rows:
        hour = row.hour if row.hour.tzinfo else row.hour.replace(tzinfo=UTC)
        key = hour if win.hourly else hour.replace(hour=0)
        bucket = buckets.setdefault(key, {name: 0 for name in SUMS})
        for name in SUMS:
            bucket[name] += getattr(row, name) or 0
    # Every bucket in the window, zeros included, so charts have an honest x axis.
    start = win.since if win.hourly else win.since.replace(hour=0)
    series = []
    current = start
    while current < win.until:
        values = buckets.get(current, {name: 0 for name in SUMS})
        series.append(
            {
                "t": current.isoformat(),
                "requests": int(values["requests"]),
                "errors": int(values["errors"]),
                "input_tokens": int(values["input_tokens"]),
                "output_tokens": int(values["output_tokens"]),
                "cached_tokens": int(values["cached_tokens"]),
                "cost_usd": _cost(values["cost_usd"], int(values["requests"]), int(values["unpriced_requests"])),
                "unpriced_requests": int(values["unpriced_requests"]),
            }
        )
        current += step
    return series


async def breakdown(
    engine: AsyncEngine,
    win: Window,
    by: Dimension,
    model: str | None = None,
    user_id: str | None = None,
    limit: int = 50,
    latency: bool = True,
) -> list[dict[str, Any]]:
    if by == "user_id" and model is None and user_id is None and not win.hourly:
        return await _users_by_day(engine, win, limit, latency)
    table = _table(user_id, by)
    column = table.c[by]
    query = (
        _where(select(column.label("key"), *_sums(table, latency)), table, win, model, user_id)
        .group_by(column)
        .order_by(func.sum(table.c.cost_usd).desc(), func.sum(table.c.requests).desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_shape(row._mapping) for row in rows]


async def _users_by_day(engine: AsyncEngine, win: Window, limit: int, latency: bool) -> list[dict[str, Any]]:
    """Users over long windows: whole days from the daily rollup, the partial edge days from the hourly one."""
    first_day = (win.since + timedelta(days=1)).replace(hour=0) if win.since.hour else win.since
    last_day = win.until.replace(hour=0)
    parts = [
        select(usage_daily_users.c.user_id.label("key"), *_sums(usage_daily_users, latency))
        .where(usage_daily_users.c.day >= first_day, usage_daily_users.c.day < last_day)
        .group_by(usage_daily_users.c.user_id)
    ]
    for start, end in ((win.since, first_day), (last_day, win.until)):
        if start < end:
            parts.append(
                select(usage_hourly.c.user_id.label("key"), *_sums(usage_hourly, latency))
                .where(usage_hourly.c.hour >= start, usage_hourly.c.hour < end)
                .group_by(usage_hourly.c.user_id)
            )
    merged: dict[str, dict[str, float]] = {}
    async with engine.connect() as conn:
        for query in parts:
            for row in (await conn.execute(query)).all():
                data = dict(row._mapping)
                target = merged.setdefault(data["key"], {name: 0 for name in _columns(latency)})
                for name in _columns(latency):
                    target[name] += data[name] or 0
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["requests"]))[:limit]
    return [_shape({"key": key, **values}) for key, values in ranked]


async def emails_for(engine: AsyncEngine, user_ids: list[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    query = select(identities.c.user_id, identities.c.subject).where(identities.c.user_id.in_(user_ids))
    async with engine.connect() as conn:
        return {row.user_id: row.subject for row in (await conn.execute(query)).all()}


async def reviews(engine: AsyncEngine, win: Window) -> dict[str, Any]:
    query = select(review_runs).where(review_runs.c.ts >= win.since, review_runs.c.ts < win.until)
    async with engine.connect() as conn:
        runs = [dict(r._mapping) for r in (await conn.execute(query)).all()]
    per_day: dict[str, dict[str, int]] = {}
    for run in runs:
        ts = run["ts"] if run["ts"].tzinfo else run["ts"].replace(tzinfo=UTC)
        day = per_day.setdefault(ts.strftime("%Y-%m-%d"), {"trivial": 0, "lite": 0, "full": 0})
        day[run["tier"]] = day.get(run["tier"], 0) + 1
    costs = sorted(r["cost_usd"] for r in runs if r["cost_usd"] is not None)
    count = len(runs)

    def mean(field: str) -> float:
        return round(sum(r[field] for r in runs) / count, 2) if count else 0.0

    return {
        "runs": count,
        "per_day": [{"day": d, **tiers} for d, tiers in sorted(per_day.items())],
        "findings_per_review": {s: mean(f"findings_{s}") for s in ("critical", "warning", "suggestion", "nit")},
        "cost_median": round(statistics.median(costs), 4) if costs else None,
        # Nearest-rank percentile: with few runs, P99 is the most expensive one.
        "cost_p99": round(costs[max(math.ceil(len(costs) * 0.99) - 1, 0)], 4) if costs else None,
        "break_glass": sum(int(r["break_glass"]) for r in runs),
        # Runs whose cost is NULL (a model without a known price): left out of the cost figures, and said.
        "unpriced_runs": count - len(costs),
    }
