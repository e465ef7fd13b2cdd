"""Usage integrity (junk usage from upstreams, bad spool rows) and data at rest (file modes)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
from datetime import UTC, datetime

import httpx

from aiplane.store.usage import MAX_COST_USD, MAX_TOKENS
from tests.conftest import GatewayProcess, gateway_env


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# (path, body, streamed) → (input, output, cached) as stored.
JUNK = [
    ("/openai/chat/completions", {"model": "gpt-4o-junk-huge", "messages": []}, (MAX_TOKENS, MAX_TOKENS, MAX_TOKENS)),
    ("/openai/chat/completions", {"model": "gpt-4o-junk-huge", "messages": [], "stream": True}, (MAX_TOKENS, MAX_TOKENS, MAX_TOKENS)),
    ("/openai/chat/completions", {"model": "gpt-4o-junk-negative", "messages": []}, (0, 0, 0)),
    ("/openai/chat/completions", {"model": "gpt-4o-junk-types", "messages": []}, (0, 0, 0)),
    ("/openai/chat/completions", {"model": "gpt-4o-junk-nested", "messages": []}, (0, 0, 0)),
    ("/anthropic/v1/messages", {"model": "claude-haiku-4-5-junk-huge", "max_tokens": 5, "messages": []}, (MAX_TOKENS, 7, 0)),
    ("/google-ai-studio/v1beta/models/gemini-2.5-pro-junk-huge:generateContent", {"contents": []}, (MAX_TOKENS, MAX_TOKENS, MAX_TOKENS)),
    ("/google-ai-studio/v1beta/models/gemini-2.5-pro-junk-types:generateContent", {"contents": []}, (0, 0, 0)),
    ("/google-ai-studio/v1beta/models/gemini-2.5-pro-junk-nested:generateContent", {"contents": []}, (0, 0, 0)),
]
GOOD = ("/openai/chat/completions", {"model": "gpt-4o", "messages": []}, (120, 30, 20))


def test_junk_usage_is_clamped_and_the_rest_of_the_batch_is_written(make_gateway):
    # One long flush interval: every request below lands in the same batch.
    gateway = make_gateway("junk", AIPLANE_GATEWAY__USAGE_FLUSH_INTERVAL_SECONDS="3")
    requests = [GOOD]
    for junk in JUNK:
        requests += [junk, GOOD]
    headers = {"authorization": f"Bearer {gateway.token('dana@example.com')}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        for path, body, _expected in requests:
            with client.stream("POST", path, json=body) as response:
                response.read()
                assert response.status_code == 200, (path, body, response.text)

    rows = gateway.wait_for_rows(len(requests), timeout=15)
    assert len(rows) == len(requests)
    for row, (_path, body, expected) in zip(rows, requests, strict=True):
        assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == expected, (body, row)
        assert row["status"] == 200 and row["error"] is None
        assert row["cost_usd"] is not None and math.isfinite(row["cost_usd"]) and 0 <= row["cost_usd"] <= MAX_COST_USD
    anthropic = next(r for r in rows if r["provider"] == "anthropic")
    # 2**63 tokens become MAX_TOKENS before pricing: a large, finite cost, never an overflow.
    assert 0 < anthropic["cost_usd"] <= MAX_COST_USD
    assert not (gateway.data_dir / "usage-spool.jsonl").exists()
    assert not (gateway.data_dir / "usage-quarantine.jsonl").exists()
    assert "usage batch" not in gateway.logs()

    # The rollups took the same numbers, and reports still add them up.
    conn = sqlite3.connect(gateway.data_dir / "aiplane.db")
    rolled = conn.execute("SELECT SUM(requests), SUM(input_tokens) FROM usage_hourly_models").fetchone()
    conn.close()
    assert rolled == (len(requests), sum(r["input_tokens"] for r in rows))
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    report = httpx.get(gateway.url + "/v1/usage?group_by=user", headers=admin).json()
    assert report["rows"][0]["input_tokens"] == rolled[1]
    assert httpx.get(gateway.url + "/ui/", headers=admin).status_code == 200


def _spool_row(i: int, **changes) -> dict:
    row = {
        "request_id": f"spooled{i}", "user_id": "00000000-0000-4000-8000-00000000000a", "provider": "openai",
        "model": "gpt-4o", "endpoint": "chat/completions", "streamed": 0, "status": 200, "latency_ms": 12.5,
        "input_tokens": 10, "output_tokens": 5, "cached_tokens": 0, "cache_write_tokens": 0, "cost_usd": 0.001,
        "error": None, "ts": datetime.now(UTC).isoformat(),
    }
    return row | changes


def test_spool_with_bad_rows_replays_the_good_and_quarantines_the_bad(make_gateway, tmp_path):
    data = tmp_path / "spooled"
    data.mkdir()
    lines = [json.dumps(_spool_row(i)) for i in range(3)]
    lines.append(json.dumps(_spool_row(3, input_tokens=2**70, output_tokens=-3, cost_usd=float("inf"))))  # clamped, kept
    bad = [
        "{not json",
        json.dumps(_spool_row(4, surprise="column")),
        json.dumps(_spool_row(5, ts="yesterday")),
        json.dumps(["a", "list"]),
        json.dumps({k: v for k, v in _spool_row(6).items() if k != "ts"}),
    ]
    spool = data / "usage-spool.jsonl"
    spool.write_text("\n".join(lines[:2] + bad[:3] + lines[2:] + bad[3:]) + "\n")
    os.chmod(spool, 0o644)

    gateway = make_gateway("spooled")  # used to fail its replay at every start
    rows = gateway.usage_rows()
    assert sorted(r["request_id"] for r in rows) == ["spooled0", "spooled1", "spooled2", "spooled3"]
    clamped = next(r for r in rows if r["request_id"] == "spooled3")
    assert (clamped["input_tokens"], clamped["output_tokens"], clamped["cost_usd"]) == (MAX_TOKENS, 0, None)
    assert not spool.exists() and not spool.with_suffix(".replaying").exists()

    quarantine = data / "usage-quarantine.jsonl"
    kept = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert len(kept) == len(bad)
    assert all(entry["reason"] in ("JSONDecodeError", "TypeError", "ValueError", "KeyError") for entry in kept)
    assert kept[0]["record"] == "{not json"  # the line as it was, for someone to look at
    assert _mode(quarantine) == 0o600
    logs = gateway.logs()
    assert logs.count("usage record quarantined") == len(bad)
    assert "00000000-0000-4000-8000-00000000000a" not in logs  # user ids stay out of the log

    # The next start has nothing left to replay and writes nothing twice.
    gateway.stop()
    again = make_gateway("spooled")
    assert len(again.usage_rows()) == 4
    assert len(quarantine.read_text().splitlines()) == len(bad)


def test_a_fresh_data_dir_is_private_whatever_the_umask(tmp_path, upstream):
    server, _state = upstream
    data = tmp_path / "run" / "data"  # does not exist yet: the gateway creates it
    gateway = GatewayProcess(tmp_path / "run", gateway_env(data, server.url), umask=0).start()
    try:
        token = gateway.token()
        response = httpx.post(
            gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
            json={"model": "gpt-4o", "messages": []},
        )
        assert response.status_code == 200
        db = data / "aiplane.db"
        assert _mode(data) == 0o700
        for name in ("aiplane.db", "aiplane.db-wal", "aiplane.db-shm", "dev-signing-key.pem"):
            assert _mode(data / name) == 0o600, name
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM identities").fetchone() == (1,)
    finally:
        gateway.stop()


def test_existing_loose_modes_are_tightened_at_start(make_gateway):
    gateway = make_gateway("loose")
    gateway.token()
    gateway.stop()
    data = gateway.data_dir
    os.chmod(data, 0o755)
    for name in ("aiplane.db", "dev-signing-key.pem"):
        os.chmod(data / name, 0o644)
    (data / "usage-quarantine.jsonl").write_text("")
    os.chmod(data / "usage-quarantine.jsonl", 0o666)

    again = make_gateway("loose")
    assert _mode(data) == 0o700
    for name in ("aiplane.db", "dev-signing-key.pem", "usage-quarantine.jsonl"):
        assert _mode(data / name) == 0o600, name
    assert "tightened file mode" in again.logs()
    response = httpx.post(
        again.url + "/openai/chat/completions", headers={"authorization": f"Bearer {again.token()}"},
        json={"model": "gpt-4o", "messages": []},
    )
    assert response.status_code == 200  # the same key and database, still in use
