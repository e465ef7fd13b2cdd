"""dashboard: unpriced request counts and a finer latency histogram in the usage rollups

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Two dashboard promises the rollups could not keep:
- a model without a known price has a NULL cost; the rollups summed it as 0, so "$0.0000" could
  not be told from "unknown". Each rollup row now counts its `unpriced_requests`;
- p50/p95 came from 13 coarse buckets ("≤ 250 ms"). The histogram now has 56 buckets (R10 bounds,
  1 ms to 250 s), read with interpolation.

The rollups are derived data: they are emptied and rebuilt from the raw `usage` rows, in the
database, as migration 0004 first built them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("usage_hourly", "usage_hourly_models", "usage_daily_users")
# Frozen copies of aiplane.store.schema.LATENCY_BUCKETS_MS before and after this migration.
OLD_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
_R10 = (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8)
BUCKETS_MS = tuple(round(m * 10**e, 2) for e in range(5) for m in _R10) + (100000, 125000, 160000, 200000, 250000)
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "unpriced_requests", "latency_ms_sum")


def _rebuild(bounds: tuple[float, ...], with_unpriced: bool) -> None:
    """Empty the rollups and roll the raw usage up again with the given histogram bounds."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    hour = "date_trunc('hour', ts)" if postgres else "strftime('%Y-%m-%d %H:00:00.000000', ts)"
    day = "date_trunc('day', hour)" if postgres else "strftime('%Y-%m-%d 00:00:00.000000', hour)"
    for table in TABLES:
        op.execute(f"DELETE FROM {table}")
    lower: float = 0
    buckets = []
    for upper in bounds:
        buckets.append(f"SUM(CASE WHEN latency_ms >= {lower} AND latency_ms < {upper} THEN 1 ELSE 0 END)")
        lower = upper
    buckets.append(f"SUM(CASE WHEN latency_ms >= {lower} THEN 1 ELSE 0 END)")
    columns = [f"lat_b{i}" for i in range(len(bounds) + 1)]
    sums = [s for s in SUMS if with_unpriced or s != "unpriced_requests"]
    raw = {
        "requests": "COUNT(*)", "errors": "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
        "input_tokens": "SUM(input_tokens)", "output_tokens": "SUM(output_tokens)", "cached_tokens": "SUM(cached_tokens)",
        "cost_usd": "COALESCE(SUM(cost_usd), 0)", "unpriced_requests": "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)",
        "latency_ms_sum": "SUM(latency_ms)",
    }
    op.execute(
        f"""
        INSERT INTO usage_hourly (hour, provider, model, user_id, {", ".join(sums + columns)})
        SELECT {hour}, provider, model, user_id, {", ".join([raw[s] for s in sums] + buckets)}
        FROM usage GROUP BY {hour}, provider, model, user_id
        """
    )
    summed = ", ".join(f"SUM({c})" for c in sums + columns)
    op.execute(
        f"""
        INSERT INTO usage_hourly_models (hour, provider, model, {", ".join(sums + columns)})
        SELECT hour, provider, model, {summed} FROM usage_hourly GROUP BY hour, provider, model
        """
    )
    op.execute(
        f"""
        INSERT INTO usage_daily_users (day, user_id, {", ".join(sums + columns)})
        SELECT {day}, user_id, {summed} FROM usage_hourly GROUP BY {day}, user_id
        """
    )


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("unpriced_requests", sa.Integer, nullable=False, server_default="0"))
            for i in range(len(OLD_BUCKETS_MS) + 1, len(BUCKETS_MS) + 1):
                batch.add_column(sa.Column(f"lat_b{i}", sa.Integer, nullable=False, server_default="0"))
    _rebuild(BUCKETS_MS, with_unpriced=True)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("unpriced_requests")
            for i in range(len(OLD_BUCKETS_MS) + 1, len(BUCKETS_MS) + 1):
                batch.drop_column(f"lat_b{i}")
    _rebuild(OLD_BUCKETS_MS, with_unpriced=False)
