"""Anonymous attribution: every SSO subject gets a random, stable UUID."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
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

    async def _load_or_create(self, subject: str) -> str:
        query = select(identities.c.user_id).where(identities.c.subject == subject)
        async with self._engine.begin() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
            if found is not None:
                return found
        new_id = str(uuid.uuid4())
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    identities.insert().values(subject=subject, user_id=new_id, created_at=datetime.now(UTC))
                )
            return new_id
        except IntegrityError:
            # Another gateway process mapped this subject first; use its id.
            async with self._engine.begin() as conn:
                return (await conn.execute(query)).scalar_one()
