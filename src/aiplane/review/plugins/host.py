"""Loading review plugins from entry points and running the lifecycle with its failure rules."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from aiplane.logs import log_fields
from aiplane.review.plugins import spec
from aiplane.review.plugins.context import PluginContext

log = logging.getLogger("aiplane.review.plugins")


class ConfigureError(Exception):
    """A plugin could not configure the review; the run stops with this message."""


@dataclass
class PluginInfo:
    name: str
    source: str
    status: str = "loaded"
    error: str | None = None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class PluginHost:
    def __init__(self, disabled: frozenset[str] = frozenset()) -> None:
        self.manager = pluggy.PluginManager(spec.PROJECT)
        self.manager.add_hookspecs(spec.ReviewHooks)
        self.infos: dict[str, PluginInfo] = {}
        self.disabled = disabled

    @classmethod
    def load(cls, disabled: frozenset[str] = frozenset()) -> PluginHost:
        """Every installed plugin; one that fails to import is reported, not fatal."""
        host = cls(disabled)
        for entry in sorted(entry_points(group=spec.ENTRY_POINT_GROUP), key=lambda e: e.name):
            source = f"{entry.dist.name if entry.dist else '?'}: {entry.value}"
            if entry.name in disabled:
                host.infos[entry.name] = PluginInfo(entry.name, source, "disabled")
                continue
            try:
                host.add(entry.name, entry.load(), source)
            except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not stop reviews
                host.infos[entry.name] = PluginInfo(entry.name, source, "failed to load", _describe(exc))
                log.warning("review plugin failed to load", extra=log_fields(plugin=entry.name, error=_describe(exc)))
        return host

    def add(self, name: str, plugin: Any, source: str = "") -> None:
        try:
            self.manager.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self.infos[name] = PluginInfo(name, source, "failed to load", _describe(exc))
            return
        self.infos[name] = PluginInfo(name, source)

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        # pluggy calls last-registered first; we run in registration (name) order.
        return list(reversed(getattr(self.manager.hook, hook).get_hookimpls()))

    @staticmethod
    def _invoke(ctx: PluginContext, impl: pluggy.HookImpl, **kwargs: Any) -> Any:
        return impl.function(*[({"ctx": ctx} | kwargs)[name] for name in impl.argnames])

    def _call(self, ctx: PluginContext, impl: pluggy.HookImpl, **kwargs: Any) -> Any:
        ctx.current_plugin = impl.plugin_name
        return self._invoke(ctx, impl, **kwargs)

    def _record(self, name: str, stage: str, exc: BaseException) -> None:
        info = self.infos.get(name)
        if info is not None:
            info.status, info.error = f"{stage} failed", _describe(exc)

    def _failed(self, ctx: PluginContext, name: str, stage: str, exc: BaseException) -> None:
        self._record(name, stage, exc)
        log.warning("review plugin failed", extra=log_fields(plugin=name, stage=stage, error=_describe(exc)))
        ctx.add_notice(f"Plugin {name} failed during {stage} ({_describe(exc)}); the review went on without it.")

    def bootstrap(self, ctx: PluginContext) -> None:
        impls = self._impls("aiplane_review_bootstrap")
        if not impls:
            return

        def one(impl: pluggy.HookImpl) -> tuple[str, BaseException | None]:
            try:
                # Concurrent: ctx.current_plugin is not set, as bootstrap contributes nothing.
                self._invoke(ctx, impl)
                return impl.plugin_name, None
            except Exception as exc:  # noqa: BLE001 - bootstrap failures are logged, never fatal
                return impl.plugin_name, exc

        with ThreadPoolExecutor(max_workers=min(len(impls), 8), thread_name_prefix="review-bootstrap") as pool:
            for name, exc in pool.map(one, impls):
                if exc is not None:
                    self._failed(ctx, name, "bootstrap", exc)

    def configure(self, ctx: PluginContext) -> None:
        for impl in self._impls("aiplane_review_configure"):
            try:
                self._call(ctx, impl)
            except Exception as exc:  # noqa: BLE001 - turned into one clear, fatal message
                self._record(impl.plugin_name, "configure", exc)
                raise ConfigureError(f"plugin {impl.plugin_name} could not configure the review: {exc}") from None
        ctx.current_plugin = "core"

    def post_configure(self, ctx: PluginContext) -> None:
        pending: list[tuple[str, Any]] = []
        for impl in self._impls("aiplane_review_post_configure"):
            try:
                result = self._call(ctx, impl)
            except Exception as exc:  # noqa: BLE001
                self._failed(ctx, impl.plugin_name, "post_configure", exc)
                continue
            if inspect.isawaitable(result):
                pending.append((impl.plugin_name, result))
        ctx.current_plugin = "core"
        if not pending:
            return

        async def gather() -> list[Any]:
            return await asyncio.gather(*(awaitable for _name, awaitable in pending), return_exceptions=True)

        for (name, _awaitable), outcome in zip(pending, asyncio.run(gather()), strict=True):
            if isinstance(outcome, BaseException):
                self._failed(ctx, name, "post_configure", outcome)

    def each(self, ctx: PluginContext, hook: str, **kwargs: Any) -> None:
        """A later-stage hook: every plugin runs; a failure is a notice on the review."""
        for impl in self._impls(hook):
            try:
                self._call(ctx, impl, **kwargs)
            except Exception as exc:  # noqa: BLE001
                self._failed(ctx, impl.plugin_name, hook.removeprefix("aiplane_review_"), exc)
        ctx.current_plugin = "core"
