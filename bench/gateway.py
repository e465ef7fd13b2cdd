"""Gateway overhead, measured against the same loopback upstream called directly, and LiteLLM.

    .venv/bin/python bench/gateway.py [--litellm PATH_TO_litellm_BINARY] [--quick]
    .venv/bin/python bench/gateway.py --scale [--quick]

``--scale`` measures quotas and scale-out instead: the quota limiter's added latency (the same
gateway with and without a rule of every limit kind, counters in Redis on loopback, measured in
alternating rounds), and throughput with ``--workers 1`` and ``--workers 2`` on PostgreSQL, as a ratio.

Three targets get the same requests from the same load generator (raw asyncio HTTP/1.1 with
keep-alive, so client cost stays small and equal): the upstream directly, the aiplane gateway
(JWT verified, usage metered and written, JSON logs on), and LiteLLM proxy when a binary is given.
It prints p50/p99 latency at concurrency 1, 16 and 64 (non-streaming), streaming time to first
chunk, and throughput plus gateway RSS before and after 50,000 requests. "Added" is the
target's percentile minus the direct percentile at the same concurrency.

LiteLLM is not a dependency: install a pinned version in its own venv (never 1.82.7 or 1.82.8),
e.g. ``python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]==1.80.0'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the upstream double lives in tests/doubles
AIPLANE = str(Path(sys.executable).with_name("aiplane"))
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}]}).encode()
STREAM_BODY = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "ping"}]}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Connection:
    """One keep-alive HTTP/1.1 connection; reads content-length or chunked responses."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[float, float]:
        """Return (time to first body byte, total time)."""
        head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        started = time.perf_counter()
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"bad response: {status_line!r}")
        length, chunked = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if not chunked:
            await self.reader.readexactly(length or 0)
            now = time.perf_counter() - started
            return now, now
        first = None
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if first is None:
                first = time.perf_counter() - started
            await self.reader.readexactly(size + 2)
            if size == 0:
                return first, time.perf_counter() - started


