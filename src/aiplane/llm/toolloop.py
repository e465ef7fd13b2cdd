"""A small tool-calling agent loop over `aiplane.llm.chat`: the model calls tools until it answers
through the output tool, whose arguments are validated with pydantic.

What the loop guarantees (the reviewer relies on each):
- Tools are plain synchronous functions `fn(deps, **arguments) -> str`, run in worker threads so
  several agents share one event loop; their arguments are validated against the signature.
- A tool that raises `ToolRetry`, is called with invalid arguments, or is not offered this turn
  gets its message back as the tool result; past `tool_retries` failures of one tool the run is
  unusable.
- Which tools are offered is decided before every request (`offer`): withdrawing them leaves only
  the output tool, so the next answer must be the result.
- An output that fails validation gets one message with the errors (`output_retries`); an answer
  cut off at the token limit does not (re-asking with the same limit would be cut off again): the
  run is unusable and the caller decides (the reviewer retries with twice the budget).
- At most `request_limit` requests.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError, create_model

from aiplane.llm.chat import (
    AssistantTurn,
    ChatClient,
    ChatRequest,
    Text,
    ToolCall,
    ToolResult,
    ToolSpec,
    ToolTurn,
    Turn,
    Usage,
    UserTurn,
)

OutputT = TypeVar("OutputT", bound=BaseModel)
OUTPUT_TOOL = "final_result"
OUTPUT_DESCRIPTION = "The final response which ends this conversation"
FIX = "\n\nFix the errors and try again."
USE_THE_OUTPUT_TOOL = "Please include your response in a tool call."


class ToolRetry(Exception):
    """Raised by a tool: its message goes back to the model, which may try again."""


class Unusable(Exception):
    """The model's answers cannot be used (invalid, cut off, or a tool failing past its retries)."""


class RequestLimitReached(Unusable):
    pass


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema as tools take it: no titles, no extra properties."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: clean(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
            if out.get("type") == "object" and "properties" in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return clean(model.model_json_schema())


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    function: Callable[..., str]
    arguments: type[BaseModel]

    @classmethod
    def from_function(cls, function: Callable[..., str]) -> Tool:
        """A tool from `fn(deps, name: type = default, ...)`: its docstring is the description."""
        parameters = list(inspect.signature(function).parameters.values())[1:]
        hints = inspect.get_annotations(function, eval_str=True)
        fields = {p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default) for p in parameters}
        arguments = create_model(f"{function.__name__}_arguments", **fields)  # type: ignore[call-overload]
        spec = ToolSpec(function.__name__, inspect.cleandoc(function.__doc__ or ""), _schema(arguments))
        return cls(spec, function, arguments)


@functools.cache
def output_tool(model: type[BaseModel]) -> ToolSpec:
    return ToolSpec(OUTPUT_TOOL, OUTPUT_DESCRIPTION, _schema(model))


def _errors(exc: ValidationError) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors(include_url=False)[:10]]
    return f"{exc.error_count()} validation error{'s' if exc.error_count() != 1 else ''}:\n" + "\n".join(problems)


@dataclass
class LoopResult(Generic[OutputT]):
    output: OutputT
    usage: Usage


