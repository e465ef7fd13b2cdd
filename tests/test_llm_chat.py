"""The reviewer's native chat client (aiplane.llm.chat) and agent loop, over real loopback sockets
against wire-format doubles: OpenAI chat completions and Anthropic Messages tool rounds, prompt
caching fields, usage, retries, timeouts, size caps, and errors that never carry the key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from aiplane.config import ModelEndpoint
from aiplane.llm.chat import (
    AnthropicChat,
    ChatRequest,
    ModelError,
    ModelResponseTooLarge,
    ModelTimeout,
    OpenAIChat,
    Text,
    UserTurn,
    scrub_secret,
)
from aiplane.llm.client import ModelHandle, native
from aiplane.review.agents import AgentSpec
from aiplane.review.specialists import ReviewBudget, ReviewerBudget, Workspace, run_specialist
from tests.doubles.hostile_upstream import HostileState, build_hostile_app
from tests.doubles.scripted_chat import Script, build_scripted_app, openai_reply
from tests.doubles.server import ServerThread

KEY = "sk-native-client-0123456789abcdef"
SPEC = AgentSpec.model_validate({"name": "security", "description": "finds holes", "prompt": "Look for holes.",
                                 "tools": ["read_patch", "read_file", "grep", "list_dir"]})


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def change(tmp_path):
    """A one-file change whose patch asks the scripted model to read the file, then flag it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "app.py").write_text("x = 1\n" * 30)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    (repo / "app.py").write_text("x = eval(input())  # MODEL:READ:app.py MODEL:FLAG\n" + "x = 1\n" * 29)
    _git(repo, "commit", "-qam", "change")
    patch = _git(repo, "diff", "HEAD~1", "HEAD")
    workspace = Workspace(repo, _git(repo, "rev-parse", "HEAD").strip(), {"app.py": patch})
    shared = "<changed_files>\n- app.py\n</changed_files>\n<mr_input>\n" + patch + "</mr_input>\n" + "context " * 1200
    return workspace, shared


def _handle(kind: str, url: str, model: str) -> ModelHandle:
    endpoint = ModelEndpoint(kind=kind, base_url=url, model=model, api_key=SecretStr(KEY))
    return ModelHandle("specialist", endpoint, native(endpoint))


def _run(handle, workspace, shared, **kwargs):
    return asyncio.run(run_specialist(SPEC, handle, shared, workspace, inlined={"app.py"}, **kwargs))


