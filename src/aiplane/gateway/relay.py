"""Forwarding one request upstream and relaying the answer, streamed or whole, while metering it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aiplane.gateway.metering import SseUsageScanner, TokenMeter
from aiplane.gateway.routing import Target
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.gateway")

# Response headers that describe the upstream hop, not the answer.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "content-length",
        "content-encoding",  # the client session decodes; we relay plain bytes
        "set-cookie",
        "alt-svc",
        "server",
        "date",
    }
)

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def error_body(kind: str, message: str, request_id: str) -> bytes:
    # Shaped so both OpenAI and Anthropic SDKs surface error.message.
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    ).encode()


def error_response(status: int, kind: str, message: str, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        error_body(kind, message, request_id),
        status_code=status,
        media_type="application/json",
        headers={"x-request-id": request_id, **(headers or {})},
    )


def stream_error_event(wire: str, kind: str, message: str) -> bytes:
    if wire == "anthropic":
        payload = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    if wire == "google":
        payload = {"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"
    return b"data: " + json.dumps({"error": {"type": kind, "message": message}}).encode() + b"\n\n"


def relay_headers(upstream: aiohttp.ClientResponse, request_id: str) -> dict[str, str]:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS}
    headers["x-request-id"] = request_id
    return headers


def redact(body: bytes, secret: str | None) -> bytes:
    """Providers sometimes echo the key they were sent; it must not reach the client."""
    if not secret or len(secret) < 8:
        return body
    encoded = secret.encode()
    if encoded in body:
        body = body.replace(encoded, b"[redacted]")
    # Partially masked echoes ("sk-abc...xyz") keep a long prefix; cut it too.
    prefix = encoded[: max(8, len(encoded) // 2)]
    return body.replace(prefix, b"[redacted]") if prefix in body else body


class RelayStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its iterator, so a client disconnect reaches upstream."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


Finish = Callable[[int, TokenMeter, str | None, float | None], None]


async def relay_stream(
    upstream: aiohttp.ClientResponse,
    target: Target,
    meter: TokenMeter,
    started: float,
    finish: Finish,
) -> AsyncIterator[bytes]:
    """Yield upstream bytes as they arrive; on failure end the stream with a wire-format error event."""
    scanner = SseUsageScanner(meter)
    status = upstream.status
    error: str | None = None
    first_byte: float | None = None
    try:
        async for chunk in upstream.content.iter_any():
            if first_byte is None:
                first_byte = time.perf_counter() - started
            scanner.feed(chunk)
            yield chunk
    except TimeoutError:  # aiohttp's read timeouts subclass it
        error = "upstream_timeout"
    except aiohttp.ClientError:
        error = "upstream_stream_error"
    except (GeneratorExit, asyncio.CancelledError):
        # Cancelled while waiting for upstream, or closed while parked at a yield.
        error = "client_disconnected"
        status = 499
        raise
    finally:
        if error is None:
            upstream.release()
        else:
            # Closing (not releasing) drops the connection, so the provider stops generating.
            upstream.close()
        if error is not None and error != "client_disconnected":
            log.warning(
                "upstream stream failed",
                extra=log_fields(provider=target.provider, error=error),
            )
        finish(status, meter, error, first_byte)
    if error is not None and not scanner.mid_event:
        # Announce the failure in the provider's own format so SDKs raise instead of hanging.
        yield stream_error_event(target.wire, error, "upstream stream ended unexpectedly")

