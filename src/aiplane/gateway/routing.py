"""Which upstream a request goes to, what of it may go there, and the rewrites each route makes.

Everything is decided on normalised input: the path is percent-decoded once and checked before
routing and every policy run on it; an inference body is parsed (a body that is not a JSON object
is refused, fail closed) and what goes upstream is our own encoding of it, so what the policies
saw is exactly what the provider gets. Headers travel by allowlist, both ways.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from aiplane.config import ProviderSettings, Settings
from aiplane.keyspellings import key_spellings

# Request headers a client may send on to a provider, for every route. Everything else stays here:
# the client's credentials and tokens (whatever header carries them), cookies, SSO proxies'
# identity headers, client addresses, hop-by-hop and framing headers, SDK telemetry.
REQUEST_HEADERS = frozenset({"content-type", "accept", "user-agent", "idempotency-key"})
# And per wire format, what that provider's API reads.
WIRE_REQUEST_HEADERS: dict[str, frozenset[str]] = {
    "openai": frozenset({"openai-beta"}),
    "anthropic": frozenset({"anthropic-version", "anthropic-beta"}),
    "google": frozenset(),
}
# Response headers relayed to clients: the answer's type, retry and rate-limit guidance the SDKs
# read, the provider's request id. Never cookies or the provider account's identifiers.
RESPONSE_HEADERS = frozenset({
    "content-type", "content-language", "content-disposition", "cache-control", "retry-after", "retry-after-ms",
    "x-should-retry", "openai-processing-ms", "openai-version", "request-id", "x-request-id",
})
RESPONSE_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
# Bodies deeper than this are refused: no provider request nests like that, and a parser's
# recursion limit must never be what answers.
MAX_JSON_DEPTH = 200
# And bodies with more values than this (counted cheaply, as commas and brackets, before parsing).
MAX_JSON_VALUES = 500_000
# The model name as recorded, priced and logged (the body keeps the client's whole string).
MAX_MODEL_NAME = 200

KEY_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "google": "x-goog-api-key"}
_GEMINI_MODEL = re.compile(r"models/([^/:]+)(?::(\w+))?")
_SAFE_PATH = "/:@!$&'()*+,;=-._~"


class RouteError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


# -- endpoint policy -------------------------------------------------------------------------------

# Endpoints every user may call: inference and model listings. Anything else behind a provider
# prefix is stateful and shared by the whole organisation (files, batches, vector stores,
# fine-tuning, assistants, stored responses...), reached with the one shared key: refused unless
# `gateway.endpoint_groups` opens its family to named groups.
OPEN_ENDPOINTS: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    "openai": tuple((m, re.compile(p)) for m, p in (
        ("POST", r"chat/completions"), ("POST", r"completions"), ("POST", r"embeddings"), ("POST", r"responses"),
        ("POST", r"responses/input_tokens"), ("POST", r"moderations"), ("GET", r"models"), ("GET", r"models/[^/]+"),
        ("POST", r"audio/(?:speech|transcriptions|translations)"), ("POST", r"images/(?:generations|edits|variations)"),
    )),
    "anthropic": tuple((m, re.compile(p)) for m, p in (
        ("POST", r"v1/messages"), ("POST", r"v1/messages/count_tokens"), ("POST", r"v1/complete"),
        ("GET", r"v1/models"), ("GET", r"v1/models/[^/]+"),
    )),
    "google": tuple((m, re.compile(p)) for m, p in (
        ("GET", r"v1(?:beta|alpha)?/models"), ("GET", r"v1(?:beta|alpha)?/models/[^/:]+"),
        ("POST", r"v1(?:beta|alpha)?/models/[^/:]+:(?:generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)"),
    )),
    "compat": tuple((m, re.compile(p)) for m, p in (
        ("POST", r"chat/completions"), ("POST", r"completions"), ("POST", r"embeddings"),
        ("GET", r"models"), ("GET", r"models/[^/]+"),
    )),
}
# Open endpoints whose body is multipart (uploads), not JSON.
MULTIPART_ENDPOINTS = re.compile(r"audio/(?:transcriptions|translations)|images/(?:edits|variations)")


def family(prefix: str, path: str) -> str:
    """The endpoint family a closed path belongs to, as `gateway.endpoint_groups` names it: "openai:files",
    "openai:chat/completions" (stored completions), "anthropic:messages/batches", "google:cachedContents"."""
    parts = path.split("/")
    if prefix in ("anthropic", "google") and parts and re.fullmatch(r"v1(?:beta|alpha)?", parts[0]):
        parts = parts[1:]
    if not parts or not parts[0]:
        return f"{prefix}:"
    head = parts[0].split(":")[0]
    if len(parts) > 1 and (head, parts[1].split(":")[0]) in (("chat", "completions"), ("messages", "batches"), ("fine_tuning", "jobs")):
        return f"{prefix}:{head}/{parts[1].split(':')[0]}"
    if head == "models" and len(parts) > 1 and ":" in parts[1]:
        return f"{prefix}:models:{parts[1].split(':', 1)[1]}"  # e.g. google:models:batchGenerateContent
    return f"{prefix}:{head}"


def check_endpoint(settings: Settings, prefix: str, method: str, path: str, groups: tuple[str, ...]) -> None:
    """Raise 403 for an endpoint the caller may not use (see OPEN_ENDPOINTS)."""
    if any(method == m and pattern.fullmatch(path) for m, pattern in OPEN_ENDPOINTS[prefix]):
        return
    name = family(prefix, path)
    allowed = settings.gateway.endpoint_groups.get(name)
    if allowed and set(allowed) & set(groups):
        return
    raise RouteError(403, "endpoint_not_allowed",
                     f"{method} {name.split(':', 1)[0]}/{path} is not open through this gateway: it reaches state the whole "
                     f"organisation shares (endpoint family '{name}'); an admin can open it to groups with gateway.endpoint_groups")


# -- the path ----------------------------------------------------------------------------------------


def normalise_path(raw: str) -> str:
    """The path after the route prefix, percent-decoded once and in normal form; refused when it could
    reach elsewhere or mean two things: dot segments, backslashes, encoded slashes, control characters."""
    segments = []
    for segment in raw.split("/"):
        decoded = unquote(segment, errors="strict") if "%" in segment else segment
        if decoded == "":
            continue  # "//" is "/"
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
            raise RouteError(400, "invalid_request", "path must not contain '.' or '..' segments, encoded slashes, "
                             "backslashes or control characters")
        segments.append(decoded)
    return "/".join(segments)


def upstream_path(scope: dict[str, Any]) -> str:
    """The normalised path after the route prefix (raw_path, so nothing was decoded before us)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    text = raw.decode("latin-1")
    rest = text.split("/", 2)[2] if text.count("/") >= 2 else ""
    try:
        return normalise_path(rest)
    except UnicodeDecodeError:
        raise RouteError(400, "invalid_request", "path is not valid percent-encoded UTF-8") from None


