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


def upstream_query(scope: dict[str, Any], drop_key: bool) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return ""
    if drop_key:
        # Gemini clients may put a key in ?key=; it is a client credential like any other.
        query = "&".join(p for p in query.split("&") if unquote(p.split("=", 1)[0]).lower() != "key")
    return "?" + query if query else ""


# -- the body ----------------------------------------------------------------------------------------


def parse_json_body(body: bytes) -> dict[str, Any]:
    """An inference body: a JSON object (a UTF-8 byte-order mark is allowed), or 400."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise RouteError(400, "invalid_request", "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise RouteError(400, "invalid_request", "request body must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise RouteError(400, "invalid_request", "request body must be a JSON object")
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise RouteError(400, "invalid_request", "request body is nested too deeply")
    return parsed


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

    def secrets(self) -> list[bytes]:
        """What must never be relayed: the key, and the prefix a partial echo ("sk-abc...") keeps."""
        if self.settings.api_key is None:
            return []
        key = self.settings.api_key.get_secret_value().encode()
        return [key, key[: max(8, len(key) // 2)]] if len(key) >= 8 else []


def _openai_rewrites(path: str, payload: dict[str, Any], zero_retention: bool, user_id: str, identity: str) -> bool:
    """Usage always reported, retention off, identity fields anonymised. True when the client had
    asked for no usage chunk in a chat stream (the relay then drops it)."""
    strip = False
    tail = path.rstrip("/")
    if payload.get("stream") is True and tail.endswith("chat/completions"):
        options = payload.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        strip = options.get("include_usage") is not True and "include_usage" in options
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


def resolve(settings: Settings, prefix: str, method: str, path: str, body: bytes, user_id: str) -> Target:
    """Map (route prefix, normalised path, body) to an upstream request (the endpoint policy has run)."""
    if prefix == "compat":
        return _resolve_compat(settings, method, path, body, user_id)
    name, wire = {"openai": ("openai", "openai"), "anthropic": ("anthropic", "anthropic")}.get(prefix, ("google", "google"))
    provider = _provider(settings, name)
    assert provider.base_url is not None
    identity = settings.gateway.identity_fields
    model: Any = None
    streaming = strip = False
    json_body = method == "POST" and not (wire == "openai" and MULTIPART_ENDPOINTS.fullmatch(path))
    if json_body:
        payload = parse_json_body(body)
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
        model=model if isinstance(model, str) and model else "unknown",
        body=body,
        streaming_requested=streaming,
        catalog_id=provider.catalog_id or name,
        strip_usage_chunk=strip,
        forward_headers=_forward(settings, wire, provider),
    )


def _resolve_compat(settings: Settings, method: str, path: str, body: bytes, user_id: str) -> Target:
    if method != "POST":
        raise RouteError(400, "invalid_request", "compat lists models per provider: use that provider's own route")
    payload = parse_json_body(body)
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
        model=upstream_model,
        body=_encode(payload),
        streaming_requested=payload.get("stream") is True,
        catalog_id=provider.catalog_id or name,
        strip_usage_chunk=strip,
        forward_headers=_forward(settings, "openai", provider),
    )
