"""Hostile and wedged upstream MCP servers behind a real portal (uvicorn), driven by the official
`mcp` client: issue 16's "upstream servers" list, each case reproduced. The doubles are real
stdio MCP servers built on the official SDK: tests/doubles/hang_mcp.py (hang on demand),
hostile_names_mcp.py (hostile names, descriptions, schemas, listings) and crashy_mcp.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from aiplane.config import UpstreamSettings
from aiplane.portal.upstream import Upstream, UpstreamError
from tests.test_portal import PortalProcess, run, session

ROOT = Path(__file__).resolve().parents[1]
DOUBLES = ROOT / "tests" / "doubles"
STRICT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    events = root / "events.txt"
    portal = PortalProcess(root, """
max_tools_per_upstream = 200
max_listing_bytes = 65536
listing_ttl_seconds = 600
[[portal.policies]]
groups = ["contractors"]
deny = ["hostile__secret", "hostile__forbidden", "hostile__items"]
""", upstreams=f"""
[portal.upstreams.crashy]
command = "{sys.executable}"
args = ["{DOUBLES / 'crashy_mcp.py'}"]

[portal.upstreams.hostile]
command = "{sys.executable}"
args = ["{DOUBLES / 'hostile_names_mcp.py'}"]
env = {{ HOSTILE_TOOL_COUNT = "10000" }}
list_timeout_seconds = 120  # producing and parsing 10,000 tools takes this double ~12 s here

[portal.upstreams.slowpoke]
command = "{sys.executable}"
args = ["{DOUBLES / 'hang_mcp.py'}"]
env = {{ HANG_EVENTS = "{events}" }}

