"""The ``/.well-known/opencode`` document: how to log in, and the organisation's config.

Providers are generated from the gateway's own settings so every model request goes through
the gateway: each gets the gateway prefix as ``baseURL``, an empty ``apiKey`` and the login token
through ``{env:NAME}`` header substitution. ``{baseURL}`` placeholders are replaced with the
gateway's public origin when the document is served.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aiplane.config import ProviderSettings, Settings

BASE_URL_PLACEHOLDER = "{baseURL}"

# Where each native wire format's SDK expects its base URL, relative to the gateway origin.
_NATIVE_BASE = {
    "openai": "{baseURL}/openai",
    "anthropic": "{baseURL}/anthropic/v1",
    "google": "{baseURL}/google-ai-studio/v1beta",
}
_NATIVE_NPM = {"openai": "@ai-sdk/openai", "anthropic": "@ai-sdk/anthropic", "google": "@ai-sdk/google"}
# OpenAI models keep conversations unless told not to; every one we serve says store: false.
_RETENTION_FAMILIES = ("openai",)


def _token_headers(token_env: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {{env:{token_env}}}"}


def provider_entries(settings: Settings, catalog: dict[str, Any]) -> dict[str, Any]:
    """One OpenCode provider per gateway provider that can serve requests."""
    token_env = settings.discovery.token_env
    entries: dict[str, Any] = {}
    for name, provider in settings.providers.items():
        if not _servable(provider):
            continue
        catalog_id = provider.catalog_id or name
        if provider.kind in _NATIVE_BASE and name == provider.kind:
            entry: dict[str, Any] = {
                "options": {
                    "baseURL": _NATIVE_BASE[provider.kind],
                    "apiKey": "",
                    "headers": _token_headers(token_env),
                }
            }
            models = _catalog_models(catalog, catalog_id)
        else:
            # Any other upstream is reached through /compat with "provider/model" names.
            entry = {
                "npm": "@ai-sdk/openai-compatible",
                "name": f"{name} (via aiplane)",
                "options": {
                    "baseURL": "{baseURL}/compat",
                    "apiKey": "",
                    "headers": _token_headers(token_env),
                },
            }
            models = {f"{name}/{mid}": _compat_model(mid, spec) for mid, spec in _catalog_models(catalog, catalog_id).items()}
        if provider.kind in _RETENTION_FAMILIES and settings.gateway.force_zero_retention:
            models = {mid: _with_store_false(spec) for mid, spec in models.items()}
        if models:
            entry["models"] = models
        entries[name] = entry
    return entries


def _servable(provider: ProviderSettings) -> bool:
    return provider.base_url is not None and (provider.api_key is not None or provider.kind == "openai-compatible")


def _catalog_models(catalog: dict[str, Any], catalog_id: str) -> dict[str, dict[str, Any]]:
    provider = catalog.get(catalog_id)
    models = provider.get("models") if isinstance(provider, dict) else None
    # Per-model entries carry only options: OpenCode fills names, limits and costs from models.dev.
    return {mid: {} for mid in models} if isinstance(models, dict) else {}


def _compat_model(model_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": model_id, **spec}


def _with_store_false(spec: dict[str, Any]) -> dict[str, Any]:
    options = dict(spec.get("options") or {})
    options["store"] = False
    return {**spec, "options": options}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_config(settings: Settings, org_config: dict[str, Any], catalog: dict[str, Any]) -> dict[str, Any]:
    """The served config: generated providers, with the organisation's own config layered on top."""
    generated = {"$schema": "https://opencode.ai/config.json", "provider": provider_entries(settings, catalog)}
    merged = deep_merge(generated, org_config)
    # The org config may add models or options, but never re-enable retention.
    for name, entry in (merged.get("provider") or {}).items():
        provider = settings.providers.get(name)
        if provider is not None and provider.kind in _RETENTION_FAMILIES and settings.gateway.force_zero_retention:
            entry["models"] = {mid: _with_store_false(spec or {}) for mid, spec in (entry.get("models") or {}).items()}
    return merged


def well_known(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"command": list(settings.discovery.auth_command), "env": settings.discovery.token_env},
        "config": config,
    }


def render(document: dict[str, Any], origin: str) -> bytes:
    """Serialise with every ``{baseURL}`` replaced by the gateway's public origin."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    # JSON-escape the origin so a hostile Host header cannot break out of the string.
    escaped = json.dumps(origin.rstrip("/"))[1:-1]
    return text.replace(BASE_URL_PLACEHOLDER, escaped).encode()
