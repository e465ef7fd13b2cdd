"""The official OpenAI and Anthropic SDKs, unchanged, against the gateway under uvicorn."""

from __future__ import annotations

import json
import re
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from tests.conftest import slow_stream
from tests.doubles.providers import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY

EMAIL = "alice@example.com"
CLIENT_SECRETS = ("client-cookie-secret", "client-cf-token")


def _assert_clean_upstream_request(recorded, expected_header: str, expected_value: str) -> str:
    headers = recorded.headers
    assert headers[expected_header] == expected_value
    for name in ("cookie", "cf-access-token", "cf-access-jwt-assertion"):
        assert name not in headers
    # Only the injected credential: no client JWT anywhere.
    other_credential_headers = {"authorization", "x-api-key", "x-goog-api-key"} - {expected_header}
    assert not other_credential_headers & set(headers)
    flat = json.dumps(headers) + recorded.body.decode()
    assert EMAIL not in flat
    for secret in CLIENT_SECRETS:
        assert secret not in flat
    metadata = json.loads(headers["x-aiplane-metadata"])
    assert set(metadata) == {"userId"}
    return str(uuid.UUID(metadata["userId"]))


def test_openai_sdk_non_streaming(gateway, upstream):
    _server, state = upstream
    token = gateway.token(EMAIL)
    client = openai.OpenAI(
        base_url=gateway.url + "/openai",
        api_key=token,
        default_headers={"cookie": "session=client-cookie-secret", "cf-access-token": "client-cf-token"},
    )
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the double."
    recorded = state.requests[-1]
    assert recorded.path == "/v1/chat/completions"
    user_id = _assert_clean_upstream_request(recorded, "authorization", f"Bearer {OPENAI_KEY}")
    assert "stream_options" not in recorded.json()

    (row,) = gateway.wait_for_rows(1)
    assert row["user_id"] == user_id
    assert (row["provider"], row["model"], row["status"], row["streamed"]) == ("openai", "gpt-4o", 200, 0)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (120, 30, 20)
    assert row["cost_usd"] == pytest.approx((100 * 2.5 + 20 * 1.25 + 30 * 10) / 1e6)


def test_openai_sdk_streaming_injects_usage_option(gateway, upstream):
    _server, state = upstream
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(EMAIL))
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the double."
    sent = state.requests[-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    (row,) = gateway.wait_for_rows(1)
    assert (row["model"], row["streamed"], row["status"]) == ("gpt-4o-mini", 1, 200)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (120, 30, 20)
    assert row["cost_usd"] == pytest.approx((100 * 0.15 + 20 * 0.075 + 30 * 0.6) / 1e6)


def test_a_client_cannot_switch_usage_off_and_gets_no_usage_chunk(gateway, upstream):
    _server, state = upstream
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(EMAIL))
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": False},
    )
    chunks = list(stream)
    # The provider is asked for usage (the call is metered); the client, which asked for none, gets none.
    assert state.requests[-1].json()["stream_options"] == {"include_usage": True}
    assert chunks and all(chunk.usage is None for chunk in chunks)
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (200, 120, 30) and row["cost_usd"] > 0


@pytest.mark.parametrize("credential", ["api_key", "auth_token"])
def test_anthropic_sdk_non_streaming(gateway, upstream, credential):
    _server, state = upstream
    token = gateway.token(EMAIL)
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", **{credential: token})
    message = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hello from the double."
    recorded = state.requests[-1]
    assert recorded.path == "/v1/messages"
    assert recorded.headers["anthropic-version"]  # client headers other than credentials pass through
    user_id = _assert_clean_upstream_request(recorded, "x-api-key", ANTHROPIC_KEY)
    (row,) = gateway.wait_for_rows(1)
    assert row["user_id"] == user_id
    assert (row["provider"], row["model"], row["streamed"]) == ("anthropic", "claude-sonnet-4-5", 0)
    # Anthropic's input_tokens excludes cache reads and writes; we store the total.
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (160, 40, 50, 10)
    assert row["cost_usd"] == pytest.approx((100 * 3 + 50 * 0.3 + 10 * 3.75 + 40 * 15) / 1e6)


