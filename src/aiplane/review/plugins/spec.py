"""The hooks a review plugin may implement, in lifecycle order.

1. `aiplane_review_bootstrap(ctx)`: all plugins concurrently; a failure is logged, the review goes on.
2. `aiplane_review_configure(ctx)`: one plugin after another; a failure stops the run with its message
   (for example: the VCS is unreachable, the token is refused).
3. `aiplane_review_post_configure(ctx)`: may return an awaitable; all are awaited together (for example
   pulling the remote model routing). A failure is logged.
4. `aiplane_review_prepare(ctx, change, review)`: per change, before any model runs; contribute
   deterministic findings and reviewer notes. A failure is logged.
5. `aiplane_review_publish(ctx, outcome)`: after the core has published the review. A failure is logged.

Plugins never edit the run configuration: they call the `ctx` contribution API, and the core
assembles and validates the result.
"""

from __future__ import annotations

import pluggy

PROJECT = "aiplane.review"
ENTRY_POINT_GROUP = "aiplane.review_plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ReviewHooks:
    @hookspec
    def aiplane_review_bootstrap(self, ctx):  # noqa: ANN001, ANN201
        """Cheap, independent start-up work (warm caches, check optional tools)."""

    @hookspec
    def aiplane_review_configure(self, ctx):  # noqa: ANN001, ANN201
        """Contribute to the run: a VCS host, providers, agents, env, permissions."""

    @hookspec
    def aiplane_review_post_configure(self, ctx):  # noqa: ANN001, ANN201
        """Async follow-up after every plugin configured; return an awaitable or None."""

    @hookspec
    def aiplane_review_prepare(self, ctx, change, review):  # noqa: ANN001, ANN201
        """Deterministic findings and reviewer notes for this change."""

    @hookspec
    def aiplane_review_publish(self, ctx, outcome):  # noqa: ANN001, ANN201
        """Side effects after publishing: telemetry, notifications."""
