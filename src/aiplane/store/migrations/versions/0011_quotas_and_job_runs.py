"""quota rules, embedded quota counters and once-per-interval job claims

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_rules",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(320), primary_key=True),
        sa.Column("per_user", sa.Integer, primary_key=True),
        sa.Column("requests_per_minute", sa.BigInteger, nullable=True),
        sa.Column("tokens_per_minute", sa.BigInteger, nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger, nullable=True),
        sa.Column("usd_per_day", sa.Float, nullable=True),
        sa.Column("usd_per_month", sa.Float, nullable=True),
        sa.Column("max_concurrent", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "quota_counters",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("used", sa.Float, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("quota_counters")
    op.drop_table("quota_rules")