# Query parameters that reach the provider, by allowlist (and for Gemini's `alt`, by value): a
# credential (`key`, `$key`, `access_token`), a response field mask (`fields`, `$fields`, which can
# drop usage from the answer) or a binary format (`alt=proto`) never does.
QUERY_PARAMS: dict[str, dict[str, frozenset[str] | None]] = {
    # Listing pagination is harmless; everything else (Gemini's `key=`, arbitrary flags) is dropped.
    "google": {"alt": frozenset({"sse", "json"}), "pageSize": None, "pageToken": None},
    "anthropic": {"beta": None, "limit": None, "before_id": None, "after_id": None},
    "openai": {"api-version": None},
    "compat": {"api-version": None},
}


def upstream_query(scope: dict[str, Any], prefix: str) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return ""
    allowed = QUERY_PARAMS.get(prefix, {})
    kept = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        try:
            name_text, value_text = unquote(name, errors="strict"), unquote(value, errors="strict")
        except UnicodeDecodeError:
            continue
        if name_text in allowed and (allowed[name_text] is None or value_text in allowed[name_text]):
            kept.append(pair)
    return "?" + "&".join(kept) if kept else ""


# -- the body ----------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(body: bytes) -> dict[str, Any]:
    """An inference body: a UTF-8 JSON object (a byte-order mark is allowed), or 400.

    Parsing runs on the event loop and holds the GIL, so its cost is bounded before it starts: a
    body of a million tiny values costs seconds and gigabytes, however few bytes it is.
    """
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if _json_values_over_limit(body):
        raise RouteError(400, "invalid_request", f"request body has more than {MAX_JSON_VALUES} JSON values")
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise RouteError(400, "invalid_request", "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise RouteError(400, "invalid_request", "request body must be a UTF-8 JSON object") from None
    if not isinstance(parsed, dict):
        raise RouteError(400, "invalid_request", "request body must be a JSON object")
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise RouteError(400, "invalid_request", "request body is nested too deeply")
    return parsed


def _json_values_over_limit(body: bytes) -> bool:
    """More than MAX_JSON_VALUES values, counted in C-speed passes (no parse, no regex).

    The cheap count (commas and openers anywhere) settles almost every body. Only a body whose
    strings hold many commas (a CSV pasted into a prompt) needs the second pass, which counts
    them outside strings only.
    """
    if body.count(b",") + body.count(b"{") + body.count(b"[") <= MAX_JSON_VALUES:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    if unescaped.count(b'"') > 2 * MAX_JSON_VALUES:
        return True  # every string is a value
    outside_strings = unescaped.split(b'"')[::2]
    structural = sum(part.count(b",") + part.count(b"{") + part.count(b"[") for part in outside_strings)
    return structural > MAX_JSON_VALUES


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a cheap pass over the parsed body)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return deepest


