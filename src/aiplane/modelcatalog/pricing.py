"""Cost from a models.dev ``api.json``-format catalog (USD per 1M tokens)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True, slots=True)
class TokenCounts:
    # input includes cached and cache-write tokens, whatever the provider's own convention.
    input: int = 0
    output: int = 0
    cached: int = 0
    cache_write: int = 0


MEMO_SIZE = 4096
MAX_MODEL_NAME = 200


class PriceTable:
    def __init__(self, catalog: dict[str, Any]) -> None:
        self._prices: dict[str, dict[str, Price]] = {}
        for provider_id, provider in catalog.items():
            models = provider.get("models") if isinstance(provider, dict) else None
            if not isinstance(models, dict):
                continue
            table: dict[str, Price] = {}
            for model_id, model in models.items():
                cost = model.get("cost") if isinstance(model, dict) else None
                if not isinstance(cost, dict) or "input" not in cost or "output" not in cost:
                    continue
                try:
                    table[model_id.lower()] = Price(
                        input=float(cost["input"]),
                        output=float(cost["output"]),
                        cache_read=float(cost["cache_read"]) if cost.get("cache_read") is not None else None,
                        cache_write=float(cost["cache_write"]) if cost.get("cache_write") is not None else None,
                    )
                except (TypeError, ValueError):
                    continue
            self._prices[provider_id] = table
        self._memo: dict[tuple[str, str], Price | None] = {}
        self._canonical: dict[tuple[str, str], str | None] = {}

    def __len__(self) -> int:
        return sum(len(models) for models in self._prices.values())

    def price(self, provider_id: str, model: str) -> Price | None:
        key = (provider_id, model)
        if key not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()  # model names come from clients: the memo must not grow with them
            self._memo[key] = self._find(provider_id, model[:MAX_MODEL_NAME].lower())
        return self._memo[key]

    def _find(self, provider_id: str, model: str) -> Price | None:
        found = self._resolve(provider_id, model)
        return self._prices[provider_id][found] if found is not None else None

    def canonical(self, provider_id: str, model: str) -> str | None:
        """The catalogued model id a requested name is priced as (`GPT-4o-2024-08-06` -> `gpt-4o`), or None.
        Quotas match model rules on it, so a rule cannot be dodged by spelling the model another way."""
        key = (provider_id, model)
        if key not in self._canonical:
            if len(self._canonical) >= MEMO_SIZE:
                self._canonical.clear()
            self._canonical[key] = self._resolve(provider_id, model[:MAX_MODEL_NAME].strip().lower())
        return self._canonical[key]

    def _resolve(self, provider_id: str, model: str) -> str | None:
        table = self._prices.get(provider_id)
        if not table:
            return None
        if model.startswith("models/"):
            model = model.removeprefix("models/")
        if model in table:
            return model
        undated = _DATE_SUFFIX.sub("", model)
        if undated in table:
            return undated
        # Longest catalogued id that prefixes the requested one, e.g. a dated snapshot name.
        candidates = [m for m in table if model.startswith(m + "-")]
        return max(candidates, key=len) if candidates else None

    def cost(self, provider_id: str, model: str, tokens: TokenCounts) -> float | None:
        price = self.price(provider_id, model)
        if price is None:
            return None
        cache_read = price.cache_read if price.cache_read is not None else price.input
        cache_write = price.cache_write if price.cache_write is not None else price.input
        fresh_input = max(tokens.input - tokens.cached - tokens.cache_write, 0)
        total = (
            fresh_input * price.input
            + tokens.cached * cache_read
            + tokens.cache_write * cache_write
            + tokens.output * price.output
        )
        return total / 1_000_000