async def run_loop(
    client: ChatClient,
    *,
    system: str,
    prompt: list[Text],
    tools: list[Tool],
    output: type[OutputT],
    deps: Any,
    usage: Usage,
    max_tokens: int,
    temperature: float | None = 0,
    cache_key: str | None = None,
    offer: Callable[[int], bool] | None = None,
    on_response: Callable[[], None] | None = None,
    request_limit: int = 25,
    tool_retries: int = 2,
    output_retries: int = 1,
    tool_seconds: float = 120.0,
    calls_per_turn: int = 16,
) -> OutputT:
    """Runs until the output tool's answer validates. `usage` is filled in as requests return, so
    the caller keeps what was spent even when the run fails. `offer(input_tokens_so_far)` says
    whether the tools are offered for the next request."""
    turns: list[Turn] = [UserTurn(prompt)]
    final = output_tool(output)
    failures: dict[str, int] = {}
    output_failures = 0
    # Wall time spent in tools, all turns together: a model that keeps calling slow tools (a
    # backtracking grep pattern, many calls a turn) loses its tools past `tool_seconds` and must answer.
    spent_in_tools = 0.0
    for _ in range(request_limit):
        within = spent_in_tools < tool_seconds and (offer is None or offer(usage.input_tokens))
        offered = {t.spec.name: t for t in tools} if tools and within else {}
        request = ChatRequest(system, turns, [t.spec for t in offered.values()] + [final], max_tokens, temperature,
                              tool_required=True, cache_key=cache_key)
        reply = await client.complete(request)
        usage.add(reply.usage)
        if on_response is not None:
            on_response()
        answer = next((c for c in reply.tool_calls if c.name == OUTPUT_TOOL), None)
        if answer is not None:
            try:
                return output.model_validate_json(answer.arguments or "{}")
            except ValidationError as exc:
                if reply.finish == "length":
                    raise Unusable(f"the answer was cut off at the token limit ({max_tokens})") from None
                output_failures += 1
                if output_failures > output_retries:
                    raise Unusable(f"the answer failed validation: {_errors(exc).splitlines()[-1][:120]}") from None
                turns.append(AssistantTurn(reply.text, reply.tool_calls))
                turns.append(ToolTurn([ToolResult(c.id, c.name, _errors(exc) + FIX if c is answer else "Not executed: the answer above was invalid.",
                                                  is_error=True) for c in reply.tool_calls]))
                continue
        if not reply.tool_calls:
            if reply.finish == "length":
                raise Unusable(f"the answer was cut off at the token limit ({max_tokens})")
            output_failures += 1
            if output_failures > output_retries:
                raise Unusable("the model answered in text instead of calling final_result")
            if reply.text:  # an empty turn is not a turn (Anthropic refuses empty content)
                turns.append(AssistantTurn(reply.text, []))
            turns.append(UserTurn([Text(USE_THE_OUTPUT_TOOL)]))
            continue
        if reply.finish == "length" and not _parses(reply.tool_calls[-1]):
            raise Unusable(f"a tool call was cut off at the token limit ({max_tokens})")
        started = _clock()
        calls = reply.tool_calls
        results = list(await asyncio.gather(*(_call(c, offered, failures, tool_retries, deps) for c in calls[:calls_per_turn])))
        results += [ToolResult(c.id, c.name, f"Not executed: at most {calls_per_turn} tool calls a turn.", is_error=True)
                    for c in calls[calls_per_turn:]]
        spent_in_tools += _clock() - started
        turns.append(AssistantTurn(reply.text, reply.tool_calls))
        turns.append(ToolTurn(list(results)))
    raise RequestLimitReached(f"no answer within {request_limit} requests")


_clock = time.monotonic  # tool time is wall time; a seam for tests


def _parses(call: ToolCall) -> bool:
    try:
        return isinstance(json.loads(call.arguments or "{}"), dict)
    except ValueError:
        return False


async def _call(call: ToolCall, offered: dict[str, Tool], failures: dict[str, int], limit: int, deps: Any) -> ToolResult:
    def retry(message: str) -> ToolResult:
        if failures.get(call.name, 0) >= limit:
            raise Unusable(f"tool {call.name[:40]!r} failed {limit + 1} times")
        failures[call.name] = failures.get(call.name, 0) + 1
        return ToolResult(call.id, call.name, message + FIX, is_error=True)

    tool = offered.get(call.name)
    if tool is None:
        available = ", ".join(repr(n) for n in [*offered, OUTPUT_TOOL])
        return retry(f"Unknown tool name: {call.name[:40]!r}. Available tools: {available}")
    try:
        arguments = tool.arguments.model_validate_json(call.arguments or "{}")
    except ValidationError as exc:
        return retry(_errors(exc))
    try:
        content = await asyncio.to_thread(tool.function, deps, **dict(arguments))
    except ToolRetry as exc:
        return retry(str(exc))
    except Exception as exc:  # noqa: BLE001 - a tool failing on the model's arguments is the model's to fix
        # The class only: the message of an OS or git error may name host paths.
        return retry(f"the tool failed ({exc.__class__.__name__}); try other arguments")
    return ToolResult(call.id, call.name, content)
