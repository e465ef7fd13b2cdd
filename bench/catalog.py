"""Service catalog at reference scale: a synthetic 16,000-entity catalog.

    .venv/bin/python bench/catalog.py [--entities 16000]

Generates Backstage descriptors (domains, systems, 375 groups, 6,400 users, services, libraries,
APIs and databases, with owner/system/API/dependency relations at realistic density), then
reports ingest time (parse + validate + store in SQLite + build the index), and p50/p99 latency
of a by-query filter and of `dependents` at depth 3, in process and over MCP streamable HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from aiplane.catalog.api import by_predicate, by_query  # noqa: E402
from aiplane.catalog.loader import load_all  # noqa: E402
from aiplane.catalog.store import load_index, upsert  # noqa: E402
from aiplane.store.database import create_engine, migrate  # noqa: E402

AIPLANE = str(Path(sys.executable).with_name("aiplane"))


def generate(total: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    scale = total / 16_000
    n = {k: max(int(v * scale), 1) for k, v in {"domain": 20, "system": 200, "group": 375, "user": 6400, "api": 2000, "resource": 1300}.items()}
    n["component"] = total - sum(n.values())
    docs: list[dict] = []

    def entity(kind: str, name: str, spec: dict, **metadata) -> dict:
        return {"apiVersion": "backstage.io/v1alpha1", "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}

    groups = [f"team-{i}" for i in range(n["group"])]
    for i, g in enumerate(groups):
        parent = {"parent": groups[(i - 1) // 4]} if i else {}
        docs.append(entity("Group", g, {"type": "team", "children": [], **parent}))
    for i in range(n["user"]):
        docs.append(entity("User", f"user-{i}", {"memberOf": [rng.choice(groups)], "profile": {"email": f"user-{i}@example.com"}}))
    domains = [f"domain-{i}" for i in range(n["domain"])]
    for d in domains:
        docs.append(entity("Domain", d, {"owner": rng.choice(groups)}))
    systems = [f"system-{i}" for i in range(n["system"])]
    for s in systems:
        docs.append(entity("System", s, {"owner": rng.choice(groups), "domain": rng.choice(domains)}))
    databases = [f"db-{i}" for i in range(n["resource"])]
    for d in databases:
        docs.append(entity("Resource", d, {"type": "database", "owner": rng.choice(groups), "system": rng.choice(systems)}))
    apis = [f"api-{i}" for i in range(n["api"])]
    for a in apis:
        docs.append(entity("API", a, {"type": "openapi", "lifecycle": "production", "owner": rng.choice(groups), "system": rng.choice(systems), "definition": "openapi: 3.0.0"}))
    components = [f"svc-{i}" for i in range(n["component"])]
    providers = {a: components[i % len(components)] for i, a in enumerate(apis)}
    provides: dict[str, list[str]] = {}
    for a, c in providers.items():
        provides.setdefault(c, []).append(a)
    for i, c in enumerate(components):
        kind_of = "service" if i % 3 else rng.choice(["library", "website"])
        spec = {
            "type": kind_of,
            "lifecycle": rng.choice(["production", "experimental"]),
            "owner": rng.choice(groups),
            "system": rng.choice(systems),
            "providesApis": provides.get(c, []),
            "consumesApis": rng.sample(apis, rng.randint(0, 4)),
            "dependsOn": [f"resource:{d}" for d in rng.sample(databases, rng.randint(0, 2))]
            + [f"component:{x}" for x in rng.sample(components[:i] or components, rng.randint(0, 2)) if x != c],
        }
        docs.append(entity("Component", c, spec, tags=[kind_of, f"tier-{i % 3}"], description=f"Service {i} of the synthetic catalog"))
    return docs


def parse_peer(path: Path, runs: int = 5) -> tuple[float, float]:
    """The loader's bounded YAML parser against the unbounded libyaml safe loader it replaced, same file."""
    from aiplane.catalog.yamlsafe import iter_documents

    text = path.read_text()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    bounded, plain = [], []
    for _ in range(runs):
        started = time.perf_counter()
        list(iter_documents(text))
        bounded.append(time.perf_counter() - started)
        started = time.perf_counter()
        list(yaml.load_all(text, Loader=loader))
        plain.append(time.perf_counter() - started)
    return statistics.median(bounded), statistics.median(plain)


