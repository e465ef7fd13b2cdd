"""Per-reviewer models and provider switches from the gateway (`GET /v1/review-config`, 5 s cache).

Workers re-read it before every model attempt, so switching a provider off re-routes reviews
already running. If the gateway cannot serve it, the review goes on with local settings.
"""

from __future__ import annotations

import asyncio

from aiplane.llm.routing import RemoteRouting
from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl


class RemoteConfigPlugin:
    @hookimpl
    async def aiplane_review_post_configure(self, ctx: PluginContext) -> None:
        gateway = ctx.provider("gateway")
        if gateway is None or not ctx.settings.review.remote_config:
            return
        routing = RemoteRouting(gateway.url, gateway.token)
        document = await asyncio.to_thread(routing.get)
        if document is None:
            ctx.add_notice(f"The central review config was not available ({routing.last_error}); local model settings were used.")
            return
        ctx.use_routing(routing)


plugin = RemoteConfigPlugin()