def _encode(payload: dict[str, Any]) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except (RecursionError, ValueError):
        raise RouteError(400, "invalid_request", "request body cannot be re-encoded") from None


@dataclass(slots=True)
class Target:
    provider: str
    path: str
    settings: ProviderSettings
    url: str
    wire: str  # response format: openai, anthropic or google
    model: str
    body: bytes
    streaming_requested: bool
    catalog_id: str
    # The client asked for no usage chunk in an OpenAI chat stream: we ask for it (to meter) and drop it.
    strip_usage_chunk: bool = False
    forward_headers: frozenset[str] = frozenset()

    def key_headers(self) -> dict[str, str]:
        if self.settings.api_key is None:
            return {}
        key = self.settings.api_key.get_secret_value()
        header = KEY_HEADER[self.wire]
        return {header: f"Bearer {key}" if header == "authorization" else key}

    def secrets(self) -> tuple[bytes, ...]:
        """What must never be relayed: the key as any common echo spells it (see key_spellings)."""
        if self.settings.api_key is None:
            return ()
        return key_spellings(self.settings.api_key.get_secret_value())


def _check_flags(payload: dict[str, Any]) -> None:
    """`stream` and `include_usage` decide what we meter and relay: only real booleans (a server that
    coerced "stream": 1 would stream what we took for a single answer)."""
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise RouteError(400, "invalid_request", "stream must be true or false")
    options = payload.get("stream_options")
    if options is not None and (not isinstance(options, dict)
                                or ("include_usage" in options and not isinstance(options["include_usage"], bool))):
        raise RouteError(400, "invalid_request", "stream_options.include_usage must be true or false")


# Fields that name state stored at the provider for the whole organisation, and the endpoint family
# that state belongs to: using it by id is using that family.
_REFERENCES: dict[str, dict[str, str]] = {
    "openai": {"previous_response_id": "openai:responses", "conversation": "openai:conversations",
               "file_id": "openai:files", "vector_store_ids": "openai:vector_stores", "container": "openai:containers"},
    "anthropic": {"file_id": "anthropic:files", "container": "anthropic:containers"},
    "google": {"cachedContent": "google:cachedContents", "cached_content": "google:cachedContents",
               "fileUri": "google:files", "file_uri": "google:files"},
}
_REFERENCE_HINTS = {wire: tuple(key.encode() for key in keys) for wire, keys in _REFERENCES.items()}


