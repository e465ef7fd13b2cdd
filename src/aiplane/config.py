"""Settings: an ``aiplane.toml`` file overridden by ``AIPLANE_*`` environment variables.

Nested keys use ``__`` in environment variables, so ``[providers.openai] base_url`` in the
file and ``AIPLANE_PROVIDERS__OPENAI__BASE_URL`` in the environment name the same setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The building blocks the review worker needs without the whole of the settings (see
# config_types.py), re-exported here where every other module looks for them.
from aiplane.config_types import MODEL_REF_PATTERN, HttpUrl, ModelEndpoint, Strict, _http_url  # noqa: F401

ENV_PREFIX = "AIPLANE_"
ENV_DELIMITER = "__"
CONFIG_PATH_ENV = "AIPLANE_CONFIG"
# Credentials with our prefix that are not settings: the user's gateway token, which
# `aiplane login`, OpenCode ({env:AIPLANE_TOKEN}) and CI secrets provide.
CREDENTIAL_ENV = ("AIPLANE_TOKEN",)
DEFAULT_CONFIG_FILE = "aiplane.toml"


class ConfigError(Exception):
    """Settings could not be loaded; the message names every offending key."""


ProviderKind = Literal["openai", "anthropic", "google", "openai-compatible"]

# Built-in providers and the gateway prefixes that reach them.
BUILTIN_PROVIDERS: dict[str, dict[str, str]] = {
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1"},
    "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com"},
    "google": {"kind": "google", "base_url": "https://generativelanguage.googleapis.com"},
}
# Where each kind's OpenAI-compatible API sits relative to its native base URL.
COMPAT_SUFFIX: dict[str, str] = {
    "openai": "",
    "openai-compatible": "",
    "anthropic": "/v1",
    "google": "/v1beta/openai",
}


class ProviderSettings(Strict):
    kind: ProviderKind = "openai-compatible"
    base_url: HttpUrl | None = None
    # Where this provider's OpenAI-compatible API lives, for requests through /compat.
    compat_base_url: HttpUrl | None = None
    api_key: SecretStr | None = None
    # The provider's id in the models.dev catalog, for pricing; defaults to the provider name.
    catalog_id: str | None = None
    timeout_seconds: float = Field(default=600.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # Request headers clients may send to this provider beyond the built-in allowlist (docs/gateway.md).
    forward_headers: list[str] = Field(default_factory=list)

    @field_validator("api_key", mode="after")
    @classmethod
    def _empty_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None


class AuthSettings(Strict):
    # "dev" signs tokens with a key kept in the data dir; "oidc" verifies an SSO provider's JWTs.
    mode: Literal["dev", "oidc"] = "dev"
    # Headers searched, in order, for the caller's JWT. "authorization" expects "Bearer <jwt>".
    token_headers: list[str] = Field(
        default_factory=lambda: [
            "authorization",
            "cf-access-jwt-assertion",
            "cf-access-token",
            "x-api-key",
            "x-goog-api-key",
        ],
        min_length=1,
    )
    jwks_url: HttpUrl | None = None
    issuer: str | None = None
    audience: str | None = None
    algorithms: list[Literal["RS256", "ES256"]] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_cache_seconds: int = Field(default=3600, ge=10)
    # An unknown kid triggers at most one JWKS refetch per this many seconds.
    jwks_refetch_interval_seconds: int = Field(default=60, ge=1)
    subject_claims: list[str] = Field(default_factory=lambda: ["email", "sub"], min_length=1)
    admin_claim: str = "groups"
    admin_values: list[str] = Field(default_factory=lambda: ["aiplane-admins"])
    # OIDC device flow for `aiplane login`: a public client registered with the IdP.
    device_client_id: str | None = None
    device_scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])

    @model_validator(mode="after")
    def _oidc_needs_verifier(self) -> AuthSettings:
        if self.mode == "oidc":
            missing = [k for k in ("jwks_url", "issuer", "audience") if getattr(self, k) in (None, "")]
            if missing:
                raise ValueError(f"auth.mode = 'oidc' requires {', '.join('auth.' + k for k in missing)}")
        self.token_headers = [h.lower() for h in self.token_headers]
        return self


class GatewaySettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=1, le=65535)
    # Header that carries the anonymous user id to providers; its value is {"userId": "<uuid>"}.
    metadata_header: str = "x-aiplane-metadata"
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    usage_batch_size: int = Field(default=500, ge=1)
    usage_flush_interval_seconds: float = Field(default=0.25, gt=0)
    # Force store=false into OpenAI-format request bodies (zero data retention at the provider).
    force_zero_retention: bool = True
    # Identity fields in request bodies (OpenAI `user` / `safety_identifier`, Anthropic
    # `metadata.user_id`): replaced with the caller's anonymous UUID, or removed.
    identity_fields: Literal["uuid", "remove"] = "uuid"
    # Request headers clients may send to every provider beyond the built-in allowlist.
    forward_headers: list[str] = Field(default_factory=list)
    # Closed endpoint families (files, batches, vector stores, ...) opened to groups, e.g.
    # {"openai:files" = ["ml-platform"]}; see docs/gateway.md for the family names.
    endpoint_groups: dict[str, list[str]] = Field(default_factory=dict)
    # Concurrent upstream requests: the whole gateway, and any one user (429 past it).
    upstream_pool_size: int = Field(default=1000, ge=1, le=100_000)
    max_inflight_per_user: int = Field(default=64, ge=1, le=100_000)
    # How long a request may wait for a free upstream slot (503 past it), apart from connecting.
    pool_wait_seconds: float = Field(default=10.0, gt=0)
    # Before any token is read: a request head must arrive within this time and size, and at most
    # this many connections are open (see aiplane.httpserver).
    head_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    max_head_bytes: int = Field(default=64 * 1024, ge=8 * 1024, le=1024 * 1024)
    max_connections: int = Field(default=8192, ge=16, le=1_000_000)


class CatalogSettings(Strict):
    # A models.dev api.json-format document; empty to serve only the bundled snapshot.
    url: HttpUrl | Literal[""] = "https://models.dev/api.json"
    refresh_interval_seconds: float = Field(default=3600, ge=10)
    timeout_seconds: float = Field(default=30, gt=0)
    # A fetched catalog with fewer models than this share of the current one is refused.
    min_keep_ratio: float = Field(default=0.5, ge=0, le=1)


class CatalogLoaderSettings(Strict):
    """How `aiplane catalog ingest|validate` reads Backstage descriptors (docs/catalog.md)."""

    # Hosts whose URLs may be fetched (Location targets, $text/$json/$yaml): exact names or
    # `*.example.com` (subdomains only). Empty, the default: nothing remote is fetched.
    allowed_hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(default_factory=list)
    # Private, loopback, link-local and other non-public addresses are refused, after DNS
    # resolution, unless they lie in one of these networks (CIDR), e.g. an internal Git server's.
    allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    timeout_seconds: float = Field(default=20, gt=0, le=300)
    max_redirects: int = Field(default=3, ge=0, le=10)
    max_document_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    max_total_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024 * 1024)
    max_files: int = Field(default=10_000, ge=1, le=1_000_000)
    # Wall time one run may spend fetching, across all URLs.
    max_remote_seconds: float = Field(default=300, gt=0, le=86_400)
    # YAML: nesting depth, and how many nodes plus characters aliases may add to one document.
    max_depth: int = Field(default=64, ge=8, le=500)
    max_alias_expansion: int = Field(default=1_000_000, ge=0, le=100_000_000)
    # Wall time to parse one file or fetched document (all its YAML documents).
    max_parse_seconds: float = Field(default=30, gt=0, le=3600)


class BackstageSettings(Strict):
    """Pulling the service catalog from an existing Backstage (`aiplane catalog sync`, and on a schedule in the gateway)."""

    # The Backstage backend (…/api/catalog is appended unless given); empty: no sync.
    url: HttpUrl | Literal[""] = ""
    # A Backstage service or static token, sent as a Bearer token; never logged.
    token: SecretStr | None = None
    # How often the gateway pulls; 0 turns the schedule off (the CLI still works).
    sync_interval_seconds: float = Field(default=3600, ge=0)
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    # A whole sync must finish within this time, or nothing changes.
    max_sync_seconds: float = Field(default=600, gt=0)
    page_size: int = Field(default=500, ge=1, le=10_000)
    max_entities: int = Field(default=200_000, ge=1)
    max_page_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # A pull with fewer entities than this share of the last good copy is refused.
    min_keep_ratio: float = Field(default=0.5, ge=0, le=1)


class DiscoverySettings(Strict):
    # A config source folder (agents/, commands/, config/) compiled into the served config.
    config_source: Path | None = None
    # What `opencode auth login` runs on the developer's machine; its stdout is the token.
    auth_command: list[str] = Field(
        default_factory=lambda: ["aiplane", "login", "--gateway", "{baseURL}"], min_length=1
    )
    # The environment variable OpenCode puts the token in; providers send it via {env:NAME}.
    token_env: str = Field(default="AIPLANE_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # The origin clients should use; without it the request's own origin is used.
    public_url: HttpUrl | None = None


LlmTier = Literal["coordinator", "specialist", "light"]


class LlmSettings(Strict):
    # Per tier: coordinator (judge), specialist, light. Missing tiers fall back to specialist.
    models: dict[LlmTier, ModelEndpoint] = Field(default_factory=dict)
    # Tried in order when a tier's model fails (outage, unusable answers), e.g. newest to previous.
    failback: dict[LlmTier, list[ModelEndpoint]] = Field(default_factory=dict)


# A model as the gateway names it: `provider/model`, e.g. "anthropic/claude-sonnet-4-5".


GitHubAssociation = Literal["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER",
                            "MANNEQUIN", "NONE"]
GitHubPermission = Literal["read", "triage", "write", "maintain", "admin"]


class ReviewAuthority(Strict):
    """Who may break glass or dismiss a finding (won't fix, acknowledged, resolving its thread).
    Bots never may; on GitHub either rule is enough, on GitLab the access level decides."""

    # GitHub's author_association of the comment (MEMBER: any member of the owning organisation).
    github_associations: list[GitHubAssociation] = Field(default_factory=lambda: ["OWNER", "MEMBER", "COLLABORATOR"])
    # Else the user's repository role, at least this (read < triage < write < maintain < admin).
    github_min_permission: GitHubPermission = "maintain"
    # GitLab: the member's access level on the project, at least this (10 Guest, 20 Reporter,
    # 30 Developer, 40 Maintainer, 50 Owner).
    gitlab_min_access_level: int = Field(default=40, ge=10, le=50)


class ReviewEvalSettings(Strict):
    """`aiplane review eval`: the judge is configured apart from the reviewers, so a team can judge
    with a stronger (or a different vendor's) model than the one under test."""

    judge: ModelEndpoint | None = None
    # (case, variant, run) units in flight at once; each review already runs its reviewers in parallel.
    concurrency: int = Field(default=2, ge=1, le=32)


class ReviewSettings(Strict):
    # A "model is thinking…" line on stderr after this much worker silence.
    heartbeat_seconds: float = Field(default=30, gt=0)
    # Address-space cap for the review worker process.
    memory_cap_mb: int = Field(default=2560, ge=0)
    max_concurrency: int = Field(default=4, ge=1, le=32)
    # The aiplane gateway reviews reach models through (the `gateway` plugin), and its token;
    # the token falls back to AIPLANE_TOKEN, which `aiplane login` and CI secrets provide.
    gateway_url: HttpUrl | None = None
    gateway_token: SecretStr | None = None
    # A default `provider/model` for every reviewer through the gateway, when no remote route says otherwise.
    model: str | None = Field(default=None, pattern=MODEL_REF_PATTERN)
    # Read per-reviewer models and provider switches from the gateway (`GET /v1/review-config`).
    remote_config: bool = True
    # Entry-point names of review plugins to leave out, e.g. ["telemetry"].
    disabled_plugins: list[str] = Field(default_factory=list)
    # Inline comments per run; the rest appear only in the summary comment.
    max_inline_comments: int = Field(default=10, ge=0, le=100)
    # Approve / withdraw approval by verdict where the host allows it (GitLab); break glass always approves.
    approve: bool = False
    # Whose comments are ours, when the host cannot tell (GitHub Apps posting as "name[bot]").
    bot_login: str | None = None
    # Time for the secret scan's keyword detector ("password = ..."), which hostile lines can make
    # slow; past it the review says what was not checked. The specific detectors always finish.
    secret_scan_seconds: float = Field(default=60, gt=0, le=3600)
    # Where SARIF rules without a link of their own point for help (docs/review.md, "Findings in SARIF").
    docs_url: HttpUrl | None = None
    # Start one reviewer first and the others once its first response is back, so they read the
    # shared prefix from the provider's cache instead of each writing it.
    warmup: bool = True
    # `aiplane review` starts its model worker before reading settings (from the environment only:
    # AIPLANE_REVIEW__PRESTART=false turns it off; a settings file cannot, it is read later).
    prestart: bool = True
    # Patches put into the prefix every reviewer shares, estimated at 4 characters a token; what
    # does not fit is read with read_patch.
    shared_patch_tokens: int = Field(default=12_000, ge=0, le=200_000)
    # The head lines around each hunk, in the same shared prefix (lite and full reviews).
    shared_context_tokens: int = Field(default=8_000, ge=0, le=200_000)
    # Input tokens one reviewer may send before its tools are withdrawn and it must answer, and
    # the whole review's; 0 turns a budget off. A cut is noted on the review.
    reviewer_input_tokens: int = Field(default=40_000, ge=0)
    review_input_tokens: int = Field(default=150_000, ge=0)
    # Who may break glass and dismiss findings.
    authority: ReviewAuthority = Field(default_factory=ReviewAuthority)


class UpstreamSettings(Strict):
    """One MCP server behind the portal: a command over stdio, or a streamable-HTTP URL."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    # Only these variables reach a stdio server (plus PATH and HOME): the portal's own secrets stay in the portal.
    env: dict[str, SecretStr] = Field(default_factory=dict)
    url: HttpUrl | None = None
    # Sent to an HTTP server, e.g. its API token; never shown to clients.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    enabled: bool = True
    # A tool call's limit. Starting and listing have their own, short ones: a server that hangs
    # there is marked down instead of making every search and execute wait.
    timeout_seconds: float = Field(default=60, gt=0)
    initialize_timeout_seconds: float = Field(default=10, gt=0, le=300)
    list_timeout_seconds: float = Field(default=5, gt=0, le=300)
    # One line on what the server is for: Code Mode's `search "*"` overview shows it, and search weighs it lightly.
    description: str = Field(default="", max_length=300)
    # A stdio server's stderr: "log" (each line escaped into a rate-limited log record under the
    # server's name, never raw) or "discard".
    stderr: Literal["log", "discard"] = "log"

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of command (stdio) or url (streamable HTTP)")
        return self


class PortalPolicy(Strict):
    """Who may use what: matched by user (subject) or group; deny wins over allow."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    # Server names, or `server__tool` names; `*` globs allowed. An empty allow list allows everything.
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class SandboxSettings(Strict):
    workers: int = Field(default=2, ge=1, le=32)
    wall_time_seconds: float = Field(default=10, gt=0, le=300)
    memory_mb: int = Field(default=128, ge=16, le=4096)
    max_output_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_tool_calls: int = Field(default=100, ge=1, le=10_000)
    # Fairness: executes one user may run at once; more wait in a queue of at most
    # per_user_queue, for at most queue_timeout_seconds, while other users go ahead.
    per_user_concurrency: int = Field(default=1, ge=1, le=32)
    per_user_queue: int = Field(default=4, ge=0, le=1000)
    queue_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    # A worker's resident memory is read on this timer, whatever it is doing; past memory_mb +
    # rss_headroom_mb (V8 itself, Python, ArrayBuffers, Wasm memory) it is killed.
    memory_poll_seconds: float = Field(default=0.02, ge=0.005, le=1)
    rss_headroom_mb: int = Field(default=256, ge=128, le=16384)  # an idle worker alone is about 70 MB


class PortalSettings(Strict):
    upstreams: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")], UpstreamSettings] = Field(default_factory=dict)
    # What clients see without ?mode=: every tool namespaced (aggregate), or search + execute (codemode).
    default_mode: Literal["aggregate", "codemode"] = "aggregate"
    policies: list[PortalPolicy] = Field(default_factory=list)
    # Store tool-call arguments in the audit log (off: only who, what, how long, status).
    audit_arguments: bool = False
    # Larger MCP request bodies get 413 before they are read.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    restart_backoff_seconds: float = Field(default=1.0, gt=0)
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    # OAuth for MCP clients (docs/portal.md): the MCP endpoint's public URL, as clients reach it,
    # published in /.well-known/oauth-protected-resource; unset, it is derived from each request.
    resource_url: HttpUrl | None = None
    # Scopes clients should ask the identity provider for (RFC 6749 scope tokens); none: the IdP's.
    oauth_scopes: list[Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")]] = Field(default_factory=list)
    # What one upstream may put in front of clients: tools beyond max_tools_per_upstream, or one
    # tool larger than max_tool_bytes (as JSON), are left out; a listing (tools, resources,
    # templates or prompts, all upstreams together) stops at max_listing_bytes.
    max_tools_per_upstream: int = Field(default=200, ge=1, le=10_000)
    max_tool_bytes: int = Field(default=32 * 1024, ge=1024, le=4 * 1024 * 1024)
    max_listing_bytes: int = Field(default=1024 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    # Upstream listings are served from a cache refreshed in the background once this old.
    listing_ttl_seconds: float = Field(default=10, ge=0, le=3600)


class CodexSettings(Strict):
    # A codex folder; reviews then run its checks and cite its rule IDs.
    path: Path | None = None
    # Prefix for links to rules in review comments, e.g. a repository browse URL; else the file path.
    link_base: str = ""


class UiSettings(Strict):
    # Show SSO identities next to anonymous ids on the dashboard; every such view is audited.
    reveal_identities: bool = False


class DatabaseSettings(Strict):
    # sqlite+aiosqlite:///path or postgresql+asyncpg://user:pass@host/db; default is a file in data_dir.
    url: SecretStr | None = None
    auto_migrate: bool = True


QuotaScope = Literal["user", "group", "model", "provider"]
# Every limit a quota rule may set, with the window it counts over (docs/quotas.md).
QUOTA_LIMITS = {
    "requests_per_minute": "minute",
    "tokens_per_minute": "minute",
    "tokens_per_day": "day",
    "usd_per_day": "day",
    "usd_per_month": "month",
    "max_concurrent": "in flight",
}


class QuotaRule(Strict):
    """Limits for one user, group (from the token's groups claim), model or provider."""

    scope: QuotaScope
    # A user's subject (email or sub) or anonymous id, "*" for every user; a group name; a model
    # name (or provider/model); a provider name.
    subject: str = Field(min_length=1, max_length=320)
    # Group, model and provider rules count everyone together unless this gives each user their own counter.
    per_user: bool = False
    requests_per_minute: int | None = Field(default=None, ge=0, le=10**9)
    tokens_per_minute: int | None = Field(default=None, ge=0, le=10**12)
    tokens_per_day: int | None = Field(default=None, ge=0, le=10**12)
    usd_per_day: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    usd_per_month: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    max_concurrent: int | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _meaningful(self) -> QuotaRule:
        self.subject = self.subject.strip()
        if not self.subject or any(ord(c) < 32 or ord(c) == 127 for c in self.subject):
            raise ValueError("subject must be printable text")
        if self.subject == "*" and self.scope != "user":
            raise ValueError("subject '*' (every user) is only for scope 'user'; use per_user for groups, models, providers")
        if self.scope == "user":
            self.per_user = False  # a user's counters are that user's already
        if all(getattr(self, name) is None for name in QUOTA_LIMITS):
            raise ValueError(f"set at least one limit: {', '.join(QUOTA_LIMITS)}")
        return self

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.scope, self.subject, self.per_user)


class QuotaSettings(Strict):
    rules: list[QuotaRule] = Field(default_factory=list, max_length=10_000)
    # When the counter store (Redis) fails: "open" lets requests through (with a metric and a log
    # line), "closed" refuses them with 503.
    on_backend_error: Literal["open", "closed"] = "open"
    # Send x-aiplane-quota-remaining-* headers on answers that a quota applies to.
    remaining_headers: bool = False
    # Log a warning when a budget's consumption crosses this share of its limit.
    warn_ratio: float = Field(default=0.8, gt=0, le=1)
    # How often runtime rules (admin API, `aiplane quota set`) are re-read, and embedded counters saved.
    reload_seconds: float = Field(default=5.0, ge=0.5, le=3600)
    # A concurrency slot older than this is counted as leaked (a replica died holding it).
    lease_seconds: float = Field(default=3600.0, ge=10, le=86400)


def _redis_url(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value().strip():
        return None
    if urlsplit(value.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


class RedisSettings(Strict):
    # redis://[:password@]host:port/db; shared quota counters and job locks across processes and replicas.
    url: Annotated[SecretStr | None, AfterValidator(_redis_url)] = None
    # Each Redis call's deadline; past it the call counts as failed (see quotas.on_backend_error).
    timeout_seconds: float = Field(default=0.25, gt=0, le=30)
    # After a failure, Redis is not asked again for this long (requests are not slowed by a dead Redis).
    retry_seconds: float = Field(default=1.0, ge=0, le=300)
    key_prefix: str = Field(default="aiplane:", max_length=64, pattern=r"^[A-Za-z0-9:_.-]*$")


class LogSettings(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aiplane"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    catalog_loader: CatalogLoaderSettings = Field(default_factory=CatalogLoaderSettings)
    backstage: BackstageSettings = Field(default_factory=BackstageSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    review_eval: ReviewEvalSettings = Field(default_factory=ReviewEvalSettings)
    codex: CodexSettings = Field(default_factory=CodexSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_builtin_providers(self) -> Settings:
        merged: dict[str, ProviderSettings] = {}
        for name, defaults in BUILTIN_PROVIDERS.items():
            given = self.providers.get(name)
            values = dict(defaults)
            if given is not None:
                values.update(given.model_dump(exclude_unset=True))
            merged[name] = ProviderSettings.model_validate(values)
        for name, given in self.providers.items():
            if name in merged:
                continue
            if given.base_url is None:
                raise ValueError(f"providers.{name}.base_url is required for a custom provider")
            merged[name] = given
        for name, provider in merged.items():
            if provider.compat_base_url is None and provider.base_url is not None:
                compat = provider.base_url + COMPAT_SUFFIX[provider.kind]
                merged[name] = provider.model_copy(update={"compat_base_url": compat})
        self.providers = merged
        return self

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir / 'aiplane.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (the parsed TOML file) are the lowest layer; the environment wins.
        return (env_settings, init_settings)


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in loc)


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc) or "(settings)"
    where = f" (env {_env_name(loc)})" if loc else ""
    message = error["msg"].removeprefix("Value error, ")
    return f"{dotted}{where}: {message}"


def _check_unknown_env_keys(environ: dict[str, str]) -> list[str]:
    known = set(Settings.model_fields)
    problems = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in (CONFIG_PATH_ENV, *CREDENTIAL_ENV):
            continue
        head = upper[len(ENV_PREFIX) :].split(ENV_DELIMITER)[0].lower()
        if head not in known:
            problems.append(f"{name}: unknown setting '{head}' (known: {', '.join(sorted(known))})")
    return problems


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies below it, by its name or through symlinks (either counts).

    A path whose links cannot be resolved (a loop) counts as inside: it is never a trusted file.
    """
    try:
        roots = {Path(os.path.abspath(folder)), folder.resolve()}
        candidates = {Path(os.path.abspath(path)), path.resolve()}
    except (OSError, RuntimeError):
        return True
    return any(c == r or r in c.parents for c in candidates for r in roots)


def resolve_config_path(explicit: Path | None, untrusted: Path | None = None) -> Path | None:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_PATH_ENV)
    if from_env:
        return Path(from_env)
    if untrusted is not None and inside(Path.cwd(), untrusted):
        return None  # in the checkout under review, ./aiplane.toml belongs to the change: never read it
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def load_settings(config_path: Path | None = None, untrusted: Path | None = None) -> Settings:
    """Load and validate settings; raise ConfigError naming each bad key.

    `untrusted` is a folder whose files an attacker may control (the checkout a CI review runs
    on): `./aiplane.toml` inside it is not read, and a settings path inside it is an error.
    """
    path = resolve_config_path(config_path, untrusted)
    if path is not None and untrusted is not None and inside(path, untrusted):
        raise ConfigError(
            f"the settings file {path} is inside the checkout under review, so the change could configure its own "
            "review; in CI give settings through the environment or the action/component inputs, and repository "
            "review settings through .aiplane/review.toml (read from the base commit)"
        )
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.__class__.__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    problems = _check_unknown_env_keys(dict(os.environ))
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        source = f" (from {path} and the environment)" if path else " (from the environment)"
        lines = [_describe(err) for err in exc.errors(include_url=False, include_input=False)]
        raise ConfigError(f"invalid settings{source}:\n  " + "\n  ".join(lines)) from None
