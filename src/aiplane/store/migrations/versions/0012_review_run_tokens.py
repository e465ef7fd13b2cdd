"""input and cached input tokens per review

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

How much of a review's input the providers served from their prompt caches (priced at cached
rates); empty for reviews recorded before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_runs") as batch:
        batch.add_column(sa.Column("input_tokens", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cached_tokens", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_runs") as batch:
        batch.drop_column("cached_tokens")
        batch.drop_column("input_tokens")