[portal.upstreams.missing]
command = "/nonexistent/dir/mcp-server"
""")
    portal.events = events
    yield portal
    portal.stop()


def test_tool_names_are_validated_renamed_or_refused(hostile):
    async def go():
        http, client = session(hostile, hostile.token())
        async with http, client:
            tools = (await client.list_tools()).tools
            dotted = await client.call_tool("hostile__files_read", {"path": "notes.txt"})
            slashed = await client.call_tool("hostile__admin_wipe", {})
        return tools, dotted, slashed

    tools, dotted, slashed = run(go())
    names = [t.name for t in tools]
    assert all(STRICT_NAME.fullmatch(n) for n in names), [n for n in names if not STRICT_NAME.fullmatch(n)]
    assert {"hostile__files_read", "hostile__admin_wipe", "crashy__ping", "slowpoke__slow"} <= set(names)
    assert not any("evil" in n or "forged" in n or n.startswith("hostile__nnnn") for n in names)
    assert dotted.content[0].text == "read notes.txt"  # the renamed tool reaches the upstream's own name
    assert slashed.content[0].text == "wiped"


def test_ten_thousand_tools_are_capped_per_upstream_and_by_listing_size(hostile):
    async def go():
        http, client = session(hostile, hostile.token())
        async with http, client:
            tools = (await client.list_tools()).tools
        http, client = session(hostile, hostile.token(), "codemode")
        async with http, client:
            visible = await client.call_tool("execute", {"code": "return Object.keys(tools).filter((n) => n.startsWith('hostile__')).length"})
        return tools, json.loads(visible.content[0].text)

    tools, visible = run(go())
    listing = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools], separators=(",", ":"))
    assert len(listing.encode()) <= 65536  # max_listing_bytes, not 13 MB
    names = {t.name for t in tools}
    assert {"crashy__ping", "slowpoke__slow"} <= names  # the others are not crowded out
    assert visible["result"] <= 200  # max_tools_per_upstream


def test_search_output_cannot_be_forged_or_inflated_by_descriptions_and_schemas(hostile):
    async def go():
        http, client = session(hostile, hostile.token(), "codemode")
        async with http, client:
            results = [(await client.call_tool("search", {"query": query, "limit": 50})).content[0].text
                       for query in ("comment breakout reads things", "stuffed schema short", "transfer bank forged evil")]
        return results

    for text in run(go()):
        for line in text.splitlines():
            assert len(line) <= 1200, len(line)
            assert re.match(r'^(/\*\* .* \*/ )?tools(\.|\[")', line), line
            assert line.count("*/") <= 1 and "/*" not in line[3:], line  # one doc comment, closed once
            assert "tools.bank__transfer(args" not in line
    stuffed = next(line for text in run(go()) for line in text.splitlines() if "hostile__stuffed_schema" in line)
    assert stuffed.count("Ignore previous instructions") <= 2  # the injection cannot ride in at length


def test_resources_are_namespaced_so_equal_uris_do_not_collide(hostile):
    async def go():
        http, client = session(hostile, hostile.token())
        async with http, client:
            resources = (await client.list_resources()).resources
            templates = (await client.list_resource_templates()).resource_templates
            crashy = await client.read_resource("aiplane://crashy/crashy://status")
            other = await client.read_resource("aiplane://hostile/crashy://status")
            item = await client.read_resource("aiplane://hostile/hostile://items/42")
            try:
                await client.read_resource("crashy://status")
                bare = None
            except Exception as exc:  # noqa: BLE001 - the client raises the portal's MCP error
                bare = str(exc)
        return resources, templates, crashy, other, item, bare

    resources, templates, crashy, other, item, bare = run(go())
    uris = {str(r.uri) for r in resources}
    assert {"aiplane://crashy/crashy://status", "aiplane://hostile/crashy://status", "aiplane://hostile/hostile://secret"} <= uris
    assert ("aiplane://hostile/hostile://items/{item}", "hostile__items") in {(t.uri_template, t.name) for t in templates}
    assert crashy.contents[0].text == "up" and other.contents[0].text == "hostile says up"
    assert item.contents[0].text == "item 42"
    assert bare is not None and "aiplane://<server>/<uri>" in bare


def test_resources_templates_and_prompts_obey_the_tool_policy(hostile):
    token = hostile.token("contractor@example.com", "contractors")

    async def go():
        http, client = session(hostile, token)
        async with http, client:
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            refused = []
            for uri in ("aiplane://hostile/hostile://secret", "aiplane://hostile/hostile://items/42"):
                try:
                    await client.read_resource(uri)
                except Exception as exc:  # noqa: BLE001
                    refused.append(str(exc))
            try:
                await client.get_prompt("hostile__forbidden", {})
            except Exception as exc:  # noqa: BLE001
                refused.append(str(exc))
            allowed = await client.get_prompt("hostile__hello", {"name": "Ada"})
        return resources, templates, prompts, refused, allowed

    resources, templates, prompts, refused, allowed = run(go())
    assert "aiplane://hostile/hostile://secret" not in resources and "aiplane://hostile/crashy://status" in resources
    assert not any("hostile://items" in t for t in templates)
    assert "hostile__forbidden" not in prompts and "hostile__hello" in prompts
    assert len(refused) == 3 and all("not allowed" in r or "no permitted upstream" in r for r in refused), refused
    assert "Hello Ada." in allowed.messages[0].content.text


def test_execute_sees_generic_error_codes_not_host_errors(hostile):
    code = """
      const seen = [];
      for (const name of ["crashy__die", "crashy__ping"]) {
        try { await tools[name]({}); seen.push("no error"); } catch (e) { seen.push([e.code, e.message]); }
      }
      return seen"""

    async def go():
        http, client = session(hostile, hostile.token(), "codemode")
        async with http, client:
            outcome = json.loads((await client.call_tool("execute", {"code": code})).content[0].text)
        http, client = session(hostile, hostile.token())
        async with http, client:
            direct = await client.call_tool("crashy__ping", {})
        return outcome, direct

    outcome, direct = run(go())
    assert outcome["result"] == [["unavailable", "crashy__die: the tool's server is unavailable right now; try again later"],
                                 ["unavailable", "crashy__ping: the tool's server is unavailable right now; try again later"]]
    assert direct.content[0].text == "pong" or "upstream 'crashy'" in direct.content[0].text  # restarted, or named as down


def test_fire_and_forget_calls_are_cancelled_upstream_and_poison_nothing(hostile):
    hostile.events.write_text("")

    async def go():
        http, client = session(hostile, hostile.token(), "codemode")
        async with http, client:
            fired = json.loads((await client.call_tool("execute", {"code":
                "tools.slowpoke__slow({seconds: 30}); await tools.slowpoke__ping({}); return 'fired'"})).content[0].text)
            later = []
            for _ in range(4):
                started = time.monotonic()
                outcome = json.loads((await client.call_tool("execute", {"code": "return await tools.slowpoke__ping({})"})).content[0].text)
                later.append((outcome, time.monotonic() - started))
        return fired, later

    fired, later = run(go())
    assert fired["result"] == "fired"
    for outcome, seconds in later:
        assert outcome["result"] == {"result": "pong"} and seconds < 3, (outcome, seconds)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "cancelled" not in hostile.events.read_text():
        time.sleep(0.1)
    assert hostile.events.read_text().split() == ["started", "cancelled"]  # the upstream stopped working on it
    rows = [r for r in hostile.audit() if r["tool"] == "slowpoke__slow"]
    assert rows and rows[-1]["status"] == "cancelled"


@pytest.fixture
def wedged(tmp_path):
    portal = PortalProcess(tmp_path, "listing_ttl_seconds = 0\nrestart_backoff_seconds = 60\n", upstreams=f"""
