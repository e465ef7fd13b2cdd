"""The Code Mode sandbox under attack: each case of issue 16's "sandbox and workers" list,
reproduced against real worker processes (the pool spawns them; the worker protocol is driven
over its real pipes)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiplane.config import SandboxSettings
from aiplane.portal import sandbox_worker
from aiplane.portal.sandbox import SandboxPool, ToolCallError


def run(coro):
    return asyncio.run(coro)


async def echo(_name: str, args: dict) -> dict:
    return {"echo": args}


async def with_pool(settings: SandboxSettings, work):
    pool = SandboxPool(settings)
    try:
        return await work(pool)
    finally:
        await pool.close()


def test_a_late_reply_to_a_finished_execute_is_dropped_and_the_worker_keeps_serving():
    """Fire-and-forget tool calls: the reply lands after the execute returned."""

    async def slow(_name: str, args: dict) -> str:
        await asyncio.sleep(0.3)
        return "late"

    async def work(pool: SandboxPool):
        fired = await pool.execute("tools.t({}); tools.t({}); return 'fired'", ["t"], slow, "mallory")
        await asyncio.sleep(0.5)  # the replies would now arrive, to a job that is gone
        after = []
        for _ in range(4):
            started = time.monotonic()
            after.append((await pool.execute("return await tools.t({n: 1})", ["t"], echo, "bob"), time.monotonic() - started))
        return fired, after, pool.replaced

    fired, after, replaced = run(with_pool(SandboxSettings(workers=1, wall_time_seconds=3), work))
    assert fired.result == "fired" and fired.error is None
    for outcome, seconds in after:
        assert outcome.error is None and outcome.result == {"echo": {"n": 1}} and seconds < 1.5
    assert replaced == 0  # nothing poisoned, nothing had to be replaced


def test_the_worker_drops_a_reply_meant_for_an_earlier_job():
    """The protocol itself: a reply tagged with job 1 while job 2 waits on the same call id."""
    process = subprocess.Popen([sys.executable, "-I", sandbox_worker.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={"LANG": "C.UTF-8"})
    job = {"type": "run", "wall_time_seconds": 5, "memory_mb": 64, "max_output_bytes": 4096, "max_tool_calls": 5, "tools": ["t"]}

    def send(message: dict) -> None:
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    try:
        assert json.loads(process.stdout.readline())["type"] == "ready"
        send({**job, "job": 1, "code": "tools.t({}); return 1"})
        first = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert [m["type"] for m in first] == ["call", "done"] and first[1]["status"] == "ok"
        send({**job, "job": 2, "code": "return await tools.t({})"})
        assert json.loads(process.stdout.readline()) == {"type": "call", "job": 2, "id": 1, "tool": "t", "args": {}}
        send({"type": "reply", "job": 1, "id": 1, "value": "poison"})  # late, for job 1
        send({"type": "reply", "id": 1, "value": "untagged"})            # no job at all
        process.stdin.write("not json\n[1, 2]\n")                          # garbage must not kill the reader
        send({"type": "reply", "job": 2, "id": 1, "value": "right"})
        done = json.loads(process.stdout.readline())
        assert done["type"] == "done" and done["job"] == 2 and done["result"] == "right", done
    finally:
        process.kill()
        process.wait()


def test_tool_calls_still_running_when_an_execute_ends_or_is_killed_are_cancelled():
    states: list[str] = []

    async def endless(name: str, _args: dict) -> str:
        if name == "fast":
            return "fast"
        states.append("started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            states.append("cancelled")
            raise
        return "never"

    async def work(pool: SandboxPool):
        returned = await pool.execute("tools.t({}); await tools.fast({}); return 1", ["t", "fast"], endless, "u")
        await asyncio.sleep(0.2)
        killed = await pool.execute("tools.t({}); await tools.fast({}); while (true) {}", ["t", "fast"], endless, "u")
        await asyncio.sleep(0.2)
        return returned, killed

    returned, killed = run(with_pool(SandboxSettings(workers=1, wall_time_seconds=1), work))
    assert returned.result == 1 and "time limit" in killed.error
    assert states == ["started", "cancelled", "started", "cancelled"]


MEMORY_ATTACKS = {
    "ArrayBuffers between awaited tool calls": """
        const keep = [];
        for (let i = 0; i < 64; i++) { keep.push(new Uint8Array(32 * 1024 * 1024).fill(7)); await tools.t({}); }
        return keep.length""",
    "ArrayBuffers with no message at all": """
        const keep = [];
        for (let i = 0; i < 64; i++) keep.push(new Uint8Array(32 * 1024 * 1024).fill(7));
        return keep.length""",
    "Wasm memory grown between awaited tool calls": """
        const memory = new WebAssembly.Memory({ initial: 1, maximum: 32768 });
        for (let i = 0; i < 64; i++) { memory.grow(512); new Uint8Array(memory.buffer).fill(7); await tools.t({}); }
        return memory.buffer.byteLength""",
}


@pytest.mark.parametrize("name", list(MEMORY_ATTACKS))
def test_memory_outside_the_v8_heap_is_counted_and_stopped(name):
    settings = SandboxSettings(workers=1, memory_mb=64, rss_headroom_mb=128, wall_time_seconds=20)

    async def work(pool: SandboxPool):
        attack = await pool.execute(MEMORY_ATTACKS[name], ["t"], echo, "u")
        after = await pool.execute("return 6 * 7", [], echo, "u")
        return attack, after, list(pool.killed_at_rss_mb)

    attack, after, killed_at = run(with_pool(settings, work))
    assert attack.error == "memory limit of 64 MB exceeded", attack
    assert after.result == 42
    # Read on a 20 ms timer: the worker is stopped close to its cap (64 + 128 MB), not at gigabytes.
    assert len(killed_at) == 1 and killed_at[0] < 192 + 192, killed_at


def test_one_users_runaway_executes_do_not_block_another_user():
    settings = SandboxSettings(workers=2, wall_time_seconds=2, per_user_concurrency=1, per_user_queue=2)

    async def work(pool: SandboxPool):
        await pool.start()
        runaway = [asyncio.create_task(pool.execute("while (true) {}", [], echo, "mallory")) for _ in range(3)]
        await asyncio.sleep(0.1)
        refused = await pool.execute("return 1", [], echo, "mallory")  # a 4th: over the queue
        started = time.monotonic()
        other = await pool.execute("return 'bob ran'", [], echo, "bob")
        bob_seconds = time.monotonic() - started
        results = await asyncio.gather(*runaway)
        return refused, other, bob_seconds, results

    refused, other, bob_seconds, results = run(with_pool(settings, work))
    assert other.result == "bob ran" and bob_seconds < 1.0, bob_seconds
    assert "already have 1 execute(s) running and 2 waiting" in refused.error
    assert all("time limit of 2.0 s exceeded" in r.error for r in results)  # queued ones ran in turn


def test_a_users_queue_wait_is_bounded():
    settings = SandboxSettings(workers=1, wall_time_seconds=3, per_user_concurrency=1, queue_timeout_seconds=0.5)

    async def work(pool: SandboxPool):
        await pool.start()
        hog = asyncio.create_task(pool.execute("while (true) {}", [], echo, "mallory"))
        await asyncio.sleep(0.1)
        waited = await pool.execute("return 1", [], echo, "bob")
        await hog
        return waited

    waited = run(with_pool(settings, work))
    assert "no sandbox worker was free within 0.5 s" in waited.error


def test_respawn_follows_the_workers_status_not_the_words_in_an_error():
    async def work(pool: SandboxPool):
        outcomes = [await pool.execute(code, [], echo, "u") for code in (
            "throw new Error('rate limit exceeded')",
            "throw new Error('memory limit of 128 MB exceeded')",
            "throw new Error('time limit of 10 s exceeded')",
            "return 'the word limit in a result'",
        )]
        return outcomes, pool.replaced

    outcomes, replaced = run(with_pool(SandboxSettings(workers=1), work))
    assert [o.error for o in outcomes[:3]] == ["Error: rate limit exceeded", "Error: memory limit of 128 MB exceeded",
                                               "Error: time limit of 10 s exceeded"]
    assert replaced == 0


def test_no_host_exception_or_repr_reaches_the_code():
    async def hostile_host(name: str, _args: dict):
        if name == "raises":
            raise ValueError(f"cannot open {Path(__file__)} for <object at 0x7f00deadbeef>")
        if name == "refuses":
            raise ToolCallError("denied", "refuses: you are not allowed to use this tool")
        return object()  # not JSON: must not become its repr

    code = """
      const seen = [];
      for (const [name, args] of [["raises", {}], ["refuses", {}], ["object", {}], ["raises", () => 1], ["raises", {n: 1n}]]) {
        try { await tools[name](args); seen.push("no error"); }
        catch (e) { seen.push({ code: e.code, message: e.message, stack: String(e.stack) }); }
      }
      return seen"""

    async def work(pool: SandboxPool):
        return await pool.execute(code, ["raises", "refuses", "object"], hostile_host, "u")

    outcome = run(with_pool(SandboxSettings(workers=1), work))
    assert outcome.error is None, outcome
    codes = [entry["code"] for entry in outcome.result]
    assert codes == ["internal", "denied", "internal", "bad_arguments", "bad_arguments"]
    text = json.dumps(outcome.result)
    for leak in ("Traceback", "/work", str(Path(__file__).parent), "0x7f", "object at", "ValueError", ".py"):
        assert leak not in text, (leak, text)


def test_output_caps_count_bytes_not_characters():
    settings = SandboxSettings(workers=1, max_output_bytes=65536)

    async def work(pool: SandboxPool):
        two_byte = await pool.execute("return 'é'.repeat(40000)", [], echo, "u")          # 40,000 chars, 80,002 bytes
        ascii_ok = await pool.execute("return 'e'.repeat(40000)", [], echo, "u")
        logs = await pool.execute("for (let i = 0; i < 3; i++) console.log('é'.repeat(20000)); return 1", [], echo, "u")
        return two_byte, ascii_ok, logs

    two_byte, ascii_ok, logs = run(with_pool(settings, work))
    assert two_byte.error == "the result is larger than 65536 bytes; return less (e.g. a summary or the first items)"
    assert ascii_ok.error is None and len(ascii_ok.result) == 40000
    assert len(logs.logs) == 2 and logs.logs[-1] == "[output truncated at 65536 bytes]"


def test_replaced_json_functions_cannot_confuse_the_bridge():
    code = """
      JSON.parse = () => ({ value: "forged" }); JSON.stringify = () => "{}";
      const real = await tools.t({ a: 1 });
      return real"""

    async def work(pool: SandboxPool):
        return await pool.execute(code, ["t"], echo, "u")

    outcome = run(with_pool(SandboxSettings(workers=1), work))
    assert outcome.result == {"echo": {"a": 1}}


def test_deeply_nested_tool_arguments_are_refused_at_once():
    """Arguments 200+ deep pass JSON but the far side's parser drops them: refused before sending."""
    seen: list[str] = []

    async def record(name: str, args: dict) -> str:
        seen.append(name)
        return "ok"

    code = """
      const out = {};
      for (const n of [10, 200, 900, 5000]) {
        const a = {}; let c = a; for (let i = 0; i < n; i++) { c.a = {}; c = c.a; }
        try { out[n] = await tools.t(a); } catch (e) { out[n] = e.code; }
      }
      return out"""

    async def work(pool: SandboxPool):
        started = time.monotonic()
        outcome = await pool.execute(code, ["t"], record, "u")
        return outcome, time.monotonic() - started

    outcome, seconds = run(with_pool(SandboxSettings(workers=1, wall_time_seconds=5), work))
    assert outcome.error is None and outcome.result == {"10": "ok", "200": "too_deep", "900": "too_deep", "5000": "too_deep"}
    assert seen == ["t"] and seconds < 2


