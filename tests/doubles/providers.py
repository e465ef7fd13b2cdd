"""A test double for OpenAI, Anthropic and Gemini that speaks their wire formats.

It checks the provider key the way the real APIs do, answers with the real JSON and SSE
shapes (including usage fields), and records every request so tests can inspect what the
gateway sent upstream. Model names switch on failure modes:

- ``fail-500`` / ``fail-503``: a 5xx error body;
- ``slow``: waits longer than the test gateway's timeout;
- ``break``: a stream that dies after two chunks;
- ``echo-key``: a 400 whose message echoes the key it received;
- ``slow-stream``: a stream with a pause between chunks, to prove nothing is buffered;
- ``<model>-junk-*`` (see ``JUNK_USAGE``), e.g. ``gpt-4o-junk-huge``: usage fields no real
  provider sends (counts past 2**63, negative, strings, floats, bools, nested objects) in that
  provider's usage shape; the model prefix keeps the request priced.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_KEY = "sk-upstream-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-upstream-0123456789abcdef"
GOOGLE_KEY = "AIza-upstream-0123456789abcdef"

# Fixed usage so tests can check the gateway's accounting exactly.
OPENAI_USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "cached": 20}
ANTHROPIC_USAGE = {"input_tokens": 100, "output_tokens": 40, "cache_read": 50, "cache_write": 10}
GOOGLE_USAGE = {"prompt": 80, "candidates": 25, "thoughts": 5, "cached": 16}

# Usage a broken or hostile upstream may report, by model-name suffix, per wire format. Every
# value is valid JSON; few are sane token counts.
JUNK_USAGE: dict[str, dict[str, dict[str, Any]]] = {
    "junk-huge": {
        "openai": {"prompt_tokens": 2**63, "completion_tokens": 2**64 + 7, "prompt_tokens_details": {"cached_tokens": 10**30}},
        "anthropic": {"input_tokens": 2**63, "output_tokens": 7, "cache_read_input_tokens": -4, "cache_creation_input_tokens": "9"},
        "google": {"promptTokenCount": 2**63 - 1, "candidatesTokenCount": 10**19, "thoughtsTokenCount": 3, "cachedContentTokenCount": 2**80},
    },
    "junk-negative": {
        "openai": {"prompt_tokens": -1, "completion_tokens": -(2**63) - 1, "prompt_tokens_details": {"cached_tokens": -20}},
    },
    "junk-types": {
        "openai": {"prompt_tokens": "120", "completion_tokens": 30.0, "prompt_tokens_details": {"cached_tokens": True}},
        "google": {"promptTokenCount": 1e300, "candidatesTokenCount": False, "thoughtsTokenCount": None, "cachedContentTokenCount": "16"},
    },
    "junk-nested": {
        "openai": {"prompt_tokens": {"value": 120}, "completion_tokens": [30], "prompt_tokens_details": "20"},
        "google": {"promptTokenCount": {"n": 1}, "candidatesTokenCount": [25], "thoughtsTokenCount": {}, "cachedContentTokenCount": []},
    },
}


def junk_usage(model: str, wire: str) -> dict[str, Any] | None:
    for kind, shapes in JUNK_USAGE.items():
        if model.endswith("-" + kind) and wire in shapes:
            return shapes[wire]
    return None


def _catalog() -> dict[str, Any]:
    """A models.dev-shaped catalog whose prices differ from the bundled snapshot's, so tests can tell."""
    def model(mid: str, inp: float, out: float) -> dict[str, Any]:
        return {"id": mid, "name": mid, "cost": {"input": inp, "output": out, "cache_read": inp / 10}, "limit": {"context": 128000, "output": 16384}}

    openai = {m: model(m, 10.0, 20.0) for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini", "text-embedding-3-small", "text-embedding-3-large")}
    anthropic = {m: model(m, 4.0, 8.0) for m in ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1", "claude-sonnet-4-0", "claude-3-5-haiku-latest", "claude-3-7-sonnet-latest", "claude-opus-4-0", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022", "claude-opus-4-20250514", "claude-sonnet-4-20250514", "claude-3-7-sonnet-20250219")}
    google = {m: model(m, 1.0, 2.0) for m in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash")}
    return {
        "openai": {"id": "openai", "name": "OpenAI", "npm": "@ai-sdk/openai", "env": ["OPENAI_API_KEY"], "models": openai},
        "anthropic": {"id": "anthropic", "name": "Anthropic", "npm": "@ai-sdk/anthropic", "env": ["ANTHROPIC_API_KEY"], "models": anthropic},
        "google": {"id": "google", "name": "Google", "npm": "@ai-sdk/google", "env": ["GEMINI_API_KEY"], "models": google},
    }


CATALOG = _catalog()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DoubleState:
    requests: list[Recorded] = field(default_factory=list)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    jwks_fetches: int = 0
    slow_seconds: float = 3.0
    stream_cancelled: int = 0
    # What GET /catalog/api.json answers: "ok", "garbage", "not-json", "slow", "error", "shrunk".
    catalog_mode: str = "ok"
    catalog_fetches: int = 0


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def build_app(state: DoubleState) -> Starlette:
    async def record(request: Request) -> Recorded:
        body = await request.body()
        entry = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        state.requests.append(entry)
        return entry

    async def failure(model: str, wire: str, key: str) -> Response | None:
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, status_code=status)
        if model == "slow":
            await asyncio.sleep(state.slow_seconds)
        if model == "echo-key":
            message = f"Incorrect API key provided: {key}. You can find your API key at https://example.invalid."
            if wire == "anthropic":
                return JSONResponse(
                    {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status_code=400
                )
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)
        return None

    # -- OpenAI --------------------------------------------------------------------------
    async def openai_chat(request: Request) -> Response:
        entry = await record(request)
        auth = entry.headers.get("authorization", "")
        if auth != f"Bearer {OPENAI_KEY}":
            return JSONResponse(
                {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}},
                status_code=401,
            )
        payload = entry.json()
        model = payload.get("model", "")
        failed = await failure(model, "openai", auth.removeprefix("Bearer "))
        if failed is not None:
            return failed
        created = int(time.time())
        usage = junk_usage(model, "openai") or {
            "prompt_tokens": OPENAI_USAGE["prompt_tokens"],
            "completion_tokens": OPENAI_USAGE["completion_tokens"],
            "total_tokens": OPENAI_USAGE["prompt_tokens"] + OPENAI_USAGE["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": OPENAI_USAGE["cached"], "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        base = {"id": "chatcmpl-double", "created": created, "model": model + "-2024-08-06", "system_fingerprint": "fp_double"}
        if not payload.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello from the double.", "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                headers={"x-request-id": "req_double", "openai-processing-ms": "5"},
            )
        include_usage = (payload.get("stream_options") or {}).get("include_usage") is True

        async def chunks():
            try:
                pieces = ["Hello", " from", " the", " double."]
                for i, piece in enumerate(pieces):
                    delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                    yield _sse({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
                    if model == "slow-stream":
                        await asyncio.sleep(0.6)
                    if model == "break" and i == 1:
                        # Let the events so far reach the gateway first: a connection reset discards
                        # what the client's socket had not read yet, which would make the test a race.
                        await asyncio.sleep(0.2)
                        raise RuntimeError("upstream died mid-stream")
                yield _sse({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
                if include_usage:
                    yield _sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
            except asyncio.CancelledError:
                state.stream_cancelled += 1
                raise

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def openai_other(request: Request) -> Response:
        """Responses and embeddings: enough of their shape to check what the gateway sent."""
        entry = await record(request)
        if entry.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return JSONResponse({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}, status_code=401)
        payload = entry.json()
        if request.url.path.endswith("/embeddings"):
            return JSONResponse({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "model": payload.get("model"), "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        return JSONResponse({"id": "resp_double", "object": "response", "status": "completed", "model": payload.get("model"), "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hello from the double.", "annotations": []}]}], "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13, "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}})

    async def openai_media(request: Request) -> Response:
        """Audio transcriptions (multipart in, `{"text": ...}` out) and image edits/generations (`data` list)."""
        entry = await record(request)
        if entry.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
            return JSONResponse({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}, status_code=401)
        if request.url.path.endswith("/transcriptions"):
            return JSONResponse({"text": "Hello from the double.", "usage": {"type": "tokens", "input_tokens": 5, "output_tokens": 4, "total_tokens": 9}})
        return JSONResponse({"created": 1700000000, "data": [{"b64_json": "aGVsbG8="}], "usage": {"input_tokens": 6, "output_tokens": 10, "total_tokens": 16}})

    # -- Anthropic -----------------------------------------------------------------------
    async def anthropic_messages(request: Request) -> Response:
        entry = await record(request)
        key = entry.headers.get("x-api-key", "")
        if key != ANTHROPIC_KEY:
            return JSONResponse(
                {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
                status_code=401,
            )
        payload = entry.json()
        model = payload.get("model", "")
        failed = await failure(model, "anthropic", key)
        if failed is not None:
            return failed
        u = ANTHROPIC_USAGE
        message = {
            "id": "msg_double",
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not payload.get("stream"):
            return JSONResponse(
                {
                    **message,
                    "content": [{"type": "text", "text": "Hello from the double."}],
                    "stop_reason": "end_turn",
                    "usage": junk_usage(model, "anthropic") or {
                        "input_tokens": u["input_tokens"],
                        "output_tokens": u["output_tokens"],
                        "cache_read_input_tokens": u["cache_read"],
                        "cache_creation_input_tokens": u["cache_write"],
                    },
                },
                headers={"request-id": "req_double"},
            )

        async def events():
            try:
                start_usage = {
                    "input_tokens": u["input_tokens"],
                    "output_tokens": 1,
                    "cache_read_input_tokens": u["cache_read"],
                    "cache_creation_input_tokens": u["cache_write"],
                }
                yield _sse({"type": "message_start", "message": {**message, "content": [], "usage": start_usage}}, "message_start")
                yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
                yield _sse({"type": "ping"}, "ping")
                for i, piece in enumerate(["Hello", " from", " the", " double."]):
                    yield _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
                    if model == "slow-stream":
                        await asyncio.sleep(0.6)
                    if model == "break" and i == 1:
                        # Let the events so far reach the gateway first: a connection reset discards
                        # what the client's socket had not read yet, which would make the test a race.
                        await asyncio.sleep(0.2)
                        raise RuntimeError("upstream died mid-stream")
                yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
                yield _sse(
                    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": u["output_tokens"]}},
                    "message_delta",
                )
                yield _sse({"type": "message_stop"}, "message_stop")
            except asyncio.CancelledError:
                state.stream_cancelled += 1
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    # -- Gemini --------------------------------------------------------------------------
    async def gemini(request: Request) -> Response:
        entry = await record(request)
        key = entry.headers.get("x-goog-api-key", "")
        if key != GOOGLE_KEY:
            return JSONResponse(
                {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}, status_code=400
            )
        model, _, method = request.path_params["target"].partition(":")
        failed = await failure(model, "google", key)
        if failed is not None:
            return failed
        g = GOOGLE_USAGE
        usage = junk_usage(model, "google") or {
            "promptTokenCount": g["prompt"],
            "candidatesTokenCount": g["candidates"],
            "thoughtsTokenCount": g["thoughts"],
            "cachedContentTokenCount": g["cached"],
            "totalTokenCount": g["prompt"] + g["candidates"] + g["thoughts"],
        }
        candidate = {"content": {"role": "model", "parts": [{"text": "Hello from the double."}]}, "finishReason": "STOP", "index": 0}
        if method == "generateContent":
            return JSONResponse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})

        async def events():
            yield _sse({"candidates": [{**candidate, "finishReason": None}], "usageMetadata": {"promptTokenCount": g["prompt"]}, "modelVersion": model})
            yield _sse({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})

        return StreamingResponse(events(), media_type="text/event-stream")

    async def catalog(_request: Request) -> Response:
        state.catalog_fetches += 1
        mode = state.catalog_mode
        if mode == "slow":
            await asyncio.sleep(state.slow_seconds)
        if mode == "error":
            return JSONResponse({"error": "catalog unavailable"}, status_code=500)
        if mode == "not-json":
            return Response("<html>maintenance</html>", media_type="text/html")
        if mode == "garbage":
            return JSONResponse({"openai": {"models": {"gpt-4o": {"cost": {"input": "free"}}}}})
        if mode == "shrunk":
            return JSONResponse({"openai": {"id": "openai", "models": {"gpt-4o": {"id": "gpt-4o", "cost": {"input": 1, "output": 1}}}}})
        return JSONResponse(CATALOG)

    async def jwks(_request: Request) -> Response:
        state.jwks_fetches += 1
        return JSONResponse(state.jwks)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", openai_chat, methods=["POST"]),
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/v1/responses", openai_other, methods=["POST"]),
            Route("/v1/completions", openai_other, methods=["POST"]),
            Route("/v1/embeddings", openai_other, methods=["POST"]),
            Route("/v1/audio/transcriptions", openai_media, methods=["POST"]),
            Route("/v1/images/{kind}", openai_media, methods=["POST"]),
            Route("/v1beta/models/{target}", gemini, methods=["POST"]),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/catalog/api.json", catalog, methods=["GET"]),
        ]
    )
