"""A chat upstream that answers from a script: each request gets the next canned answer (status,
headers, JSON body, or bytes sent as they are), in either wire format, so tests can make a provider rate-limit, fail, echo
the key or report odd usage on exactly the request they want. Every request is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Script:
    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


def openai_reply(message: dict[str, Any], usage: dict[str, Any] | None = None, finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, "logprobs": None}],
            "usage": usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def build_scripted_app(script: Script) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        script.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": await request.body()})
        status, headers, body = script.answers.pop(0) if script.answers else (500, {}, {"error": {"message": "script exhausted"}})
        if isinstance(body, bytes):  # already encoded (e.g. gzip), sent as is
            return Response(body, status_code=status, headers=headers, media_type="application/json")
        return JSONResponse(body, status_code=status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])
