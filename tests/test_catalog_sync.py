"""`aiplane catalog sync`: pulling from an existing Backstage, against our own Backstage-compatible API
as the upstream and against a wire-format double of Backstage's paging; and the gateway's schedule."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import AIPLANE, GatewayProcess, clean_env, gateway_env
from tests.doubles.backstage import TOKEN, BackstageState, build_app, make_entities
from tests.doubles.server import ServerThread, free_port

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "backstage-examples"


@pytest.fixture(scope="module")
def backstage():
    state = BackstageState()
    with ServerThread(build_app(state)) as server:
        yield server, state


@pytest.fixture()
def double(backstage):
    server, state = backstage
    state.mode, state.entities = "ok", make_entities()
    state.requests.clear()
    state.page_size_asked.clear()
    yield server, state
    state.mode = "ok"


def _sync(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "catalog", "sync", *args], env=env, capture_output=True, text=True, timeout=120)


def _env(tmp_path: Path, **extra: str) -> dict:
    return clean_env(AIPLANE_DATA_DIR=str(tmp_path), BACKSTAGE_TOKEN=TOKEN, **extra)


def _refs(env: dict) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(Path(env["AIPLANE_DATA_DIR"]) / "aiplane.db")
    try:
        return {ref for (ref,) in conn.execute("SELECT ref FROM catalog_entities")}
    finally:
        conn.close()


def test_sync_pages_through_backstage_cursors(tmp_path, double):
    server, state = double
    env = _env(tmp_path, AIPLANE_BACKSTAGE__PAGE_SIZE="60")
    result = _sync(env, "--backstage-url", server.url, "--token-env", "BACKSTAGE_TOKEN")
    assert result.returncode == 0, result.stderr
    # 250 entities, 60 asked per page: the double gives 60 each time (its own cap is 100).
    assert f"synced 250 entities from {server.url}/api/catalog in 5 pages (0 rejected, 250 written, 0 removed)" in result.stdout
    assert set(state.page_size_asked) == {60} and all(had for _, _, had in state.requests)
    assert len(_refs(env)) == 250
    # An unchanged upstream rewrites nothing; a removed entity is removed here too.
    again = _sync(env, "--backstage-url", server.url, "--token-env", "BACKSTAGE_TOKEN")
    assert "(0 rejected, 0 written, 0 removed)" in again.stdout
    state.entities = [e for e in state.entities if e["metadata"]["name"] != "svc-0007"]
    third = _sync(env, "--backstage-url", server.url, "--token-env", "BACKSTAGE_TOKEN")
    assert "249 entities" in third.stdout and "1 removed" in third.stdout
    assert "component:default/svc-0007" not in _refs(env)


def test_sync_falls_back_to_offset_paging(tmp_path, double):
    server, state = double
    state.mode = "no-by-query"
    env = _env(tmp_path, AIPLANE_BACKSTAGE__PAGE_SIZE="100", AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN)
    result = _sync(env)
    assert result.returncode == 0, result.stderr
    assert "synced 250 entities" in result.stdout and "in 3 pages" in result.stdout
    assert [q for path, q, _ in state.requests if path.endswith("/entities")] == [
        "limit=100&offset=0", "limit=100&offset=100", "limit=100&offset=200"]


@pytest.mark.parametrize("mode,reason", [
    ("error-midway", "answered HTTP 500 (DatabaseError)"),
    ("garbage", "did not answer JSON"),
    ("loop", "malformed or repeated nextCursor"),
    ("slow", "timed out after 1s"),
    ("huge", "more than 1048576 bytes in one page (backstage.max_page_bytes)"),
    ("redirect", "redirected (HTTP 302)"),
    ("gzip", "content-encoding"),
    ("empty", "shrank from 250 to 0 entities"),
])
def test_a_failed_sync_keeps_the_last_good_copy(tmp_path, double, mode, reason):
    server, state = double
    env = _env(tmp_path, AIPLANE_BACKSTAGE__PAGE_SIZE="100", AIPLANE_BACKSTAGE__TIMEOUT_SECONDS="1",
               AIPLANE_BACKSTAGE__MAX_PAGE_BYTES=str(1024 * 1024), AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN)
    assert _sync(env).returncode == 0
    before = _refs(env)
    state.mode = mode
    state.requests.clear()
    result = _sync(env)
    assert result.returncode == 1 and reason in result.stderr, result.stderr
    assert "unchanged" in result.stderr and "Traceback" not in result.stderr
    assert TOKEN not in result.stderr + result.stdout and "hunter2" not in result.stderr  # nothing of the upstream's message
    assert _refs(env) == before


def test_shrinking_is_accepted_only_when_asked(tmp_path, double):
    server, state = double
    env = _env(tmp_path, AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN)
    assert _sync(env).returncode == 0
    state.mode = "empty"
    assert _sync(env).returncode == 1
    result = _sync(env, "--allow-shrink")
    assert result.returncode == 0 and "250 removed" in result.stdout and not _refs(env)


def test_hostile_items_are_rejected_and_the_rest_kept(tmp_path, double):
    server, state = double
    state.mode = "hostile-items"
    env = _env(tmp_path, AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN)
    result = _sync(env)
    assert result.returncode == 1 and "(3 rejected" in result.stdout
    assert "rejected: item 3 (Component:bad name!)" in result.stderr or "bad name!" in result.stderr
    assert len(_refs(env)) == 250


def test_bad_token_and_settings_are_clear_errors(tmp_path, double):
    server, _state = double
    env = _env(tmp_path, AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN="wrong-token-value")
    result = _sync(env)
    assert result.returncode == 1 and "HTTP 401 (AuthenticationError); check backstage.token" in result.stderr
    assert "wrong-token-value" not in result.stderr
    nothing = _sync(clean_env(AIPLANE_DATA_DIR=str(tmp_path)))
    assert nothing.returncode == 2 and "backstage.url" in nothing.stderr
    creds = _sync(env, "--backstage-url", "http://user:pw@127.0.0.1:1")
    assert creds.returncode == 2 and "must not carry credentials" in creds.stderr and "pw@" not in creds.stderr
    empty_env = _sync(env, "--token-env", "NO_SUCH_VARIABLE_SET")
    assert empty_env.returncode == 2 and "NO_SUCH_VARIABLE_SET" in empty_env.stderr


def test_locally_ingested_entities_win_over_synced_ones(tmp_path, double):
    server, _state = double
    env = _env(tmp_path, AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN)
    local = tmp_path / "svc.yaml"
    local.write_text("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-0001\n"
                     "spec:\n  type: library\n  lifecycle: production\n  owner: platform\n")
    assert subprocess.run([AIPLANE, "catalog", "ingest", str(local)], env=env, capture_output=True, timeout=120).returncode == 0
    result = _sync(env)
    assert "component:default/svc-0001 is already ingested from another source" in result.stderr
    import sqlite3

    conn = sqlite3.connect(tmp_path / "aiplane.db")
    (body,) = conn.execute("SELECT body FROM catalog_entities WHERE ref = 'component:default/svc-0001'").fetchone()
    conn.close()
    assert '"library"' in body


@pytest.fixture(scope="module")
def our_upstream(tmp_path_factory, upstream):
    """A gateway serving the Backstage examples: the upstream for a sync, as another aiplane would see it."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures/backstage-examples is not beside the repository")
    server, _ = upstream
    data = tmp_path_factory.mktemp("sync-upstream")
    gateway = GatewayProcess(data, gateway_env(data, server.url))
    subprocess.run([AIPLANE, "catalog", "ingest", str(FIXTURES), "--no-remote"], env=gateway.env, capture_output=True, timeout=120)
    gateway.start()
    yield gateway
    gateway.stop()