def test_openai_tool_round_cache_key_and_cached_usage(model, change):
    server, state = model
    workspace, shared = change
    before = len(state.calls)
    first = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared, cache_key="aiplane-review-t1")
    again = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared, cache_key="aiplane-review-t1")
    calls = state.calls[before:]
    bodies = [json.loads(c["raw"]) for c in calls]
    assert len(calls) == 4 and all(b["prompt_cache_key"] == "aiplane-review-t1" for b in bodies)
    assert all(b["tool_choice"] == "required" and b["stream"] is False for b in bodies)
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["read_patch", "read_file", "grep", "list_dir", "final_result"]
    # The round: the model's call, then our result under its id.
    call, result = bodies[1]["messages"][2], bodies[1]["messages"][3]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"] == {"name": "read_file", "arguments": '{"path":"app.py"}'}
    assert result == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": result["content"]}
    assert "1: x = eval(input())" in result["content"]
    (finding,) = first.findings
    assert finding.file == "app.py" and finding.start_line == 2 and first.requests == 2 and first.error is None
    # Usage: prompt_tokens summed, cached tokens from prompt_tokens_details (the second run reads the first's prefix).
    assert first.input_tokens == sum(max(len(json.dumps(b["tools"], sort_keys=True) + json.dumps(b["messages"], sort_keys=True)) // 4, c["cached"])
                                     for b, c in zip(bodies[:2], calls[:2], strict=True))
    assert again.cached_tokens == sum(c["cached"] for c in calls[2:]) > 0


def test_anthropic_tool_round_cache_control_and_cached_usage(model, change):
    server, state = model
    workspace, shared = change
    before = len(state.calls)
    first = _run(_handle("anthropic", server.url, "claude-sonnet-4-5"), workspace, shared)
    again = _run(_handle("anthropic", server.url, "claude-sonnet-4-5"), workspace, shared)
    calls = state.calls[before:]
    bodies = [json.loads(c["raw"]) for c in calls]
    assert len(calls) == 4 and first.error is None and len(first.findings) == 1
    assert all(b["tool_choice"] == {"type": "any"} and "prompt_cache_key" not in b for b in bodies)
    assert bodies[0]["system"][0]["type"] == "text" and "You are the security reviewer" not in bodies[0]["system"][0]["text"]
    # Breakpoints: after the shared part, and on the request's last block; never more than that.
    opening = bodies[0]["messages"][0]["content"]
    assert opening[0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"} and opening[0]["text"] == shared
    assert opening[1]["text"].startswith("<reviewer_role>") and "cache_control" in opening[1]
    roles = [m["role"] for m in bodies[1]["messages"]]
    assert roles == ["user", "assistant", "user"]
    (use,) = bodies[1]["messages"][1]["content"]
    assert use["type"] == "tool_use" and use["name"] == "read_file" and use["input"] == {"path": "app.py"}
    (answer,) = bodies[1]["messages"][2]["content"]
    assert answer["type"] == "tool_result" and answer["tool_use_id"] == use["id"] and "1: x = eval(input())" in answer["content"]
    assert answer["cache_control"]["type"] == "ephemeral"
    assert "cache_control" not in bodies[1]["messages"][0]["content"][1]  # the last block of this request only
    # Usage: input counts cache reads and writes as well; cached = cache_read_input_tokens.
    assert again.cached_tokens > 0 and again.input_tokens > again.cached_tokens
    assert first.requests == 2 and first.output_tokens == 40


def test_budget_withdraws_tools_then_the_answer_comes(model, change):
    server, state = model
    workspace, shared = change
    before = len(state.calls)
    budget = ReviewerBudget("security", 50, ReviewBudget())
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared, budget=budget)
    tools = [[t["function"]["name"] for t in json.loads(c["raw"])["tools"]] for c in state.calls[before:]]
    assert tools == [["read_patch", "read_file", "grep", "list_dir", "final_result"], ["final_result"]]
    assert run.budget_cut == "reviewer" and run.error is None


@pytest.fixture()
def scripted():
    script = Script()
    with ServerThread(build_scripted_app(script)) as server:
        yield server, script


def _ask(client) -> ChatRequest:
    return ChatRequest("system", [UserTurn([Text("hello")])], max_tokens=64)


def test_429_is_retried_after_the_time_the_provider_asks(scripted):
    server, script = scripted
    script.answers += [(429, {"retry-after": "0.4"}, {"error": {"message": "slow down"}}),
                       (200, {}, openai_reply({"content": "hi"}, {"prompt_tokens": 7, "completion_tokens": 2,
                                                                 "prompt_tokens_details": {"cached_tokens": 5}}))]
    client = OpenAIChat("gpt-4o", server.url + "/v1", KEY, timeout=10)
    started = time.monotonic()
    reply = asyncio.run(client.complete(_ask(client)))
    assert time.monotonic() - started >= 0.4 and len(script.requests) == 2
    assert reply.text == "hi" and (reply.usage.input_tokens, reply.usage.cache_read_tokens) == (7, 5)
    assert script.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_errors_never_carry_the_key_in_any_spelling(scripted):
    server, script = scripted
    import base64

    echoes = (f"bad key {KEY} / {KEY.upper()} / {KEY[:20]}... / {base64.b64encode(KEY.encode()).decode()} / {KEY.encode().hex()}"
              f" / {' '.join(KEY)} / {KEY[::-1]} / {KEY[2:-2]} host=gateway.internal.example:8443")
    script.answers += [(503, {"retry-after": "0"}, {"error": {"message": echoes, "type": "overloaded_error"}})] * 3
    client = AnthropicChat("claude-sonnet-4-5", server.url, KEY, timeout=10)
    with pytest.raises(ModelError) as caught:
        asyncio.run(client.complete(_ask(client)))
    message = str(caught.value)
    # Only the status and the provider's error type: its free text is never repeated.
    assert message == "the provider answered HTTP 503 after 3 attempts (overloaded_error)"
    for spelling in (KEY, KEY.upper(), KEY[:20], KEY[-16:], KEY.encode().hex(), base64.b64encode(KEY.encode()).decode()[:20],
                     KEY[::-1], KEY[2:-2], "gateway.internal"):
        assert spelling not in message
    assert len(script.requests) == 3 and script.requests[0]["headers"]["x-api-key"] == KEY
    assert script.requests[0]["headers"]["anthropic-version"] == "2023-06-01"


def test_a_400_is_not_retried_and_junk_usage_counts_as_zero(scripted):
    server, script = scripted
    script.answers += [(400, {}, {"error": {"message": "no such model", "code": "model_not_found"}}),
                       (200, {}, openai_reply({"content": "ok"}, {"prompt_tokens": 2**63, "completion_tokens": "9",
                                                                 "prompt_tokens_details": {"cached_tokens": True}}))]
    client = OpenAIChat("gpt-4o", server.url + "/v1", KEY, timeout=10)
    with pytest.raises(ModelError, match=r"HTTP 400 \(model_not_found\)$"):
        asyncio.run(client.complete(_ask(client)))
    usage = asyncio.run(client.complete(_ask(client))).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (0, 0, 0)


@pytest.fixture()
def hostile():
    state = HostileState()
    with ServerThread(build_hostile_app(state)) as server:
        yield server, state


def test_a_hanging_provider_times_out_once_without_retries(hostile):
    server, state = hostile
    client = OpenAIChat("slow", server.url + "/v1", KEY, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ModelTimeout, match="did not answer within 1 s"):
        asyncio.run(client.complete(_ask(client)))
    assert time.monotonic() - started < 5 and len(state.requests) == 1


def test_an_oversized_answer_is_cut_off_at_the_cap(hostile):
    server, _state = hostile
    client = OpenAIChat("huge", server.url + "/v1", KEY, timeout=30, max_response_bytes=1024 * 1024)
    with pytest.raises(ModelResponseTooLarge, match="over 1024 KiB"):
        asyncio.run(client.complete(_ask(client)))


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(hostile):
    server, _state = hostile
    client = OpenAIChat("gzip-bomb", server.url + "/v1", KEY, timeout=60, max_response_bytes=1024 * 1024)
    with pytest.raises(ModelResponseTooLarge):
        asyncio.run(client.complete(_ask(client)))


def test_a_gzip_answer_is_read(scripted):
    server, script = scripted
    import gzip

    body = gzip.compress(json.dumps(openai_reply({"content": "packed"})).encode())
    script.answers.append((200, {"content-encoding": "gzip"}, body))
    client = OpenAIChat("gpt-4o", server.url + "/v1", KEY, timeout=10)
    assert asyncio.run(client.complete(_ask(client))).text == "packed"
    assert script.requests[0]["headers"]["accept-encoding"] == "gzip"


def test_a_redirect_is_not_followed_and_its_key_not_repeated(hostile):
    server, state = hostile
    client = OpenAIChat("redirect", server.url + "/v1", KEY, timeout=10)
    with pytest.raises(ModelError) as caught:
        asyncio.run(client.complete(_ask(client)))
    assert "HTTP 302" in str(caught.value) and KEY not in str(caught.value) and len(state.requests) == 1


def test_an_answer_in_the_wrong_shape_is_a_protocol_error_without_the_key(hostile):
    server, _state = hostile
    client = OpenAIChat("echo", server.url + "/v1", KEY, timeout=10)
    with pytest.raises(ModelError) as caught:
        asyncio.run(client.complete(_ask(client)))
    assert "not in the expected format" in str(caught.value) and KEY not in str(caught.value)


def test_an_unreachable_provider_is_retried_then_reported():
    from tests.doubles.server import free_port

    client = OpenAIChat("gpt-4o", f"http://127.0.0.1:{free_port()}/v1", KEY, timeout=5)
    with pytest.raises(ModelError, match="cannot reach the provider .*after 3 attempts"):
        asyncio.run(client.complete(_ask(client)))


def test_the_reviewer_path_never_imports_pydantic_ai_or_an_sdk(tmp_path):
    code = ("import sys, aiplane.review.worker, aiplane.llm.client as c; "
            "from aiplane.config import ModelEndpoint; c.native(ModelEndpoint(kind='anthropic', base_url='http://x', model='m')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_ai', 'openai', 'anthropic')))")
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _call(name: str, arguments: dict, call_id: str = "call_1") -> dict:
    return {"content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def test_an_invalid_answer_gets_one_message_with_the_errors(scripted, change):
    server, script = scripted
    workspace, shared = change
    bad = {"findings": [{"file": "app.py", "start_line": 1, "severity": "high", "title": "t", "explanation": "e", "confidence": 0.5}]}
    good = {"findings": [{**bad["findings"][0], "severity": "warning"}]}
    script.answers += [(200, {}, openai_reply(_call("final_result", bad), finish="tool_calls")),
                       (200, {}, openai_reply(_call("final_result", good, "call_2"), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None and [f.severity for f in run.findings] == ["warning"] and run.requests == 2
    retry = json.loads(script.requests[1]["body"])["messages"][-1]
    assert retry["role"] == "tool" and retry["tool_call_id"] == "call_1" and "findings.0.severity" in retry["content"]


def test_a_tool_failing_past_its_retries_makes_the_run_unusable_then_it_is_retried(scripted, change):
    server, script = scripted
    workspace, shared = change
    # Three calls to a path outside the repository: two retry messages, then the run is given up;
    # the second run (twice the token budget) answers.
    script.answers += [(200, {}, openai_reply(_call("read_file", {"path": "../etc/passwd"}, f"c{i}"), finish="tool_calls")) for i in range(3)]
    script.answers += [(200, {}, openai_reply(_call("final_result", {"findings": []}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None and run.requests == 4
    bodies = [json.loads(r["body"]) for r in script.requests]
    assert "is not a path inside the repository" in bodies[1]["messages"][-1]["content"]
    assert bodies[3]["max_completion_tokens"] == 2 * bodies[0]["max_completion_tokens"]


def test_a_text_answer_is_asked_once_for_the_output_tool(scripted, change):
    server, script = scripted
    workspace, shared = change
    script.answers += [(200, {}, openai_reply({"content": "Looks fine to me."})),
                       (200, {}, openai_reply(_call("final_result", {"findings": []}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None and run.requests == 2
    last = json.loads(script.requests[1]["body"])["messages"][-2:]
    assert last[0] == {"role": "assistant", "content": "Looks fine to me."}
    assert last[1] == {"role": "user", "content": [{"text": "Please include your response in a tool call.", "type": "text"}]}


def test_a_provider_failing_mid_run_keeps_what_was_spent(scripted, change):
    server, script = scripted
    workspace, shared = change
    script.answers += [(200, {}, openai_reply(_call("read_file", {"path": "app.py"}), finish="tool_calls")),
                       (400, {}, {"error": {"message": f"context too long for key {KEY}"}})]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.requests == 1 and run.input_tokens == 10 and run.findings == []
    assert run.error == "ModelError: the provider answered HTTP 400"


# -- regressions from the independent attack round on the native client ---------------------------------


def test_a_finding_never_publishes_the_key_or_the_providers_host(scripted, change):
    server, script = scripted
    workspace, shared = change
    finding = {"file": "app.py", "start_line": 1, "severity": "warning", "confidence": 0.9,
               "title": f"key {KEY} leaked", "explanation": f"seen {KEY.upper()} in the answer", "rule_id": "x" * 64}
    script.answers += [(200, {}, openai_reply(_call("final_result", {"findings": [finding]}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    (published,) = run.findings
    assert KEY not in published.title + published.explanation and KEY.upper() not in published.explanation
    assert "[key]" in published.title
    assert scrub_secret("POST to gateway.corp.example failed", KEY, "https://gateway.corp.example/compat") == \
        "POST to [provider] failed"
    assert scrub_secret("binds 127.0.0.1", KEY, "http://127.0.0.1:8787/compat") == "binds 127.0.0.1"


def test_an_overlong_rule_id_is_refused_and_asked_again(scripted, change):
    server, script = scripted
    workspace, shared = change
    bad = {"file": "app.py", "start_line": 1, "severity": "nit", "title": "t", "explanation": "e", "confidence": 0.5,
           "rule_id": "R" * 7_000_000}
    good = dict(bad, rule_id="PY-001")
    script.answers += [(200, {}, openai_reply(_call("final_result", {"findings": [bad]}), finish="tool_calls")),
                       (200, {}, openai_reply(_call("final_result", {"findings": [good]}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None and [f.rule_id for f in run.findings] == ["PY-001"]


def test_json_nested_too_deep_ends_the_reviewer_and_keeps_what_was_spent(scripted, change):
    server, script = scripted
    workspace, shared = change
    script.answers += [(200, {}, openai_reply(_call("read_file", {"path": "app.py"}), {"prompt_tokens": 500, "completion_tokens": 7},
                                              finish="tool_calls")),
                       (200, {"content-type": "application/json"}, b"[" * 200_000 + b"]" * 200_000)]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.input_tokens == 500 and run.output_tokens == 7 and run.findings == []
    assert run.error is not None and "not JSON" in run.error


def test_tools_failing_on_the_models_arguments_and_slow_patterns_are_the_models_to_fix(scripted, change):
    server, script = scripted
    workspace, shared = change
    def several(*calls: dict) -> dict:
        return {"content": None, "tool_calls": [c for call in calls for c in call["tool_calls"]]}

    calls = several(_call("grep", {"pattern": "x" * 200_000}, "c1"), _call("grep", {"pattern": r"(.*)(.*)\2\1z"}, "c2"))
    many = several(*(_call("list_dir", {"path": "."}, f"m{i}") for i in range(20)))
    script.answers += [(200, {}, openai_reply(calls, finish="tool_calls")),
                       (200, {}, openai_reply(many, finish="tool_calls")),
                       (200, {}, openai_reply(_call("final_result", {"findings": []}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None and run.requests == 3
    second = json.loads(script.requests[1]["body"])["messages"]
    results = [m["content"] for m in second if m["role"] == "tool"]
    assert "longer than 512" in results[0] and "back-references" in results[1]
    third = [m["content"] for m in json.loads(script.requests[2]["body"])["messages"] if m["role"] == "tool"][-20:]
    assert sum("at most 16 tool calls a turn" in r for r in third) == 4


def test_tools_are_withdrawn_past_the_reviewers_tool_time(scripted, change, monkeypatch):
    from aiplane.llm import toolloop

    server, script = scripted
    workspace, shared = change
    clock = iter(range(0, 10_000, 100))  # every tool turn "takes" 100 s
    monkeypatch.setattr(toolloop, "_clock", lambda: float(next(clock)))
    script.answers += [(200, {}, openai_reply(_call("list_dir", {"path": "."}), finish="tool_calls"))] * 2 + \
                      [(200, {}, openai_reply(_call("final_result", {"findings": []}), finish="tool_calls"))]
    run = _run(_handle("openai", server.url + "/v1", "gpt-4o"), workspace, shared)
    assert run.error is None
    offered = [[t["function"]["name"] for t in json.loads(r["body"]).get("tools", [])] for r in script.requests[-3:]]
    assert "list_dir" in offered[0] and "list_dir" in offered[1] and offered[2] == ["final_result"]
