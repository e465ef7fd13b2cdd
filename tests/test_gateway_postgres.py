"""The gateway on PostgreSQL: a throwaway cluster on loopback, started by the test.

Skipped only where the PostgreSQL server binaries are absent (the project's machines ship them).
"""

from __future__ import annotations

import json
import subprocess

import openai
import pytest

from tests.conftest import AIPLANE
from tests.doubles.server import free_port
from tests.postgres_cluster import PostgresUnavailable, throwaway_postgres


@pytest.fixture(scope="module")
def postgres_url():
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


def test_usage_and_identities_on_postgres(make_gateway, postgres_url):
    gateway = make_gateway("pg1", AIPLANE_DATABASE__URL=postgres_url)
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token("dana@example.com"))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True).close()
    gateway.stop()

    # A second gateway on the same database keeps the same anonymous id for the same person.
    again = make_gateway("pg2", AIPLANE_DATABASE__URL=postgres_url)
    client = openai.OpenAI(base_url=again.url + "/openai", api_key=again.token("dana@example.com"))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    report = subprocess.run(
        [AIPLANE, "usage", "report", "--group-by", "user", "--json"],
        env=again.env, capture_output=True, text=True, timeout=60,
    )
    again.stop()
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["requests"] == 3
    assert rows[0]["input_tokens"] >= 240


def test_bad_postgres_url_fails_cleanly(tmp_path):
    from tests.conftest import clean_env

    url = f"postgresql+asyncpg://aiplane:s3cret-pw@127.0.0.1:{free_port()}/nope"
    result = subprocess.run(
        [AIPLANE, "usage", "report"],
        env=clean_env(AIPLANE_DATA_DIR=str(tmp_path), AIPLANE_DATABASE__URL=url), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot read usage" in result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_junk_usage_fits_postgres_columns(make_gateway, postgres_url):
    """Counts clamped to 10**12 need the 64-bit token columns (migration 0008); INTEGER would refuse them."""
    import asyncio

    import httpx
    from sqlalchemy import select

    from aiplane.store.database import create_engine
    from aiplane.store.schema import usage, usage_hourly_models

    gateway = make_gateway("pg-junk", AIPLANE_DATABASE__URL=postgres_url, AIPLANE_GATEWAY__USAGE_FLUSH_INTERVAL_SECONDS="2")
    headers = {"authorization": f"Bearer {gateway.token()}"}
    for model in ("gpt-4o", "gpt-4o-junk-huge", "gpt-4o"):
        response = httpx.post(gateway.url + "/openai/chat/completions", headers=headers, json={"model": model, "messages": []})
        assert response.status_code == 200
    gateway.stop()  # flushes

    async def read():
        engine = create_engine(postgres_url)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(usage.c.model, usage.c.input_tokens).where(usage.c.model.like("gpt-4o%")))).all()
            rolled = (await conn.execute(select(usage_hourly_models.c.input_tokens).where(usage_hourly_models.c.model == "gpt-4o-junk-huge"))).scalar_one()
        await engine.dispose()
        return rows, rolled

    rows, rolled = asyncio.run(read())
    assert sorted(tokens for model, tokens in rows if model == "gpt-4o-junk-huge") == [10**12]
    assert rolled == 10**12
    assert not (gateway.data_dir / "usage-spool.jsonl").exists()
