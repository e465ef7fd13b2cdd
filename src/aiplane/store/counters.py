"""Quota counters: in this process (the embedded default), or shared through Redis.

Three kinds of counter, the same in both stores:

- ``rate``: a leaky bucket over one minute. Its level drains at ``limit`` per 60 s, so a burst
  gets exactly ``limit`` through and then one more each ``60 / limit`` seconds, with no window
  edge to double it. Requests per minute charge 1 at admission; tokens per minute are charged
  after the answer and may overdraw it (the next request then waits until it drains below the limit).
- ``window``: a calendar counter (UTC day, UTC month) whose key names the window; it expires after it.
- ``slots``: requests in flight, one member per request with an expiry (``quotas.lease_seconds``),
  so a replica that dies holding slots does not hold them forever.

Admission checks every counter a request is subject to and charges them only if all pass, in one
step: one Lua script in Redis (atomic there, and timed by Redis's clock, so replicas' clocks do
not matter), one uninterrupted function call on the event loop here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import quota_counters

log = logging.getLogger("aiplane.quotas")

Kind = Literal["rate", "window", "slots"]
MAX_RETRY_SECONDS = 40 * 86400


class CountersUnavailable(Exception):
    """The shared counter store could not answer (down, slow, refused)."""


@dataclass(frozen=True, slots=True)
class Counter:
    key: str
    kind: Kind
    limit: float
    # For window counters: seconds until the window ends (the Retry-After of a refusal).
    reset_seconds: float = 0.0


@dataclass(slots=True)
class Admission:
    admitted: bool
    # When refused: which counter, and after how many seconds it may admit again.
    refused_index: int = -1
    retry_after: float = 0.0
    # When admitted: each counter's level after admission (for headers and warnings).
    levels: tuple[float, ...] = ()


def _over(level: float, cost: float, limit: float) -> bool:
    # A charge at admission (a request, a slot) must fit; a counter charged afterwards (tokens,
    # dollars) admits while it is still under its limit.
    return level + cost > limit if cost > 0 else level >= limit


def _retry(counter: Counter, level: float, cost: float) -> float:
    if counter.kind == "rate":
        return 60.0 if counter.limit <= 0 else max(0.0, (level + cost - counter.limit) * 60 / counter.limit)
    if counter.kind == "window":
        return counter.reset_seconds
    return 1.0


class MemoryCounters:
    """One process's counters; day and month windows are saved to the database so restarts keep them."""

    shared = False

    def __init__(self, engine: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._rates: dict[str, tuple[float, float, float]] = {}  # key -> (level, monotonic time, limit)
        self._windows: dict[str, tuple[float, float]] = {}  # key -> (used, wall-clock expiry)
        self._slots: dict[str, dict[str, float]] = {}  # key -> {lease: monotonic expiry}
        self._dirty: set[str] = set()

    def _level(self, counter: Counter, now: float) -> float:
        if counter.kind == "rate":
            entry = self._rates.get(counter.key)
            if entry is None:
                return 0.0
            return max(0.0, entry[0] - (now - entry[1]) * counter.limit / 60)
        if counter.kind == "window":
            used, expires = self._windows.get(counter.key, (0.0, 0.0))
            return used if expires > time.time() else 0.0
        leases = self._slots.get(counter.key)
        if not leases:
            return 0.0
        for lease in [lease for lease, expiry in leases.items() if expiry <= now]:
            del leases[lease]
        return float(len(leases))

    def _add(self, counter: Counter, level: float, amount: float, lease: str, lease_seconds: float, now: float) -> float:
        if counter.kind == "rate":
            self._rates[counter.key] = (level + amount, now, counter.limit)
        elif counter.kind == "window":
            self._windows[counter.key] = (level + amount, time.time() + counter.reset_seconds + 60)
            self._dirty.add(counter.key)
        else:
            self._slots.setdefault(counter.key, {})[lease] = now + lease_seconds
        return level + amount

    async def admit(self, counters: list[Counter], costs: list[float], lease: str, lease_seconds: float) -> Admission:
        now = time.monotonic()
        levels = [self._level(c, now) for c in counters]
        for i, (counter, level, cost) in enumerate(zip(counters, levels, costs, strict=True)):
            if _over(level, cost, counter.limit):
                return Admission(False, i, _retry(counter, level, cost))
        after = tuple(
            self._add(c, level, cost, lease, lease_seconds, now) if cost > 0 else level
            for c, level, cost in zip(counters, levels, costs, strict=True)
        )
        return Admission(True, levels=after)

    async def settle(self, counters: list[Counter], amounts: list[float], lease: str) -> tuple[float, ...]:
        now = time.monotonic()
        after = []
        for counter, amount in zip(counters, amounts, strict=True):
            if counter.kind == "slots":
                self._slots.get(counter.key, {}).pop(lease, None)
                after.append(self._level(counter, now))
            elif amount > 0:
                after.append(self._add(counter, self._level(counter, now), amount, lease, 0, now))
            else:
                after.append(self._level(counter, now))
        return tuple(after)

    async def read(self, counters: list[Counter]) -> tuple[float, ...]:
        now = time.monotonic()
        return tuple(self._level(c, now) for c in counters)

    async def load(self) -> None:
        """Day and month counters saved by the last run of this gateway."""
        if self._engine is None:
            return
        now = datetime.now(UTC)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(quota_counters).where(quota_counters.c.expires_at > now))).all()
        for key, used, expires_at in rows:
            if expires_at.tzinfo is None:  # SQLite hands back naive times
                expires_at = expires_at.replace(tzinfo=UTC)
            self._windows[key] = (float(used), expires_at.timestamp())

    async def save(self) -> None:
        """Write the window counters changed since the last save; drop expired and drained entries."""
        now_wall, now = time.time(), time.monotonic()
        for key in [k for k, (_u, expires) in self._windows.items() if expires <= now_wall]:
            del self._windows[key]
            self._dirty.discard(key)
        for key in [k for k, (level, ts, limit) in self._rates.items() if level - (now - ts) * limit / 60 <= 0]:
            del self._rates[key]
        for key in [k for k, leases in self._slots.items() if not leases]:
            del self._slots[key]
        if self._engine is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rows = [
            {"key": key, "used": self._windows[key][0], "expires_at": datetime.fromtimestamp(self._windows[key][1], UTC)}
            for key in dirty if key in self._windows
        ]
        try:
            async with self._engine.begin() as conn:
                insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                statement = insert(quota_counters)
                statement = statement.on_conflict_do_update(
                    index_elements=["key"], set_={"used": statement.excluded.used, "expires_at": statement.excluded.expires_at}
                )
                if rows:
                    await conn.execute(statement, rows)
                await conn.execute(delete(quota_counters).where(quota_counters.c.expires_at <= datetime.now(UTC)))
        except Exception as exc:  # noqa: BLE001 - saving is best effort; the next save retries
            self._dirty |= dirty
            log.warning("quota counters not saved; retrying later", extra={"error_type": exc.__class__.__name__})

    async def close(self) -> None:
        await self.save()


