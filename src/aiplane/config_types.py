"""The settings' building blocks that a process needs without the whole of the settings: the
review worker parses model endpoints, and importing config.py (pydantic-settings and some forty
models) would add about 0.1 s of CPU to its start, which is on the path to the first model
request. Only pydantic here. config.py re-exports all of it.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

# `provider/model`, the gateway's own naming.
MODEL_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]*/\S+$"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEndpoint(Strict):
    # "openai" is any OpenAI-compatible chat completions API, the aiplane gateway included.
    kind: Literal["openai", "anthropic"] = "openai"
    base_url: HttpUrl
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    # models.dev provider id used to price this model's tokens.
    catalog_id: str | None = None
    max_output_tokens: int = Field(default=4096, ge=64)
    timeout_seconds: float = Field(default=120, gt=0)
