"""A small native chat client: the OpenAI chat-completions wire format and Anthropic's Messages API
over httpx, with tools, prompt caching and usage, for the code reviewer's agent loop.

Why not pydantic-ai and the official SDKs here: importing `pydantic_ai.models.openai` costs about
2 s of wall time (pydantic-ai 1.0 s, the OpenAI SDK 0.9 s; httpx alone 0.2 s), and `aiplane
review` must reach its first model request within 1 s. Other features still use pydantic-ai
through `aiplane.llm.client`.

Everything a provider sends is untrusted: answers are read up to a byte cap, a request has a
deadline however slowly the bytes trickle, usage counts are sanitised, and no error message ever
carries the API key (an error names the status and at most the provider's error code, never its text).
Retried: 408, 409, 429 and 5xx answers and failed connections, at most twice, honouring
Retry-After. Not retried: a request that ran into its deadline (a hanging provider is a case for
the next model in the chain, not for waiting three times as long).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
import weakref
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from aiplane.inflate import CorruptBody, Inflater
from aiplane.keyspellings import key_spellings

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_RETRIES = 2
MAX_RETRY_AFTER_SECONDS = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})
# A token count past this is not a count (providers have sent 2**63 and strings).
MAX_TOKENS_REPORTED = 10**9
ANTHROPIC_VERSION = "2023-06-01"

Finish = Literal["stop", "length", "tool_calls", "content_filter", "other"]


# -- the conversation, independent of the wire format -----------------------------------------

@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Text:
    """A text part of a user turn. `cache_breakpoint`: Anthropic caches everything up to and
    including it (OpenAI caches prefixes by itself, routed by `prompt_cache_key`)."""

    text: str
    cache_breakpoint: bool = False


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text as the model sent it


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass
class UserTurn:
    parts: list[Text]


@dataclass
class AssistantTurn:
    text: str
    tool_calls: list[ToolCall]


@dataclass
class ToolTurn:
    """The answers to an assistant turn's tool calls, and optionally a note after them."""

    results: list[ToolResult]
    note: str | None = None


Turn = UserTurn | AssistantTurn | ToolTurn


@dataclass
class ChatRequest:
    system: str
    turns: list[Turn]
    tools: list[ToolSpec] = field(default_factory=list)
    max_tokens: int = 4096
    temperature: float | None = 0
    tool_required: bool = False
    cache_key: str | None = None  # OpenAI `prompt_cache_key`
    # Anthropic: also mark the last block, so a run's later turns read its earlier ones from cache.
    cache_last_block: bool = True


@dataclass
class Usage:
    """`input_tokens` counts every input token, cached or not, as both providers' bills do."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.requests += other.requests


@dataclass
class Reply:
    text: str
    tool_calls: list[ToolCall]
    finish: Finish
    usage: Usage


# -- errors -----------------------------------------------------------------------------------

class ModelError(Exception):
    """A model request that failed; the message is safe to log and show (never the key)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ModelTimeout(ModelError):
    pass


class ModelResponseTooLarge(ModelError):
    pass


class ModelProtocolError(ModelError):
    """An answer that is not the wire format it claims to be."""


