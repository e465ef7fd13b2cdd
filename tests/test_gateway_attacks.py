"""What an independent attacker found against the gateway, each kept as a regression test: a real
gateway process, the wire-format provider double, and a raw-bytes provider for answers no server
library would send (tests/doubles/raw_upstream.py)."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayProcess, gateway_env
from tests.doubles.providers import OPENAI_KEY
from tests.doubles.raw_upstream import RawUpstream


@pytest.fixture(scope="module")
def raw():
    upstream = RawUpstream(OPENAI_KEY)
    yield upstream
    upstream.close()


@pytest.fixture()
def gw(tmp_path, raw):
    started: list[GatewayProcess] = []

    def make(upstream_url: str | None = None, **extra: str) -> GatewayProcess:
        data = tmp_path / f"gw{len(started)}"
        started.append(GatewayProcess(data, gateway_env(data, upstream_url or raw.url, **extra)).start())
        return started[-1]

    yield make
    for process in started:
        process.stop()


def _auth(gateway: GatewayProcess) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.token()}"}


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- before any token ---------------------------------------------------------------------------------


def test_an_endless_request_head_is_cut_off(gw):
    gateway = gw(AIPLANE_GATEWAY__HEAD_TIMEOUT_SECONDS="2")
    assert gateway.proc is not None
    before = _rss_kb(gateway.proc.pid)
    flood = socket.create_connection(("127.0.0.1", gateway.port))
    flood.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    answer = b""
    try:
        for _ in range(2000):
            flood.sendall(b"X-A: " + b"a" * 65536 + b"\r\n")
    except OSError:
        pass  # the gateway hung up
    flood.settimeout(5)
    try:
        answer = flood.recv(200)
    except OSError:
        pass
    flood.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert _rss_kb(gateway.proc.pid) - before < 20 * 1024
    # A connection that trickles its head is closed once the head deadline passes.
    slow = socket.create_connection(("127.0.0.1", gateway.port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    slow.settimeout(6)
    started = time.monotonic()
    answer = b""
    try:
        while True:
            slow.sendall(b"X-B: 1\r\n")
            time.sleep(0.5)
    except OSError:
        pass
    try:
        answer = slow.recv(200)
    except OSError:
        pass
    slow.close()
    assert time.monotonic() - started < 6 and (answer == b"" or answer.startswith(b"HTTP/1.1 408"))
    assert httpx.get(gateway.url + "/healthz").status_code == 200


# -- bodies -------------------------------------------------------------------------------------------


def test_a_body_of_a_million_tiny_values_is_refused_before_parsing(gw, upstream):
    server, _state = upstream
    gateway = gw(server.url)
    body = b'{"model":"gpt-4o","x":[' + b"{}," * 2_000_000 + b'{}]}'
    started = time.monotonic()
    refused = httpx.post(gateway.url + "/openai/chat/completions", headers=_auth(gateway), content=body, timeout=60)
    assert refused.status_code == 400 and "JSON values" in refused.json()["error"]["message"]
    assert time.monotonic() - started < 5
    for bad in (b'{"model":"m","temperature":NaN}', b'{"model":"m","t":Infinity}', '{"model":"m"}'.encode("utf-16"),
                b'{"model":"m","stream":1}', b'{"model":"m","stream":"true"}', b'{"model":"m","stream_options":{"include_usage":"no"}}'):
        answer = httpx.post(gateway.url + "/openai/chat/completions", headers=_auth(gateway), content=bad)
        assert answer.status_code == 400, bad
    compat = httpx.post(gateway.url + "/compat/chat/completions", headers=_auth(gateway), json={"model": "openai/m", "stream": 1})
    assert compat.status_code == 400


def test_a_prompt_full_of_commas_is_not_mistaken_for_many_values(gw, upstream):
    server, state = upstream
    gateway = gw(server.url)
    table = 'id,name,"quoted \\" cell",1,2,3\n' * 150_000  # a CSV pasted into a prompt: 750,000 commas in one string
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": table}]}).encode()
    answer = httpx.post(gateway.url + "/openai/chat/completions", headers=_auth(gateway), content=body, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    assert json.loads(state.requests[-1].body)["messages"][0]["content"].count(",") == 750_000


# -- metering -----------------------------------------------------------------------------------------


def test_gemini_query_cannot_make_a_call_free_or_carry_credentials(gw, upstream):
    server, state = upstream
    gateway = gw(server.url)
    token = gateway.token()
    for query in ("?fields=candidates", "?%24fields=candidates", "?alt=proto", "?alt=sse&fields=candidates",
                  "?$key=" + token, "?access_token=" + token, "?key=" + token):
        answer = httpx.post(f"{gateway.url}/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent{query}",
                            headers={"x-goog-api-key": token}, json={"contents": []})
        assert answer.status_code == 200, (query, answer.text)
        sent = state.requests[-1]
        assert token not in json.dumps(sent.query) and "fields" not in sent.query and sent.query.get("alt") in (None, "sse")
    rows = gateway.wait_for_rows(7)
    assert all(row["input_tokens"] > 0 and row["cost_usd"] for row in rows)


def test_usage_is_found_however_the_answer_is_shaped(gw, raw):
    gateway = gw()
    auth = _auth(gateway)
    # Gemini streamGenerateContent without alt=sse answers a JSON array.
    array = httpx.post(f"{gateway.url}/google-ai-studio/v1beta/models/gemini-array:streamGenerateContent",
                       headers={"x-goog-api-key": gateway.token()}, json={"contents": []})
    assert array.status_code == 200
    # A Responses API stream whose response.completed event repeats 2 MB of instructions, with the
    # client's metadata after usage.
    with httpx.stream("POST", gateway.url + "/openai/responses", headers=auth,
                      json={"model": "responses-big", "input": "hi", "stream": True}) as stream:
        for _ in stream.iter_bytes():
            pass
    rows = gateway.wait_for_rows(2)
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (120000, 8000)
    assert (rows[1]["input_tokens"], rows[1]["output_tokens"], rows[1]["status"]) == (300000, 1000, 200)


def test_text_that_looks_like_the_end_of_a_stream_is_not_the_end(gw, raw):
    gateway = gw()
    with httpx.stream("POST", gateway.url + "/openai/chat/completions", headers=_auth(gateway),
                      json={"model": "fake-done", "messages": [], "stream": True}, timeout=10) as stream:
        for chunk in stream.iter_bytes():
            if b"[DONE]" in chunk:
                break  # leave after the content that mimics the terminal event
    (row,) = gateway.wait_for_rows(1, timeout=10)
    assert (row["status"], row["error"]) == (499, "client_disconnected")


def test_a_huge_model_name_is_recorded_and_logged_short(gw, upstream):
    server, _state = upstream
    gateway = gw(server.url)
    name = "gpt-4o-" + "x" * (2 * 1024 * 1024)
    httpx.post(gateway.url + "/openai/chat/completions", headers=_auth(gateway), json={"model": name, "messages": []}, timeout=60)
    (row,) = gateway.wait_for_rows(1)
    assert len(row["model"]) <= 200
    assert len(gateway.logs()) < 200_000


# -- what reaches the client --------------------------------------------------------------------------


def test_the_key_never_comes_back_in_any_spelling(gw, raw):
    gateway = gw()
    auth = _auth(gateway)
    echo = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, json={"model": "echo-variants", "messages": []})
    text = echo.text
    decoded = json.dumps(echo.json())
    for spelled in (OPENAI_KEY, OPENAI_KEY[1:], OPENAI_KEY.upper(), OPENAI_KEY.encode().hex()):
        assert spelled not in text and spelled not in decoded
    assert OPENAI_KEY.encode() not in base64.b64decode(echo.json()["base64"] + "==", validate=False)
    named = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, json={"model": "key-in-header-name", "messages": []})
    assert named.status_code == 200 and not any(OPENAI_KEY in name for name in named.headers)
    for model in ("dup-encoding", "list-encoding", "switching"):
        refused = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, json={"model": model, "messages": []})
        assert refused.status_code == 502 and OPENAI_KEY not in refused.text
    odd = httpx.post(gateway.url + "/openai/chat/completions", headers=auth, json={"model": "euro-header", "messages": []})
    assert odd.status_code == 200 and "x-ratelimit-note" not in odd.headers and "content-disposition" not in odd.headers
    rows = gateway.wait_for_rows(6)
    # Refused answers keep the provider's status in the row (as every refusal does) and say why in `error`.
    assert [r["error"] for r in rows].count(None) == 3 and rows[-1]["input_tokens"] == 11
    assert {r["status"] for r in rows if r["error"]} == {200, 101}


# -- what reaches the provider ------------------------------------------------------------------------


def test_identity_fields_in_uploads_are_anonymised(gw, upstream):
    server, state = upstream
    gateway = gw(server.url)
    files = {"file": ("a.wav", b"RIFF....", "audio/wav")}
    data = {"model": "whisper-1", "user": "alice@example.com", "safety_identifier": "alice@example.com"}
    answer = httpx.post(gateway.url + "/openai/audio/transcriptions", headers=_auth(gateway), files=files, data=data)
    assert answer.status_code == 200, answer.text
    sent = state.requests[-1]
    assert sent.path == "/v1/audio/transcriptions"
    assert b"alice" not in sent.body and b"whisper-1" in sent.body and b"RIFF" in sent.body
    answer = httpx.post(gateway.url + "/openai/images/generations", headers=_auth(gateway),
                        json={"model": "m", "prompt": "p", "user": "alice@example.com"})
    assert answer.status_code == 200, answer.text
    assert state.requests[-1].path == "/v1/images/generations" and b"alice" not in state.requests[-1].body


@pytest.mark.parametrize(("prefix", "body"), [
    ("openai/responses", {"model": "m", "input": "x", "previous_response_id": "resp_1"}),
    ("openai/responses", {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}),
    ("openai/responses", {"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}),
    ("openai/chat/completions", {"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}),
    ("anthropic/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}]}),
    ("google-ai-studio/v1beta/models/g:generateContent", {"contents": [], "cachedContent": "cachedContents/abc"}),
    ("google-ai-studio/v1beta/models/g:generateContent", {"contents": [{"parts": [{"fileData": {
        "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]}),
])
def test_closed_state_cannot_be_reached_by_id(gw, upstream, prefix, body):
    server, state = upstream
    gateway = gw(server.url)
    before = len(state.requests)
    answer = httpx.post(f"{gateway.url}/{prefix}", headers=_auth(gateway) | {"x-goog-api-key": gateway.token()}, json=body)
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "endpoint_not_allowed"
    assert len(state.requests) == before


def test_a_public_file_uri_is_not_stored_state(gw, upstream):
    server, _state = upstream
    gateway = gw(server.url)
    body = {"contents": [{"parts": [{"fileData": {"fileUri": "https://www.youtube.com/watch?v=abc"}}]}]}
    answer = httpx.post(f"{gateway.url}/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent",
                        headers={"x-goog-api-key": gateway.token()}, json=body)
    assert answer.status_code == 200


# -- the catalog and the dashboard --------------------------------------------------------------------


def test_a_forged_catalog_cursor_is_a_clear_400(gw, upstream):
    server, _state = upstream
    gateway = gw(server.url)
    for state in ({"offset": 0}, {"offset": 0, "limit": "x", "filter": [], "fields": [], "order": [], "term": "", "term_fields": []},
                  {"offset": 0, "limit": 10**9, "filter": [], "fields": [], "order": [], "term": "", "term_fields": []}):
        cursor = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        answer = httpx.get(f"{gateway.url}/api/catalog/entities/by-query?cursor={cursor}", headers=_auth(gateway))
        assert answer.status_code == 400, state


def test_csv_cells_that_start_a_formula_after_blanks_are_neutralised():
    from aiplane.ui.app import csv_cell

    for cell in ("=1+1", " =1+1", "\u00a0=HYPERLINK()", "\n@SUM(A1)", "\uff1d1+1", "-2+3"):
        assert csv_cell(cell).startswith("'"), cell
    assert csv_cell("gpt-4o") == "gpt-4o" and csv_cell(12) == 12
