"""review eval runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_eval_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("dataset_sha256", sa.String(64), nullable=False),
        sa.Column("cases", sa.Integer, nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("reviews", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("precision", sa.Float, nullable=True),
        sa.Column("recall", sa.Float, nullable=True),
        sa.Column("f1", sa.Float, nullable=True),
        sa.Column("findings_per_review", sa.Float, nullable=True),
        sa.Column("cost_usd_per_review", sa.Float, nullable=True),
        sa.Column("judge", sa.String(200), nullable=False),
        sa.Column("models", sa.String(400), nullable=False),
        sa.Column("report_dir", sa.String(1000), nullable=False),
    )
    op.create_index("ix_review_eval_runs_ts", "review_eval_runs", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_review_eval_runs_ts", table_name="review_eval_runs")
    op.drop_table("review_eval_runs")