_ERROR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _error_code(body: bytes, key: str | None) -> str:
    """The provider's error code or type (`context_length_exceeded`, `rate_limit_error`), or "".

    Never the provider's free text: it is hostile (it may spell the key back reversed, spaced or
    encoded, or name internal hosts), and these messages reach review comments. A code is one
    identifier, and is dropped when it shares six characters in a row with the key."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    for name in ("code", "type"):
        code = error.get(name)
        if isinstance(code, str) and _ERROR_CODE.match(code):
            lowered = code.lower()
            if key and any(key[i : i + 6].lower() in lowered for i in range(max(len(key) - 5, 0))):
                return ""
            return code
    return ""


def scrub_secret(text: str, key: str | None, base_url: str | None = None) -> str:
    """Model or provider text with the key (in every spelling the gateway knows) and the endpoint's
    host replaced: what a hostile provider echoes must not reach a review comment."""
    if key and len(key) >= 8:
        raw = text.encode("utf-8", "replace")
        for spelling in key_spellings(key):
            raw = raw.replace(spelling, b"[key]")
        text = raw.decode("utf-8", "replace")
    host = httpx.URL(base_url).host if base_url else ""
    # A loopback name tells nobody anything, and findings about code name it legitimately.
    if host and len(host) >= 4 and host not in ("localhost", "::1") and not host.startswith("127."):
        text = re.sub(re.escape(host), "[provider]", text, flags=re.IGNORECASE)
    return text


def _retry_after(headers: httpx.Headers) -> float | None:
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                import time

                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, OverflowError):
                continue
        if 0 <= seconds <= MAX_RETRY_AFTER_SECONDS:
            return seconds
    return None


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, 8.0) * (0.75 + random.random() / 2)  # noqa: S311 - jitter, not crypto


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_TOKENS_REPORTED:
        return 0
    return value


# -- transport --------------------------------------------------------------------------------

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_ssl_context: ssl.SSLContext | None = None


def warm() -> None:
    """Do now what the first request would otherwise wait for: the TLS context (loading the CA
    bundle takes tens of milliseconds). A pre-started review worker calls this while it waits."""
    _tls()


def _tls() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def _client() -> httpx.AsyncClient:
    """One connection pool per event loop (reviewers of one review share connections)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Timeouts are set per request; redirects are not followed (a provider has no business
        # sending a request, with its key, somewhere else).
        client = httpx.AsyncClient(verify=_tls(), follow_redirects=False, trust_env=True,
                                   limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        _clients[loop] = client
    return client


async def close() -> None:
    """Closes this event loop's connection pool (the review worker does, before it exits)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


class ChatClient:
    """One model at one endpoint. Subclasses speak a wire format."""

    kind = ""

    def __init__(self, model: str, base_url: str, api_key: str | None, timeout: float = 120.0, *,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, max_retries: int = MAX_RETRIES) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_retries = max_retries

    async def complete(self, request: ChatRequest) -> Reply:
        data = await self._post(self._path(), self._headers(), self._payload(request))
        try:
            return self._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ModelProtocolError(f"{self.kind} answer from {self._where()} is not in the expected format") from None

    def _path(self) -> str:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, data: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def _where(self) -> str:
        # Not the host: these messages reach review comments, and an internal gateway's name has
        # no business there; the model's label travels beside them.
        return "the provider"

    async def _post(self, path: str, headers: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "accept": "application/json", "accept-encoding": "gzip", **headers}
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    status, response_headers, raw = await self._send(url, headers, body)
            except (TimeoutError, httpx.TimeoutException):
                raise ModelTimeout(f"{self._where()} did not answer within {self.timeout:g} s") from None
            except httpx.UnsupportedProtocol:
                raise ModelError(f"{self._where()}: the base URL must start with http:// or https://") from None
            except httpx.TransportError as exc:
                if attempt < self.max_retries:
                    await asyncio.sleep(_backoff(attempt))
                    attempt += 1
                    continue
                raise ModelError(f"cannot reach {self._where()} ({exc.__class__.__name__}) after {attempt + 1} attempts") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ModelError(f"request to {self._where()} failed ({exc.__class__.__name__})") from None
            if status == 200:
                try:
                    data = json.loads(raw)
                except (ValueError, RecursionError):
                    raise ModelProtocolError(f"{self._where()} answered with a body that is not JSON") from None
                if not isinstance(data, dict):
                    raise ModelProtocolError(f"{self._where()} answered with JSON that is not an object")
                return data
            if (status in RETRY_STATUSES or status >= 500) and attempt < self.max_retries:
                wait = _retry_after(response_headers)
                await asyncio.sleep(_backoff(attempt) if wait is None else wait)
                attempt += 1
                continue
            code = _error_code(raw, self.api_key)
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise ModelError(f"{self._where()} answered HTTP {status}{tries}" + (f" ({code})" if code else ""), status)

    async def _send(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, httpx.Headers, bytes]:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0))
        too_large = ModelResponseTooLarge(f"{self._where()} sent an answer over {self.max_response_bytes // 1024} KiB")
        async with _client().stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise too_large
            # Raw bytes, inflated here with a bound: httpx would inflate each chunk whole, and a
            # small gzip chunk can hold hundreds of megabytes.
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "gzip", "deflate", "x-gzip"):
                raise ModelProtocolError(f"{self._where()} answered in an encoding we did not ask for ({encoding[:20]})")
            inflater = Inflater(encoding)
            chunks, size = [], 0
            async for raw in response.aiter_raw():
                try:
                    for chunk in inflater.feed(raw):  # at most INFLATE_STEP bytes at a time
                        size += len(chunk)
                        if size > self.max_response_bytes:
                            raise too_large
                        chunks.append(chunk)
                except CorruptBody:
                    raise ModelProtocolError(f"{self._where()} sent a corrupt {encoding} body") from None
            return response.status_code, response.headers, b"".join(chunks)


# -- OpenAI chat completions (OpenAI, vLLM, Ollama, llama.cpp, the aiplane gateway) ------------

class OpenAIChat(ChatClient):
    kind = "openai"

    def _path(self) -> str:
        return "/chat/completions"

    def _headers(self) -> dict[str, str]:
        # Local servers take any key; some insist on the header all the same.
        return {"authorization": f"Bearer {self.api_key or 'unused'}"}

    @staticmethod
    def tool(spec: ToolSpec) -> dict[str, Any]:
        function: dict[str, Any] = {"name": spec.name, "description": spec.description, "parameters": spec.parameters}
        if _strict_compatible(spec.parameters):
            function["strict"] = True
        return {"type": "function", "function": function}

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}]
        for turn in request.turns:
            if isinstance(turn, UserTurn):
                messages.append({"role": "user", "content": [{"text": p.text, "type": "text"} for p in turn.parts]})
            elif isinstance(turn, AssistantTurn):
                message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
                if turn.tool_calls:
                    message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _compact(c.arguments)}}
                                             for c in turn.tool_calls]
                messages.append(message)
            else:
                messages.extend({"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in turn.results)
                if turn.note:
                    messages.append({"role": "user", "content": turn.note})
        payload: dict[str, Any] = {"model": self.model, "stream": False, "messages": messages,
                                   "max_completion_tokens": request.max_tokens}
        if request.cache_key:
            payload["prompt_cache_key"] = request.cache_key
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.tools:
            if request.tool_required:
                payload["tool_choice"] = "required"
            payload["tools"] = [self.tool(t) for t in request.tools]
        return payload

    def _parse(self, data: dict[str, Any]) -> Reply:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        calls = []
        for raw in message.get("tool_calls") or []:
            function = raw["function"]
            arguments = function.get("arguments")
            calls.append(ToolCall(str(raw.get("id") or f"call_{len(calls)}"), str(function["name"]),
                                  arguments if isinstance(arguments, str) else json.dumps(arguments)))
        text = message.get("content")
        finish = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
                  "content_filter": "content_filter"}.get(choice.get("finish_reason"), "other")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        prompt = _count(usage.get("prompt_tokens"))
        return Reply(text if isinstance(text, str) else "", calls, finish,  # type: ignore[arg-type]
                     Usage(prompt, _count(usage.get("completion_tokens")), min(_count(details.get("cached_tokens")), prompt), 0, 1))


def _compact(arguments: str) -> str:
    """Tool-call arguments as sent back: compact JSON (as pydantic-ai sent them), else as received."""
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return arguments


def _strict_compatible(schema: dict[str, Any]) -> bool:
    """OpenAI's strict mode needs every property required and no defaults; a tool whose schema
    already is that way is sent as strict (pydantic-ai did the same, so the prefix is unchanged)."""
    properties = schema.get("properties") or {}
    return (schema.get("additionalProperties") is False and "$defs" not in schema
            and set(schema.get("required") or ()) == set(properties)
            and all("default" not in p and p.get("type") in ("string", "integer", "number", "boolean") for p in properties.values()))


# -- Anthropic Messages API -------------------------------------------------------------------

class AnthropicChat(ChatClient):
    kind = "anthropic"

    def _path(self) -> str:
        return "/v1/messages"

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key or "unused", "anthropic-version": ANTHROPIC_VERSION}

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        breakpoint_ = {"type": "ephemeral", "ttl": "5m"}
        messages: list[dict[str, Any]] = []

        def add(role: str, blocks: list[dict[str, Any]]) -> None:
            # Consecutive turns of one role are one message (tool results, then a note).
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"].extend(blocks)
            else:
                messages.append({"role": role, "content": blocks})

        for turn in request.turns:
            if isinstance(turn, UserTurn):
                add("user", [{"text": p.text, "type": "text", **({"cache_control": breakpoint_} if p.cache_breakpoint else {})}
                             for p in turn.parts])
            elif isinstance(turn, AssistantTurn):
                blocks: list[dict[str, Any]] = [{"text": turn.text, "type": "text"}] if turn.text else []
                for call in turn.tool_calls:
                    try:
                        arguments = json.loads(call.arguments or "{}")
                    except ValueError:
                        arguments = {}
                    blocks.append({"id": call.id, "input": arguments if isinstance(arguments, dict) else {}, "name": call.name,
                                   "type": "tool_use"})
                add("assistant", blocks)
            else:
                results = [{"tool_use_id": r.call_id, "type": "tool_result", "content": r.content, **({"is_error": True} if r.is_error else {})}
                           for r in turn.results]
                add("user", results + ([{"text": turn.note, "type": "text"}] if turn.note else []))
        if request.cache_last_block and messages and messages[-1]["content"]:
            last = messages[-1]["content"][-1]
            messages[-1]["content"][-1] = {**last, "cache_control": breakpoint_}
        payload: dict[str, Any] = {"max_tokens": request.max_tokens, "messages": messages, "model": self.model, "stream": False,
                                   "system": [{"type": "text", "text": request.system}]}
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.tools:
            if request.tool_required:
                payload["tool_choice"] = {"type": "any"}
            payload["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
        return payload

    def _parse(self, data: dict[str, Any]) -> Reply:
        if data.get("type") == "error":
            raise ModelProtocolError(f"{self._where()} answered with an error object")
        texts, calls = [], []
        for block in data["content"]:
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(str(block["id"]), str(block["name"]), json.dumps(block.get("input", {}))))
        finish = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "other"}.get(data.get("stop_reason"), "other")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        read, write = _count(usage.get("cache_read_input_tokens")), _count(usage.get("cache_creation_input_tokens"))
        return Reply("".join(texts), calls, finish,  # type: ignore[arg-type]
                     Usage(_count(usage.get("input_tokens")) + read + write, _count(usage.get("output_tokens")), read, write, 1))


def chat_client(kind: str, model: str, base_url: str, api_key: str | None, timeout: float) -> ChatClient:
    return (AnthropicChat if kind == "anthropic" else OpenAIChat)(model, base_url, api_key, timeout)
