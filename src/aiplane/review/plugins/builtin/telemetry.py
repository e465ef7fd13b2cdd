"""One row per review in the database (the dashboard's Reviews page) and one log line, break
glass included. Never fails a review."""

from __future__ import annotations

import asyncio
import logging

from aiplane.logs import log_fields
from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl

log = logging.getLogger("aiplane.review.telemetry")


class TelemetryPlugin:
    @hookimpl
    def aiplane_review_publish(self, ctx: PluginContext, outcome) -> None:  # noqa: ANN001
        review = outcome.review
        log.info(
            "review finished",
            extra=log_fields(vcs=ctx.options.vcs, tier=review.tier, verdict=review.verdict, findings=len(review.findings),
                             break_glass=outcome.break_glass, duration_s=round(outcome.duration_s, 2)),
        )
        if not (review.ai_ran or outcome.break_glass) or ctx.options.dry_run:
            return
        from aiplane.review.engine import record_run

        asyncio.run(record_run(ctx.settings, review, outcome.duration_s, break_glass=outcome.break_glass))


plugin = TelemetryPlugin()