def test_sync_from_our_own_backstage_compatible_api(tmp_path, our_upstream, make_gateway):
    upstream_token = our_upstream.token("sync-bot@example.com")
    headers = {"authorization": f"Bearer {upstream_token}"}
    original = {e["metadata"]["name"]: e for e in httpx.get(our_upstream.url + "/api/catalog/entities", headers=headers).json()}

    gateway = make_gateway("synced", AIPLANE_BACKSTAGE__URL=our_upstream.url, AIPLANE_BACKSTAGE__TOKEN=upstream_token,
                           AIPLANE_BACKSTAGE__PAGE_SIZE="25", AIPLANE_BACKSTAGE__SYNC_INTERVAL_SECONDS="3600")
    token = gateway.token()
    url = gateway.url + "/api/catalog/entities"
    deadline = time.monotonic() + 20
    served: list = []
    while time.monotonic() < deadline and len(served) < 92:
        served = httpx.get(url, headers={"authorization": f"Bearer {token}"}).json()
        time.sleep(0.3)
    assert len(served) == 92, gateway.logs()[-2000:]
    mine = {e["metadata"]["name"]: e for e in served}
    artist = mine["artist-lookup"]
    # The upstream's uid and location annotations survive; relations are derived again, the same.
    assert artist["metadata"]["uid"] == original["artist-lookup"]["metadata"]["uid"]
    assert artist["metadata"]["annotations"] == original["artist-lookup"]["metadata"]["annotations"]
    assert sorted(map(str, artist["relations"])) == sorted(map(str, original["artist-lookup"]["relations"]))
    ancestry = httpx.get(gateway.url + "/api/catalog/entities/by-name/component/default/artist-lookup/ancestry",
                         headers={"authorization": f"Bearer {token}"}).json()
    assert [i["entity"]["metadata"]["name"] for i in ancestry["items"]] == ["artist-lookup", "example-components", "example-all"]
    assert "backstage sync done" in gateway.logs() and upstream_token not in gateway.logs()

    # The catalog MCP server over the same database answers from the synced copy.
    port = free_port()
    mcp = subprocess.Popen([AIPLANE, "catalog", "mcp", "--transport", "http", "--port", str(port)], env=gateway.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def ask() -> dict:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
                    return (await client.call_tool("who_owns", {"target": "artist-lookup"})).structured_content

        assert asyncio.run(ask())["owners"][0]["ref"] == "group:default/team-a"
    finally:
        mcp.terminate()
        mcp.wait(timeout=30)


def test_the_gateway_schedule_keeps_the_last_good_copy(make_gateway, double):
    server, state = double
    gateway = make_gateway("scheduled", AIPLANE_BACKSTAGE__URL=server.url, AIPLANE_BACKSTAGE__TOKEN=TOKEN,
                           AIPLANE_BACKSTAGE__SYNC_INTERVAL_SECONDS="1", AIPLANE_BACKSTAGE__TIMEOUT_SECONDS="1")
    headers = {"authorization": f"Bearer {gateway.token()}"}
    query = gateway.url + "/api/catalog/entities/by-query?limit=1"

    def total() -> int:
        return httpx.get(query, headers=headers).json()["totalItems"]

    deadline = time.monotonic() + 20
    while total() < 250 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert total() == 250
    state.mode = "error-midway"
    deadline = time.monotonic() + 20
    while "backstage sync failed" not in gateway.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "backstage sync failed; keeping the last good copy" in gateway.logs()
    assert total() == 250
    # Admins can ask for a refresh of a synced entity: it runs a sync now (still failing, still kept).
    admin = {"authorization": f"Bearer {gateway.token('root@example.com', '--admin')}"}
    refreshed = httpx.post(gateway.url + "/api/catalog/refresh", json={"entityRef": "component:default/svc-0001"}, headers=admin)
    assert refreshed.status_code == 200 and total() == 250
    state.mode = "ok"
    state.entities = state.entities[:100]
    # 100 of 250 is under the default keep ratio (0.5): refused, the 250 stay.
    deadline = time.monotonic() + 20
    while "shrank from 250 to 100" not in gateway.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert total() == 250 and TOKEN not in gateway.logs()
