"""Quotas on one gateway with the embedded counters (SQLite): limits, refusals, the admin API and CLI,
streams that cross a limit, concurrency, the 80% warning, and a Redis that is down."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import AIPLANE, slow_stream
from tests.doubles.server import free_port


def rules(*items: dict) -> str:
    return json.dumps(list(items))


def chat(gateway, token: str, model: str = "gpt-4o", stream: bool = False) -> httpx.Response:
    return httpx.post(gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def test_requests_per_minute_refusal_names_limit_and_window(make_gateway):
    gateway = make_gateway(AIPLANE_QUOTAS__RULES=rules({"scope": "user", "subject": "*", "requests_per_minute": 3}),
                           AIPLANE_QUOTAS__REMAINING_HEADERS="true")
    alice, bob = gateway.token("alice@example.com"), gateway.token("bob@example.com")
    answers = [chat(gateway, alice) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[0].headers["x-aiplane-quota-remaining-requests"] == "2"
    refused = answers[3]
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "quota_exceeded"
    assert (error["limit"], error["window"], error["scope"], error["allowed"]) == ("requests_per_minute", "minute", "user", 3)
    assert "alice@example.com" not in refused.text  # the user is named by anonymous id only
    # Every user has their own counter under "*"; the refused requests reached no provider and wrote no row.
    assert chat(gateway, bob).status_code == 200
    assert len(gateway.wait_for_rows(4)) == 4
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'aiplane_gateway_quota_refusals_total{limit="requests_per_minute",scope="user"} 2.0' in metrics


def test_stream_crossing_a_token_budget_finishes_and_the_next_is_refused(make_gateway):
    # 150 tokens per request (the double's usage): the first stream crosses 100 and still finishes.
    gateway = make_gateway(AIPLANE_QUOTAS__RULES=rules({"scope": "model", "subject": "openai/gpt-4o", "tokens_per_day": 100}))
    token = gateway.token()
    with httpx.stream("POST", gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": "gpt-4o", "stream": True, "messages": []}) as response:
        body = b"".join(response.iter_bytes())
    assert response.status_code == 200 and body.rstrip().endswith(b"data: [DONE]")
    deadline = time.monotonic() + 5
    while (again := chat(gateway, token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the charge lands just after the stream's last byte
    assert again.status_code == 429
    assert (again.json()["error"]["limit"], again.json()["error"]["window"]) == ("tokens_per_day", "day")
    assert int(again.headers["retry-after"]) <= 86400
    assert chat(gateway, token, model="gpt-4o-mini").status_code == 200  # another model is not limited


def test_max_concurrent_and_slot_given_back(make_gateway):
    gateway = make_gateway(AIPLANE_QUOTAS__RULES=rules({"scope": "group", "subject": "ml", "max_concurrent": 1}))
    member, outsider = gateway.token("m@example.com", "--group", "ml"), gateway.token("o@example.com")
    with slow_stream(gateway, member) as held:
        assert held.status_code == 200
        refused = chat(gateway, gateway.token("m2@example.com", "--group", "ml"))
        assert refused.status_code == 429 and refused.json()["error"]["limit"] == "max_concurrent"
        assert chat(gateway, outsider).status_code == 200
        b"".join(held.iter_bytes())
    deadline = time.monotonic() + 5
    while chat(gateway, member).status_code != 200:
        assert time.monotonic() < deadline, "the slot was not given back"
        time.sleep(0.05)


def test_admin_api_cli_and_warning_at_80_percent(make_gateway):
    gateway = make_gateway(AIPLANE_QUOTAS__RELOAD_SECONDS="0.5")
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    user = gateway.token("carol@example.com")
    api = gateway.url + "/v1/admin/quotas"
    assert httpx.get(api, headers={"authorization": f"Bearer {user}"}).status_code == 403
    assert httpx.get(api).status_code == 401
    bad = httpx.put(api, headers=admin, json={"scope": "user", "subject": "carol@example.com"})
    assert bad.status_code == 422 and "at least one limit" in bad.json()["error"]["message"]
    assert httpx.put(api, headers=admin, content=b"x" * 20000).status_code == 413
    saved = httpx.put(api, headers=admin, json={"scope": "user", "subject": "carol@example.com", "requests_per_minute": 5})
    assert saved.status_code == 200
    assert [chat(gateway, user).status_code for _ in range(6)] == [200] * 5 + [429]
    report = httpx.get(api, headers=admin).json()
    (rule,) = report["rules"]
    assert rule["source"] == "runtime" and rule["usage"]["requests_per_minute"]["used"] == pytest.approx(5, abs=0.2)
    assert "quota nearly used" in gateway.logs() and "carol@example.com" not in gateway.logs()

    # The CLI writes the same table; the gateway picks the change up within quotas.reload_seconds.
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([AIPLANE, "quota", *args], env=gateway.env, capture_output=True, text=True, timeout=60)

    assert cli("set", "--scope", "user", "--subject", "carol@example.com", "--rpm", "1000").returncode == 0
    listed = json.loads(cli("list", "--json").stdout)["rules"]
    assert listed[0]["requests_per_minute"] == 1000
    deadline = time.monotonic() + 5
    while chat(gateway, user).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    report_cli = cli("report", "--json", "--user", "carol@example.com")
    assert report_cli.returncode == 0, report_cli.stderr
    bad_cli = cli("set", "--scope", "team", "--subject", "x", "--rpm", "1")
    assert bad_cli.returncode == 2 and "scope" in bad_cli.stderr and "Traceback" not in bad_cli.stderr
    assert cli("delete", "--scope", "user", "--subject", "carol@example.com").returncode == 0
    assert cli("delete", "--scope", "user", "--subject", "carol@example.com").returncode == 1
    assert httpx.delete(api, headers=admin, params={"scope": "user", "subject": "nobody"}).status_code == 404


def test_day_budget_survives_a_restart_with_embedded_counters(make_gateway):
    env = dict(AIPLANE_QUOTAS__RULES=rules({"scope": "user", "subject": "*", "usd_per_day": 0.000001}))
    gateway = make_gateway("restart", **env)
    token = gateway.token()
    assert chat(gateway, token).status_code == 200
    deadline = time.monotonic() + 5
    while chat(gateway, token).status_code != 429:
        assert time.monotonic() < deadline
    gateway.stop()  # saves the day counters
    again = make_gateway("restart", **env)
    refused = chat(again, token)
    assert refused.status_code == 429 and refused.json()["error"]["window"] == "day"


def test_redis_down_fails_open_by_default_and_closed_when_asked(make_gateway):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    quota = rules({"scope": "user", "subject": "*", "requests_per_minute": 1})
    gateway = make_gateway("open", AIPLANE_REDIS__URL=dead, AIPLANE_QUOTAS__RULES=quota)
    token = gateway.token()
    assert [chat(gateway, token).status_code for _ in range(3)] == [200, 200, 200]
    assert "quota counters unavailable; admitting without quotas" in gateway.logs()
    metrics = httpx.get(gateway.url + "/metrics").text
    assert "aiplane_gateway_quota_backend_errors_total 3.0" in metrics
    closed = make_gateway("closed", AIPLANE_REDIS__URL=dead, AIPLANE_QUOTAS__RULES=quota,
                          AIPLANE_QUOTAS__ON_BACKEND_ERROR="closed")
    refused = chat(closed, closed.token())
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "quota_unavailable"
    assert refused.headers["retry-after"] == "1"


def test_bad_quota_settings_and_workers_refusals_exit_2(tmp_path):
    from tests.conftest import clean_env

    def serve(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([AIPLANE, "gateway", "serve", "--port", str(free_port()), *args],
                              env=clean_env(AIPLANE_DATA_DIR=str(tmp_path), AIPLANE_CATALOG__URL="", **env),
                              capture_output=True, text=True, timeout=60)

    bad = serve(AIPLANE_QUOTAS__RULES=rules({"scope": "user", "subject": "*", "requests_per_minute": -1}))
    assert bad.returncode == 2 and "quotas.rules.0.requests_per_minute" in bad.stderr
    bad = serve(AIPLANE_REDIS__URL="http://127.0.0.1:1")
    assert bad.returncode == 2 and "redis.url" in bad.stderr
    sqlite = serve("--workers", "2")
    assert sqlite.returncode == 2 and "postgresql+asyncpg" in sqlite.stderr and "Traceback" not in sqlite.stderr
    no_redis = serve("--workers", "2", AIPLANE_DATABASE__URL=f"postgresql+asyncpg://a@127.0.0.1:{free_port()}/a",
                     AIPLANE_QUOTAS__RULES=rules({"scope": "user", "subject": "*", "requests_per_minute": 5}))
    assert no_redis.returncode == 2 and "redis.url" in no_redis.stderr
    assert serve("--workers", "0").returncode == 2


def test_job_claims_once_per_interval_on_sqlite(tmp_path):
    import asyncio
    from datetime import UTC, datetime, timedelta

    from aiplane.store.database import create_engine, migrate
    from aiplane.store.jobs import claim

    async def run() -> list[bool]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
        try:
            await migrate(engine)
            t = datetime.now(UTC)
            offsets = (0, 5, 9.6, 12, 19.5)  # 5% slack: 9.6 s counts as the next 10 s interval
            return [await claim(engine, "job", 10, t + timedelta(seconds=s)) for s in offsets]
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [True, False, True, False, True]


def test_embedded_counters_bucket_window_and_slots():
    import asyncio

    from aiplane.store.counters import Counter, MemoryCounters

    async def run() -> None:
        store = MemoryCounters()
        rpm = Counter("q:u:x:rpm", "rate", 3)
        budget = Counter("q:u:x:usdd:20261202", "window", 1.0, reset_seconds=3600)
        slots = Counter("q:u:x:conc", "slots", 2)
        both = [rpm, budget, slots]
        admitted = [await store.admit(both, [1, 0, 1], f"lease{i}", 60) for i in range(3)]
        assert [a.admitted for a in admitted] == [True, True, False]
        assert admitted[2].refused_index == 2 and admitted[2].retry_after == 1.0  # two slots held
        await store.settle([slots, budget], [0, 0.6], "lease0")
        await store.settle([slots, budget], [0, 0.6], "lease1")  # crosses the budget: 1.2 of 1.0
        refused = await store.admit(both, [1, 0, 1], "lease3", 60)
        assert not refused.admitted and refused.refused_index == 1 and refused.retry_after == 3600
        only_rate = await store.admit([rpm], [1], "lease4", 60)
        assert only_rate.admitted and only_rate.levels[0] > 2.9
        over = await store.admit([rpm], [1], "lease5", 60)
        assert not over.admitted and 15 < over.retry_after <= 20  # a third of a minute drains one request

    asyncio.run(run())


def test_a_model_rule_meets_every_spelling_the_gateway_prices_as_that_model(make_gateway):
    gateway = make_gateway(AIPLANE_QUOTAS__RULES=rules({"scope": "model", "subject": "openai/GPT-4o", "requests_per_minute": 1}))
    token = gateway.token()
    assert chat(gateway, token).status_code == 200
    for spelling in ("GPT-4o", "gpt-4o-2024-08-06", "models/gpt-4o", " gpt-4o", "gpt-4o-anything"):
        assert chat(gateway, token, model=spelling).status_code == 429, spelling
    compat = httpx.post(gateway.url + "/compat/chat/completions", headers={"authorization": f"Bearer {token}"},
                        json={"model": "openai/gpt-4o-2024-08-06", "messages": []}, timeout=30)
    assert compat.status_code == 429
    assert chat(gateway, token, model="gpt-4o-mini").status_code == 200  # another catalogued model


def test_leaving_a_stream_before_its_usage_chunk_is_charged_an_estimate(make_gateway):
    gateway = make_gateway(AIPLANE_QUOTAS__RULES=rules({"scope": "user", "subject": "*", "tokens_per_day": 1000}))
    token = gateway.token()
    with httpx.stream("POST", gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": "slow-stream", "stream": True, "max_tokens": 2000, "messages": []}) as response:
        next(response.iter_bytes())  # read the first chunk, then leave
    deadline = time.monotonic() + 10
    while (again := chat(gateway, token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert again.status_code == 429 and again.json()["error"]["limit"] == "tokens_per_day"


def test_legacy_completions_streams_always_ask_for_usage(make_gateway, upstream):
    _server, state = upstream
    gateway = make_gateway()
    before = len(state.requests)
    httpx.post(gateway.url + "/openai/completions", headers={"authorization": f"Bearer {gateway.token()}"},
               json={"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}, timeout=30)
    sent = [r for r in state.requests[before:] if r.path == "/v1/completions"]
    assert sent and sent[-1].json()["stream_options"] == {"include_usage": True}


def test_a_token_with_more_groups_than_the_gateway_reads_is_refused(make_gateway):
    gateway = make_gateway()
    groups = [arg for n in range(1001) for arg in ("--group", f"g{n}")]
    answer = chat(gateway, gateway.token("many@example.com", *groups))
    assert answer.status_code == 401
    assert chat(gateway, gateway.token("few@example.com", *groups[:400])).status_code == 200