def test_log_output_is_capped_as_the_json_that_is_sent():
    """Control characters are sent as \\u0001 (6 bytes): the cap counts that, not the raw character."""

    async def work(pool: SandboxPool):
        return await pool.execute('console.log("\\u0001".repeat(65000)); console.log("é".repeat(3000)); return 1',
                                  [], echo, "u")

    outcome = run(with_pool(SandboxSettings(workers=1, max_output_bytes=16 * 1024), work))
    sent = json.dumps(outcome.logs, ensure_ascii=False).encode()
    assert len(sent) <= 16 * 1024 + 200, len(sent)
    assert outcome.logs[-1].startswith("[output truncated")


def test_workers_that_cannot_start_fail_fast_and_are_not_respawned_in_a_loop(tmp_path, monkeypatch):
    from aiplane.portal import sandbox

    broken = tmp_path / "broken_worker.py"
    broken.write_text("import sys\nsys.exit(3)\n")  # a real process that dies before saying ready
    monkeypatch.setattr(sandbox, "WORKER_SCRIPT", broken)

    async def work(pool: SandboxPool):
        timings, outcomes = [], []
        for _ in range(6):
            started = time.monotonic()
            outcomes.append(await pool.execute("return 1", [], echo, "u"))
            timings.append(time.monotonic() - started)
            await asyncio.sleep(0.3)
        return timings, outcomes, pool.spawn_attempts

    timings, outcomes, attempts = run(with_pool(SandboxSettings(workers=2, queue_timeout_seconds=30), work))
    assert all(o.error is not None and o.error.startswith("sandbox_unavailable") for o in outcomes), outcomes
    assert max(timings) < 3, timings  # not the 30 s queue wait
    assert attempts <= 6, attempts  # backing off: 2 at start, then at most one per backoff period
