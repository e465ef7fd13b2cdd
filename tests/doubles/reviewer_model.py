"""A scripted OpenAI chat-completions double for reviewer tests.

It answers like a real model over the real wire format (tool calls, finish reasons, usage):
reviewers first read a patch with `read_patch`, then return findings through the structured
output tool. Markers in the patches switch behaviours:
``MODEL:READ:<path>`` makes each reviewer call its ``read_file`` tool on that path once (and
``MODEL:GREP:<pattern>`` its ``grep``, ``MODEL:LIST:<path>`` its ``list_dir``) before answering.
Every call keeps the raw request body (``raw``) and the system message (``system``).
``MODEL:FLAG`` makes reviewers report a shared finding (dedup across agents), ``MODEL:TRUNCATE``
cuts the first answer off at the token limit, ``MODEL:MALFORMED`` always answers with broken JSON, ``MODEL:PHANTOM`` reports a finding on a line that does not exist, ``MODEL:SLEEP`` makes the generalist and
docs reviewers wait 1.5 s before answering.
The eval judge answers "same issue" when the golden comment's ``MATCH:<word>`` appears in the
finding; the eval baseline reports one finding per ``MODEL:FLAG``.

Prompt caching is answered the way providers report it: a request's cached tokens are its longest
common prefix (tools, then messages, as sent) with an earlier request under the same
``prompt_cache_key``, counted at 4 characters a token, in 128-token steps from 1024 tokens
(OpenAI's rule), in ``usage.prompt_tokens_details.cached_tokens``. With ``state.diligent`` every
reviewer reads each of its files with ``read_file`` in one turn of parallel tool calls, then
answers; a file whose surrounding lines the prompt already shows counts as read, unless
``state.strict`` (then it reads every file all the same).
``/v1/messages`` answers in Anthropic's Messages format (``tool_use`` blocks, ``stop_reason``,
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` from the ``cache_control``
breakpoints): the ``MODEL:READ``/``GREP``/``LIST`` scripts, then ``MODEL:FLAG`` findings.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

AGENT = re.compile(r"<reviewer_role>\nYou are the ([a-z0-9-]+) reviewer|You are the ([a-z0-9-]+) reviewer")
FILE_LIST = re.compile(r"Your files \(review only these\):\n((?:- .+\n?)+)")
NOT_SHOWN = " (patch not shown above: read it with read_patch)"
MIN_CACHED = 1024


def _agent(text: str) -> str:
    found = list(AGENT.finditer(text))
    if not found:
        return "unknown"
    last = found[-1]  # our role part comes after the change's text
    return last.group(1) or last.group(2)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") if isinstance(part, dict) and part.get("type") == "text" else json.dumps(part)
                         for part in content)
    return json.dumps(content)


def _cached(state: "ModelState", key: str, prefix: str) -> int:
    seen = state.prefixes.setdefault(key, [])
    best = 0
    for earlier in seen:
        n = 0
        limit = min(len(earlier), len(prefix))
        while n < limit and earlier[n] == prefix[n]:
            n += 1
        best = max(best, n)
    seen.append(prefix)
    tokens = best // 4
    return (tokens // 128) * 128 if tokens >= MIN_CACHED else 0


def _anthropic_problem(body: dict[str, Any]) -> str | None:
    """The Messages API's own checks that a client most easily gets wrong."""
    messages = body.get("messages") or []
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    roles = [m.get("role") for m in messages]
    if not roles or roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        return "messages: roles must alternate between \"user\" and \"assistant\", starting with \"user\""
    breakpoints = sum(1 for m in messages if isinstance(m.get("content"), list) for b in m["content"] if b.get("cache_control"))
    if breakpoints > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
    for index, message in enumerate(messages):
        content = message.get("content")
        uses = [b["id"] for b in content if b.get("type") == "tool_use"] if isinstance(content, list) else []
        if not uses:
            continue
        following = messages[index + 1].get("content") if index + 1 < len(messages) else None
        answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"} if isinstance(following, list) else set()
        if set(uses) - answered:
            return f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks immediately after"
    return None


