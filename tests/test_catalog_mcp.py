"""The catalog MCP server, driven by the official `mcp` client over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import httpx2
import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import AIPLANE, clean_env
from tests.doubles.server import free_port

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "backstage-examples"
if not FIXTURES.is_dir():
    pytest.skip("../shared/fixtures/backstage-examples is not beside the repository", allow_module_level=True)

TOOLS = {"get_entity", "search_entities", "who_owns", "dependencies", "dependents", "apis_of", "databases_of", "team_members", "system_map"}


@pytest.fixture(scope="module")
def catalog_env(tmp_path_factory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("catalog-mcp")
    env = clean_env(AIPLANE_DATA_DIR=str(data))
    subprocess.run([AIPLANE, "catalog", "ingest", str(FIXTURES), "--no-remote"], env=env, capture_output=True, timeout=120)
    return env


async def _structured(client: Client, tool: str, arguments: dict, schemas: dict) -> dict:
    """A tool's structured content, checked against its published output schema; the text copy says the same."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    data = result.structured_content
    assert isinstance(data, dict) and "result" not in data  # an object, not {"result": "<json>"}
    jsonschema.validate(data, schemas[tool])
    assert json.loads(result.content[0].text) == data
    return data


async def _exercise(client: Client) -> None:
    listed = await client.list_tools()
    assert {t.name for t in listed.tools} == TOOLS
    assert all(len(t.description or "") <= 100 for t in listed.tools)  # short: they cost context
    schemas = {t.name: t.output_schema for t in listed.tools}
    assert all(s and s["type"] == "object" and "result" not in s.get("properties", {}) for s in schemas.values())
    assert set(schemas["get_entity"]["required"]) >= {"apiVersion", "kind", "metadata", "relations"}
    assert "next_offset" in schemas["search_entities"]["properties"]
    # Code Mode shows agents the real shapes (no `$ref` left for the signature writer to give up on).
    from aiplane.portal.signatures import declaration

    who = next(t for t in listed.tools if t.name == "who_owns")
    signature = declaration("tools.catalog__who_owns", who.description, who.input_schema, who.output_schema)
    assert "Promise<{ entity: { ref: string; title?: string;" in signature and "result: string" not in signature

    blast = await _structured(client, "dependents", {"ref": "resource:artists-db", "depth": 3}, schemas)
    depths = {item["ref"]: item["depth"] for item in blast["items"]}
    assert depths["component:default/artist-lookup"] == 1 and depths["component:default/www-artist"] == 2

    deps = await _structured(client, "dependencies", {"ref": "www-artist", "depth": 2}, schemas)
    assert [i["ref"] for i in deps["items"]] == ["component:default/artist-lookup", "resource:default/artists-db"]

    owner = await _structured(client, "who_owns", {"target": "artist-lookup"}, schemas)
    assert owner["owners"][0]["ref"] == "group:default/team-a"

    page = await _structured(client, "search_entities", {"kind": "api", "limit": 5}, schemas)
    assert len(page["items"]) == 5 and page["total"] == 20 and page["next_offset"] == 5

    entity = await _structured(client, "get_entity", {"ref": "artist-lookup"}, schemas)
    assert entity["metadata"]["uid"] and entity["metadata"]["etag"] and entity["metadata"]["namespace"] == "default"
    assert {"type": "ownedBy", "targetRef": "group:default/team-a"} in entity["relations"]
    for tool, arguments in (("apis_of", {"ref": "api:wayback-search"}), ("apis_of", {"ref": "artist-lookup"}),
                            ("databases_of", {"ref": "www-artist"}), ("team_members", {"group": "team-a"}),
                            ("system_map", {"system": "audio-playback"})):
        await _structured(client, tool, arguments, schemas)

    missing = await client.call_tool("get_entity", {"ref": "component:default/nope"})
    assert missing.is_error and "no entity component:default/nope" in missing.content[0].text


def test_stdio(catalog_env):
    params = StdioServerParameters(command=AIPLANE, args=["catalog", "mcp"], env=catalog_env)

    async def run() -> None:
        async with Client(params) as client:
            await _exercise(client)

    asyncio.run(run())


def test_streamable_http_requires_a_token(catalog_env):
    port = free_port()
    server = subprocess.Popen(
        [AIPLANE, "catalog", "mcp", "--transport", "http", "--port", str(port)],
        env=catalog_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("catalog MCP server did not start") from None
                time.sleep(0.1)
        assert httpx.post(url, json={}).status_code == 401
        token = subprocess.run(
            [AIPLANE, "gateway", "token", "create", "--user", "agent@example.com"],
            env=catalog_env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        huge = httpx.post(url, content=b"x" * (4 * 1024 * 1024), headers={"authorization": f"Bearer {token}"}, timeout=30)
        assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"

        async def run() -> None:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    await _exercise(client)

        asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert os.path.exists(catalog_env["AIPLANE_DATA_DIR"])
