"""Upstream failures, client disconnects and bad requests end cleanly and are still metered."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import slow_stream
from tests.doubles.server import free_port


def _post(gateway, path: str, body: dict, **kwargs) -> httpx.Response:
    token = gateway.token()
    return httpx.post(gateway.url + path, headers={"authorization": f"Bearer {token}"}, json=body, timeout=30, **kwargs)


@pytest.mark.parametrize("model,upstream_status", [("fail-500", 500), ("fail-503", 503)])
def test_upstream_5xx_becomes_clean_502(gateway, model, upstream_status):
    response = _post(gateway, "/openai/chat/completions", {"model": model, "messages": []})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert "upstream exploded" not in response.text
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["error"]) == (upstream_status, "upstream_error")


def test_upstream_timeout_becomes_504(gateway):
    started = time.monotonic()
    response = _post(gateway, "/anthropic/v1/messages", {"model": "slow", "max_tokens": 5, "messages": []})
    assert response.status_code == 504
    assert time.monotonic() - started < 3.0  # the provider timeout (1.5 s), not the double's 3 s
    assert response.json()["error"]["type"] == "upstream_timeout"
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["error"], row["provider"]) == (504, "upstream_timeout", "anthropic")


def test_unreachable_upstream_becomes_502(make_gateway):
    closed = free_port()
    gateway = make_gateway("refused", AIPLANE_PROVIDERS__OPENAI__BASE_URL=f"http://127.0.0.1:{closed}/v1")
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(), max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "could not be reached" in str(info.value)
    assert str(closed) not in str(info.value)


def test_provider_rejecting_gateway_key_is_502_not_401(make_gateway):
    gateway = make_gateway("badkey", AIPLANE_PROVIDERS__OPENAI__API_KEY="sk-wrong-key-for-upstream")
    response = _post(gateway, "/openai/chat/completions", {"model": "gpt-4o", "messages": []})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_auth_failed"
    assert "sk-wrong" not in response.text


def test_provider_without_key_is_503(make_gateway):
    gateway = make_gateway("nokey", AIPLANE_PROVIDERS__GOOGLE__API_KEY="")
    response = _post(gateway, "/google-ai-studio/v1beta/models/gemini-2.5-pro:generateContent", {"contents": []})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "provider_not_configured"


def test_openai_mid_stream_failure_ends_stream_and_records_usage(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token(), max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="break", messages=[], stream=True):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content)
    assert received == ["Hello", " from"]
    assert "ended unexpectedly" in str(info.value)
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["error"], row["streamed"]) == (200, "upstream_stream_error", 1)


def test_anthropic_mid_stream_failure_keeps_tokens_seen(gateway):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.token(), max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="break", max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream.text_stream:
                pass
    (row,) = gateway.wait_for_rows(1)
    assert row["error"] == "upstream_stream_error"
    assert row["input_tokens"] == 160  # from message_start, before the failure


def test_client_disconnect_cancels_upstream(gateway, upstream):
    _server, state = upstream
    cancelled_before = state.stream_cancelled
    token = gateway.token()
    with slow_stream(gateway, token) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # leave after the first chunk; the context exit closes the socket
    deadline = time.monotonic() + 5
    while state.stream_cancelled == cancelled_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.stream_cancelled == cancelled_before + 1
    (row,) = gateway.wait_for_rows(1)
    assert (row["status"], row["error"]) == (499, "client_disconnected")


def test_oversized_body_is_413(make_gateway):
    gateway = make_gateway("small", AIPLANE_GATEWAY__MAX_REQUEST_BYTES="2048")
    response = _post(gateway, "/openai/chat/completions", {"model": "gpt-4o", "messages": [{"content": "x" * 5000}]})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_unknown_route_and_method_are_json(gateway):
    response = httpx.get(gateway.url + "/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    response = httpx.post(gateway.url + "/healthz")
    assert response.status_code == 405 and response.json()["error"]["type"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/openai/../organization/users", "/openai/%2e%2e/admin", "/anthropic/v1/%2E%2E/x", "/openai/a%2f..%2fb"])
def test_dot_segments_cannot_escape_the_provider_path(gateway, upstream, path):
    _server, state = upstream
    before = len(state.requests)
    token = gateway.token()
    # A raw request: HTTP clients normalise dot segments away before sending.
    import socket

    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 404 Not Found")
    assert len(state.requests) == before
