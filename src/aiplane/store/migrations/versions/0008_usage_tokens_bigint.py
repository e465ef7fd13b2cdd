"""token counts in 64-bit columns

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09

A request may report up to usage.MAX_TOKENS (10**12) tokens, and the rollups add them up. On
PostgreSQL these columns were INTEGER (32-bit); SQLite's INTEGER is already 64-bit, so nothing
changes there. On PostgreSQL this rewrites the usage tables once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TOKENS = ("input_tokens", "output_tokens", "cached_tokens")
COLUMNS = {
    "usage": (*TOKENS, "cache_write_tokens"),
    "usage_hourly": TOKENS,
    "usage_hourly_models": TOKENS,
    "usage_daily_users": TOKENS,
}


def _retype(old: type[sa.types.TypeEngine], new: type[sa.types.TypeEngine]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=new(), existing_type=old(), existing_nullable=False)


def upgrade() -> None:
    _retype(sa.Integer, sa.BigInteger)


def downgrade() -> None:
    _retype(sa.BigInteger, sa.Integer)
