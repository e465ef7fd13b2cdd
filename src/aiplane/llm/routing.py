"""Central model routing for reviewers: which model each agent uses, what it fails back to, and
which providers are switched on. Admins keep one document in the gateway database
(`aiplane review-config set`); the gateway serves it at `GET /v1/review-config`; reviews read it
with a 5 s cache, so flipping a provider off re-routes running and future reviews.

Model references are `provider/model`, the gateway's own naming: `openai/...` and
`anthropic/...` use their native routes, any other provider goes through `/compat`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StringConstraints, ValidationError

from aiplane.config_types import MODEL_REF_PATTERN, ModelEndpoint, Strict

ModelRef = Annotated[str, StringConstraints(pattern=MODEL_REF_PATTERN, max_length=200)]
DEFAULT_TTL_SECONDS = 5.0


class RoutingError(Exception):
    """A routing document that cannot be used; the message says where and why."""


class AgentRoute(Strict):
    model: ModelRef
    failback: list[ModelRef] = Field(default_factory=list, max_length=10)


class ProviderSwitch(Strict):
    enabled: bool = True


class RoutingDocument(Strict):
    version: Literal[1] = 1
    # Used by any agent without its own entry.
    default: AgentRoute | None = None
    agents: dict[str, AgentRoute] = Field(default_factory=dict)
    providers: dict[str, ProviderSwitch] = Field(default_factory=dict)

    def chain(self, agent: str) -> list[str]:
        """The agent's primary model then its failbacks, leaving out switched-off providers."""
        route = self.agents.get(agent) or self.default
        if route is None:
            return []
        refs = [route.model, *route.failback]
        return [ref for ref in dict.fromkeys(refs) if self.enabled(ref.split("/", 1)[0])]

    def enabled(self, provider: str) -> bool:
        switch = self.providers.get(provider)
        return switch is None or switch.enabled


def parse(raw: str | bytes | dict[str, Any]) -> RoutingDocument:
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError as exc:
        raise RoutingError(f"not JSON: {exc}") from None
    try:
        return RoutingDocument.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors())
        raise RoutingError(problems) from None


def endpoint_for(ref: str, gateway_url: str, token: str | None, like: ModelEndpoint | None = None) -> ModelEndpoint:
    """A model endpoint that reaches `provider/model` through the aiplane gateway."""
    provider, _, model = ref.partition("/")
    base = gateway_url.rstrip("/")
    if provider == "anthropic":
        kind, url, name = "anthropic", f"{base}/anthropic", model
    elif provider == "openai":
        kind, url, name = "openai", f"{base}/openai", model
    else:
        kind, url, name = "openai", f"{base}/compat", ref
    extra = {}
    if like is not None:
        extra = {"max_output_tokens": like.max_output_tokens, "timeout_seconds": like.timeout_seconds}
    return ModelEndpoint(kind=kind, base_url=url, model=name, api_key=SecretStr(token) if token else None,
                         catalog_id=provider, **extra)


@dataclass
class RemoteRouting:
    """Reads the gateway's routing document, cached for `ttl` seconds.

    When the gateway cannot be reached, the last good document keeps serving (and None before
    any succeeded): central control must never be what breaks a review.
    """

    url: str
    token: str | None
    ttl: float = DEFAULT_TTL_SECONDS
    timeout: float = 5.0
    _cached: RoutingDocument | None = None
    _fetched_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)
    last_error: str | None = None

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/v1/review-config"

    def get(self) -> RoutingDocument | None:
        with self._lock:
            if time.monotonic() - self._fetched_at < self.ttl:
                return self._cached
            self._fetched_at = time.monotonic()
            try:
                self._cached = self._fetch()
                self.last_error = None
            except RoutingError as exc:
                self.last_error = str(exc)
            return self._cached

    def _fetch(self) -> RoutingDocument:
        import httpx

        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            response = httpx.get(self.endpoint, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise RoutingError(f"cannot reach {self.endpoint} ({exc.__class__.__name__})") from None
        if response.status_code != 200:
            raise RoutingError(f"{self.endpoint} answered HTTP {response.status_code}")
        return parse(response.content)

    def to_job(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "ttl": self.ttl}

    @classmethod
    def from_job(cls, data: dict[str, Any]) -> RemoteRouting:
        return cls(url=data["url"], token=data.get("token"), ttl=float(data.get("ttl", DEFAULT_TTL_SECONDS)))


EMPTY = RoutingDocument()
