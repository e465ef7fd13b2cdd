"""Prometheus metrics. Labels never carry user ids, emails or keys."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aiplane_gateway_requests", "Proxied requests", ["provider", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "aiplane_gateway_request_duration_seconds",
            "Time from request to the end of the response, streams included",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "aiplane_gateway_time_to_first_byte_seconds",
            "Time from request to the first upstream byte relayed",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "aiplane_gateway_tokens", "Tokens by kind", ["provider", "kind"], registry=self.registry
        )
        self.cost = Counter("aiplane_gateway_cost_usd", "Cost in USD", ["provider"], registry=self.registry)
        self.upstream_errors = Counter(
            "aiplane_gateway_upstream_errors", "Upstream failures", ["provider", "kind"], registry=self.registry
        )
        self.auth_failures = Counter(
            "aiplane_gateway_auth_failures", "Requests refused for identity", registry=self.registry
        )
        self.usage_pending = Gauge(
            "aiplane_gateway_usage_pending", "Usage records waiting to be written", registry=self.registry
        )

        self.quota_refusals = Counter(
            "aiplane_gateway_quota_refusals", "Requests refused by a quota", ["scope", "limit"], registry=self.registry
        )
        self.quota_backend_errors = Counter(
            "aiplane_gateway_quota_backend_errors",
            "Quota counter store (Redis) failures; see quotas.on_backend_error",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
