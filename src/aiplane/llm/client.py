"""Building model clients from settings.

Every feature that calls a model asks this module for one, by tier (coordinator, specialist,
light). An OpenAI-compatible endpoint covers OpenAI, vLLM, Ollama, llama.cpp's server and the
aiplane gateway itself (`/compat` or `/openai`); Anthropic is spoken natively.

Two kinds of client: `build` gives a pydantic-ai model over the official SDKs (AGENTS.md
generation, codex audits, the eval judge); `native` gives the small httpx client of
`aiplane.llm.chat`, which the code reviewer uses because importing pydantic-ai and an SDK takes
about 2 s and a review must reach its first model request within 1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiplane.config_types import ModelEndpoint

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from aiplane.config import Settings
    from aiplane.llm.chat import ChatClient

Tier = Literal["coordinator", "specialist", "light"]


class NoModelConfigured(Exception):
    """No endpoint is configured for the tier; AI features must say so and skip, never invent."""


@dataclass(frozen=True)
class ModelHandle:
    tier: str
    endpoint: ModelEndpoint
    model: Any  # a pydantic-ai `Model` (from `build`) or a `ChatClient` (from `native`)

    @property
    def label(self) -> str:
        return f"{self.endpoint.kind}:{self.endpoint.model}"


def build(endpoint: ModelEndpoint) -> Model:
    # Imported per kind: each SDK costs about half a second to import, which short review
    # workers pay on every run.
    key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
    if endpoint.kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(endpoint.model, provider=AnthropicProvider(api_key=key or "unused", base_url=endpoint.base_url))
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    # Local servers (Ollama, llama.cpp) take any key; the SDK insists on having one.
    return OpenAIChatModel(endpoint.model, provider=OpenAIProvider(base_url=endpoint.base_url, api_key=key or "unused"))


def native(endpoint: ModelEndpoint) -> ChatClient:
    """The reviewer's client: httpx only, imported in a fraction of the SDKs' time."""
    from aiplane.llm.chat import chat_client

    key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
    return chat_client(endpoint.kind, endpoint.model, endpoint.base_url, key, endpoint.timeout_seconds)


def for_tier(settings: Settings, tier: Tier) -> ModelHandle:
    """The model for a tier, falling back to the specialist model, then any configured one."""
    models = settings.llm.models
    endpoint = models.get(tier) or models.get("specialist") or next(iter(models.values()), None)
    if endpoint is None:
        raise NoModelConfigured("no model is configured (set [llm.models.<tier>] or AIPLANE_LLM__MODELS__SPECIALIST__*)")
    return ModelHandle(tier, endpoint, build(endpoint))