def value_check_peer(path: Path, runs: int = 3) -> tuple[float, float]:
    """Whole `load_all` with the plain-JSON value check against the same run with it switched off
    (its peer: the loader as it was before the check), alternating, same file."""
    import aiplane.catalog.loader as loader_module

    checked, unchecked = [], []
    real = loader_module.check_values
    for _ in range(runs):
        started = time.perf_counter()
        load_all([str(path)], follow_remote=False)
        checked.append(time.perf_counter() - started)
        loader_module.check_values = lambda document, max_chars: False  # noqa: E731 - the peer skips the check
        try:
            started = time.perf_counter()
            load_all([str(path)], follow_remote=False)
            unchecked.append(time.perf_counter() - started)
        finally:
            loader_module.check_values = real
    return statistics.median(checked), statistics.median(unchecked)


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[max(int(len(samples) * 0.99) - 1, 0)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def in_process(db_url: str, rng: random.Random, repeat: int) -> tuple[object, dict]:
    engine = create_engine(db_url)
    index = await load_index(engine)
    await engine.dispose()
    components = [k for k in index.entities if k.startswith("component:")]

    class Params(dict):
        def getlist(self, key):  # noqa: ANN001, ANN201
            value = self.get(key)
            return value if isinstance(value, list) else ([value] if value else [])

    # Serve every component once, so both query forms below pay the same (cached) serving cost.
    for key in components:
        index.with_relations(key)
    timings: dict[str, list[float]] = {"by-query": [], "by-query POST predicate": [], "dependents(3)": []}
    for _ in range(repeat):
        owner = f"group:default/team-{rng.randrange(375)}"
        params = Params(filter=[f"kind=component,spec.type=service,relations.ownedby={owner}"], limit="50")
        started = time.perf_counter()
        by_query(index, params)
        timings["by-query"].append((time.perf_counter() - started) * 1000)
        # The same selection as catalog-client's POST predicate form.
        body = {"query": {"$all": [{"kind": "component"}, {"spec.type": {"$in": ["service"]}}, {"relations.ownedBy": owner}]}, "limit": 50}
        started = time.perf_counter()
        by_predicate(index, body)
        timings["by-query POST predicate"].append((time.perf_counter() - started) * 1000)
        target = rng.choice(components)
        started = time.perf_counter()
        index.dependents(target, 3)
        timings["dependents(3)"].append((time.perf_counter() - started) * 1000)
    return index, timings


async def over_mcp(url: str, token: str, rng: random.Random, repeat: int, components: list[str]) -> dict:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    timings: dict[str, list[float]] = {"search_entities": [], "dependents(3)": []}
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            await client.call_tool("search_entities", {"kind": "component", "limit": 5})
            for _ in range(repeat):
                owner = f"group:default/team-{rng.randrange(375)}"
                started = time.perf_counter()
                await client.call_tool("search_entities", {"kind": "component", "type": "service", "owner": owner, "limit": 50})
                timings["search_entities"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await client.call_tool("dependents", {"ref": rng.choice(components), "depth": 3})
                timings["dependents(3)"].append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=16_000)
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs = generate(args.entities)
        (work / "catalog-info.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        db_url = f"sqlite+aiosqlite:///{work / 'aiplane.db'}"

        async def ingest() -> tuple[int, int, float, float, float]:
            engine = create_engine(db_url)
            await migrate(engine)
            started = time.perf_counter()
            result = load_all([str(work / "catalog-info.yaml")])
            parsed = time.perf_counter()
            await upsert(engine, list(result.entities.values()))
            stored = time.perf_counter()
            index = await load_index(engine)
            indexed = time.perf_counter()
            await engine.dispose()
            assert not result.errors, result.errors[:3]
            return len(index.entities), len(index.relations), parsed - started, stored - parsed, indexed - stored

        entities, relations, parse_s, store_s, index_s = asyncio.run(ingest())
        print(f"# catalog bench: {entities:,} entities, {relations:,} relations (both directions), {os.cpu_count()} cores\n")
        print(f"ingest: {parse_s + store_s + index_s:.2f} s total (parse+validate {parse_s:.2f} s, store {store_s:.2f} s, index {index_s:.2f} s)\n")
        bounded, plain = parse_peer(work / "catalog-info.yaml")
        print(f"YAML parse only: bounded loader {bounded:.2f} s vs plain libyaml safe loader {plain:.2f} s (ratio {bounded / plain:.2f}, median of 5)\n")
        checked, unchecked = value_check_peer(work / "catalog-info.yaml")
        print(f"load_all: with value checks {checked:.2f} s vs without {unchecked:.2f} s (ratio {checked / unchecked:.2f}, median of 3)\n")

        index, local = asyncio.run(in_process(db_url, rng, args.repeat))
        print("| query | where | p50 (ms) | p99 (ms) |")
        print("| --- | --- | --- | --- |")
        for name, samples in local.items():
            p50, p99 = percentiles(samples)
            print(f"| {name} | in process | {p50:.3f} | {p99:.3f} |")
        ratio = statistics.median(local["by-query POST predicate"]) / statistics.median(local["by-query"])
        print(f"\nratio, POST predicate / GET filter p50 (same selection, same run): {ratio:.2f}")
        # Serving an entity the first time computes its uid annotations and etag; later it is cached.
        keys = [k for k in sorted(index.entities) if k.startswith("user:")][:2000]  # never served by the queries above
        started = time.perf_counter()
        for key in keys:
            index.with_relations(key)
        cold = (time.perf_counter() - started) / len(keys) * 1e6
        started = time.perf_counter()
        for key in keys:
            index.with_relations(key)
        warm = (time.perf_counter() - started) / len(keys) * 1e6
        print(f"served form per entity: first {cold:.1f} us, cached {warm:.1f} us (ratio {cold / warm:.1f})\n")

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLANE_")}
        env["AIPLANE_DATA_DIR"] = str(work)
        port = free_port()
        server = subprocess.Popen(
            [AIPLANE, "catalog", "mcp", "--transport", "http", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            token = subprocess.run(
                [AIPLANE, "gateway", "token", "create", "--user", "bench@example.com"], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("MCP server did not start") from None
                    time.sleep(0.2)
            components = [index.display[k] for k in index.entities if k.startswith("component:")]  # type: ignore[attr-defined]
            remote = asyncio.run(over_mcp(f"http://127.0.0.1:{port}/mcp", token, rng, args.repeat, components))
            for name, samples in remote.items():
                p50, p99 = percentiles(samples)
                print(f"| {name} | MCP streamable HTTP | {p50:.2f} | {p99:.2f} |")
        finally:
            server.terminate()
            server.wait(timeout=30)
        print("\n" + json.dumps({"goal": "ingest < 10 s; p99 < 10 ms in process, < 30 ms over MCP HTTP"}))


if __name__ == "__main__":
    main()
