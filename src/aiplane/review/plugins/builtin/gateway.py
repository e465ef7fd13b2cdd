"""Route reviewers' models through the aiplane gateway: one token, server-side provider keys,
cost per user, and the central routing document."""

from __future__ import annotations

from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl


class GatewayPlugin:
    @hookimpl
    def aiplane_review_configure(self, ctx: PluginContext) -> None:
        settings = ctx.settings.review
        url = settings.gateway_url
        if not url:
            return
        token = settings.gateway_token.get_secret_value() if settings.gateway_token else ctx.environ.get("AIPLANE_TOKEN")
        ctx.register_provider("gateway", url, token)
        ctx.grant_permission("network:gateway")
        if settings.model:
            ctx.route_agent("*", [settings.model])


plugin = GatewayPlugin()
