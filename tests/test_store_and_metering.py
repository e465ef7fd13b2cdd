"""Usage storage (batching, spool replay, migrations) and token metering on real SQLite files."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta

import pytest

from aiplane.gateway.metering import SseUsageScanner, TokenMeter
from aiplane.modelcatalog.catalog import bundled
from aiplane.modelcatalog.pricing import TokenCounts
from aiplane.store.database import create_engine, migrate
from aiplane.store.identities import IdentityMap
from aiplane.store.usage import UsageRecord, UsageWriter, aggregate, parse_since


def _record(i: int = 0) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{i}", user_id="u1", provider="openai", model="gpt-4o", endpoint="chat/completions",
        streamed=False, status=200, latency_ms=1.0, input_tokens=10, output_tokens=5, cost_usd=0.001,
    )


def test_failed_batch_is_spooled_and_replayed_on_next_start(tmp_path):
    db = tmp_path / "aiplane.db"
    spool = tmp_path / "usage-spool.jsonl"

    async def without_schema():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")  # no migration: inserts fail
        writer = UsageWriter(engine, spool, batch_size=10, flush_interval=0.05)
        await writer.start()
        for i in range(7):
            writer.submit(_record(i))
        await writer.close()
        await engine.dispose()

    asyncio.run(without_schema())
    assert len(spool.read_text().splitlines()) == 7

    async def with_schema():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        await migrate(engine)
        writer = UsageWriter(engine, spool)
        await writer.start()
        await writer.close()
        rows = await aggregate(engine, "model", datetime.now(UTC) - timedelta(hours=1))
        await engine.dispose()
        return rows

    rows = asyncio.run(with_schema())
    assert rows[0]["requests"] == 7 and rows[0]["input_tokens"] == 70
    assert not spool.exists()


def test_migrations_are_idempotent_and_identities_stable(tmp_path):
    async def run():
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        await migrate(engine)
        await migrate(engine)
        first = IdentityMap(engine)
        a1 = await first.user_id("alice@example.com")
        again = await IdentityMap(engine).user_id("alice@example.com")  # a fresh cache reads the db
        b = await first.user_id("bob@example.com")
        await engine.dispose()
        return a1, again, b

    a1, again, b = asyncio.run(run())
    assert a1 == again != b
    conn = sqlite3.connect(tmp_path / "a.db")
    from aiplane.store.database import MIGRATIONS_DIR

    newest = max(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (newest,)


def _sse(events: list[tuple[str | None, dict]]) -> bytes:
    out = b""
    for name, data in events:
        out += (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"
    return out


ANTHROPIC_STREAM = _sse(
    [
        ("message_start", {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "hi"}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 42}}),
        ("message_stop", {"type": "message_stop"}),
    ]
)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
def test_sse_scanner_handles_any_chunking(chunk_size):
    meter = TokenMeter("anthropic")
    scanner = SseUsageScanner(meter)
    for i in range(0, len(ANTHROPIC_STREAM), chunk_size):
        scanner.feed(ANTHROPIC_STREAM[i : i + chunk_size])
    assert meter.counts == TokenCounts(input=10, output=42, cached=3, cache_write=0)
    assert meter.response_model == "claude-x"
    assert not scanner.mid_event


def test_sse_scanner_crlf_and_openai_done():
    meter = TokenMeter("openai")
    scanner = SseUsageScanner(meter)
    payload = {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}}
    scanner.feed(b"data: " + json.dumps(payload).encode() + b"\r\n\r\ndata: [DONE]\r\n\r\n")
    assert meter.counts == TokenCounts(input=5, output=2, cached=1)


def test_sse_scanner_survives_oversized_and_garbage_events():
    meter = TokenMeter("openai")
    scanner = SseUsageScanner(meter)
    scanner.feed(b"data: " + b"x" * (2 * 1024 * 1024))
    scanner.feed(b"\n\ndata: {not json usage}\n\n")
    scanner.feed(b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n')
    assert meter.counts.input == 3 and meter.counts.output == 4


def test_openai_responses_api_usage():
    meter = TokenMeter("openai")
    meter.observe({"type": "response.completed", "response": {"model": "gpt-5", "usage": {"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}}}})
    assert meter.counts == TokenCounts(input=9, output=4, cached=2)


def test_price_lookup_handles_dated_and_unknown_models():
    prices = bundled().prices
    assert prices.price("openai", "gpt-4o-2024-08-06") == prices.price("openai", "gpt-4o")
    assert prices.price("anthropic", "claude-sonnet-4-20250514").input == 3
    assert prices.price("google", "models/gemini-2.5-pro").output == 10
    assert prices.price("openai", "no-such-model") is None
    assert prices.cost("openai", "no-such-model", TokenCounts(input=10)) is None
    assert prices.cost("openai", "gpt-4o", TokenCounts(input=1_000_000, output=0)) == pytest.approx(2.5)


def test_parse_since():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01T00:00:00", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("last tuesday", now)


def test_rollup_backfill_migrates_existing_usage(tmp_path):
    from alembic import command

    from aiplane.store.database import _alembic_config
    from aiplane.store.schema import usage

    db = tmp_path / "old.db"

    async def run():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0003"))
            await conn.execute(usage.insert(), [_record(i).row() for i in range(4)])
        await migrate(engine)
        await engine.dispose()

    asyncio.run(run())
    conn = sqlite3.connect(db)
    for table in ("usage_hourly", "usage_hourly_models", "usage_daily_users"):
        assert conn.execute(f"SELECT SUM(requests), SUM(input_tokens) FROM {table}").fetchone() == (4, 40), table
    # Backfilled rows use the same timestamp format as rows the writer adds later.
    (hour,) = conn.execute("SELECT hour FROM usage_hourly").fetchone()
    assert hour.endswith(":00:00.000000")
    conn.close()


def test_token_counts_and_costs_are_clamped_to_storable_values():
    from aiplane.gateway.metering import _int
    from aiplane.store.usage import MAX_COST_USD, MAX_TOKENS, clamp_cost, clamp_tokens

    for clamp in (_int, clamp_tokens):
        assert [clamp(v) for v in (0, 7, MAX_TOKENS, MAX_TOKENS + 1, 2**63, 2**200)] == [0, 7, MAX_TOKENS] + [MAX_TOKENS] * 3
        assert [clamp(v) for v in (-1, -(2**63), True, False, 3.0, float("nan"), "12", None, {"n": 1}, [1])] == [0] * 10
    assert [clamp_cost(v) for v in (0, 1, 0.25, 1e300)] == [0.0, 1.0, 0.25, MAX_COST_USD]
    assert [clamp_cost(v) for v in (-0.5, float("nan"), float("inf"), True, "1.0", None)] == [None] * 6
    record = UsageRecord(
        request_id="r" * 100, user_id="u", provider="openai", model="bad\x00name\ud800" + "m" * 300, endpoint="e",
        streamed=1, status=2**70, latency_ms=float("nan"), input_tokens=2**64, output_tokens=-1, cached_tokens=True,
        cache_write_tokens=1.5, cost_usd=float("-inf"), error="x" * 100,
    )
    assert (record.input_tokens, record.output_tokens, record.cached_tokens, record.cache_write_tokens) == (MAX_TOKENS, 0, 0, 0)
    assert (record.cost_usd, record.status, record.latency_ms, record.streamed) == (None, 0, 0.0, True)
    assert len(record.request_id) == 64 and len(record.model) == 200 and "\x00" not in record.model and len(record.error) == 64
    record.model.encode("utf-8")  # no lone surrogate left


def _poison(engine, model: str):
    """A database that refuses one row's values, the way a constraint would."""

    async def install():
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE INSERT ON usage WHEN NEW.model = '{model}' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )

    return install()


