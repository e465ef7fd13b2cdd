"""What plugins may contribute, and the assembly of those contributions into one validated run
configuration. Every contribution records the plugin that made it, so an error names its source."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from aiplane.config import Settings
from aiplane.llm.routing import RemoteRouting
from aiplane.repository.tree import RepoTree
from aiplane.review.agents import AgentError, AgentSpec, parse_agent
from aiplane.review.repo_settings import RepoReviewSettings
from aiplane.review.report import Finding

if TYPE_CHECKING:
    from aiplane.vcs.model import VcsHost

PERMISSIONS = frozenset({"vcs:comment", "vcs:inline", "vcs:status", "vcs:approve", "network:gateway"})
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# The worker's own runtime: a plugin must not be able to redirect what code it loads.
_RESERVED_ENV = frozenset({"PATH", "HOME", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "LD_PRELOAD", "LD_LIBRARY_PATH"})


class AssemblyError(Exception):
    """Contributions that do not fit together; the message names the plugin."""


@dataclass(frozen=True)
class ReviewOptions:
    """What the user asked for on the command line (read-only to plugins)."""

    vcs: str = "local"
    repo: Path = Path(".")
    base: str | None = None
    head: str = "HEAD"
    change: str | None = None
    max_inline: int = 10
    dry_run: bool = False
    # trivial, lite or full: forced instead of decided from the change.
    tier: str | None = None


@dataclass(frozen=True)
class Provider:
    name: str
    url: str
    token: str | None = field(repr=False)


@dataclass(frozen=True)
class RunConfig:
    """The assembled, validated configuration the core runs with."""

    vcs: VcsHost
    providers: dict[str, Provider]
    routes: dict[str, list[str]]
    routing: RemoteRouting | None
    agents: list[AgentSpec]
    prompt_sections: list[str]
    env: dict[str, str]
    permissions: frozenset[str]


class PluginContext:
    def __init__(self, options: ReviewOptions, settings: Settings, environ: dict[str, str]) -> None:
        self.options = options
        self.settings = settings
        self.environ = MappingProxyType(dict(environ))
        self.log = logging.getLogger("aiplane.review.plugins")
        self.current_plugin = "core"
        self.notices: list[str] = []
        self.findings: list[Finding] = []
        self.agent_notes: dict[str, list[str]] = {}
        self.rule_links: dict[str, str] = {}
        self._vcs: list[tuple[str, VcsHost]] = []
        self._providers: dict[str, tuple[str, Provider]] = {}
        self._routes: dict[str, tuple[str, list[str]]] = {}
        self._routing: tuple[str, RemoteRouting] | None = None
        self._agents: list[tuple[str, Path]] = []
        self._sections: list[tuple[str, str]] = []
        self._env: dict[str, tuple[str, str]] = {}
        self._permissions: list[tuple[str, str]] = []
        # Set by the core before any per-change hook: where the repository's own review settings
        # come from (the base commit in CI) and what they say. Read-only to plugins.
        self.config_tree: RepoTree | None = None
        self.repo_settings: RepoReviewSettings = RepoReviewSettings()

    # -- the contribution API ----------------------------------------------------------------

    def use_vcs(self, host: VcsHost) -> None:
        self._vcs.append((self.current_plugin, host))

    def register_provider(self, name: str, url: str, token: str | None = None) -> None:
        self._providers[name] = (self.current_plugin, Provider(name, url.rstrip("/"), token))

    def provider(self, name: str) -> Provider | None:
        entry = self._providers.get(name)
        return entry[1] if entry else None

    def route_agent(self, agent: str, refs: list[str]) -> None:
        """Models for one reviewer (`*` for all) as `provider/model` refs, reached through the gateway."""
        self._routes[agent] = (self.current_plugin, list(refs))

    def use_routing(self, routing: RemoteRouting) -> None:
        """A live routing source the workers re-read (5 s cache) before each model attempt."""
        self._routing = (self.current_plugin, routing)

    def register_agent(self, path: Path) -> None:
        self._agents.append((self.current_plugin, path))

    def add_prompt_section(self, title: str, text: str) -> None:
        self._sections.append((self.current_plugin, f"{title}:\n{text.strip()}"))

    def add_agent_note(self, agent: str, text: str) -> None:
        self.agent_notes.setdefault(agent, []).append(text)

    def add_findings(self, findings: list[Finding]) -> None:
        self.findings.extend(findings)

    def add_rule_links(self, links: dict[str, str]) -> None:
        self.rule_links.update(links)

    def set_env(self, name: str, value: str) -> None:
        self._env_check(name)
        previous = self._env.get(name)
        if previous is not None and previous[1] != value:
            raise AssemblyError(f"plugins {previous[0]} and {self.current_plugin} set {name} to different values")
        self._env[name] = (self.current_plugin, value)

    def grant_permission(self, permission: str) -> None:
        self._permissions.append((self.current_plugin, permission))

    def add_notice(self, text: str) -> None:
        self.notices.append(text)

    def _env_check(self, name: str) -> None:
        if not _ENV_NAME.match(name):
            raise AssemblyError(f"plugin {self.current_plugin}: {name!r} is not an environment variable name")
        if name in _RESERVED_ENV:
            raise AssemblyError(f"plugin {self.current_plugin}: {name} is reserved for the review worker")

    # -- assembly ----------------------------------------------------------------------------

    def assemble(self) -> RunConfig:
        if not self._vcs:
            raise AssemblyError(f"no plugin provides the VCS '{self.options.vcs}' (see `aiplane review plugins`)")
        if len(self._vcs) > 1:
            names = ", ".join(name for name, _ in self._vcs)
            raise AssemblyError(f"more than one plugin provides the VCS '{self.options.vcs}': {names}")
        for plugin, permission in self._permissions:
            if permission not in PERMISSIONS:
                raise AssemblyError(f"plugin {plugin}: unknown permission {permission!r} (known: {', '.join(sorted(PERMISSIONS))})")
        if (self._routes or self._routing) and "gateway" not in self._providers:
            who = next(iter(self._routes.values()))[0] if self._routes else self._routing[0]  # type: ignore[index]
            raise AssemblyError(f"plugin {who} routes reviewers through the gateway, but no gateway is configured "
                                "(set AIPLANE_REVIEW__GATEWAY_URL)")
        agents = []
        for plugin, path in self._agents:
            try:
                agents.append(parse_agent(path.read_text(encoding="utf-8"), f"{path} (from plugin {plugin})"))
            except (OSError, AgentError) as exc:
                raise AssemblyError(f"plugin {plugin}: {exc}") from None
        return RunConfig(
            vcs=self._vcs[0][1],
            providers={name: provider for name, (_plugin, provider) in self._providers.items()},
            routes={agent: refs for agent, (_plugin, refs) in self._routes.items()},
            routing=self._routing[1] if self._routing else None,
            agents=agents,
            prompt_sections=[text for _plugin, text in self._sections],
            env={name: value for name, (_plugin, value) in self._env.items()},
            permissions=frozenset(p for _plugin, p in self._permissions),
        )

