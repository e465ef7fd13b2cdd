"""Request bodies read with a limit: checked against Content-Length before reading, and counted
while reading, so an oversized body is refused without being held in memory.

`read_limited` is for Starlette handlers; `buffer_limited` for raw ASGI apps (the MCP transports)
that read the body themselves: it reads it first, bounded, and hands them a replay.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message, Receive, Scope


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


def declared_length(headers: dict[str, str] | object) -> int | None:
    value = headers.get("content-length")  # type: ignore[attr-defined]
    return int(value) if isinstance(value, str) and value.isdigit() else None


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it is known to be larger than `limit` bytes."""
    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


async def buffer_limited(scope: Scope, receive: Receive, limit: int) -> Receive:
    """Read an ASGI request body (at most `limit` bytes) and return a `receive` that replays it.

    Raises BodyTooLarge before reading when Content-Length says so, or once `limit` is passed.
    After the replayed body, the returned callable is the original `receive` (disconnects).
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            pending: Message | None = message  # a disconnect: pass it on as is
            break
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge(limit)
        if not message.get("more_body", False):
            pending = {"type": "http.request", "body": bytes(body), "more_body": False}
            break

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay
