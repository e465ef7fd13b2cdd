"""The gateway's trust boundary, through a real gateway process and a provider that misbehaves on
purpose (tests/doubles/hostile_upstream.py): what may go in, what may come out, fair sharing,
bounded memory and honest metering."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import GatewayProcess, gateway_env
from tests.doubles.hostile_upstream import HostileState, build_hostile_app
from tests.doubles.providers import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY
from tests.doubles.server import ServerThread

KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY)
IDENTITY_HEADERS = {
    "Cf-Access-Authenticated-User-Email": "alice@example.com",
    "Cf-Access-Client-Secret": "cf-secret-value",
    "Cf-Access-Client-Id": "cf-client-id",
    "X-Forwarded-Email": "alice@example.com",
    "X-Forwarded-User": "alice",
    "X-Forwarded-Access-Token": "forwarded-token",
    "X-Forwarded-For": "203.0.113.7",
    "X-Real-Ip": "203.0.113.7",
    "X-Auth-Request-Email": "alice@example.com",
    "X-Auth-Request-User": "alice",
    "X-Goog-Iap-Jwt-Assertion": "iap.jwt.here",
    "X-Amzn-Oidc-Data": "oidc.data",
    "X-Amzn-Oidc-Identity": "alice",
    "X-Ms-Client-Principal-Name": "alice@example.com",
    "X-Ms-Client-Principal": "cHJpbmNpcGFs",
    "Remote-User": "alice",
    "Forwarded": "for=203.0.113.7",
    "Cookie": "session=abc",
    "X-Stainless-Os": "Linux",
    "OpenAI-Organization": "org-client",
    "X-Custom-Token": "placeholder",  # replaced by the gateway token below: a configured token header
}


@pytest.fixture(scope="module")
def hostile():
    state = HostileState()
    with ServerThread(build_hostile_app(state)) as server:
        yield server, state


@pytest.fixture()
def gw(tmp_path, hostile):
    server, _state = hostile
    started: list[GatewayProcess] = []

    def make(**extra: str) -> GatewayProcess:
        data = tmp_path / f"gw{len(started)}"
        env = gateway_env(data, server.url, AIPLANE_AUTH__TOKEN_HEADERS='["authorization", "x-api-key", "x-custom-token"]',
                          AIPLANE_PROVIDERS__OPENAI__TIMEOUT_SECONDS="60", AIPLANE_PROVIDERS__ANTHROPIC__TIMEOUT_SECONDS="60",
                          **extra)
        started.append(GatewayProcess(data, env).start())
        return started[-1]

    yield make
    for process in started:
        process.stop()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- what goes in -------------------------------------------------------------------------------------


def test_identity_and_credential_headers_never_reach_the_provider(gw, hostile):
    _server, state = hostile
    gateway = gw()
    token = gateway.token("alice@example.com")
    headers = IDENTITY_HEADERS | {"X-Custom-Token": token, "Authorization": f"Bearer {token}", "Anthropic-Version": "2023-06-01",
                                  "Anthropic-Beta": "prompt-caching-2024-07-31", "Idempotency-Key": "idem-1"}
    for prefix, path, body in (("openai", "chat/completions", {"model": "m", "messages": []}),
                               ("anthropic", "v1/messages", {"model": "m", "max_tokens": 5, "messages": []})):
        response = httpx.post(f"{gateway.url}/{prefix}/{path}", headers=headers, json=body, timeout=30)
        assert response.status_code == 200, response.text
        sent = state.requests[-1]["headers"]
        forwarded = set(sent)
        assert not forwarded & {h.lower() for h in IDENTITY_HEADERS}
        assert token not in json.dumps(sent) and "alice" not in json.dumps(sent)
        assert sent["idempotency-key"] == "idem-1" and sent["x-aiplane-metadata"].startswith('{"userId": ')
    assert sent["anthropic-version"] == "2023-06-01" and sent["anthropic-beta"] == "prompt-caching-2024-07-31"


@pytest.mark.parametrize("mode", ["uuid", "remove"])
def test_identity_fields_in_bodies_are_anonymised(gw, hostile, mode):
    _server, state = hostile
    gateway = gw(AIPLANE_GATEWAY__IDENTITY_FIELDS=mode)
    token = gateway.token("alice@example.com")
    auth = {"authorization": f"Bearer {token}"}
    httpx.post(gateway.url + "/openai/chat/completions", headers=auth, timeout=30,
               json={"model": "m", "messages": [], "user": "alice@example.com", "safety_identifier": "alice@example.com"})
    openai_body = json.loads(state.requests[-1]["body"])
    httpx.post(gateway.url + "/anthropic/v1/messages", headers=auth, timeout=30,
               json={"model": "m", "max_tokens": 5, "messages": [], "metadata": {"user_id": "alice@example.com"}})
    anthropic_body = json.loads(state.requests[-1]["body"])
    httpx.post(gateway.url + "/compat/chat/completions", headers=auth, timeout=30,
               json={"model": "openai/m", "messages": [], "user": "alice@example.com"})
    compat_body = json.loads(state.requests[-1]["body"])
    for body in (openai_body, anthropic_body, compat_body):
        assert "alice" not in json.dumps(body)
    if mode == "remove":
        assert "user" not in openai_body and "safety_identifier" not in openai_body
        assert anthropic_body["metadata"] == {} and "user" not in compat_body
    else:
        uuid = json.loads(state.requests[-1]["headers"]["x-aiplane-metadata"])["userId"]
        assert openai_body["user"] == openai_body["safety_identifier"] == compat_body["user"] == uuid
        assert anthropic_body["metadata"]["user_id"] == uuid


# -- what comes out -----------------------------------------------------------------------------------


def test_the_provider_key_never_reaches_the_client(gw, hostile):
    gateway = gw()
    auth = {"authorization": f"Bearer {gateway.token()}"}
    for prefix, path, body in (("openai", "chat/completions", {"model": "echo", "messages": []}),
                               ("anthropic", "v1/messages", {"model": "echo", "max_tokens": 5, "messages": []}),
                               ("google-ai-studio", "v1beta/models/echo:generateContent", {"contents": []})):
        response = httpx.post(f"{gateway.url}/{prefix}/{path}", headers=auth, json=body, timeout=30)
        assert response.status_code == 200
        raw = json.dumps(dict(response.headers)) + response.text
        assert not any(key in raw or key[:-4] in raw for key in KEYS), raw
        assert "[redacted]" in response.text
        for dropped in ("set-cookie", "openai-organization", "openai-project", "anthropic-organization-id", "x-echo-key"):
            assert dropped not in response.headers
        assert response.headers["x-ratelimit-remaining-requests"] == "99" and response.headers["request-id"] == "req_1"
    # An SSE stream with the key split across two chunks, through the OpenAI SDK.
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(), max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="echo-split", messages=[], stream=True) if c.choices)
    assert OPENAI_KEY not in text and "[redacted]" in text
    # A redirect is never relayed (its Location carried the key).
    redirected = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, json={"model": "redirect", "messages": []})
    assert redirected.status_code == 502 and "location" not in redirected.headers
    assert redirected.json()["error"]["type"] == "upstream_redirect"


# -- the endpoint policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/openai/files"), ("POST", "/openai/files"), ("DELETE", "/openai/files/file-abc"),
    ("GET", "/openai/files/file-abc/content"), ("POST", "/openai/batches"), ("GET", "/openai/vector_stores"),
    ("POST", "/openai/fine_tuning/jobs"), ("GET", "/openai/chat/completions"), ("GET", "/openai/responses/resp_1"),
    ("POST", "/openai/assistants"), ("GET", "/anthropic/v1/files"), ("POST", "/anthropic/v1/messages/batches"),
    ("GET", "/anthropic/v1/messages/batches/b1/results"), ("GET", "/google-ai-studio/v1beta/files"),
    ("POST", "/google-ai-studio/v1beta/cachedContents"), ("POST", "/google-ai-studio/v1beta/models/m:batchGenerateContent"),
    ("GET", "/openai/./files"), ("GET", "/openai/fil%65s"), ("GET", "/openai//files"),
])
def test_org_wide_endpoints_are_closed(gw, hostile, method, path):
    _server, state = hostile
    gateway = gw()
    before = len(state.requests)
    response = httpx.request(method, gateway.url + path, headers={"authorization": f"Bearer {gateway.token()}"},
                             json={} if method == "POST" else None)
    assert response.status_code in (400, 403), response.text
    if response.status_code == 403:
        assert "endpoint_groups" in response.json()["error"]["message"]
    assert len(state.requests) == before  # nothing reached the provider


def test_an_admin_can_open_a_family_to_a_group(gw, hostile):
    _server, state = hostile
    gateway = gw(AIPLANE_GATEWAY__ENDPOINT_GROUPS='{"openai:files": ["ml-platform"]}')
    member = subprocess_token(gateway, "bob@example.com", "ml-platform")
    outsider = gateway.token("carol@example.com")
    assert httpx.get(gateway.url + "/openai/files", headers={"authorization": f"Bearer {member}"}).status_code == 200
    assert state.requests[-1]["path"] == "/v1/files"
    assert httpx.get(gateway.url + "/openai/files", headers={"authorization": f"Bearer {outsider}"}).status_code == 403
    assert httpx.get(gateway.url + "/openai/batches", headers={"authorization": f"Bearer {member}"}).status_code == 403


def subprocess_token(gateway: GatewayProcess, user: str, group: str) -> str:
    return gateway.token(user, "--group", group)


# -- normalise first, then decide ---------------------------------------------------------------------


def test_policies_run_on_the_normalised_path_and_body(gw, hostile):
    _server, state = hostile
    gateway = gw()
    auth = {"authorization": f"Bearer {gateway.token()}"}
    for path in ("/openai/chat/completion%73", "/openai//chat//completions/", "/openai/chat/%63ompletions"):
        response = httpx.post(gateway.url + path, headers=auth, json={"model": "m", "messages": [], "store": True, "stream": False})
        assert response.status_code == 200, (path, response.text)
        sent = json.loads(state.requests[-1]["body"])
        assert state.requests[-1]["path"] == "/v1/chat/completions" and sent["store"] is False
    bom = b"\xef\xbb\xbf" + json.dumps({"model": "m", "messages": [], "store": True}).encode()
    assert httpx.post(gateway.url + "/openai/chat/completions", headers=auth | {"content-type": "application/json"},
                      content=bom).status_code == 200
    assert json.loads(state.requests[-1]["body"])["store"] is False
    duplicate = b'{"model": "m", "messages": [], "store": true, "store": true, "user": "alice@example.com"}'
    httpx.post(gateway.url + "/openai/chat/completions", headers=auth, content=duplicate)
    assert state.requests[-1]["body"].count(b'"store"') == 1 and b"alice" not in state.requests[-1]["body"]
    before = len(state.requests)
    for bad in (b"not json", b"[1, 2]", b"{" * 100_000 + b"}" * 100_000, b'{"a":' * 300 + b"1" + b"}" * 300,
                b"\xff\xfe{}", b""):
        refused = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, content=bad)
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request", bad[:20]
    for path in ("/openai/%2e%2e/v1/files", "/openai/chat%2fcompletions", "/openai/chat\\completions", "/openai/a%00b"):
        assert httpx.post(gateway.url + path, headers=auth, json={"model": "m"}).status_code == 400, path
    assert len(state.requests) == before


# -- honest outcomes ----------------------------------------------------------------------------------


def test_sdk_streams_that_finished_are_recorded_as_successes(gateway):
    # The OpenAI SDK closes the connection right after [DONE]: that is the end of a good stream, not a 499.
    token = gateway.token()
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=token, max_retries=0)
    for _ in range(5):
        assert [c for c in client.chat.completions.create(model="gpt-4o", messages=[], stream=True)]
    with anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=token, max_retries=0).messages.stream(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as stream:
        stream.get_final_message()
    rows = gateway.wait_for_rows(6)
    assert [(r["status"], r["error"]) for r in rows] == [(200, None)] * 6


def test_a_client_leaving_a_non_streaming_call_cancels_it_within_a_second(gw, hostile):
    _server, state = hostile
    gateway = gw()
    token = gateway.token()
    cancelled = state.cancelled

    def leave_early() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                       json={"model": "slow", "messages": []}, timeout=httpx.Timeout(10, read=0.5))

    left = time.monotonic()
    leave_early()
    while state.cancelled == cancelled and time.monotonic() - left < 5:
        time.sleep(0.05)
    assert state.cancelled == cancelled + 1 and time.monotonic() - left < 2.0
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["error"]) == (499, "client_disconnected")


# -- fair sharing -------------------------------------------------------------------------------------


def test_one_user_cannot_starve_the_others(gw, hostile):
    _server, state = hostile
    gateway = gw(AIPLANE_GATEWAY__MAX_INFLIGHT_PER_USER="16", AIPLANE_GATEWAY__UPSTREAM_POOL_SIZE="64")
    hog, other = gateway.token("hog@example.com"), gateway.token("other@example.com")
    statuses: list[int] = []

    async def flood() -> None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            async def one() -> None:
                try:
                    response = await client.post(gateway.url + "/openai/chat/completions",
                                                 headers={"authorization": f"Bearer {hog}"}, json={"model": "hold", "messages": []})
                    statuses.append(response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)
            await asyncio.gather(*(one() for _ in range(1000)))

    thread = threading.Thread(target=lambda: asyncio.run(flood()))
    thread.start()
    deadline = time.monotonic() + 20
    while state.holding < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    served = httpx.post(gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {other}"},
                        json={"model": "m", "messages": []}, timeout=10)
    elapsed = time.monotonic() - started
    thread.join(timeout=120)
    assert served.status_code == 200 and elapsed < 1.0, elapsed
    assert statuses.count(429) >= 900 and statuses.count(200) >= 16
    assert state.holding == 0


# -- bounded memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["huge", "gzip-bomb"])
def test_a_huge_or_bomb_body_is_streamed_in_bounded_memory(gw, hostile, model):
    gateway = gw()
    token = gateway.token()
    assert gateway.proc is not None
    warm = httpx.post(gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": "m", "messages": []})
    assert warm.status_code == 200
    before = _rss_kb(gateway.proc.pid)
    peak, received = before, 0
    with httpx.stream("POST", gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": model, "messages": []}, timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
            peak = max(peak, _rss_kb(gateway.proc.pid))
    assert received > 100 * 1024 * 1024
    assert peak - before < 30 * 1024, f"RSS grew by {(peak - before) // 1024} MB"
    rows = gateway.wait_for_rows(2)
    assert (rows[-1]["status"], rows[-1]["input_tokens"], rows[-1]["output_tokens"]) == (200, 11, 7)


def test_an_encoding_nobody_asked_for_is_refused(gw, hostile):
    gateway = gw()
    response = httpx.post(gateway.url + "/openai/chat/completions", headers={"authorization": f"Bearer {gateway.token()}"},
                          json={"model": "brotli", "messages": []})
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"


def test_anthropic_sdk_still_works_through_the_allowlists(gw, hostile):
    gateway = gw()
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.token(), max_retries=0)
    message = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert message.usage.input_tokens == 11