[portal.upstreams.crashy]
command = "{sys.executable}"
args = ["{DOUBLES / 'crashy_mcp.py'}"]

[portal.upstreams.stuck]
command = "{sys.executable}"
args = ["{DOUBLES / 'hang_mcp.py'}"]
initialize_timeout_seconds = 1
env = {{ HANG_ON = "initialize", HANG_STUBBORN = "1", HANG_PID_FILE = "{tmp_path / 'stuck.pid'}" }}

[portal.upstreams.wedged]
command = "{sys.executable}"
args = ["{DOUBLES / 'hang_mcp.py'}"]
list_timeout_seconds = 1
env = {{ HANG_ON = "list", HANG_STUBBORN = "1", HANG_PID_FILE = "{tmp_path / 'wedged.pid'}" }}
""")
    yield portal
    portal.stop()


def test_hanging_upstreams_are_marked_down_and_cost_nobody_a_wait(wedged):
    async def go():
        http, client = session(wedged, wedged.token())
        timings, names = [], []
        async with http, client:
            for pause in (0, 0, 1.5, 0):
                await asyncio.sleep(pause)
                started = time.monotonic()
                names.append({t.name for t in (await client.list_tools()).tools})
                timings.append(time.monotonic() - started)
        http, client = session(wedged, wedged.token(), "codemode")
        async with http, client:
            started = time.monotonic()
            await client.call_tool("search", {"query": "pong"})
            outcome = json.loads((await client.call_tool("execute", {"code": "return await tools.crashy__ping({})"})).content[0].text)
            codemode_seconds = time.monotonic() - started
        return timings, names, outcome, codemode_seconds

    timings, names, outcome, codemode_seconds = run(go())
    assert timings[0] < 8.0  # the first listing waits for the healthy servers to start, and 1 s for the stuck one
    assert max(timings[1:]) < 0.8, timings  # after that: no waits, stale copies or nothing
    assert "wedged__ping" in names[0] and not any(n.startswith("stuck__") for n in names[0])
    assert "wedged__ping" in names[1]  # served stale while its refresh hangs
    assert not any(n.startswith("wedged__") for n in names[3]) and "crashy__ping" in names[3]
    assert outcome["result"] == {"result": "pong"} and codemode_seconds < 1.5
    health = httpx.get(wedged.url + "/healthz").json()["upstreams"]
    assert health["stuck"]["status"] == "failed" and "initialize" in health["stuck"]["error"]
    assert health["wedged"]["status"] == "failed" and "listing" in health["wedged"]["error"]
    # Both ignore EOF and SIGTERM; SIGKILL ends them (the SDK's stop sequence, never abandoned).
    for name in ("stuck", "wedged"):
        pid = int((wedged.root / f"{name}.pid").read_text())
        assert wait_dead(pid, 10), f"{name} upstream {pid} still running"


def test_a_stubborn_upstream_is_killed_on_close(tmp_path):
    pid_file = tmp_path / "pid"
    settings = UpstreamSettings(command=sys.executable, args=[str(DOUBLES / "hang_mcp.py")],
                                env={"HANG_STUBBORN": "1", "HANG_PID_FILE": str(pid_file)})

    async def go():
        upstream = Upstream("stubborn", settings)
        tools = await upstream.listing("tools", 10)
        pid = int(pid_file.read_text())
        started = time.monotonic()
        await upstream.close()
        return [t.name for t in tools], pid, time.monotonic() - started

    names, pid, seconds = run(go())
    assert "ping" in names
    assert wait_dead(pid, 2), "a server that ignores EOF and SIGTERM was abandoned"
    assert seconds < 12


def test_a_server_that_never_initializes_is_given_up_on_quickly(tmp_path):
    pid_file = tmp_path / "pid"
    settings = UpstreamSettings(command=sys.executable, args=[str(DOUBLES / "hang_mcp.py")], initialize_timeout_seconds=0.5,
                                env={"HANG_ON": "initialize", "HANG_STUBBORN": "1", "HANG_PID_FILE": str(pid_file)})

    async def go():
        upstream = Upstream("stuck", settings, backoff=1)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="no answer to initialize within 0.5 s"):
            await upstream.listing("tools", 10)
        first = time.monotonic() - started
        pid = int(pid_file.read_text())
        waits = []
        for pause in (0, 1.2, 0.1, 0.1):  # during the backoff, then while it restarts in the background
            await asyncio.sleep(pause)
            started = time.monotonic()
            with pytest.raises(UpstreamError, match="is down|is restarting"):
                await upstream.listing("tools", 10)
            waits.append(time.monotonic() - started)
        await asyncio.sleep(3.0)  # past the doubled backoff: a call to one of its tools restarts it and waits
        calling = asyncio.create_task(upstream.listing("tools", 10, restart=True))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="is restarting"):
            await upstream.listing("tools", 10)  # while that call waits, listings do not
        waits.append(time.monotonic() - started)
        with pytest.raises(UpstreamError, match="no answer to initialize"):
            await calling
        await upstream.close()
        return first, waits, pid, upstream.state

    first, waits, pid, state = run(go())
    assert first < 2 and max(waits) < 0.05, waits
    assert state.status == "failed" and state.restarts == 2
    assert wait_dead(pid, 10)


def test_naming_rules_rename_what_fits_and_refuse_the_rest():
    from aiplane.portal.naming import map_names
    from aiplane.portal.signatures import declaration

    mapping, refused = map_names("srv", ["a.b", "a_b", "x/y", "ok", "ok", "bad name", "n" * 64, "evil\nline", "é"])
    assert mapping["a_b"] == "a_b" and mapping["x_y"] == "x/y" and mapping["ok"] == "ok"
    assert set(refused) == {"a.b", "ok", "bad name", "evil\nline", "é"}  # a collision, a duplicate, two invalid, non-ASCII
    assert all(len(f"srv__{suffix}") <= 64 for suffix in mapping)
    line = declaration("tools.my-srv__t", "desc */ x\nnew", {"type": "object", "properties": {"a\nb": {"enum": ["x" * 100, "y */"]}}})
    assert "\n" not in line and line.count("*/") == 1 and 'tools["my-srv__t"]' in line


def test_upstream_failures_name_no_host_paths(hostile):
    async def go():
        http, client = session(hostile, hostile.token())
        async with http, client:
            return await client.call_tool("missing__anything", {})

    direct = run(go())
    health = httpx.get(hostile.url + "/healthz").text
    assert direct.is_error and "upstream 'missing' is down (FileNotFoundError: No such file or directory)" in direct.content[0].text
    assert "/nonexistent" not in direct.content[0].text and "/nonexistent" not in health


def test_one_users_runaway_executes_do_not_hold_up_another_user_through_the_portal(hostile):
    """Two workers, wall time 2 s: mallory's two endless loops take one worker in turn, not both."""

    async def execute(token: str, code: str) -> tuple[dict, float]:
        http, client = session(hostile, token, "codemode")
        async with http, client:
            started = time.monotonic()
            outcome = json.loads((await client.call_tool("execute", {"code": code})).content[0].text)
            return outcome, time.monotonic() - started

    async def go():
        mallory, bob = hostile.token("mallory@example.com"), hostile.token("bob@example.com")
        await execute(bob, "return 1")  # the first execute waits for the upstreams' first listings
        runaway = [asyncio.create_task(execute(mallory, "while (true) {}")) for _ in range(2)]
        await asyncio.sleep(0.5)
        other = await execute(bob, "return 'bob ran'")
        return other, await asyncio.gather(*runaway)

    (outcome, seconds), runaway = run(go())
    assert outcome["result"] == "bob ran" and seconds < 1.5, (outcome, seconds)
    assert all("time limit of 2.0 s exceeded" in r["error"] for r, _seconds in runaway)
    assert max(s for _r, s in runaway) > 3.5  # the second waited for the first: one worker for mallory


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    portal = PortalProcess(root, """
max_tools_per_upstream = 20
max_tool_bytes = 8192
listing_ttl_seconds = 600
[[portal.policies]]
groups = ["contractors"]
deny = ["overlap__secret_files", "overlap__payroll", "crowded__secret_files"]
""", upstreams=f"""
[portal.upstreams.overlap]
command = "{sys.executable}"
args = ["{DOUBLES / 'overlap_mcp.py'}"]
env = {{ OVERLAP_STDERR_LINES = "400" }}

[portal.upstreams.crowded]
command = "{sys.executable}"
args = ["{DOUBLES / 'overlap_mcp.py'}"]
env = {{ OVERLAP_EXTRA_RESOURCES = "30" }}
stderr = "discard"
""")
    yield portal
    portal.stop()


