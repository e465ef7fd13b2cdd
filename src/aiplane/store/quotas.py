"""Quota rules set at runtime: stored in the database, read by every gateway process."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.config import QUOTA_LIMITS, QuotaRule
from aiplane.store.schema import quota_rules


async def load_rules(engine: AsyncEngine) -> list[QuotaRule]:
    """Every stored rule; a row that no longer validates (edited by hand) is skipped, not fatal."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(quota_rules))).mappings().all()
    rules = []
    for row in rows:
        values = {name: row[name] for name in QUOTA_LIMITS if row[name] is not None}
        try:
            rules.append(QuotaRule(scope=row["scope"], subject=row["subject"], per_user=bool(row["per_user"]), **values))
        except ValueError:
            continue
    return rules


async def save_rule(engine: AsyncEngine, rule: QuotaRule, actor: str) -> None:
    """Insert or replace the rule for (scope, subject, per_user)."""
    values = {
        "scope": rule.scope,
        "subject": rule.subject,
        "per_user": int(rule.per_user),
        **{name: getattr(rule, name) for name in QUOTA_LIMITS},
        "updated_at": datetime.now(UTC),
        "updated_by": actor[:64],
    }
    async with engine.begin() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = insert(quota_rules).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["scope", "subject", "per_user"],
            set_={k: statement.excluded[k] for k in values if k not in ("scope", "subject", "per_user")},
        )
        await conn.execute(statement)


async def delete_rule(engine: AsyncEngine, scope: str, subject: str, per_user: bool) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(quota_rules).where(
                quota_rules.c.scope == scope, quota_rules.c.subject == subject, quota_rules.c.per_user == int(per_user)
            )
        )
        return result.rowcount > 0