def test_anthropic_sdk_streaming(gateway, upstream):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.token(EMAIL))
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the double."
    assert final.usage.output_tokens == 40
    (row,) = gateway.wait_for_rows(1)
    assert (row["model"], row["streamed"], row["status"]) == ("claude-haiku-4-5", 1, 200)
    # message_start says output 1; message_delta's cumulative 40 wins.
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (160, 40, 50, 10)
    assert row["cost_usd"] == pytest.approx((100 * 1 + 50 * 0.1 + 10 * 1.25 + 40 * 5) / 1e6)


def test_same_user_keeps_one_uuid_and_users_differ(gateway, upstream):
    _server, state = upstream
    ids = []
    for user in (EMAIL, EMAIL, "bob@example.com"):
        client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(user))
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        ids.append(json.loads(state.requests[-1].headers["x-aiplane-metadata"])["userId"])
    assert ids[0] == ids[1] != ids[2]
    rows = gateway.wait_for_rows(3)
    assert [r["user_id"] for r in rows] == ids


def test_gemini_native_with_query_key_stripped(gateway, upstream):
    _server, state = upstream
    token = gateway.token(EMAIL)
    response = httpx.post(
        gateway.url + "/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent",
        params={"key": "client-supplied-key"},
        headers={"x-goog-api-key": token},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert response.status_code == 200, response.text
    recorded = state.requests[-1]
    assert "key" not in recorded.query
    _assert_clean_upstream_request(recorded, "x-goog-api-key", GOOGLE_KEY)
    (row,) = gateway.wait_for_rows(1)
    assert (row["provider"], row["model"]) == ("google", "gemini-2.5-flash")
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (80, 30, 16)


def test_gemini_streaming_usage(gateway, upstream):
    token = gateway.token(EMAIL)
    with httpx.stream(
        "POST",
        gateway.url + "/google-ai-studio/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        params={"alt": "sse"},
        headers={"authorization": f"Bearer {token}"},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read()
    assert body.count(b"data: ") == 2
    (row,) = gateway.wait_for_rows(1)
    assert (row["model"], row["streamed"], row["input_tokens"], row["output_tokens"]) == ("gemini-2.5-pro", 1, 80, 30)


def test_compat_routes_provider_slash_model(gateway, upstream):
    _server, state = upstream
    client = openai.OpenAI(base_url=gateway.url + "/compat", api_key=gateway.token(EMAIL))
    reply = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the double."
    recorded = state.requests[-1]
    assert recorded.json()["model"] == "gpt-4o"
    _assert_clean_upstream_request(recorded, "authorization", f"Bearer {OPENAI_KEY}")
    (row,) = gateway.wait_for_rows(1)
    assert (row["provider"], row["model"]) == ("openai", "gpt-4o")


def test_compat_rejects_model_without_provider(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/compat", api_key=gateway.token(EMAIL), max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "provider/model" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nosuch/model", messages=[{"role": "user", "content": "hi"}])


def test_streaming_is_relayed_without_buffering(gateway):
    token = gateway.token(EMAIL)
    started = time.perf_counter()
    arrivals = []
    with slow_stream(gateway, token) as response:
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.perf_counter() - started)
    # The double pauses 0.6 s after every chunk: each must arrive before the next pause ends.
    assert len(arrivals) >= 4
    assert arrivals[0] < 0.5
    assert arrivals[1] - arrivals[0] > 0.4


def test_response_never_contains_provider_keys(gateway):
    token = gateway.token(EMAIL)
    for path, body in (
        ("/openai/chat/completions", {"model": "echo-key", "messages": []}),
        ("/anthropic/v1/messages", {"model": "echo-key", "max_tokens": 5, "messages": []}),
    ):
        response = httpx.post(gateway.url + path, headers={"authorization": f"Bearer {token}"}, json=body)
        assert response.status_code == 400
        assert "Incorrect API key provided" in response.text
        for key in (OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[:20], ANTHROPIC_KEY[:20]):
            assert key not in response.text
    logs = gateway.logs()
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, token, EMAIL):
        assert secret not in logs
    assert re.search(r'"msg":"proxied"', logs)
