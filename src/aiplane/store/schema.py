"""Table definitions. Change them only together with a new migration under migrations/versions/."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Maps an SSO subject (email or sub) to the anonymous id that providers and reports see.
identities = Table(
    "identities",
    metadata,
    Column("subject", String(320), primary_key=True),
    Column("user_id", String(36), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("streamed", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("cache_write_tokens", Integer, nullable=False),
    # NULL when the model has no known price, so unknown never reads as free.
    Column("cost_usd", Float, nullable=True),
    Column("error", String(64), nullable=True),
    Index("ix_usage_ts", "ts"),
    Index("ix_usage_user_ts", "user_id", "ts"),
    Index("ix_usage_model_ts", "model", "ts"),
    Index("ix_usage_provider_ts", "provider", "ts"),
)

# The last good models.dev catalog, so a restart during an outage still has real prices.
model_catalog = Table(
    "model_catalog",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("source_url", String(2000), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("models", Integer, nullable=False),
    Column("body", Text, nullable=False),
)

# Service catalog entities as their authors wrote them; relations are derived when loaded.
catalog_entities = Table(
    "catalog_entities",
    metadata,
    Column("ref", String(400), primary_key=True),  # kind:namespace/name, lower-cased
    Column("kind", String(63), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("name", String(63), nullable=False),
    Column("body", Text, nullable=False),
    Column("source", String(2000), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_catalog_entities_kind", "kind"),
    Index("ix_catalog_entities_updated", "updated_at"),
)
