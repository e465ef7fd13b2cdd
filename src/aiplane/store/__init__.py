"""Persistence: SQLAlchemy 2 (async) on SQLite by default, Postgres for scale; Alembic migrations."""
