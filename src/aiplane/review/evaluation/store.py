"""Eval results in the database: one row per variant of a run, for the dashboard's Reviews page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.store.schema import review_eval_runs


async def record(engine: AsyncEngine, log: dict[str, Any], summary: dict[str, Any], report_dir: str) -> int:
    models = ", ".join(f"{t}={m}" for t, m in log["models"].items()) or (log.get("gateway_model") or "gateway routing")
    rows = [{
        "ts": datetime.now(UTC), "label": (log.get("label") or "")[:200], "dataset_sha256": log["dataset"]["sha256"],
        "cases": log["dataset"]["cases"], "variant": variant[:200], "runs": log["runs"], "reviews": m["units"] - m["failed"],
        "failed": m["failed"], "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
        "findings_per_review": m["findings_per_review"], "cost_usd_per_review": m["cost_usd_per_review"],
        "judge": str(log["judge"])[:200], "models": models[:400], "report_dir": report_dir[:1000],
    } for variant, m in summary.items()]
    async with engine.begin() as conn:
        await conn.execute(review_eval_runs.insert(), rows)
    return len(rows)


async def recent(engine: AsyncEngine, limit: int = 50) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(select(review_eval_runs).order_by(review_eval_runs.c.ts.desc(), review_eval_runs.c.id.desc()).limit(limit))
        return [dict(row._mapping) for row in result]
