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
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        # Gemini's streamGenerateContent without alt=sse answers a JSON array of chunks.
        for item in parsed if isinstance(parsed, list) else [parsed]:
            self.observe(item)


# What may mark a stream's terminal event; a candidate event is then parsed to be sure (the same
# words in the model's own text are not the end of anything).
TERMINAL_HINTS: dict[str, tuple[bytes, ...]] = {
    "openai": (b"[DONE]", b"response.completed", b"response.incomplete", b"response.failed"),
    "anthropic": (b"message_stop",),
    "google": (b"finishReason",),
}
RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# An event larger than this is not held whole: its last bytes are kept, where usage sits.
EVENT_TAIL_BYTES = 256 * 1024


class SseUsageScanner:
    """Watches an SSE byte stream as it passes and feeds usage-bearing events to a meter.

    Only events that mention usage (or may be terminal) are JSON-decoded, so relaying stays
    cheap. An event over MAX_EVENT_BYTES (a Responses API response.completed repeats the whole
    input) keeps only its tail, and its usage is read from there.
    """

    def __init__(self, meter: TokenMeter) -> None:
        self.meter = meter
        self._buffer = bytearray()
        self._oversized = False
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
                del self._buffer[: len(self._buffer) - EVENT_TAIL_BYTES]
                self._oversized = True
            return
        complete = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        events = complete.replace(b"\r\n", b"\n").split(b"\n\n")
        if self._oversized:
            self._oversized = False
            self._observe_tail(events[0])
            events = events[1:]
        hints = TERMINAL_HINTS[self.meter.wire]
        for event in events:
            if not event:
                continue
            usage = b"usage" in event or (self.meter.response_model is None and b"model" in event)
            terminal = not self.terminal and any(hint in event for hint in hints)
            if usage or terminal:
                self._observe_event(event, terminal)

    def _observe_event(self, event: bytes, terminal: bool) -> None:
        lines = event.split(b"\n")
        data = [line[5:].lstrip() for line in lines if line.startswith(b"data:")]
        name = next((line[6:].strip() for line in lines if line.startswith(b"event:")), b"")
        payload = b"\n".join(data)
        if payload == b"[DONE]":
            self.terminal = self.terminal or self.meter.wire == "openai"
            return
        try:
            parsed = json.loads(payload) if data else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            self.meter.observe(parsed)
        if terminal and self._is_terminal(name.decode("ascii", "replace"), parsed):
            self.terminal = True

    def _is_terminal(self, name: str, parsed: Any) -> bool:
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        if self.meter.wire == "anthropic":
            return name == "message_stop" or kind == "message_stop"
        if self.meter.wire == "openai":
            return name in RESPONSES_TERMINAL or kind in RESPONSES_TERMINAL
        candidates = parsed.get("candidates") if isinstance(parsed, dict) else None
        return isinstance(candidates, list) and any(isinstance(c, dict) and c.get("finishReason") for c in candidates)

    def _observe_tail(self, tail: bytes) -> None:
        """The end of an event too big to hold: its usage, and whether it was terminal."""
        found = last_object(tail, ("usage", "usageMetadata"))
        if found is not None:
            key, value = found
            self.meter.observe({key: value})
        text = tail.decode("utf-8", "replace")
        if any(f'"type":"{t}"' in text.replace(" ", "") for t in RESPONSES_TERMINAL) and self.meter.wire == "openai":
            self.terminal = True


def last_object(data: bytes, keys: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    """The last `"key": {...}` in a JSON fragment whose value is an object of token counts.

    Searching backwards and insisting on an object of numbers skips look-alikes that come later
    (a Responses object puts the client's `metadata` after `usage`; metadata values are strings).
    """
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    best: tuple[int, str, dict[str, Any]] | None = None
    for key in keys:
        end = len(text)
        while True:
            at = text.rfind(f'"{key}"', 0, end)
            if at < 0:
                break
            end = at
            colon = text.find(":", at + len(key) + 2)
            if colon < 0:
                continue
            try:
                value, _ = decoder.raw_decode(text[colon + 1 :].lstrip())
            except ValueError:
                continue
            if isinstance(value, dict) and any(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
                if best is None or at > best[0]:
                    best = (at, key, value)
                break
    return (best[1], best[2]) if best else None
