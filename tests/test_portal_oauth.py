"""MCP clients that only speak OAuth: the portal publishes Protected Resource Metadata (RFC 9728)
naming the configured OIDC issuer, and the official `mcp` client's OAuth flow (discovery, dynamic
registration, authorization code + PKCE, resource indicator) signs in against the IdP double
(tests/doubles/idp.py) and then uses the portal with the JWT it got."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.conftest import GatewayProcess, clean_env
from tests.doubles.idp import IdpState, build_idp
from tests.doubles.server import ServerThread
from tests.test_portal import TIME_SERVER, PortalProcess

AUDIENCE = "api://aiplane-portal"
UPSTREAMS = f"""
[portal.upstreams.time]
command = "{TIME_SERVER}"
args = ["--local-timezone", "UTC"]
"""


def _oidc(issuer: str, audience: str = AUDIENCE) -> str:
    return f"""
[auth]
mode = "oidc"
issuer = "{issuer}"
jwks_url = "{issuer}/jwks"
audience = "{audience}"
"""


@pytest.fixture(scope="module")
def idp():
    state = IdpState(audience=AUDIENCE, email="olive@example.com")
    with ServerThread(build_idp(state)) as server:
        state.issuer = server.url
        yield state


@pytest.fixture(scope="module")
def portal(idp, tmp_path_factory):
    process = PortalProcess(tmp_path_factory.mktemp("portal-oauth"), 'oauth_scopes = ["openid", "email"]\n' + _oidc(idp.issuer),
                            upstreams=UPSTREAMS)
    yield process
    process.stop()


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Stands in for the user's browser: follows the authorization URL to the IdP, which consents at
    once and redirects to the client's loopback callback; the callback's query is what the client gets."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.callback: dict[str, str] = {}

    async def open(self, url: str) -> None:
        self.visited.append(url)
        async with httpx.AsyncClient() as http:
            answer = await http.get(url, follow_redirects=False)
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith("http://127.0.0.1:33418/callback?")
        self.callback = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def result(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=self.callback["code"], state=self.callback.get("state"), iss=self.callback.get("iss"))


def _oauth(server_url: str, storage: MemoryStorage, browser: Browser) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(client_name="aiplane test client", redirect_uris=["http://127.0.0.1:33418/callback"],
                                   grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                   token_endpoint_auth_method="none")
    return OAuthClientProvider(server_url, metadata, storage, browser.open, browser.result)


def test_unauthenticated_requests_point_at_the_resource_metadata(portal, idp):
    answer = httpx.post(portal.url + "/mcp", json={})
    assert answer.status_code == 401
    expected = f"{portal.url}/.well-known/oauth-protected-resource/mcp"
    assert answer.headers["www-authenticate"] == f'Bearer resource_metadata="{expected}", scope="openid email"'
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        document = httpx.get(portal.url + path)
        assert document.status_code == 200 and document.headers["content-type"] == "application/json"
        assert document.json() == {
            "resource": f"{portal.url}/mcp", "authorization_servers": [idp.issuer], "bearer_methods_supported": ["header"],
            "resource_name": "aiplane MCP portal", "scopes_supported": ["openid", "email"]}
        assert document.headers["vary"] == "Host"  # derived from Host: caches must keep hosts apart
    assert httpx.post(portal.url + "/.well-known/oauth-protected-resource").status_code == 405


def test_a_hostile_host_header_is_not_reflected(portal):
    for host in ('evil.example" , error="x', "evil.example/path", "a b"):
        answer = httpx.post(portal.url + "/mcp", json={}, headers={"host": host})
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer scope="openid email"'
        assert httpx.get(portal.url + "/.well-known/oauth-protected-resource", headers={"host": host}).status_code == 400


def test_the_official_mcp_client_signs_in_with_oauth_and_uses_the_portal(portal, idp):
    storage, browser = MemoryStorage(), Browser()

    async def go():
        async with httpx2.AsyncClient(auth=_oauth(portal.url + "/mcp", storage, browser), timeout=60) as http, \
                Client(streamable_http_client(portal.url + "/mcp", http_client=http)) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
        return tools, result

    tools, result = asyncio.run(go())
    assert "time__get_current_time" in tools and not result.is_error
    # Registered dynamically, sent to our issuer's authorization endpoint with PKCE, the scopes
    # from our metadata and our MCP URL as the resource indicator (RFC 8707), in both legs.
    assert storage.client is not None and storage.client.client_id in idp.clients
    (visited,) = browser.visited
    query = {k: v[0] for k, v in parse_qs(urlsplit(visited).query).items()}
    assert visited.startswith(idp.issuer + "/authorize?") and query["code_challenge_method"] == "S256"
    assert query["scope"] == "openid email" and query["resource"] == portal.url + "/mcp"
    assert ("token", portal.url + "/mcp") in idp.resources
    # The portal knows the caller by the JWT's subject, as with any gateway token.
    audit = [row for row in portal.audit() if row["server"] == "time"]
    assert audit and audit[-1]["status"] == "ok" and "olive" not in str(audit[-1])


def test_a_token_for_another_audience_is_refused(portal, idp):
    idp.audience = "api://someone-else"
    try:
        storage, browser = MemoryStorage(), Browser()

        async def go():
            async with httpx2.AsyncClient(auth=_oauth(portal.url + "/mcp", storage, browser), timeout=60) as http, \
                    Client(streamable_http_client(portal.url + "/mcp", http_client=http)) as client:
                await client.list_tools()

        with pytest.raises(Exception):  # noqa: B017 - the client gives up after one fresh sign-in that still gets 401
            asyncio.run(go())
        assert storage.tokens is not None  # it did sign in; the portal refused the token
        answer = httpx.post(portal.url + "/mcp", json={}, headers={"authorization": f"Bearer {storage.tokens.access_token}"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token", resource_metadata="')
    finally:
        idp.audience = AUDIENCE


def test_dev_tokens_publish_no_metadata(tmp_path):
    process = PortalProcess(tmp_path, upstreams=UPSTREAMS)
    try:
        assert httpx.post(process.url + "/mcp", json={}).headers["www-authenticate"] == "Bearer"
        assert httpx.get(process.url + "/.well-known/oauth-protected-resource").status_code == 404
    finally:
        process.stop()


def test_the_gateway_publishes_the_configured_resource_url(tmp_path, idp):
    data = tmp_path / "gw"
    config = tmp_path / "aiplane.toml"
    config.write_text(f"""
[catalog]
url = ""

[portal]
resource_url = "https://ai.example.com/tools/mcp"
{UPSTREAMS}
{_oidc(idp.issuer)}
""")
    gateway = GatewayProcess(data, clean_env(AIPLANE_DATA_DIR=str(data), AIPLANE_CONFIG=str(config))).start()
    try:
        answer = httpx.post(gateway.url + "/mcp", json={})
        assert answer.status_code == 401
        # Behind a proxy that maps https://ai.example.com/tools/ to this gateway.
        assert answer.headers["www-authenticate"] == \
            'Bearer resource_metadata="https://ai.example.com/.well-known/oauth-protected-resource/tools/mcp"'
        for path in ("/tools/mcp", "/mcp", ""):
            document = httpx.get(gateway.url + "/.well-known/oauth-protected-resource" + path, headers={"host": "evil.example"})
            assert document.json()["resource"] == "https://ai.example.com/tools/mcp" and "vary" not in document.headers
            assert document.json()["authorization_servers"] == [idp.issuer]
    finally:
        gateway.stop()
