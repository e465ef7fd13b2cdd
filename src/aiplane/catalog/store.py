"""Persisting catalog entities, and keeping an index in step with the database."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.catalog.index import CatalogIndex
from aiplane.catalog.model import entity_ref
from aiplane.store.schema import catalog_entities

_BATCH = 1000


def _authored(entity: dict[str, Any]) -> dict[str, Any]:
    """What an author may write: the server assigns uid and etag (Backstage refuses them in files)."""
    metadata = entity.get("metadata")
    if isinstance(metadata, dict) and ("uid" in metadata or "etag" in metadata):
        entity = {**entity, "metadata": {k: v for k, v in metadata.items() if k not in ("uid", "etag")}}
    return entity


async def upsert(engine: AsyncEngine, entities: list[tuple[dict[str, Any], str]]) -> int:
    """Insert or replace entities by reference. Never deletes: what is not re-ingested stays."""
    now = datetime.now(UTC)
    rows = []
    for entity, source in entities:
        entity = _authored(entity)
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


async def replace_source(engine: AsyncEngine, source: str, entities: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """Make `source` hold exactly `entities`, in one transaction (a failure changes nothing).

    Entities stored from another source are left alone and reported as conflicts. Rows whose
    body is unchanged are not rewritten, so an idle sync does not make every index reload.
    Returns (written, deleted, conflicting refs).
    """
    now = datetime.now(UTC)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    async with engine.begin() as conn:
        existing = {ref: (body, src) for ref, body, src in await conn.execute(
            select(catalog_entities.c.ref, catalog_entities.c.body, catalog_entities.c.source))}
        rows, wanted, conflicts = [], set(), []
        for entity in entities:
            ref = entity_ref(entity)
            body = json.dumps(entity, separators=(",", ":"), default=str)
            held = existing.get(ref.key)
            if held is not None and held[1] != source:
                conflicts.append(str(ref))
                continue
            wanted.add(ref.key)
            if held is not None and held[0] == body:
                continue
            rows.append({"ref": ref.key, "kind": ref.kind, "namespace": ref.namespace.lower(), "name": ref.name.lower(),
                         "body": body, "source": source[:2000], "updated_at": now})
        stale = [ref for ref, (_body, src) in existing.items() if src == source[:2000] and ref not in wanted]
        for start in range(0, len(stale), _BATCH):
            await conn.execute(delete(catalog_entities).where(catalog_entities.c.ref.in_(stale[start : start + _BATCH])))
        for start in range(0, len(rows), _BATCH):
            statement = insert(catalog_entities).values(rows[start : start + _BATCH])
            statement = statement.on_conflict_do_update(
                index_elements=["ref"],
                set_={c: statement.excluded[c] for c in ("kind", "namespace", "name", "body", "source", "updated_at")},
            )
            await conn.execute(statement)
    return len(rows), len(stale), conflicts


async def count_source(engine: AsyncEngine, source: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(catalog_entities.c.source == source[:2000]))).scalar_one())


async def load_index(engine: AsyncEngine) -> CatalogIndex:
    async with engine.connect() as conn:
        result = await conn.execute(select(catalog_entities.c.ref, catalog_entities.c.body, catalog_entities.c.source))
        entities, sources = [], {}
        for ref, body, source in result:
            entities.append(json.loads(body))
            sources[ref] = source
        return CatalogIndex(entities, sources)


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

    def invalidate(self) -> None:
        """Check the database on the next read (after a write this process made)."""
        self._checked = 0.0
        self._version = None

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