@dataclass
class ModelState:
    calls: list[dict[str, Any]] = field(default_factory=list)
    truncated: set[str] = field(default_factory=set)
    previous_reviews: int = 0
    audit_calls: dict[str, int] = field(default_factory=dict)
    prefixes: dict[str, list[str]] = field(default_factory=dict)
    diligent: bool = False
    strict: bool = False
    # When each request arrived (time.perf_counter()), for time-to-first-request measurements.
    arrivals: list[float] = field(default_factory=list)


def _answer(message: dict[str, Any], finish: str, prompt_tokens: int, cached: int = 0) -> JSONResponse:
    return JSONResponse(
        {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "review-double",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 50, "total_tokens": prompt_tokens + 50,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        }
    )


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    return _tool_calls([(name, arguments)])


def _tool_calls(calls: list[tuple[str, str]]) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{time.monotonic_ns()}_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                           for i, (name, arguments) in enumerate(calls)]}


def build_model_app(state: ModelState) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        started = time.perf_counter()
        response = await answer(request)
        call = state.calls[-1]
        message = json.loads(response.body)["choices"][0]["message"]
        call["answer"] = "".join(c["function"]["arguments"] for c in message["tool_calls"]) if message.get("tool_calls") else message.get("content") or ""
        call["handled_s"] = time.perf_counter() - started
        call["arrived"], call["answered"] = started, time.perf_counter()
        return response

    async def answer(request: Request) -> JSONResponse:
        state.arrivals.append(time.perf_counter())
        raw = (await request.body()).decode("utf-8", "replace")
        body = json.loads(raw)
        messages = body.get("messages", [])
        text = "\n".join(_content(m.get("content")) for m in messages)
        # Markers quoted from an earlier round (the previous review, its diff) do not script this one.
        state.previous_reviews += text.count("<previous_review>")
        text = re.sub(r"<previous_review>.*?</previous_review>", "", text, flags=re.DOTALL)
        agent = _agent(text)
        tools = {t["function"]["name"] for t in body.get("tools", [])}
        output_tool = next((t for t in tools if t.startswith("final_result")), "final_result")
        system = "\n".join(m["content"] for m in messages if m.get("role") == "system" and isinstance(m.get("content"), str))
        state.calls.append({"agent": agent, "model": body.get("model"), "tools": sorted(tools), "messages": len(messages), "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens"), "text": text,
                            "raw": raw, "system": system, "cache_key": body.get("prompt_cache_key")})
        prefix = json.dumps(body.get("tools", []), sort_keys=True) + json.dumps(messages, sort_keys=True)
        cached = _cached(state, str(body.get("prompt_cache_key")), prefix)
        prompt_tokens = max(len(prefix) // 4, cached)
        state.calls[-1]["cached"] = cached

        def _reply(message: dict[str, Any], finish: str, prompt_tokens: int) -> JSONResponse:
            return _answer(message, finish, prompt_tokens, cached)

        if "MODEL:SLEEP" in text and agent in ("generalist", "docs"):
            await asyncio.sleep(1.5)  # counted as model time, not orchestration
        if not tools and "Improve the wording of this AGENTS.md" in text:
            draft = text.split("Answer with the file only.", 1)[1].strip()
            rewritten = draft.replace("## Conventions", "## Conventions (house rules)")
            if "MODEL:INVENT" in draft or "svc-invent" in draft:
                rewritten += "\n- Deploy with `make deploy`.\n"
            message = {"role": "assistant", "content": rewritten}
            state.calls[-1]["answer"] = rewritten
            return JSONResponse({"id": "chatcmpl-phrase", "object": "chat.completion", "created": int(time.time()), "model": "review-double",
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 100, "total_tokens": prompt_tokens + 100}})
        if "You compare two code review comments" in text:
            # The eval judge: the same issue when the golden comment's MATCH:<word> is in the finding.
            golden = text.split("<golden_comment>", 1)[1].split("</golden_comment>", 1)[0] if "<golden_comment>" in text else ""
            finding = text.split("<review_finding>", 1)[1].split("</review_finding>", 1)[0] if "<review_finding>" in text else ""
            word = re.search(r"MATCH:(\w+)", golden)
            same = bool(word) and word.group(1).lower() in finding.lower()
            state.calls[-1]["judge"] = same
            return _reply(_tool_call(output_tool, json.dumps({"same_issue": same, "reason": "scripted"})), "tool_calls", prompt_tokens)
        if "You review a code change as one experienced engineer" in text:
            # The eval's single-prompt baseline: one finding per MODEL:FLAG, on app.py line 2.
            flagged = [{"file": "app.py", "start_line": 2, "end_line": 2, "severity": "warning", "title": "Input reaches eval",
                        "explanation": "User input flows into eval() unchecked."}] if "MODEL:FLAG" in text else []
            return _reply(_tool_call(output_tool, json.dumps({"findings": flagged})), "tool_calls", prompt_tokens)
        called = {c["function"]["name"] for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []}
        for marker, tool, argument in (("MODEL:READ:", "read_file", "path"), ("MODEL:GREP:", "grep", "pattern"), ("MODEL:LIST:", "list_dir", "path")):
            scripted = re.search(re.escape(marker) + r"(\S+)", text)
            if scripted and tool in tools and tool not in called:
                return _reply(_tool_call(tool, json.dumps({argument: scripted.group(1)})), "tool_calls", prompt_tokens)
        read_any = any(m.get("role") == "tool" for m in messages)
        listed = FILE_LIST.search(text)
        files = [line[2:] for line in listed.group(1).splitlines()] if listed else []
        if files and not read_any and "read_patch" in tools:
            unseen = [f.removesuffix(NOT_SHOWN).strip() for f in files if f.endswith(NOT_SHOWN)]
            shown = text.split("The changed files around their hunks", 1)[1] if "The changed files around their hunks" in text else ""
            wanted = [f.removesuffix(NOT_SHOWN).strip() for f in files]
            wanted = [f for f in wanted if state.strict or f"--- {f}\n" not in shown]
            reads = [("read_file", json.dumps({"path": f})) for f in wanted] if state.diligent else []
            reads += [("read_patch", json.dumps({"path": f})) for f in unseen[:1 if not state.diligent else None]]
            if reads:
                return _reply(_tool_calls(reads), "tool_calls", prompt_tokens)
        if "MODEL:MALFORMED" in text:
            return _reply(_tool_call(output_tool, '{"findings": [{"file": "app.py", "start_line": '), "tool_calls", prompt_tokens)
        if "MODEL:TRUNCATE" in text and agent not in state.truncated:
            state.truncated.add(agent)
            return _reply(_tool_call(output_tool, '{"findings": [{"file": "app.py", "sta'), "length", prompt_tokens)
        if "You audit code against one engineering rule" in text:
            rule = (re.search(r"Rule ([A-Z0-9-]+):", text) or [None, "?"])[1]
            state.audit_calls[rule] = state.audit_calls.get(rule, 0) + 1
            statuses = ["COMPLIANT", "NON-COMPLIANT", "PARTIAL"]
            status = "NON-COMPLIANT" if rule == "TEST-GEN-01" else statuses[(state.audit_calls[rule] - 1) % 3]
            verdict = {"status": status, "evidence": ["app.py:1"], "violation": "Behaviour changed without a test.", "remediation": "Add a test."}
            return _reply(_tool_call(output_tool, json.dumps(verdict)), "tool_calls", prompt_tokens)
        findings = []
        if agent == "codex-compliance" and "Codex rules to check" in text:
            rule = (re.search(r"Rule ([A-Z0-9-]+):", text) or [None, None])[1]
            findings.append({"file": "app.py", "start_line": 2, "severity": "warning", "title": "Rule not followed",
                             "explanation": "The change breaks the rule.", "confidence": 0.8, "rule_id": rule})
        if "MODEL:FLAG" in text and agent in ("code-quality", "security", "generalist", "performance"):
            title = {"security": "User input reaches eval unchecked", "code-quality": "Unchecked user input reaches eval"}.get(agent, "Input reaches eval")
            findings.append(
                {"file": "app.py", "start_line": 2, "end_line": 2,
                 "severity": "critical" if agent == "security" or "MODEL:CRITICAL" in text else "warning",
                 "title": title, "explanation": "The request parameter flows into eval() without validation.",
                 "suggestion": "Parse the value with ast.literal_eval or a schema.", "confidence": 0.9}
            )
        if "MODEL:PHANTOM" in text:
            findings.append({"file": "app.py", "start_line": 999, "severity": "warning", "title": "Imagined bug",
                             "explanation": "A line that does not exist.", "confidence": 0.95})
        return _reply(_tool_call(output_tool, json.dumps({"findings": findings})), "tool_calls", prompt_tokens)

    async def messages(request: Request) -> JSONResponse:
        state.arrivals.append(time.perf_counter())
        raw = (await request.body()).decode("utf-8", "replace")
        body = json.loads(raw)
        text = "\n".join(_content(m.get("content")) for m in body.get("messages", []))
        state.calls.append({"agent": _agent(text), "model": body.get("model"), "tools": sorted(t["name"] for t in body.get("tools", [])),
                            "messages": len(body.get("messages", [])), "text": text, "raw": raw, "answer": "", "handled_s": 0.0,
                            "system": _content(body.get("system", "")), "cache_key": None})
        # Anthropic caches what precedes a cache_control breakpoint: tools, system, then messages.
        blocks = json.dumps(body.get("tools", []), sort_keys=True) + json.dumps(body.get("system", ""), sort_keys=True)
        marked = ""
        for message in body.get("messages", []):
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                blocks += json.dumps(block, sort_keys=True)
                if isinstance(block, dict) and block.get("cache_control"):
                    marked = blocks
        cached = _cached(state, "anthropic", marked) if marked else 0
        problem = _anthropic_problem(body)
        if problem:
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error", "message": problem}}, status_code=400)
        tools = {t["name"] for t in body.get("tools", [])}
        output = next((t for t in tools if t.startswith("final_result")), "final_result")
        agent = state.calls[-1]["agent"]
        blocks_in = [b for m in body.get("messages", []) if isinstance(m.get("content"), list) for b in m["content"] if isinstance(b, dict)]
        called = {b.get("name") for b in blocks_in if b.get("type") == "tool_use"}
        uses: list[tuple[str, dict[str, Any]]] = []
        # The same scripts as the OpenAI route: MODEL:READ/GREP/LIST once, then findings for MODEL:FLAG.
        for marker, tool, argument in (("MODEL:READ:", "read_file", "path"), ("MODEL:GREP:", "grep", "pattern"), ("MODEL:LIST:", "list_dir", "path")):
            scripted = re.search(re.escape(marker) + r"(\S+)", text)
            if scripted and tool in tools and tool not in called:
                uses.append((tool, {argument: scripted.group(1)}))
        if not uses:
            findings = []
            if "MODEL:FLAG" in text and agent in ("code-quality", "security", "generalist", "performance"):
                findings.append({"file": "app.py", "start_line": 2, "end_line": 2, "severity": "warning", "title": "Input reaches eval",
                                 "explanation": "The request parameter flows into eval() without validation.", "confidence": 0.9})
            uses.append((output, {"findings": findings}))
        state.calls[-1]["answer"] = json.dumps(uses)
        return JSONResponse({
            "id": f"msg_{time.monotonic_ns()}", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "tool_use", "id": f"toolu_{time.monotonic_ns()}_{i}", "name": name, "input": arguments}
                        for i, (name, arguments) in enumerate(uses)],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": max(len(blocks) // 4 - cached, 1), "output_tokens": 20, "cache_read_input_tokens": cached,
                      "cache_creation_input_tokens": 0 if cached else len(marked) // 4},
        })

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/messages", messages, methods=["POST"])])


def reviewer_model():
    """A running double and its state, for pytest fixtures: ``yield from reviewer_model()``."""
    from tests.doubles.server import ServerThread

    state = ModelState()
    with ServerThread(build_model_app(state)) as server:
        yield server, state