async def _read(client, uri: str) -> str:
    try:
        result = await client.read_resource(uri)
    except Exception as exc:  # noqa: BLE001 - the client raises the portal's MCP error
        return f"refused: {exc}"
    return " | ".join(f"{c.uri} {c.text}" for c in result.contents)


def test_a_denied_template_or_resource_is_not_read_through_a_broader_allowed_one(overlapping):
    reads = ("aiplane://overlap/file:///data/secret/passwords.txt",  # secret_files (denied) and files (allowed) match
             "aiplane://overlap/file:///data/payroll.csv",           # payroll (denied, too large to list) and files
             "aiplane://overlap/file:///data/notes.txt")             # only files

    async def go(token: str):
        http, client = session(overlapping, token)
        async with http, client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            return listed, [await _read(client, uri) for uri in reads]

    listed, contractor = run(go(overlapping.token("contractor@example.com", "contractors")))
    _listed, alice = run(go(overlapping.token()))
    assert "aiplane://overlap/file:///data/payroll.csv" not in listed  # over max_tool_bytes: not listed
    assert contractor[0].startswith("refused") and "SECRET" not in contractor[0]
    assert contractor[1].startswith("refused") and "PAYROLL" not in contractor[1]
    assert contractor[2] == "aiplane://overlap/file:///data/notes.txt file notes.txt"
    # Without a deny, every matching entry is allowed; contents come back namespaced.
    assert alice[0].startswith("aiplane://overlap/file:///data/secret/passwords.txt ")  # the upstream picks its template
    assert alice[1] == "aiplane://overlap/file:///data/payroll.csv PAYROLL DATA"


