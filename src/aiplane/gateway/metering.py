"""Token counts from provider responses, JSON or server-sent events, in each provider's format."""

from __future__ import annotations

import json
from typing import Any

from aiplane.modelcatalog.pricing import TokenCounts

# Events bigger than this are passed through without being inspected for usage.
MAX_EVENT_BYTES = 1024 * 1024


def _int(value: Any, bound: int = 10**12) -> int:
    """A provider's token count: a JSON integer in [0, bound] (the store's usage.MAX_TOKENS).
    Negative numbers, bools, floats, strings and objects count as 0; a larger integer as the bound."""
    if type(value) is not int:
        return 0
    return value if 0 <= value <= bound else (bound if value > 0 else 0)


class TokenMeter:
    """Collects usage for one response. ``wire`` is the response format: openai, anthropic or google."""

    def __init__(self, wire: str) -> None:
        self.wire = wire
        self.response_model: str | None = None
        self._input = 0
        self._output = 0
        self._cached = 0
        self._cache_write = 0
        self._anthropic: dict[str, int] = {}

    @property
    def counts(self) -> TokenCounts:
        if self.wire == "anthropic":
            a = self._anthropic
            cached = a.get("cache_read_input_tokens", 0)
            written = a.get("cache_creation_input_tokens", 0)
            return TokenCounts(
                input=a.get("input_tokens", 0) + cached + written,
                output=a.get("output_tokens", 0),
                cached=cached,
                cache_write=written,
            )
        return TokenCounts(self._input, self._output, self._cached, self._cache_write)

    def observe(self, obj: Any) -> None:
        """Read usage from one JSON body or one SSE event payload."""
        if not isinstance(obj, dict):
            return
        if self.wire == "anthropic":
            self._observe_anthropic(obj)
        elif self.wire == "google":
            self._observe_google(obj)
        else:
            self._observe_openai(obj)

    def _observe_openai(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage")
        response = obj.get("response")
        if usage is None and isinstance(response, dict):  # Responses API stream: response.completed
            usage = response.get("usage")
            self._model(response.get("model"))
        self._model(obj.get("model"))
        if not isinstance(usage, dict):
            return
        self._input = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        self._output = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        self._cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0

    def _observe_anthropic(self, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        if isinstance(message, dict):  # message_start
            self._model(message.get("model"))
            self._merge_anthropic(message.get("usage"))
        else:
            self._model(obj.get("model"))
            # message_delta carries cumulative counts; message_start's output can read 0 or 1.
            self._merge_anthropic(obj.get("usage"))

    def _merge_anthropic(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            if key in usage:
                self._anthropic[key] = max(_int(usage.get(key)), self._anthropic.get(key, 0))

    def _observe_google(self, obj: dict[str, Any]) -> None:
        self._model(obj.get("modelVersion"))
        usage = obj.get("usageMetadata")
        if not isinstance(usage, dict):
            return
        self._input = _int(usage.get("promptTokenCount"))
        self._output = _int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount"))
        self._cached = _int(usage.get("cachedContentTokenCount"))

    def _model(self, value: Any) -> None:
        if isinstance(value, str) and value and self.response_model is None:
            self.response_model = value

    def observe_body(self, body: bytes) -> None:
        try:
            self.observe(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            pass


TERMINAL_MARKERS: dict[str, tuple[bytes, ...]] = {
    "openai": (b"data: [DONE]", b"data:[DONE]", b"response.completed", b"response.incomplete", b"response.failed"),
    "anthropic": (b"message_stop",),
    "google": (b'"finishReason"',),
}


class SseUsageScanner:
    """Watches an SSE byte stream as it passes and feeds usage-bearing events to a meter.

    Only events that mention usage are JSON-decoded, so relaying stays cheap.
    """

    def __init__(self, meter: TokenMeter) -> None:
        self.meter = meter
        self._buffer = bytearray()
        self._skipping = False
        # The stream's terminal event has passed: OpenAI's `[DONE]`, the Responses API's
        # response.completed/incomplete/failed, Anthropic's message_stop, Gemini's finishReason.
        self.terminal = False

    @property
    def mid_event(self) -> bool:
        """True when the bytes seen so far stop inside an event."""
        return bool(self._buffer)

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        end = self._buffer.rfind(b"\n\n")
        crlf_end = self._buffer.rfind(b"\r\n\r\n")
        cut = max(end + 2 if end >= 0 else -1, crlf_end + 4 if crlf_end >= 0 else -1)
        if cut < 0:
            if len(self._buffer) > MAX_EVENT_BYTES:
                self._buffer.clear()
                self._skipping = True
            return
        complete = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        if self._skipping:
            # The first event here is the tail of an oversized one; drop it.
            first = complete.find(b"\n\n")
            complete = complete[first + 2 :] if first >= 0 else b""
            self._skipping = False
        if not self.terminal and any(marker in complete for marker in TERMINAL_MARKERS[self.meter.wire]):
            self.terminal = True
        if b"usage" not in complete and b"model" not in complete:
            return
        for event in complete.replace(b"\r\n", b"\n").split(b"\n\n"):
            if b"usage" in event or (self.meter.response_model is None and b"model" in event):
                self._observe_event(event)

    def _observe_event(self, event: bytes) -> None:
        data = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data:
            return
        payload = b"\n".join(data)
        if payload == b"[DONE]":
            return
        try:
            self.meter.observe(json.loads(payload))
        except (ValueError, UnicodeDecodeError):
            pass
