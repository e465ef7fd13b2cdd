"""Table definitions. Change them only together with a new migration under migrations/versions/."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

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
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
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

# Upper bounds (ms) of the latency histogram kept in the hourly rollup; the last bucket is
# unbounded. Renard R10 preferred numbers (each bound about 1.26 times the last) from 1 ms to
# 250 s, so a percentile read from the buckets is within one bucket, a quarter of its value, and
# interpolated inside it (migration 0010; before, 13 coarse bounds gave only "≤ 250 ms").
_R10 = (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8)
LATENCY_BUCKETS_MS = tuple(round(m * 10**e, 2) for e in range(5) for m in _R10) + (100000, 125000, 160000, 200000, 250000)

# Hourly usage rollup, maintained by the usage writer, so dashboards never scan raw rows.
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("user_id", String(36), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    # The sum over priced requests; unpriced_requests counts those with a NULL cost (no known
    # price), so a rollup never turns "unknown" into $0 (docs/dashboard.md).
    Column("cost_usd", Float, nullable=False),
    Column("unpriced_requests", Integer, nullable=False, server_default="0"),
    Column("latency_ms_sum", Float, nullable=False),
    *[Column(f"lat_b{i}", Integer, nullable=False) for i in range(len(LATENCY_BUCKETS_MS) + 1)],
    Index("ix_usage_hourly_hour", "hour"),
    Index("ix_usage_hourly_user_hour", "user_id", "hour"),
    Index("ix_usage_hourly_model_hour", "model", "hour"),
)

# The same rollup without the user dimension: what overview charts and tables read.
usage_hourly_models = Table(
    "usage_hourly_models",
    metadata,
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    *[Column(c.name, c.type, nullable=False) for c in usage_hourly.columns if c.name not in ("hour", "provider", "model", "user_id")],
    Index("ix_usage_hourly_models_model_hour", "model", "hour"),
)

# Per user per day: what "top users" over weeks reads (an hourly per-user scan is too big).
usage_daily_users = Table(
    "usage_daily_users",
    metadata,
    Column("day", DateTime(timezone=True), primary_key=True),
    Column("user_id", String(36), primary_key=True),
    *[Column(c.name, c.type, nullable=False) for c in usage_hourly.columns if c.name not in ("hour", "provider", "model", "user_id")],
)

# One row per review run, written by the reviewer; the dashboard's review page reads it.
review_runs = Table(
    "review_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("repository", String(400), nullable=False),
    Column("change_id", String(200), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("findings_critical", Integer, nullable=False),
    Column("findings_warning", Integer, nullable=False),
    Column("findings_suggestion", Integer, nullable=False),
    Column("findings_nit", Integer, nullable=False),
    Column("cost_usd", Float, nullable=True),
    Column("duration_s", Float, nullable=False),
    Column("break_glass", Integer, nullable=False),
    # Who broke glass (their user name on the code host), when someone did.
    Column("break_glass_by", String(200), nullable=True),
    # Input tokens of the review, and how many of them providers served from their prompt caches.
    Column("input_tokens", BigInteger, nullable=True),
    Column("cached_tokens", BigInteger, nullable=True),
    Index("ix_review_runs_ts", "ts"),
)

# One row per variant of each `aiplane review eval` run (the dashboard's Reviews page).
review_eval_runs = Table(
    "review_eval_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("label", String(200), nullable=False),
    Column("dataset_sha256", String(64), nullable=False),
    Column("cases", Integer, nullable=False),
    Column("variant", String(200), nullable=False),
    Column("runs", Integer, nullable=False),
    Column("reviews", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("precision", Float, nullable=True),
    Column("recall", Float, nullable=True),
    Column("f1", Float, nullable=True),
    Column("findings_per_review", Float, nullable=True),
    Column("cost_usd_per_review", Float, nullable=True),
    Column("judge", String(200), nullable=False),
    Column("models", String(400), nullable=False),
    Column("report_dir", String(1000), nullable=False),
    Index("ix_review_eval_runs_ts", "ts"),
)

# Who looked at what they could not normally see (e.g. revealed identities).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(36), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

# The reviewers' central model routing (aiplane.llm.routing); every change is a new row, the
# newest row is in force, and older rows are the history of who changed what.
review_config = Table(
    "review_config",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("document", Text, nullable=False),
)

# Every tool call through the MCP portal: who (anonymous user id), what, how long, how it ended.
# Argument values only when portal.audit_arguments is on.
portal_calls = Table(
    "portal_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("server", String(64), nullable=False),
    Column("tool", String(200), nullable=False),
    Column("via", String(16), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("arguments", Text, nullable=True),
    Index("ix_portal_calls_ts", "ts"),
)

# Quota rules set at runtime (admin API, `aiplane quota set`); rules in settings are not stored.
# A NULL limit is "no limit"; every gateway re-reads this table every quotas.reload_seconds.
quota_rules = Table(
    "quota_rules",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(320), primary_key=True),
    Column("per_user", Integer, primary_key=True),
    Column("requests_per_minute", BigInteger, nullable=True),
    Column("tokens_per_minute", BigInteger, nullable=True),
    Column("tokens_per_day", BigInteger, nullable=True),
    Column("usd_per_day", Float, nullable=True),
    Column("usd_per_month", Float, nullable=True),
    Column("max_concurrent", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False),
)

# The embedded (no Redis) counter store's day and month counters, saved so a restart keeps budgets.
quota_counters = Table(
    "quota_counters",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("used", Float, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Background jobs run once per interval across every gateway process and replica: the one whose
# conditional UPDATE moves last_run_at forward runs the job (store/jobs.py).
job_runs = Table(
    "job_runs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_run_at", DateTime(timezone=True), nullable=False),
)
