"""Persisting catalog entities, and keeping an index in step with the database."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.catalog.index import CatalogIndex
from aiplane.catalog.model import entity_ref
from aiplane.store.schema import catalog_entities

_BATCH = 1000


async def upsert(engine: AsyncEngine, entities: list[tuple[dict[str, Any], str]]) -> int:
    """Insert or replace entities by reference. Never deletes: what is not re-ingested stays."""
    now = datetime.now(UTC)
    rows = []
    for entity, source in entities:
        ref = entity_ref(entity)
        rows.append(
            {
                "ref": ref.key,
                "kind": ref.kind,
                "namespace": ref.namespace.lower(),
                "name": ref.name.lower(),
                "body": json.dumps(entity, separators=(",", ":"), default=str),
                "source": source[:2000],
                "updated_at": now,
            }
        )
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    async with engine.begin() as conn:
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            statement = insert(catalog_entities).values(batch)
            statement = statement.on_conflict_do_update(
                index_elements=["ref"],
                set_={c: statement.excluded[c] for c in ("kind", "namespace", "name", "body", "source", "updated_at")},
            )
            await conn.execute(statement)
    return len(rows)


async def load_index(engine: AsyncEngine) -> CatalogIndex:
    async with engine.connect() as conn:
        result = await conn.execute(select(catalog_entities.c.body))
        return CatalogIndex(json.loads(body) for (body,) in result)


async def version(engine: AsyncEngine) -> tuple[int, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.count(), func.max(catalog_entities.c.updated_at)))).one()
        return int(row[0]), row[1]


class LiveIndex:
    """An index that reloads itself when the database changes (checked at most every `ttl` seconds)."""

    def __init__(self, engine: AsyncEngine, ttl: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._index: CatalogIndex | None = None
        self._version: tuple[int, Any] | None = None
        self._checked = 0.0

    async def get(self) -> CatalogIndex:
        now = time.monotonic()
        if self._index is None or now - self._checked >= self._ttl:
            self._checked = now
            current = await version(self._engine)
            if self._index is None or current != self._version:
                self._index = await load_index(self._engine)
                self._version = current
        return self._index


async def owners(engine: AsyncEngine) -> dict[str, str]:
    """Entity key -> the source (file or URL) that defined it: who owns what, for conflict checks."""
    async with engine.connect() as conn:
        result = await conn.execute(select(catalog_entities.c.ref, catalog_entities.c.source))
        return {ref: source for ref, source in result}
