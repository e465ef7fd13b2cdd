"""hourly usage rollup, review runs, audit events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of aiplane.store.schema.LATENCY_BUCKETS_MS as of this migration.
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def _rollup_columns() -> list[sa.Column]:
    """The sums and latency histogram every rollup table carries."""
    sums = [sa.Column(name, sa.Integer, nullable=False) for name in ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens")]
    sums += [sa.Column("cost_usd", sa.Float, nullable=False), sa.Column("latency_ms_sum", sa.Float, nullable=False)]
    return sums + [sa.Column(f"lat_b{i}", sa.Integer, nullable=False) for i in range(len(BUCKETS_MS) + 1)]


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("user_id", sa.String(36), primary_key=True),
        *_rollup_columns(),
    )
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"])
    op.create_index("ix_usage_hourly_user_hour", "usage_hourly", ["user_id", "hour"])
    op.create_index("ix_usage_hourly_model_hour", "usage_hourly", ["model", "hour"])
    op.create_table(
        "usage_hourly_models",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        *_rollup_columns(),
    )
    op.create_index("ix_usage_hourly_models_model_hour", "usage_hourly_models", ["model", "hour"])
    op.create_table(
        "usage_daily_users",
        sa.Column("day", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("user_id", sa.String(36), primary_key=True),
        *_rollup_columns(),
    )
    op.create_table(
        "review_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repository", sa.String(400), nullable=False),
        sa.Column("change_id", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("findings_critical", sa.Integer, nullable=False),
        sa.Column("findings_warning", sa.Integer, nullable=False),
        sa.Column("findings_suggestion", sa.Integer, nullable=False),
        sa.Column("findings_nit", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("break_glass", sa.Integer, nullable=False),
    )
    op.create_index("ix_review_runs_ts", "review_runs", ["ts"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(36), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    _backfill_rollup()


def _backfill_rollup() -> None:
    """Roll up usage recorded before this migration, in the database, one statement."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        hour = "date_trunc('hour', ts)"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00.000000', ts)"
    lower = 0
    buckets = []
    for i, upper in enumerate(BUCKETS_MS):
        buckets.append(f"SUM(CASE WHEN latency_ms >= {lower} AND latency_ms < {upper} THEN 1 ELSE 0 END) AS lat_b{i}")
        lower = upper
    buckets.append(f"SUM(CASE WHEN latency_ms >= {lower} THEN 1 ELSE 0 END) AS lat_b{len(BUCKETS_MS)}")
    columns = ", ".join(f"lat_b{i}" for i in range(len(BUCKETS_MS) + 1))
    sums = ", ".join(["requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "latency_ms_sum"])
    op.execute(
        f"""
        INSERT INTO usage_hourly (hour, provider, model, user_id, requests, errors, input_tokens, output_tokens,
                                  cached_tokens, cost_usd, latency_ms_sum, {columns})
        SELECT {hour}, provider, model, user_id, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
               SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), COALESCE(SUM(cost_usd), 0),
               SUM(latency_ms), {", ".join(buckets)}
        FROM usage GROUP BY {hour}, provider, model, user_id
        """
    )
    op.execute(
        f"""
        INSERT INTO usage_hourly_models (hour, provider, model, {sums}, {columns})
        SELECT hour, provider, model, SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens),
               SUM(cached_tokens), SUM(cost_usd), SUM(latency_ms_sum), {", ".join(f"SUM({c})" for c in columns.split(", "))}
        FROM usage_hourly GROUP BY hour, provider, model
        """
    )
    day = "date_trunc('day', hour)" if bind.dialect.name == "postgresql" else "strftime('%Y-%m-%d 00:00:00.000000', hour)"
    op.execute(
        f"""
        INSERT INTO usage_daily_users (day, user_id, {sums}, {columns})
        SELECT {day}, user_id, SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens),
               SUM(cached_tokens), SUM(cost_usd), SUM(latency_ms_sum), {", ".join(f"SUM({c})" for c in columns.split(", "))}
        FROM usage_hourly GROUP BY {day}, user_id
        """
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("review_runs")
    op.drop_table("usage_daily_users")
    op.drop_table("usage_hourly_models")
    op.drop_table("usage_hourly")
