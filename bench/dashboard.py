"""Dashboard at scale: 1,000,000 usage rows, overview queries and full page renders.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--database-url postgresql+asyncpg://...]

Seeds usage the way the gateway writes it (raw rows plus the hourly rollups) over 30 days,
with 400 users, 3 providers and 9 models, then reports the median and p95 time of each
overview query and of a whole `GET /ui/` (24h, 7d, 30d) served by the gateway under uvicorn.
SQLite by default; pass a Postgres URL to measure there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from aiplane.store.database import create_engine, migrate  # noqa: E402
from aiplane.store.schema import usage  # noqa: E402
from aiplane.store.usage import UsageRecord, add_to_rollup  # noqa: E402
from aiplane.ui import queries  # noqa: E402

AIPLANE = str(Path(sys.executable).with_name("aiplane"))
MODELS = [("openai", "gpt-4o", 2.5), ("openai", "gpt-4o-mini", 0.15), ("openai", "gpt-5", 1.25), ("anthropic", "claude-sonnet-4-5", 3.0),
          ("anthropic", "claude-haiku-4-5", 1.0), ("anthropic", "claude-opus-4-1", 15.0), ("google", "gemini-2.5-pro", 1.25),
          ("google", "gemini-2.5-flash", 0.3), ("google", "gemini-2.0-flash", 0.1)]


async def seed(url: str, rows: int) -> float:
    rng = random.Random(5)
    engine = create_engine(url)
    await migrate(engine)
    users = [f"00000000-0000-4000-8000-{i:012d}" for i in range(400)]
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch: list[UsageRecord] = []
    for i in range(rows):
        provider, model, price = MODELS[min(int(rng.expovariate(0.5)), len(MODELS) - 1)]
        inp, out = rng.randint(200, 8000), rng.randint(20, 1500)
        batch.append(UsageRecord(
            request_id=f"r{i}", user_id=users[min(int(rng.expovariate(1 / 60)), 399)], provider=provider, model=model,
            endpoint="chat/completions", streamed=rng.random() < 0.7, status=500 if rng.random() < 0.01 else 200,
            latency_ms=rng.lognormvariate(6.5, 0.8), input_tokens=inp, output_tokens=out, cached_tokens=inp // 4,
            cost_usd=(inp * price + out * price * 4) / 1e6, ts=now - timedelta(seconds=rng.randint(0, 30 * 86400)),
        ))
        if len(batch) == 20_000:
            async with engine.begin() as conn:
                await conn.execute(usage.insert(), [r.row() for r in batch])
                await add_to_rollup(conn, batch)
            batch = []
    if batch:
        async with engine.begin() as conn:
            await conn.execute(usage.insert(), [r.row() for r in batch])
            await add_to_rollup(conn, batch)
    await engine.dispose()
    return time.perf_counter() - started


def stats(samples: list[float]) -> str:
    samples = sorted(samples)
    return f"{statistics.median(samples):.1f} | {samples[max(int(len(samples) * 0.95) - 1, 0)]:.1f}"


async def query_times(url: str, repeat: int) -> dict[str, list[float]]:
    engine = create_engine(url)
    times: dict[str, list[float]] = {}
    for name in ("24h", "7d", "30d"):
        win = queries.window(name)
        for label, call in (
            ("totals", lambda w=win: queries.totals(engine, w)),
            ("timeseries", lambda w=win: queries.timeseries(engine, w)),
            ("by provider", lambda w=win: queries.breakdown(engine, w, "provider")),
            ("by model", lambda w=win: queries.breakdown(engine, w, "model", limit=25)),
            ("top users", lambda w=win: queries.breakdown(engine, w, "user_id", limit=20)),
        ):
            for _ in range(repeat):
                started = time.perf_counter()
                await call()
                times.setdefault(f"{label} ({name})", []).append((time.perf_counter() - started) * 1000)
    await engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true", help="start a throwaway local PostgreSQL and measure there")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if args.postgres:
        sys.path.insert(0, str(ROOT))
        from tests.postgres_cluster import throwaway_postgres

        with throwaway_postgres() as url:
            args.database_url = url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/aiplane.db"
        seconds = asyncio.run(seed(url, args.rows))
        dialect = url.split(":", 1)[0]
        print(f"# dashboard bench: {args.rows:,} usage rows over 30 days on {dialect}, {os.cpu_count()} cores\n")
        print(f"seeding (raw rows + rollups): {seconds:.1f} s\n")
        print("| query | median ms | p95 ms |\n| --- | --- | --- |")
        for label, samples in asyncio.run(query_times(url, args.repeat)).items():
            print(f"| {label} | {stats(samples)} |")

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")}
        env.update(AIPLANE_DATA_DIR=tmp, AIPLANE_DATABASE__URL=url, AIPLANE_CATALOG__URL="")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen([AIPLANE, "gateway", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            token = subprocess.run([AIPLANE, "gateway", "token", "create", "--user", "bench@example.com", "--admin"], env=env, capture_output=True, text=True, check=True).stdout.strip()
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base + "/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("gateway did not start") from None
                    time.sleep(0.2)
            print("\n| page | median ms | p95 ms | size KB |\n| --- | --- | --- | --- |")
            with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=60) as client:
                for name in ("24h", "7d", "30d"):
                    samples, size = [], 0
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        response = client.get("/ui/", params={"range": name})
                        samples.append((time.perf_counter() - started) * 1000)
                        size = len(response.content)
                        assert response.status_code == 200
                    print(f"| GET /ui/?range={name} | {stats(samples)} | {size / 1024:.0f} |")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
