"""Storing the reviewers' routing document: append-only, newest row wins."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import review_config


async def latest(engine: AsyncEngine) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(review_config.c.document, review_config.c.ts, review_config.c.actor)
                               .order_by(review_config.c.id.desc()).limit(1))
        ).first()
    if row is None:
        return None
    return {"document": json.loads(row.document), "updated_at": row.ts.isoformat(), "updated_by": row.actor}


async def save(engine: AsyncEngine, document: dict[str, Any], actor: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            review_config.insert().values(ts=datetime.now(UTC), actor=actor[:200], document=json.dumps(document, sort_keys=True))
        )
