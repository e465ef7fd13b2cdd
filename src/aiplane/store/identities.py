"""Anonymous attribution: every SSO subject gets a random, stable UUID."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import identities


class IdentityMap:
    """Subject → user UUID, read-through cached in process (the mapping never changes)."""

    def __init__(self, engine: AsyncEngine, cache_size: int = 100_000) -> None:
        self._engine = engine
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self._lock = asyncio.Lock()

    async def user_id(self, subject: str) -> str:
        cached = self._cache.get(subject)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._cache.get(subject)
            if cached is None:
                cached = await self._load_or_create(subject)
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[subject] = cached
        return cached

    async def find(self, subject_or_id: str) -> str | None:
        """The anonymous id of a subject, or the id itself when given one; None for someone never seen."""
        if (cached := self._cache.get(subject_or_id)) is not None:
            return cached
        query = select(identities.c.user_id).where(
            (identities.c.subject == subject_or_id) | (identities.c.user_id == subject_or_id)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query.limit(1))).scalar_one_or_none()

    async def _load_or_create(self, subject: str) -> str:
        query = select(identities.c.user_id).where(identities.c.subject == subject)
        async with self._engine.begin() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
            if found is not None:
                return found
        new_id = str(uuid.uuid4())
        try:
            async with self._engine.begin() as conn:
                insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                # Another process or replica may map the same subject at the same moment: the
                # database keeps the first row, and everyone reads back that one's id.
                await conn.execute(
                    insert(identities)
                    .values(subject=subject, user_id=new_id, created_at=datetime.now(UTC))
                    .on_conflict_do_nothing(index_elements=["subject"])
                )
        except IntegrityError:
            pass  # a user_id collision (a UUID4 clash): read back whatever is stored, or fail below
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).scalar_one()
