"""who broke glass on a review run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_runs") as batch:
        batch.add_column(sa.Column("break_glass_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_runs") as batch:
        batch.drop_column("break_glass_by")
