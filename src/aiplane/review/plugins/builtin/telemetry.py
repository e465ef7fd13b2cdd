"""One row per review in the database (the dashboard's Reviews page) and one log line, break
glass included. Never fails a review.

The row is written on a background thread (opening the database and checking its migrations
takes up to a second), so the review's output is not held up; the process waits for the thread
before it exits (a non-daemon thread), so the row is never lost to an early exit.
"""

from __future__ import annotations

import asyncio
import logging
import threading

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
                             break_glass=outcome.break_glass, duration_s=round(outcome.duration_s, 2),
                             input_tokens=sum(int(u.get("input_tokens") or 0) for u in review.usage),
                             cached_tokens=sum(int(u.get("cached_tokens") or 0) for u in review.usage)),
        )
        if not (review.ai_ran or outcome.break_glass) or ctx.options.dry_run:
            return
        from aiplane.review.engine import record_run

        def write() -> None:
            try:
                asyncio.run(record_run(ctx.settings, review, outcome.duration_s, break_glass=outcome.break_glass))
            except Exception as exc:  # noqa: BLE001 - telemetry never fails a review
                log.warning("review not recorded", extra=log_fields(error=exc.__class__.__name__))

        self.pending = threading.Thread(target=write, name="aiplane-review-telemetry", daemon=False)
        self.pending.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the last row to be written (tests and callers that read it back at once)."""
        pending = getattr(self, "pending", None)
        if pending is not None:
            pending.join(timeout)


plugin = TelemetryPlugin()