def test_a_refused_row_is_quarantined_and_its_batch_written(tmp_path, caplog):
    db = tmp_path / "aiplane.db"
    spool = tmp_path / "usage-spool.jsonl"

    async def run():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        await migrate(engine)
        await _poison(engine, "poison")
        writer = UsageWriter(engine, spool, batch_size=10, flush_interval=0.05)
        await writer.start()
        for i in range(7):
            record = _record(i)
            if i == 3:
                record.model = "poison"
            writer.submit(record)
        await writer.close()
        rows = await aggregate(engine, "model", datetime.now(UTC) - timedelta(hours=1))
        await engine.dispose()
        return rows

    rows = asyncio.run(run())
    assert [(r["key"], r["requests"]) for r in rows] == [("gpt-4o", 6)]
    assert not spool.exists()
    (entry,) = [json.loads(line) for line in (tmp_path / "usage-quarantine.jsonl").read_text().splitlines()]
    assert entry["reason"] == "IntegrityError" and entry["record"]["request_id"] == "r3"
    assert [r.getMessage() for r in caplog.records if r.name == "aiplane.usage"].count("usage record quarantined") == 1


def test_replay_quarantines_refused_rows_and_keeps_rows_during_an_outage(tmp_path):
    db = tmp_path / "aiplane.db"
    spool = tmp_path / "usage-spool.jsonl"
    old = os.umask(0)
    try:
        async def outage():
            engine = create_engine(f"sqlite+aiosqlite:///{db}")  # no schema: every write fails
            writer = UsageWriter(engine, spool, batch_size=2, flush_interval=0.05)
            await writer.start()
            for i in range(5):
                record = _record(i)
                if i == 1:
                    record.model = "poison"
                writer.submit(record)
            await writer.close()
            await engine.dispose()

        asyncio.run(outage())
    finally:
        os.umask(old)
    assert len(spool.read_text().splitlines()) == 5  # nothing quarantined while the database is down
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o700
    assert not (tmp_path / "usage-quarantine.jsonl").exists()

    async def recovered():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        await migrate(engine)
        await _poison(engine, "poison")
        writer = UsageWriter(engine, spool, batch_size=2)
        await writer.start()
        await writer.close()
        rows = await aggregate(engine, "model", datetime.now(UTC) - timedelta(hours=1))
        await engine.dispose()
        return rows

    rows = asyncio.run(recovered())
    assert [(r["key"], r["requests"]) for r in rows] == [("gpt-4o", 4)]
    assert not spool.exists()
    (entry,) = [json.loads(line) for line in (tmp_path / "usage-quarantine.jsonl").read_text().splitlines()]
    assert entry["record"]["request_id"] == "r1"
