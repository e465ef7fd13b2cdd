"""Several gateway processes sharing one PostgreSQL and one Redis (both real, on loopback): quotas
hold across them, identities are created once, usage totals are exact, the catalog refresh runs once.

Skipped only where the PostgreSQL or Redis server binaries are absent (.ci/run installs both).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import AIPLANE
from tests.postgres_cluster import PostgresUnavailable, throwaway_postgres
from tests.redis_server import RedisUnavailable, throwaway_redis


@pytest.fixture(scope="module")
def cluster():
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def redis_url():
    try:
        with throwaway_redis() as url:
            yield url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


def _run(coro):
    return asyncio.run(coro)


@pytest.fixture()
def database(cluster, request):
    """A fresh database in the shared cluster for each test."""
    import asyncpg

    name = "t_" + request.node.name.removeprefix("test_")[:40].lower()
    dsn = cluster.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run(create())
    return cluster.rsplit("/", 1)[0] + "/" + name


def query(url: str, statement):  # noqa: ANN001, ANN201
    from aiplane.store.database import create_engine

    async def go():  # noqa: ANN202
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(statement)).all()
        finally:
            await engine.dispose()

    return _run(go())


def pair(make_gateway, database: str, redis_url: str, first_args: tuple[str, ...] = (), **env: str):
    """Two gateway processes on one data dir (one dev signing key), one database and one Redis."""
    # A generous Redis deadline: these tests check counting, and the test machine may be very busy.
    shared = dict(AIPLANE_DATABASE__URL=database, AIPLANE_REDIS__URL=redis_url, AIPLANE_REDIS__TIMEOUT_SECONDS="5", **env)
    first = make_gateway("shared", serve_args=first_args, **shared)
    second = make_gateway("shared", **shared)
    return first, second


async def _send(urls: list[str], token: str, count: int, concurrency: int, model: str = "gpt-4o") -> list[int]:
    """`count` chat requests spread over `urls`, `concurrency` at a time (aiohttp: a light load generator)."""
    import aiohttp

    headers = {"authorization": f"Bearer {token}"}
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as client:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                async with client.post(urls[i % len(urls)] + "/openai/chat/completions", headers=headers, json=body) as response:
                    await response.read()
                    statuses.append(response.status)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def test_requests_per_minute_hold_exactly_across_two_gateways(make_gateway, database, redis_url):
    rule = json.dumps([{"scope": "user", "subject": "*", "requests_per_minute": 10}])
    a, b = pair(make_gateway, database, redis_url, AIPLANE_QUOTAS__RULES=rule)
    token = a.token("ten@example.com")
    statuses = _run(_send([a.url, b.url], token, 40, concurrency=16))
    assert sorted(statuses) == [200] * 10 + [429] * 30
    # Sequential, alternating gateways: still refused (the bucket drains one request per 6 s).
    assert httpx.post(b.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": "gpt-4o", "messages": []}).status_code == 429
    # The CLI report reads the same shared counters.
    report = subprocess.run([AIPLANE, "quota", "report", "--json", "--user", "ten@example.com"], env=a.env,
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    (rule,) = json.loads(report.stdout)["rules"]
    assert rule["source"] == "settings" and 9 < rule["usage"]["requests_per_minute"]["used"] <= 10


def test_monthly_budget_stops_within_one_request(make_gateway, database, redis_url):
    from aiplane.store.schema import usage

    limit = 0.003  # about five gpt-4o requests at the bundled price
    rule = json.dumps([{"scope": "user", "subject": "*", "usd_per_month": limit}])
    a, b = pair(make_gateway, database, redis_url, AIPLANE_QUOTAS__RULES=rule)
    headers = {"authorization": f"Bearer {a.token('budget@example.com')}"}
    statuses = []
    for i in range(40):
        response = httpx.post((a, b)[i % 2].url + "/openai/chat/completions", headers=headers,
                              json={"model": "gpt-4o", "messages": []})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert (response.json()["error"]["limit"], response.json()["error"]["window"]) == ("usd_per_month", "month")
            break
        time.sleep(0.02)  # a client's think time; the charge lands just after the answer's last byte
    assert statuses[-1] == 429 and statuses.count(200) >= 2
    a.stop()
    b.stop()
    costs = [row[0] for row in query(database, select(usage.c.cost_usd).where(usage.c.status == 200))]
    assert len(costs) == statuses.count(200)
    spent, one = sum(costs), max(costs)
    assert limit <= spent < limit + one


def test_twenty_concurrent_first_requests_create_one_identity(make_gateway, database, redis_url):
    from aiplane.store.schema import identities, usage

    a, b = pair(make_gateway, database, redis_url)
    token = a.token("newcomer@example.com")
    statuses = _run(_send([a.url, b.url], token, 20, concurrency=20))
    assert statuses == [200] * 20
    a.stop()
    b.stop()
    assert query(database, select(func.count()).select_from(identities).where(identities.c.subject == "newcomer@example.com")) == [(1,)]
    assert query(database, select(func.count(func.distinct(usage.c.user_id)), func.count()).select_from(usage)) == [(1, 20)]


def test_usage_totals_exact_after_5000_requests_across_replicas(make_gateway, database, redis_url):
    from aiplane.store.schema import usage, usage_daily_users, usage_hourly, usage_hourly_models

    rule = json.dumps([{"scope": "user", "subject": "*", "tokens_per_day": 10**12}])
    # Three processes: one gateway with two workers on one port, and a second gateway.
    a, b = pair(make_gateway, database, redis_url, ("--workers", "2"), AIPLANE_QUOTAS__RULES=rule)
    token = a.token("bulk@example.com")
    admin = {"authorization": f"Bearer {a.token('root@example.com', '--admin')}"}
    count = 5000
    statuses = _run(_send([a.url, b.url], token, count, concurrency=32))
    assert statuses == [200] * count
    # The shared token counter saw every request's 120 + 30 tokens.
    report = httpx.get(a.url + "/v1/admin/quotas", headers=admin, params={"user": "bulk@example.com"}).json()
    deadline = time.monotonic() + 5
    while report["rules"][0]["usage"]["tokens_per_day"]["used"] < count * 150 and time.monotonic() < deadline:
        time.sleep(0.1)
        report = httpx.get(a.url + "/v1/admin/quotas", headers=admin, params={"user": "bulk@example.com"}).json()
    assert report["shared_counters"] is True
    assert report["rules"][0]["usage"]["tokens_per_day"]["used"] == count * 150
    a.stop()
    b.stop()
    rows = query(database, select(func.count(), func.sum(usage.c.input_tokens), func.sum(usage.c.output_tokens),
                                  func.count(func.distinct(usage.c.request_id))).select_from(usage))
    assert rows == [(count, count * 120, count * 30, count)]
    for table in (usage_hourly, usage_hourly_models, usage_daily_users):
        sums = query(database, select(func.sum(table.c.requests), func.sum(table.c.input_tokens),
                                      func.sum(table.c.output_tokens)).select_from(table))
        assert sums == [(count, count * 120, count * 30)], table.name


def test_catalog_refresh_runs_once_per_interval_across_gateways(make_gateway, database, redis_url, upstream):
    server, state = upstream
    state.catalog_mode, state.catalog_fetches = "ok", 0
    interval = 10
    before = time.monotonic()
    a, b = pair(make_gateway, database, redis_url, AIPLANE_CATALOG__URL=server.url + "/catalog/api.json",
                AIPLANE_CATALOG__REFRESH_INTERVAL_SECONDS=str(interval))
    both_up = time.monotonic()
    time.sleep(2 * interval + 1)
    elapsed = time.monotonic() - before
    fetches = state.catalog_fetches
    a.stop()
    b.stop()
    # Each gateway tries every interval; one fetch per interval (5% slack) happens in all, not one per gateway.
    assert fetches <= int(elapsed / (interval * 0.95)) + 1, (fetches, elapsed)
    # ...and it does keep running: two intervals after both were up, at least one refresh after the first.
    assert fetches >= 2, (fetches, both_up - before)
    assert a.logs().count('"catalog refreshed"') == fetches
