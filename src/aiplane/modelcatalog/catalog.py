"""The model catalog: a models.dev ``api.json`` document, validated, persisted and refreshed.

The gateway never serves an empty or malformed catalog: a fetch that fails, times out or returns
bad data leaves the last good copy (database, else the bundled snapshot) in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.logs import log_fields
from aiplane.modelcatalog.pricing import PriceTable
from aiplane.store.schema import model_catalog

log = logging.getLogger("aiplane.catalog")

MAX_CATALOG_BYTES = 64 * 1024 * 1024
BUNDLED_SOURCE = "bundled snapshot"


class CatalogError(Exception):
    """The catalog document is unusable; the message says why."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def validate(data: Any) -> dict[str, Any]:
    """Check the models.dev shape; return the document or raise CatalogError naming the problem."""
    if not isinstance(data, dict) or not data:
        raise CatalogError("catalog must be a non-empty JSON object of providers")
    models = 0
    for provider_id, provider in data.items():
        if not isinstance(provider, dict):
            raise CatalogError(f"provider '{provider_id}' is not an object")
        provider_models = provider.get("models")
        if not isinstance(provider_models, dict):
            raise CatalogError(f"provider '{provider_id}' has no 'models' object")
        for model_id, model in provider_models.items():
            where = f"{provider_id}/{model_id}"
            if not isinstance(model, dict):
                raise CatalogError(f"model '{where}' is not an object")
            cost = model.get("cost")
            if cost is not None and (
                not isinstance(cost, dict) or not all(_number(v) for v in cost.values() if not isinstance(v, dict))
            ):
                raise CatalogError(f"model '{where}' has a malformed cost")
            limit = model.get("limit")
            if limit is not None and (not isinstance(limit, dict) or not all(_number(v) for v in limit.values())):
                raise CatalogError(f"model '{where}' has a malformed limit")
            models += 1
    if models == 0:
        raise CatalogError("catalog lists no models")
    return data


def count_models(data: dict[str, Any]) -> int:
    return sum(len(p.get("models", {})) for p in data.values() if isinstance(p, dict))