async def load(port: int, path: str, headers: dict[str, str], concurrency: int, total: int, body: bytes = BODY) -> dict:
    connections = [Connection(port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    for c in connections:  # warm up every connection (and the target's pools)
        await c.request(path, body, headers)
    latencies: list[float] = []
    firsts: list[float] = []
    remaining = total

    async def worker(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            first, elapsed = await conn.request(path, body, headers)
            latencies.append(elapsed)
            firsts.append(first)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    wall = time.perf_counter() - started
    for c in connections:
        c.writer.close()
    latencies.sort()
    firsts.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "ttfb_p50_ms": firsts[len(firsts) // 2] * 1000,
        "rps": len(latencies) / wall,
    }


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--litellm", help="path to a pinned litellm proxy binary, to measure it as the peer")
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--soak", type=int, default=50_000, help="requests for the throughput/RSS run")
    parser.add_argument("--scale", action="store_true", help="quota limiter latency and --workers 1 vs 2 throughput")
    args = parser.parse_args()
    if args.scale:
        scale_bench(args.quick)
        return
    scale = 0.1 if args.quick else 1.0
    counts = {1: int(2000 * scale), 16: int(8000 * scale), 64: int(8000 * scale)}
    soak = int(args.soak * scale)

    work = Path(tempfile.mkdtemp(prefix="aiplane-bench-"))
    procs: list[subprocess.Popen] = []
    up_port, gw_port, ll_port = free_port(), free_port(), free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")}
    try:
        procs.append(start([sys.executable, "-m", "tests.doubles.fast_openai", "--port", str(up_port)], base_env, work / "upstream.log"))
        gw_env = {
            **base_env,
            "AIPLANE_DATA_DIR": str(work / "gw"),
            "AIPLANE_PROVIDERS__OPENAI__BASE_URL": f"http://127.0.0.1:{up_port}/v1",
            "AIPLANE_PROVIDERS__OPENAI__API_KEY": "sk-bench-upstream",
        }
        procs.append(start([AIPLANE, "gateway", "serve", "--port", str(gw_port)], gw_env, work / "gateway.log"))
        gateway = procs[-1]
        token = subprocess.run(
            [AIPLANE, "gateway", "token", "create", "--user", "bench@example.com"],
            env=gw_env, capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.strip()
        targets = {
            "direct": (up_port, "/v1/chat/completions", {"authorization": "Bearer sk-bench-upstream"}),
            "aiplane": (gw_port, "/openai/chat/completions", {"authorization": f"Bearer {token}"}),
        }
        if args.litellm:
            config = work / "litellm.yaml"
            config.write_text(
                "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n"
                f"      api_base: http://127.0.0.1:{up_port}/v1\n      api_key: sk-bench-upstream\n"
                "general_settings:\n  master_key: sk-litellm-bench\nlitellm_settings:\n  telemetry: false\n"
            )
            ll_env = {**base_env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
            procs.append(start([args.litellm, "--config", str(config), "--port", str(ll_port), "--host", "127.0.0.1"], ll_env, work / "litellm.log"))
            targets["litellm"] = (ll_port, "/v1/chat/completions", {"authorization": "Bearer sk-litellm-bench"})
        wait_http(up_port, "/")
        wait_http(gw_port, "/healthz")
        if args.litellm:
            wait_http(ll_port, "/health/liveliness", timeout=180)

        results: dict[str, dict] = {name: {} for name in targets}
        for concurrency, total in counts.items():
            for name, (port, path, headers) in targets.items():
                results[name][concurrency] = asyncio.run(load(port, path, headers, concurrency, total))
        streaming = {
            name: asyncio.run(load(port, path, headers, 1, int(1000 * scale), STREAM_BODY))
            for name, (port, path, headers) in targets.items()
        }

        # Two soak rounds: growth in the first is warm-up (pools, caches); a leak keeps growing.
        rss = [rss_mb(gateway.pid)]
        soak_results = []
        for _ in range(2):
            soak_results.append(asyncio.run(load(gw_port, "/openai/chat/completions", targets["aiplane"][2], 16, soak)))
            time.sleep(1)
            rss.append(rss_mb(gateway.pid))

        print(f"# gateway bench ({'quick' if args.quick else 'full'}), {os.cpu_count()} cores, upstream: raw asyncio double on loopback")
        print("\n## Non-streaming latency (ms)\n")
        print("| concurrency | target | p50 | p99 | added p50 | added p99 | req/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for concurrency in counts:
            direct = results["direct"][concurrency]
            for name in targets:
                r = results[name][concurrency]
                added50 = r["p50_ms"] - direct["p50_ms"]
                added99 = r["p99_ms"] - direct["p99_ms"]
                print(f"| {concurrency} | {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {added50:.2f} | {added99:.2f} | {r['rps']:.0f} |")
        if "litellm" in targets:
            print("\n## Ratios, LiteLLM added latency / aiplane added latency\n")
            print("| concurrency | p50 ratio | p99 ratio |")
            print("| --- | --- | --- |")
            for concurrency in counts:
                d, a, peer = (results[n][concurrency] for n in ("direct", "aiplane", "litellm"))
                ratio50 = (peer["p50_ms"] - d["p50_ms"]) / max(a["p50_ms"] - d["p50_ms"], 1e-3)
                ratio99 = (peer["p99_ms"] - d["p99_ms"]) / max(a["p99_ms"] - d["p99_ms"], 1e-3)
                print(f"| {concurrency} | {ratio50:.1f}x | {ratio99:.1f}x |")
        print("\n## Streaming, time to first chunk at concurrency 1 (ms)\n")
        print("| target | TTFC p50 | added |")
        print("| --- | --- | --- |")
        for name, r in streaming.items():
            print(f"| {name} | {r['ttfb_p50_ms']:.2f} | {r['ttfb_p50_ms'] - streaming['direct']['ttfb_p50_ms']:.2f} |")
        print(f"\n## Soak: 2 x {soak:,} requests through aiplane at concurrency 16\n")
        for i, r in enumerate(soak_results, 1):
            print(f"- round {i}: {r['rps']:.0f} req/s (p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms)")
        print(
            f"- gateway RSS: {rss[0]:.1f} MB at start, {rss[1]:.1f} MB after round 1 ({rss[1] - rss[0]:+.1f}), "
            f"{rss[2]:.1f} MB after round 2 ({rss[2] - rss[1]:+.1f})"
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _gateway(env: dict[str, str], work: Path, name: str, *serve_args: str) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    data = work / "gw"
    env = {**env, "AIPLANE_DATA_DIR": str(data)}
    proc = start([AIPLANE, "gateway", "serve", "--port", str(port), *serve_args], env, work / f"{name}.log")
    wait_http(port, "/healthz", timeout=180)
    token = subprocess.run([AIPLANE, "gateway", "token", "create", "--user", "bench@example.com"],
                           env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    return proc, port, token


async def limiter_alone(redis_url: str | None, count: int) -> dict:
    """One request's limiter work, without the gateway around it: admission, then the charge and the
    slot given back, for a rule with every limit kind (in-process store, or Redis on loopback)."""
    from aiplane.store.counters import Counter, MemoryCounters, RedisCounters

    store = RedisCounters(redis_url, "bench:", 1, 1) if redis_url else MemoryCounters()
    counters = [Counter("q:u:b:rpm", "rate", 1e9), Counter("q:u:b:tpm", "rate", 1e12),
                Counter("q:u:b:tpd:1", "window", 1e12, 100), Counter("q:u:b:usdd:1", "window", 1e9, 100),
                Counter("q:u:b:usdm:1", "window", 1e9, 100), Counter("q:u:b:conc", "slots", 1e5)]
    costs = [1, 0, 0, 0, 0, 1]
    latencies = []
    for i in range(count + 200):
        started = time.perf_counter()
        await store.admit(counters, costs, f"lease{i}", 60)
        await store.settle(counters[1:], [150, 150, 0.001, 0.001, 0], f"lease{i}")
        if i >= 200:  # the first ones warm up the connection and load the script
            latencies.append(time.perf_counter() - started)
    await store.close()
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def scale_bench(quick: bool) -> None:
    from tests.postgres_cluster import throwaway_postgres
    from tests.redis_server import throwaway_redis

    rounds, per_round = (2, 500) if quick else (5, 2000)
    soak = 3000 if quick else 20000
    work = Path(tempfile.mkdtemp(prefix="aiplane-bench-scale-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")}
    up_port = free_port()
    upstream = start([sys.executable, "-m", "tests.doubles.fast_openai", "--port", str(up_port)], base_env, work / "upstream.log")
    procs: list[subprocess.Popen] = [upstream]
    try:
        wait_http(up_port, "/")
        with throwaway_redis() as redis_url, throwaway_postgres() as pg_url:
            env = {
                **base_env,
                "AIPLANE_PROVIDERS__OPENAI__BASE_URL": f"http://127.0.0.1:{up_port}/v1",
                "AIPLANE_PROVIDERS__OPENAI__API_KEY": "sk-bench-upstream",
                "AIPLANE_CATALOG__URL": "",
                "AIPLANE_DATABASE__URL": pg_url,
            }
            # Every counter kind, limits never reached: the cost of counting, not of refusing.
            rule = json.dumps([{"scope": "user", "subject": "*", "requests_per_minute": 10**9, "tokens_per_minute": 10**12,
                                "tokens_per_day": 10**12, "usd_per_day": 1e9, "usd_per_month": 1e9, "max_concurrent": 100000}])
            alone = {name: asyncio.run(limiter_alone(url, per_round * rounds))
                     for name, url in (("in process", None), ("Redis", redis_url))}
            plain, plain_port, token = _gateway(env, work, "plain")
            procs.append(plain)
            quota, quota_port, _ = _gateway({**env, "AIPLANE_QUOTAS__RULES": rule, "AIPLANE_REDIS__URL": redis_url}, work, "quota")
            procs.append(quota)
            headers = {"authorization": f"Bearer {token}"}
            latency: dict[tuple[str, int], list[dict]] = {}
            for _ in range(rounds):
                for concurrency in (1, 16):
                    for name, port in (("no quotas", plain_port), ("quotas, Redis", quota_port)):
                        result = asyncio.run(load(port, "/openai/chat/completions", headers, concurrency, per_round))
                        latency.setdefault((name, concurrency), []).append(result)
            for proc in (plain, quota):
                stop(proc)
            procs = [upstream]

            throughput: dict[int, list[float]] = {}
            for workers in (1, 2):
                proc, port, token = _gateway(env, work, f"workers{workers}", "--workers", str(workers))
                procs.append(proc)
                for _ in range(2):
                    result = asyncio.run(load(port, "/openai/chat/completions", {"authorization": f"Bearer {token}"}, 64, soak))
                    throughput.setdefault(workers, []).append(result["rps"])
                stop(proc)
                procs.remove(proc)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    print(f"# gateway scale bench ({'quick' if quick else 'full'}), {os.cpu_count()} cores, PostgreSQL and Redis on loopback")
    print(f"\n## Quota limiter alone: admission + charge per request, every limit kind ({rounds * per_round:,} requests)\n")
    print("| counters | p50 ms | p99 ms |")
    print("| --- | --- | --- |")
    for name, r in alone.items():
        print(f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    print(f"\n## Quota limiter, added latency through the gateway (median of {rounds} alternating rounds of {per_round} requests)\n")
    print("| concurrency | target | p50 ms | p99 ms | added p50 | added p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for concurrency in (1, 16):
        base50 = median([r["p50_ms"] for r in latency[("no quotas", concurrency)]])
        base99 = median([r["p99_ms"] for r in latency[("no quotas", concurrency)]])
        for name in ("no quotas", "quotas, Redis"):
            p50 = median([r["p50_ms"] for r in latency[(name, concurrency)]])
            p99 = median([r["p99_ms"] for r in latency[(name, concurrency)]])
            print(f"| {concurrency} | {name} | {p50:.2f} | {p99:.2f} | {p50 - base50:+.2f} | {p99 - base99:+.2f} |")
    one, two = median(throughput[1]), median(throughput[2])
    print(f"\n## Workers, {soak:,} requests at concurrency 64 (median of 2 rounds)\n")
    print(f"- --workers 1: {one:.0f} req/s")
    print(f"- --workers 2: {two:.0f} req/s")
    print(f"- ratio 2/1: {two / one:.2f}x")


if __name__ == "__main__":
    main()