def check_references(settings: Settings, prefix: str, raw: bytes, payload: dict[str, Any], groups: tuple[str, ...]) -> None:
    """Refuse a body that reaches closed, organisation-wide state by id (a file, a stored response,
    a vector store, cached content) unless the caller's groups may use that family."""
    wire = {"compat": "openai", "google-ai-studio": "google"}.get(prefix, prefix)
    keys = _REFERENCES.get(wire, {})
    if not any(hint in raw for hint in _REFERENCE_HINTS.get(wire, ())):
        return
    stack: list[Any] = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                name = keys.get(key)
                if name is not None and value not in (None, "", [], {}):
                    if key in ("fileUri", "file_uri") and not (isinstance(value, str) and "/files/" in value):
                        continue  # a public URL (a video, a bucket object) is no stored state of ours
                    allowed = settings.gateway.endpoint_groups.get(name)
                    if not (allowed and set(allowed) & set(groups)):
                        raise RouteError(403, "endpoint_not_allowed",
                                         f"'{key}' refers to state the whole organisation shares (endpoint family "
                                         f"'{name}'); an admin can open it to groups with gateway.endpoint_groups")
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


_PART_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


def _rewrite_multipart(body: bytes, content_type: str, user_id: str, identity: str) -> bytes:
    """Identity fields in a multipart upload (images/edits, audio/transcriptions): the same rule as in JSON."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise RouteError(400, "invalid_request", "a multipart body needs a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1", "replace")
    parts = body.split(delimiter)
    out = [parts[0]]
    for part in parts[1:]:
        head, sep, content = part.partition(b"\r\n\r\n")
        name = _PART_NAME.search(head) if sep else None
        if name is not None and name.group(1) in (b"user", b"safety_identifier"):
            if identity == "remove":
                continue
            trailer = b"\r\n" if content.endswith(b"\r\n") else b""
            part = head + sep + user_id.encode() + trailer
        out.append(part)
    return delimiter.join(out)




def _openai_rewrites(path: str, payload: dict[str, Any], zero_retention: bool, user_id: str, identity: str) -> bool:
    """Usage always reported, retention off, identity fields anonymised. True when the client had
    asked for no usage chunk in a chat stream (the relay then drops it)."""
    strip = False
    tail = path.rstrip("/")
    # Chat and legacy completions streams both report usage only when asked: we always ask, so a
    # client cannot stream unmetered (and uncharged against quotas) by leaving the option out.
    legacy = tail.rsplit("/", 1)[-1] == "completions" and not tail.endswith("chat/completions")
    if payload.get("stream") is True and (tail.endswith("chat/completions") or legacy):
        options = payload.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        asked = options.get("include_usage") is True
        # A chat client that left the option out has always got the chunk; a legacy completions client
        # that did not ask for it never did, so there the chunk is dropped unless asked for.
        strip = not asked and ("include_usage" in options or legacy)
        options["include_usage"] = True
        payload["stream_options"] = options
    if zero_retention and (tail.endswith("chat/completions") or tail.endswith("responses")):
        payload["store"] = False
    for name in ("user", "safety_identifier"):
        if name in payload:
            if identity == "remove":
                del payload[name]
            else:
                payload[name] = user_id
    return strip


def _anthropic_rewrites(payload: dict[str, Any], user_id: str, identity: str) -> None:
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and "user_id" in metadata:
        metadata = dict(metadata)
        if identity == "remove":
            del metadata["user_id"]
        else:
            metadata["user_id"] = user_id
        payload["metadata"] = metadata


def _join(base: str, path: str) -> str:
    return f"{base}/{quote(path, safe=_SAFE_PATH)}"


def _provider(settings: Settings, name: str) -> ProviderSettings:
    provider = settings.providers.get(name)
    if provider is None or provider.base_url is None:
        raise RouteError(404, "unknown_provider", f"provider '{name}' is not configured on this gateway")
    if provider.api_key is None and provider.kind != "openai-compatible":
        raise RouteError(503, "provider_not_configured", f"provider '{name}' has no API key configured")
    return provider


def _forward(settings: Settings, wire: str, provider: ProviderSettings) -> frozenset[str]:
    token_headers = set(settings.auth.token_headers)
    extra = {h.lower() for h in [*settings.gateway.forward_headers, *provider.forward_headers]}
    return frozenset((REQUEST_HEADERS | WIRE_REQUEST_HEADERS[wire] | extra) - token_headers - {"authorization", "cookie"})


def resolve(settings: Settings, prefix: str, method: str, path: str, body: bytes, user_id: str,
            groups: tuple[str, ...] = (), content_type: str = "") -> Target:
    """Map (route prefix, normalised path, body) to an upstream request (the endpoint policy has run)."""
    if prefix == "compat":
        return _resolve_compat(settings, method, path, body, user_id, groups)
    name, wire = {"openai": ("openai", "openai"), "anthropic": ("anthropic", "anthropic")}.get(prefix, ("google", "google"))
    provider = _provider(settings, name)
    assert provider.base_url is not None
    identity = settings.gateway.identity_fields
    model: Any = None
    streaming = strip = False
    multipart = wire == "openai" and MULTIPART_ENDPOINTS.fullmatch(path) is not None and content_type.startswith("multipart/")
    if multipart:
        body = _rewrite_multipart(body, content_type, user_id, identity)
    elif method == "POST":
        payload = parse_json_body(body)
        _check_flags(payload)
        check_references(settings, prefix, body, payload, groups)
        model = payload.get("model")
        streaming = payload.get("stream") is True
        if wire == "openai":
            strip = _openai_rewrites(path, payload, settings.gateway.force_zero_retention, user_id, identity)
        elif wire == "anthropic":
            _anthropic_rewrites(payload, user_id, identity)
        body = _encode(payload)
    if wire == "google":
        match = _GEMINI_MODEL.search(path)
        model = match.group(1) if match else None
        streaming = bool(match and match.group(2) == "streamGenerateContent")
    return Target(
        provider=name,
        path=path,
        settings=provider,
        url=_join(provider.base_url, path),
        wire=wire,
        model=model[:MAX_MODEL_NAME] if isinstance(model, str) and model else "unknown",
        body=body,
        streaming_requested=streaming,
        catalog_id=provider.catalog_id or name,
        strip_usage_chunk=strip,
        forward_headers=_forward(settings, wire, provider),
    )


def _resolve_compat(settings: Settings, method: str, path: str, body: bytes, user_id: str, groups: tuple[str, ...]) -> Target:
    if method != "POST":
        raise RouteError(400, "invalid_request", "compat lists models per provider: use that provider's own route")
    payload = parse_json_body(body)
    _check_flags(payload)
    check_references(settings, "compat", body, payload, groups)
    model = payload.get("model")
    if not isinstance(model, str) or "/" not in model:
        raise RouteError(400, "invalid_request", "model must be 'provider/model', for example 'openai/gpt-4o'")
    name, _, upstream_model = model.partition("/")
    provider = _provider(settings, name)
    if provider.compat_base_url is None or not upstream_model:
        raise RouteError(400, "invalid_request", f"provider '{name}' has no OpenAI-compatible endpoint")
    payload["model"] = upstream_model
    zero_retention = settings.gateway.force_zero_retention and provider.kind == "openai"
    strip = _openai_rewrites(path, payload, zero_retention, user_id, settings.gateway.identity_fields)
    return Target(
        provider=name,
        path=path,
        settings=provider,
        url=_join(provider.compat_base_url, path),
        wire="openai",
        model=upstream_model[:MAX_MODEL_NAME],
        body=_encode(payload),
        streaming_requested=payload.get("stream") is True,
        catalog_id=provider.catalog_id or name,
        strip_usage_chunk=strip,
        forward_headers=_forward(settings, "openai", provider),
    )
