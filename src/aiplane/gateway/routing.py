"""Which upstream a request goes to, and the rewrites each route is allowed to make."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiplane.config import ProviderSettings, Settings

# Credentials and identity a client may send that must never reach a provider.
STRIPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "cf-access-token",
        "cf-access-jwt-assertion",
        "cookie",
        "host",
        # Hop-by-hop and framing: the client session sets its own.
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
        # The client's network identity stays here too.
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        # The platform's key decides the billing org, not the client.
        "openai-organization",
        "openai-project",
    }
)

KEY_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "google": "x-goog-api-key"}
_GEMINI_MODEL = re.compile(r"models/([^/:]+)(?::(\w+))?")


class RouteError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


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

    def key_headers(self) -> dict[str, str]:
        if self.settings.api_key is None:
            return {}
        key = self.settings.api_key.get_secret_value()
        header = KEY_HEADER[self.wire]
        return {header: f"Bearer {key}" if header == "authorization" else key}


def _json_body(body: bytes) -> dict[str, Any] | None:
    if not body or body[:1] not in (b"{", b" ", b"\n", b"\r", b"\t"):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _wants_usage_in_stream(path: str, payload: dict[str, Any]) -> bool:
    """OpenAI chat streams report usage only when asked; ask for it when the client did not."""
    if payload.get("stream") is not True or not path.rstrip("/").endswith("chat/completions"):
        return False
    options = payload.get("stream_options")
    return not (isinstance(options, dict) and "include_usage" in options)


def _retains(path: str) -> bool:
    """OpenAI endpoints that keep conversations server-side unless told store=false."""
    tail = path.split("?", 1)[0].rstrip("/")
    return tail.endswith("chat/completions") or tail.endswith("responses")


def _rewrite_openai_payload(path: str, payload: dict[str, Any], zero_retention: bool) -> bool:
    """Apply the allowed OpenAI-format rewrites in place; return whether anything changed."""
    changed = False
    if _wants_usage_in_stream(path, payload):
        options = payload.get("stream_options")
        payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        changed = True
    if zero_retention and _retains(path) and payload.get("store") is not False:
        payload["store"] = False
        changed = True
    return changed


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _join(base: str, path: str) -> str:
    return f"{base}/{path.lstrip('/')}"


def _provider(settings: Settings, name: str) -> ProviderSettings:
    provider = settings.providers.get(name)
    if provider is None or provider.base_url is None:
        raise RouteError(404, "unknown_provider", f"provider '{name}' is not configured on this gateway")
    if provider.api_key is None and provider.kind != "openai-compatible":
        raise RouteError(503, "provider_not_configured", f"provider '{name}' has no API key configured")
    return provider


def resolve(settings: Settings, prefix: str, path: str, body: bytes) -> Target:
    """Map (route prefix, rest of path, body) to an upstream request."""
    if prefix == "compat":
        return _resolve_compat(settings, path, body)
    name, wire = {"openai": ("openai", "openai"), "anthropic": ("anthropic", "anthropic")}.get(
        prefix, ("google", "google")
    )
    provider = _provider(settings, name)
    assert provider.base_url is not None
    payload = _json_body(body)
    model = payload.get("model") if payload else None
    streaming = bool(payload and payload.get("stream") is True)
    if wire == "openai" and payload is not None:
        if _rewrite_openai_payload(path, payload, settings.gateway.force_zero_retention):
            body = _encode(payload)
    elif wire == "google":
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
    )


def _resolve_compat(settings: Settings, path: str, body: bytes) -> Target:
    payload = _json_body(body)
    if payload is None:
        raise RouteError(400, "invalid_request", "compat requests need a JSON body with model 'provider/model'")
    model = payload.get("model")
    if not isinstance(model, str) or "/" not in model:
        raise RouteError(400, "invalid_request", "model must be 'provider/model', for example 'openai/gpt-4o'")
    name, _, upstream_model = model.partition("/")
    provider = _provider(settings, name)
    if provider.compat_base_url is None or not upstream_model:
        raise RouteError(400, "invalid_request", f"provider '{name}' has no OpenAI-compatible endpoint")
    payload["model"] = upstream_model
    zero_retention = settings.gateway.force_zero_retention and provider.kind == "openai"
    _rewrite_openai_payload(path, payload, zero_retention)
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
    )