_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode = ARGV[1]
local lease = ARGV[2]
local lease_s = tonumber(ARGV[3])
local n = #KEYS
local kinds, limits, costs, resets, levels = {}, {}, {}, {}, {}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  kinds[i] = ARGV[b + 1]
  limits[i] = tonumber(ARGV[b + 2])
  costs[i] = tonumber(ARGV[b + 3])
  resets[i] = tonumber(ARGV[b + 4])
  local key, kind, limit = KEYS[i], kinds[i], limits[i]
  local u
  if kind == 'rate' then
    local h = redis.call('HMGET', key, 'u', 't')
    u = tonumber(h[1]) or 0
    local ts = tonumber(h[2]) or now
    if now > ts then u = u - (now - ts) * limit / 60 end
    if u < 0 then u = 0 end
  elseif kind == 'window' then
    u = tonumber(redis.call('GET', key)) or 0
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    u = redis.call('ZCARD', key)
  end
  levels[i] = u
end
if mode == 'read' then
  local out = {1, 0, '0'}
  for i = 1, n do out[#out + 1] = tostring(levels[i]) end
  return out
end
if mode == 'admit' then
  for i = 1, n do
    local u, c, limit = levels[i], costs[i], limits[i]
    local over
    if c > 0 then over = u + c > limit else over = u >= limit end
    if over then
      local retry = 1
      if kinds[i] == 'rate' then
        if limit > 0 then retry = (u + c - limit) * 60 / limit else retry = 60 end
      elseif kinds[i] == 'window' then
        retry = resets[i]
      end
      return {0, i, tostring(retry)}
    end
  end
end
local out = {1, 0, '0'}
for i = 1, n do
  local key, kind, c, limit = KEYS[i], kinds[i], costs[i], limits[i]
  local u = levels[i]
  if kind == 'slots' then
    if mode == 'admit' then
      redis.call('ZADD', key, now + lease_s, lease)
      redis.call('EXPIRE', key, math.ceil(lease_s) + 60)
      u = u + 1
    else
      redis.call('ZREM', key, lease)
      u = redis.call('ZCARD', key)
    end
  elseif c > 0 then
    if kind == 'rate' then
      u = u + c
      redis.call('HSET', key, 'u', tostring(u), 't', tostring(now))
      local ttl = 120
      if limit > 0 then ttl = math.min(math.ceil(u * 60 / limit) + 60, 3456000) end
      redis.call('EXPIRE', key, ttl)
    else
      u = tonumber(redis.call('INCRBYFLOAT', key, tostring(c)))
      redis.call('EXPIRE', key, math.ceil(resets[i]) + 60)
    end
  end
  out[#out + 1] = tostring(u)
end
return out
"""


class RedisCounters:
    """Counters shared by every process and replica through one Redis (or its primary)."""

    shared = True

    def __init__(self, url: str, prefix: str, timeout: float, retry_seconds: float) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True,
            retry_on_timeout=False, max_connections=256,
        )
        self._script = self._client.register_script(_SCRIPT)
        self._prefix = prefix
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._down_until = 0.0

    async def _run(self, mode: str, counters: list[Counter], values: list[float], lease: str, lease_seconds: float) -> list:
        if time.monotonic() < self._down_until:
            raise CountersUnavailable("redis marked down")
        args: list[str | float] = [mode, lease, lease_seconds]
        for counter, value in zip(counters, values, strict=True):
            args += [counter.kind, repr(float(counter.limit)), repr(float(value)), repr(float(counter.reset_seconds))]
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await self._script(keys=[self._prefix + c.key for c in counters], args=args)
        except Exception as exc:  # noqa: BLE001 - connection, timeout, script or protocol: all "unavailable"
            self._down_until = time.monotonic() + self._retry_seconds
            raise CountersUnavailable(exc.__class__.__name__) from None

    async def admit(self, counters: list[Counter], costs: list[float], lease: str, lease_seconds: float) -> Admission:
        reply = await self._run("admit", counters, costs, lease, lease_seconds)
        if int(reply[0]) != 1:
            index = int(reply[1]) - 1
            return Admission(False, index, min(float(reply[2]), MAX_RETRY_SECONDS))
        return Admission(True, levels=tuple(float(v) for v in reply[3:]))

    async def settle(self, counters: list[Counter], amounts: list[float], lease: str) -> tuple[float, ...]:
        reply = await self._run("settle", counters, amounts, lease, 0)
        return tuple(float(v) for v in reply[3:])

    async def read(self, counters: list[Counter]) -> tuple[float, ...]:
        reply = await self._run("read", counters, [0.0] * len(counters), "", 0)
        return tuple(float(v) for v in reply[3:])

    async def load(self) -> None:
        try:
            async with asyncio.timeout(max(self._timeout * 4, 2)):
                await self._client.ping()
        except Exception as exc:  # noqa: BLE001 - a Redis down at start is the same as one down later
            self._down_until = time.monotonic() + self._retry_seconds
            log.warning("redis unreachable at start; quota counters follow quotas.on_backend_error",
                        extra={"error_type": exc.__class__.__name__})

    async def save(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()


def window_ids(now: datetime | None = None) -> dict[str, tuple[str, float]]:
    """The current UTC day and month: each window's id and seconds until it ends."""
    now = now or datetime.now(UTC)
    day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    month_end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return {
        "day": (now.strftime("%Y%m%d"), math.ceil((day_end - now).total_seconds())),
        "month": (now.strftime("%Y%m"), math.ceil((month_end - now).total_seconds())),
    }