@dataclass(frozen=True)
class ModelCatalog:
    data: dict[str, Any]
    source: str
    fetched_at: datetime | None = None
    prices: PriceTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", PriceTable(self.data))

    @property
    def model_count(self) -> int:
        return count_models(self.data)

    def models(self, provider_id: str) -> dict[str, dict[str, Any]]:
        provider = self.data.get(provider_id)
        return provider.get("models", {}) if isinstance(provider, dict) else {}

    def rows(self, provider_id: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for pid in sorted(self.data):
            if provider_id is not None and pid != provider_id:
                continue
            for mid, model in sorted(self.models(pid).items()):
                cost = model.get("cost") or {}
                limit = model.get("limit") or {}
                rows.append(
                    {
                        "provider": pid,
                        "model": mid,
                        "name": model.get("name", mid),
                        "input_per_mtok": cost.get("input"),
                        "output_per_mtok": cost.get("output"),
                        "cache_read_per_mtok": cost.get("cache_read"),
                        "context": limit.get("context"),
                        "output_limit": limit.get("output"),
                    }
                )
        return rows


def bundled() -> ModelCatalog:
    text = resources.files("aiplane.modelcatalog.data").joinpath("models-snapshot.json").read_text(encoding="utf-8")
    return ModelCatalog(validate(json.loads(text)), BUNDLED_SOURCE)


async def load_last_good(engine: AsyncEngine) -> ModelCatalog | None:
    query = select(model_catalog).order_by(model_catalog.c.fetched_at.desc()).limit(1)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    try:
        return ModelCatalog(validate(json.loads(row["body"])), row["source_url"], row["fetched_at"])
    except (ValueError, CatalogError):
        log.error("stored catalog is unreadable; ignoring it")
        return None


async def save(engine: AsyncEngine, catalog: ModelCatalog) -> None:
    body = json.dumps(catalog.data, separators=(",", ":"), sort_keys=True)
    async with engine.begin() as conn:
        # Only the newest good copy matters; older ones are history nobody reads.
        await conn.execute(model_catalog.delete())
        await conn.execute(
            model_catalog.insert().values(
                fetched_at=catalog.fetched_at or datetime.now(UTC),
                source_url=catalog.source,
                sha256=hashlib.sha256(body.encode()).hexdigest(),
                models=catalog.model_count,
                body=body,
            )
        )


async def fetch(session: aiohttp.ClientSession, url: str, timeout_seconds: float) -> ModelCatalog:
    """Download and validate a catalog; raise CatalogError with a reason fit for a log line."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as response:
            if response.status != 200:
                raise CatalogError(f"catalog URL answered HTTP {response.status}")
            raw = await response.content.read(MAX_CATALOG_BYTES + 1)
    except TimeoutError:
        raise CatalogError(f"catalog fetch timed out after {timeout_seconds:g}s") from None
    except aiohttp.ClientError as exc:
        raise CatalogError(f"catalog fetch failed ({exc.__class__.__name__})") from None
    if len(raw) > MAX_CATALOG_BYTES:
        raise CatalogError("catalog is larger than 64 MiB")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CatalogError("catalog is not valid JSON") from None
    return ModelCatalog(validate(data), url, datetime.now(UTC))


class CatalogRefresher:
    """Holds the current catalog and refreshes it in the background."""

    def __init__(
        self,
        engine: AsyncEngine,
        session: aiohttp.ClientSession,
        url: str | None,
        interval_seconds: float,
        timeout_seconds: float,
        min_keep_ratio: float,
        claim=None,  # noqa: ANN001 - async (job name, interval) -> bool; None: always this process
    ) -> None:
        self._claim = claim
        self._engine = engine
        self._session = session
        self._url = url
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self._min_keep_ratio = min_keep_ratio
        self.current: ModelCatalog = bundled()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Any] = []

    def on_change(self, listener) -> None:  # noqa: ANN001 - any callable taking a ModelCatalog
        self._listeners.append(listener)

    def _set(self, catalog: ModelCatalog) -> None:
        self.current = catalog
        for listener in self._listeners:
            listener(catalog)

    async def start(self) -> None:
        stored = await load_last_good(self._engine)
        if stored is not None:
            self._set(stored)
        if self._url:
            self._task = asyncio.create_task(self._run(), name="catalog-refresh")

    async def _run(self) -> None:
        while True:
            if await self._my_turn():
                await self.refresh()
            else:
                await self.adopt_stored()
            await asyncio.sleep(self._interval)

    async def _my_turn(self) -> bool:
        """Whether this process fetches this interval; across processes and replicas one does (store/jobs.py)."""
        if self._claim is None:
            return True
        try:
            return await self._claim("catalog-refresh", self._interval)
        except Exception as exc:  # noqa: BLE001 - without the database to agree on, fetch ourselves
            log.warning("catalog refresh claim failed; refreshing here", extra=log_fields(error_type=exc.__class__.__name__))
            return True

    async def adopt_stored(self) -> None:
        """Take the copy another replica fetched, when it is newer than ours."""
        try:
            stored = await load_last_good(self._engine)
        except Exception as exc:  # noqa: BLE001 - keep serving the current copy
            log.warning("stored catalog not readable", extra=log_fields(error_type=exc.__class__.__name__))
            return
        def aware(when: datetime) -> datetime:  # SQLite hands back naive UTC times
            return when if when.tzinfo else when.replace(tzinfo=UTC)

        if stored is not None and stored.fetched_at is not None and (
            self.current.fetched_at is None or aware(stored.fetched_at) > aware(self.current.fetched_at)
        ):
            self._set(stored)

    async def refresh(self) -> bool:
        """Fetch once; on success store and swap in the new catalog. Never raises."""
        if not self._url:
            return False
        try:
            fresh = await fetch(self._session, self._url, self._timeout)
            floor = int(self.current.model_count * self._min_keep_ratio)
            if fresh.model_count < floor:
                raise CatalogError(
                    f"catalog shrank from {self.current.model_count} to {fresh.model_count} models; keeping the old one"
                )
            await save(self._engine, fresh)
        except CatalogError as exc:
            log.warning("catalog refresh failed; keeping the last good copy", extra=log_fields(reason=str(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - a refresh must never take the gateway down
            log.error("catalog refresh failed", extra=log_fields(error_type=exc.__class__.__name__))
            return False
        self._set(fresh)
        log.info("catalog refreshed", extra=log_fields(models=fresh.model_count, providers=len(fresh.data)))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