def test_reads_are_refused_when_the_listing_was_cut_and_a_policy_names_items(overlapping):
    """crowded lists 31 resources, the portal keeps 20: an unseen one might be denied."""

    async def go(token: str):
        http, client = session(overlapping, token)
        async with http, client:
            return await _read(client, "aiplane://crowded/file:///data/notes.txt")

    assert run(go(overlapping.token("contractor@example.com", "contractors"))).startswith("refused")
    assert run(go(overlapping.token())) == "aiplane://crowded/file:///data/notes.txt file notes.txt"  # no item policy


def test_a_deep_schema_is_cut_not_lost_and_deep_arguments_fail_fast(overlapping):
    async def go():
        http, client = session(overlapping, overlapping.token())
        async with http, client:
            started = time.monotonic()
            tools = {t.name: t for t in (await client.list_tools()).tools}
            listed = time.monotonic() - started
            deep: dict = {}
            current = deep
            for _ in range(200):
                current["a"] = {}
                current = current["a"]
            started = time.monotonic()
            refused = await client.call_tool("overlap__echo", {"value": deep})
            return tools, listed, refused, time.monotonic() - started

    tools, listed, refused, seconds = run(go())
    assert "overlap__deep_schema" in tools and "overlap__echo" in tools and listed < 5
    health = httpx.get(overlapping.url + "/healthz").json()["upstreams"]
    assert health["overlap"]["status"] == "ready"
    assert refused.is_error and "nest deeper than 64" in refused.content[0].text and seconds < 2


