"""Relaying a provider's answer to the client, streamed or whole, while metering and scrubbing it.

Nothing is buffered beyond what each step needs: SSE events go out as they arrive, other bodies in
the chunks they came in; only a bounded tail is kept to read usage from. Compressed answers are
inflated in bounded steps. The provider's key is scrubbed from every relayed byte, even when an
echo of it is split across chunks. Response headers travel by allowlist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aiplane.gateway.metering import MAX_EVENT_BYTES, SseUsageScanner, TokenMeter, last_object
from aiplane.gateway.routing import RESPONSE_HEADER_PREFIXES, RESPONSE_HEADERS, Target
from aiplane.inflate import CorruptBody, Inflater
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.gateway")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
REDACTED = b"[redacted]"
# Non-SSE bodies up to this size are kept whole to read usage from; past it, only the tail is.
WHOLE_BODY_BYTES = 1024 * 1024
TAIL_BYTES = 256 * 1024


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


class Scrubber:
    """Replaces secrets in a byte stream, even one split across chunks.

    Only a tail that could be the start of a secret is held back until the next chunk, so a
    stream is delayed by nothing in practice (SSE chunks end with a blank line, no key's start).
    """

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self.patterns = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self.patterns:
            return chunk
        data = self._pending + chunk if self._pending else chunk
        for pattern in self.patterns:
            if pattern in data:
                data = data.replace(pattern, REDACTED)
        hold = self._partial(data)
        self._pending = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold] if hold else data

    def flush(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending

    def _partial(self, data: bytes) -> int:
        """The length of the longest tail of `data` that starts some secret."""
        best = 0
        for pattern in self.patterns:
            start = max(len(data) - len(pattern) + 1, 0)
            position = data.find(pattern[:1], start)
            while position >= 0:
                if pattern.startswith(data[position:]):
                    best = max(best, len(data) - position)
                    break
                position = data.find(pattern[:1], position + 1)
        return best

    def clean(self, text: str) -> str | None:
        """A header value, or None when it holds a secret (the header is then not relayed)."""
        raw = text.encode("latin-1", "replace")
        return None if any(p in raw for p in self.patterns) else text


def relay_headers(upstream: aiohttp.ClientResponse, request_id: str, scrubber: Scrubber) -> dict[str, str]:
    """The allowlisted response headers; one whose name or value holds the key, or that is not plain
    text (HTTP headers are latin-1; a stray byte would fail the response after the provider billed), is dropped."""
    headers = {}
    for name, value in upstream.headers.items():
        lower = name.lower()
        if not (lower in RESPONSE_HEADERS or lower.startswith(RESPONSE_HEADER_PREFIXES)):
            continue
        if scrubber.clean(lower) is None or scrubber.clean(value) is None:
            continue
        if not value.isascii() or not value.isprintable() or len(value) > 4096:
            continue
        headers[lower] = value
    headers["x-request-id"] = request_id
    return headers


class BodyTail:
    """What is needed to read usage from a non-SSE body: all of it while small, then only its tail."""

    def __init__(self) -> None:
        self._whole: bytearray | None = bytearray()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if self._whole is not None:
            self._whole += chunk
            if len(self._whole) > WHOLE_BODY_BYTES:
                self._tail = bytes(self._whole[-TAIL_BYTES:])
                self._whole = None
        else:
            self._tail = (self._tail + chunk)[-TAIL_BYTES:]

    def observe(self, meter: TokenMeter) -> None:
        if self._whole is not None:
            meter.observe_body(bytes(self._whole))
            return
        # Providers put usage last: the last usage object in the tail (see metering.last_object).
        found = last_object(self._tail, ("usage", "usageMetadata"))
        if found is not None:
            meter.observe({found[0]: found[1]})


class RelayStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its iterator, so a client disconnect reaches upstream,
    and then calls `on_close`, for what must happen even when the iterator never started."""

    def __init__(self, *args, on_close: Callable[[], None] | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if self.on_close is not None:
                self.on_close()


Finish = Callable[[int, TokenMeter, str | None, float | None], None]


class UsageChunkFilter:
    """Drops the usage-only chunk of an OpenAI chat stream whose client asked for none (we asked, to
    meter it). Works on whole events (LF or CRLF framed), so only in that mode are events held until
    they end; an event past MAX_EVENT_BYTES cannot be that small chunk and passes through unheld."""

    def __init__(self) -> None:
        self._buffer = b""
        self._passing = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk
        self._buffer = b""
        out = []
        while data:
            end, size = _event_end(data)
            if end < 0:
                if self._passing or len(data) > MAX_EVENT_BYTES:
                    self._passing = True
                    out.append(data)  # an oversized event: relayed as it comes
                else:
                    self._buffer = data
                break
            event, data = data[: end + size], data[end + size :]
            if self._passing:
                self._passing = False
                out.append(event)
            elif not (b'"usage"' in event and _usage_only(event)):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def _event_end(data: bytes) -> tuple[int, int]:
    """Where the first SSE event ends (the blank line's position and length), or (-1, 0)."""
    found = [(i, n) for i, n in ((data.find(b"\n\n"), 2), (data.find(b"\r\n\r\n"), 4)) if i >= 0]
    return min(found) if found else (-1, 0)


def _usage_only(event: bytes) -> bool:
    data = b"\n".join(line[5:].lstrip() for line in event.replace(b"\r\n", b"\n").split(b"\n") if line.startswith(b"data:"))
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(payload, dict) and payload.get("choices") == [] and "usage" in payload


async def relay_stream(
    upstream: aiohttp.ClientResponse,
    target: Target,
    meter: TokenMeter,
    started: float,
    finish: Finish,
    sse: bool,
    inflater: Inflater,
) -> AsyncIterator[bytes]:
    """Yield the upstream body as it arrives, scrubbed and metered.

    SSE: a stream whose terminal event was relayed succeeded, whatever the client does next (the
    OpenAI SDK closes right after `[DONE]`); a failure mid-stream ends it with a wire-format error
    event. Other bodies: usage is read from the bounded tail when the body ends.
    """
    scanner = SseUsageScanner(meter) if sse else None
    tail = None if sse else BodyTail()
    scrubber = Scrubber(target.secrets())
    usage_filter = UsageChunkFilter() if sse and target.strip_usage_chunk else None
    status = upstream.status
    error: str | None = None
    first_byte: float | None = None
    try:
        async for raw in upstream.content.iter_any():
            if first_byte is None:
                first_byte = time.perf_counter() - started
            for chunk in inflater.feed(raw):
                if scanner is not None:
                    scanner.feed(chunk)
                else:
                    tail.feed(chunk)  # type: ignore[union-attr]
                if usage_filter is not None:
                    chunk = usage_filter.feed(chunk)
                out = scrubber.feed(chunk)
                if out:
                    yield out
        last = scrubber.feed(usage_filter.flush()) if usage_filter is not None else b""
        last += scrubber.flush()
        if last:
            yield last
    except TimeoutError:  # aiohttp's read timeouts subclass it
        error = "upstream_timeout"
    except (aiohttp.ClientError, CorruptBody):
        error = "upstream_stream_error"
    except (GeneratorExit, asyncio.CancelledError):
        # The client left. After the stream's terminal event that is the normal end of a stream.
        if scanner is None or not scanner.terminal:
            error = "client_disconnected"
            status = 499
        raise
    finally:
        if error is None:
            upstream.release()
        else:
            # Closing (not releasing) drops the connection, so the provider stops generating.
            upstream.close()
        if tail is not None and error is None:
            tail.observe(meter)
        if error is not None and error != "client_disconnected":
            log.warning("upstream stream failed", extra=log_fields(provider=target.provider, error=error))
        finish(status, meter, error, first_byte)
    if error is not None and scanner is not None and not scanner.mid_event:
        # Announce the failure in the provider's own format so SDKs raise instead of hanging.
        yield stream_error_event(target.wire, error, "upstream stream ended unexpectedly")
