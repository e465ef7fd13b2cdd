"""Serving ``/.well-known/opencode``: the compiled org config, kept good across reloads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiplane.config import Settings
from aiplane.logs import log_fields
from aiplane.orgconfig.compiler import compile_source, validate_config
from aiplane.orgconfig.discovery import build_config, render, well_known
from aiplane.orgconfig.source import Problem

log = logging.getLogger("aiplane.discovery")

_VALIDATION_ORIGIN = "https://gateway.invalid"


class OrgConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the org config")
        self.problems = problems


class DiscoveryService:
    """Holds the last good org config; a bad one is reported and never replaces it."""

    def __init__(self, settings: Settings, catalog: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self._catalog = catalog
        self._org_config: dict[str, Any] = {}
        self._document: dict[str, Any] | None = None

    def _compile(self) -> dict[str, Any]:
        source = self._settings.discovery.config_source
        if source is None:
            return {}
        result = compile_source(source)
        if not result.ok:
            raise OrgConfigError(result.problems)
        for warning in result.warnings:
            # Where and which key, never the value.
            log.warning(
                "literal secret in the served org config; use {env:NAME} substitution",
                extra=log_fields(where=str(warning.origin), key=warning.key),
            )
        assert result.config is not None
        config = {k: v for k, v in result.config.items() if k != "$schema"}
        # The served document adds generated providers; check the combination too.
        merged = build_config(self._settings, config, self._catalog())
        problems = validate_config(_with_origin(merged))
        if problems:
            raise OrgConfigError(problems)
        return config

    def load(self) -> None:
        """Compile at startup; raises OrgConfigError so the gateway refuses to start on a bad config."""
        self._org_config = self._compile()
        self._document = None

    def reload(self) -> list[Problem]:
        """Recompile; on problems keep the current config and return them."""
        try:
            config = self._compile()
        except OrgConfigError as exc:
            for problem in exc.problems:
                log.error("org config rejected; keeping the previous one", extra=log_fields(problem=str(problem)))
            return exc.problems
        self._org_config = config
        self._document = None
        log.info("org config reloaded", extra=log_fields(agents=len(config.get("agent", {}))))
        return []

    def invalidate(self, *_: Any) -> None:
        self._document = None

    def render(self, origin: str) -> bytes:
        if self._document is None:
            config = build_config(self._settings, self._org_config, self._catalog())
            self._document = well_known(self._settings, config)
        public = self._settings.discovery.public_url or origin
        return render(self._document, public)


def _with_origin(config: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(render(config, _VALIDATION_ORIGIN))