def test_an_upstreams_stderr_is_escaped_bounded_and_named(overlapping):
    run(_touch(overlapping))
    records = [json.loads(line) for line in (overlapping.root / "portal.log").read_text().splitlines()
               if line.startswith("{")]
    raw = [line for line in (overlapping.root / "portal.log").read_text().splitlines() if not line.startswith("{")]
    assert not any("Traceback" in line or "filler" in line for line in raw), raw[:5]
    stderr = [r for r in records if r.get("msg") == "upstream stderr"]
    assert stderr and all(r["upstream"] == "overlap" for r in stderr)  # crowded's stderr is discarded
    assert not any(r.get("logger") == "aiplane.gateway" for r in records)  # the forged record stays a field
    assert any("FORGED" in r["line"] for r in stderr)
    assert all("\x1b" not in r["line"] for r in stderr)
    assert len(stderr) <= 60  # 400 lines written, a burst of 50 logged
    assert any(r.get("msg") == "upstream stderr over its rate, dropping lines" and r["upstream"] == "overlap" for r in records)


async def _touch(portal) -> None:
    http, client = session(portal, portal.token())
    async with http, client:
        await client.list_tools()


def test_execute_output_stays_within_its_byte_cap_as_sent(overlapping):
    """`\\u0001` and `é` cost 6 and 12 bytes each when JSON escapes them to ASCII: 64 KB became 390 KB."""
    code = 'console.log("\\u0001".repeat(65000)); console.log("é".repeat(30000)); return "é".repeat(30000)'

    async def go():
        http, client = session(overlapping, overlapping.token(), "codemode")
        async with http, client:
            return await client.call_tool("execute", {"code": code})

    result = run(go())
    text = result.content[0].text
    cap = 64 * 1024  # max_output_bytes: the result and the logs, each
    assert len(text.encode()) <= 2 * cap + 1024, len(text.encode())
    outcome = json.loads(text)
    assert outcome["result"] == "é" * 30000 and outcome["logs"][-1].startswith("[output truncated")


def test_deep_replies_from_a_stdio_upstream_fail_small():
    """The stdio line parser: a schema is cut, a deep result becomes an error for its request."""
    from mcp import types

    from aiplane.portal.upstream import parse_line

    deep: dict = {}
    current = deep
    for _ in range(400):
        current["a"] = {}
        current = current["a"]
    listing = parse_line(json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"tools": [
        {"name": "t", "inputSchema": {"type": "object", "properties": {"x": deep}}}]}}))
    schema = listing.message.result["tools"][0]["inputSchema"]
    assert len(json.dumps(schema)) < 200 and "a" in json.dumps(schema)
    result = parse_line(json.dumps({"jsonrpc": "2.0", "id": 8, "result": {"content": [], "structuredContent": deep}}))
    assert isinstance(result.message, types.JSONRPCError) and result.message.id == 8
    assert "nests deeper than 150" in result.message.error.message
    assert parse_line('{"jsonrpc": "2.0", "id": 9, "result": {}}').message.id == 9  # ordinary lines as the SDK parses them


def test_returned_contents_are_namespaced_and_unsafe_uris_replaced(overlapping):
    async def go():
        http, client = session(overlapping, overlapping.token())
        async with http, client:
            return await client.read_resource("aiplane://overlap/file:///data/weird.txt")

    result = run(go())
    assert [str(c.uri) for c in result.contents] == ["aiplane://overlap/file:///data/weird.txt", "aiplane://overlap/other://fine"]
