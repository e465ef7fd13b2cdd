"""The portal: many upstream MCP servers behind one set of tools, with policy and audit.

Aggregation mode shows every permitted tool as `<server>__<tool>`; Code Mode shows two tools,
`search` and `execute`, whatever sits behind them. Both paths call upstream tools through
`call`, so permissions and audit apply to code run in the sandbox too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from mcp import types
from sqlalchemy.ext.asyncio import AsyncEngine

from aiplane.config import PortalSettings
from aiplane.frontmatter import split_frontmatter
from aiplane.logs import log_fields
from aiplane.portal.sandbox import SandboxPool
from aiplane.portal.signatures import declaration
from aiplane.portal.toolsearch import ToolSearch, is_browse, overview
from aiplane.portal.upstream import Upstream, UpstreamError
from aiplane.store.schema import portal_calls

log = logging.getLogger("aiplane.portal")
SEPARATOR = "__"
MAX_AUDITED_ARGUMENT_BYTES = 4096
MAX_CODE_CHARS = 100_000
TOOL_LIST_TTL_SECONDS = 10.0
AUDIT_BATCH = 200
AUDIT_FLUSH_SECONDS = 0.25
AUDIT_BACKLOG_MAX = 100_000


@dataclass(frozen=True)
class Caller:
    subject: str
    groups: tuple[str, ...]
    user_id: str


class PortalError(Exception):
    """A refusal or failure the client sees as a tool error."""


def _load_codemode_tools() -> list[types.Tool]:
    """search and execute: their descriptions are data (portal/tools/*.md), schemas in frontmatter."""
    import yaml

    found = []
    folder = resources.files("aiplane.portal").joinpath("tools")
    for name in ("search", "execute"):
        front, body, _ = split_frontmatter(folder.joinpath(f"{name}.md").read_text(encoding="utf-8"))
        meta = yaml.safe_load(front or "") or {}
        found.append(types.Tool(name=name, description=" ".join(body.split()), input_schema=meta["input_schema"]))
    return found


class Portal:
    def __init__(self, settings: PortalSettings, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.upstreams = {
            name: Upstream(name, upstream, settings.restart_backoff_seconds, settings.restart_backoff_max_seconds)
            for name, upstream in settings.upstreams.items()
            if upstream.enabled
        }
        self.sandbox = SandboxPool(settings.sandbox)
        self.codemode_tools = _load_codemode_tools()
        self.tool_search = ToolSearch(SEPARATOR)
        # Input schemas by exposed name, from the latest listing: the transport checks
        # Mcp-Param headers against them on every call, and must not list upstreams each time.
        self.schemas: dict[str, dict[str, Any]] = {t.name: t.input_schema for t in self.codemode_tools}
        self._audit_rows: list[dict[str, Any]] = []
        self._audit_task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.sandbox.start()
        if self.engine is not None and self._audit_task is None:
            self._audit_task = asyncio.create_task(self._flush_audit_forever(), name="portal-audit")

    async def close(self) -> None:
        await asyncio.gather(*(u.close() for u in self.upstreams.values()), return_exceptions=True)
        await self.sandbox.close()
        if self._audit_task is not None:
            self._audit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._audit_task
            self._audit_task = None
        await self.flush_audit()

    # -- policy ------------------------------------------------------------------------------

    def allowed(self, caller: Caller, server: str, tool: str | None = None) -> bool:
        names = [server] + ([f"{server}{SEPARATOR}{tool}"] if tool else [])
        applicable = [p for p in self.settings.policies
                      if (not p.users and not p.groups) or caller.subject in p.users or set(caller.groups) & set(p.groups)]

        def matches(patterns: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)

        if any(matches(p.deny) for p in applicable):
            return False
        allowing = [p for p in applicable if p.allow]
        if not allowing:
            return True
        if tool is None:
            # A server is visible if anything on it may be allowed.
            return any(fnmatch.fnmatchcase(server, pattern.split(SEPARATOR, 1)[0]) for p in allowing for pattern in p.allow)
        return any(matches(p.allow) for p in allowing)

    # -- tools -------------------------------------------------------------------------------

    async def upstream_tools(self, caller: Caller) -> list[tuple[str, types.Tool]]:
        """Every permitted tool of every reachable upstream; an unreachable one contributes none."""
        servers = [name for name in self.upstreams if self.allowed(caller, name)]

        async def one(name: str) -> list[tuple[str, types.Tool]]:
            try:
                # Cached for TOOL_LIST_TTL_SECONDS: a search or an execute must not cost one
                # tools/list round trip per upstream.
                tools = await self.upstreams[name].tools(TOOL_LIST_TTL_SECONDS)
            except UpstreamError as exc:
                log.warning("upstream tools unavailable", extra=log_fields(upstream=name, error=str(exc)))
                return []
            return [(name, tool) for tool in tools if self.allowed(caller, name, tool.name)]

        found = await asyncio.gather(*(one(name) for name in servers))
        return [pair for group in found for pair in group]

    async def aggregated_tools(self, caller: Caller) -> list[types.Tool]:
        tools = [
            tool.model_copy(update={"name": f"{server}{SEPARATOR}{tool.name}"})
            for server, tool in await self.upstream_tools(caller)
        ]
        self.schemas.update({t.name: t.input_schema for t in tools})
        return tools

    def _split(self, name: str) -> tuple[str, str]:
        server, sep, tool = name.partition(SEPARATOR)
        if not sep or server not in self.upstreams or not tool:
            raise PortalError(f"unknown tool '{name}'; tools are named <server>{SEPARATOR}<tool>")
        return server, tool

    async def call(self, caller: Caller, name: str, arguments: dict[str, Any], via: str = "direct") -> types.CallToolResult:
        """One upstream tool call, with policy and audit."""
        started = time.perf_counter()
        status = "error"
        server = name.partition(SEPARATOR)[0][:64]
        try:
            server, tool = self._split(name)
            if not self.allowed(caller, server, tool):
                status = "denied"
                raise PortalError(f"you are not allowed to use '{name}'")
            result = await self.upstreams[server].call("call_tool", tool, arguments)
            status = "error" if result.is_error else "ok"
            return result
        except UpstreamError as exc:
            raise PortalError(str(exc)) from None
        finally:
            await self._audit(caller, server, name, via, (time.perf_counter() - started) * 1000, status, arguments)

    async def _audit(self, caller: Caller, server: str, tool: str, via: str, duration_ms: float, status: str,
                     arguments: dict[str, Any]) -> None:
        log.info("tool call", extra=log_fields(user_id=caller.user_id, tool=tool, via=via, duration_ms=round(duration_ms, 2), status=status))
        if self.engine is None:
            return
        recorded = None
        if self.settings.audit_arguments:
            recorded = json.dumps(arguments, default=str)[:MAX_AUDITED_ARGUMENT_BYTES]
        # Written in batches by a background task: a database round trip per call would be most
        # of the portal's own overhead. close() writes what is left.
        self._audit_rows.append({"ts": datetime.now(UTC), "user_id": caller.user_id, "server": server, "tool": tool[:200],
                                 "via": via, "duration_ms": duration_ms, "status": status, "arguments": recorded})
        if len(self._audit_rows) >= AUDIT_BATCH:
            await self.flush_audit()

    async def flush_audit(self) -> None:
        if not self._audit_rows or self.engine is None:
            return
        rows, self._audit_rows = self._audit_rows, []
        try:
            async with self.engine.begin() as conn:
                await conn.execute(portal_calls.insert(), rows)
        except Exception as exc:  # noqa: BLE001 - kept for the next flush; the calls themselves succeeded
            self._audit_rows[:0] = rows[-AUDIT_BACKLOG_MAX:]
            log.error("portal audit write failed", extra=log_fields(error=exc.__class__.__name__, pending=len(self._audit_rows)))

    async def _flush_audit_forever(self) -> None:
        while True:
            await asyncio.sleep(AUDIT_FLUSH_SECONDS)
            await self.flush_audit()

    # -- Code Mode ---------------------------------------------------------------------------

    async def search(self, caller: Caller, query: str, limit: int = 8) -> str:
        listing = [(server, self.settings.upstreams[server].description, tool) for server, tool in await self.upstream_tools(caller)]
        if is_browse(query):
            # Browsing comes first, searching next: index (and embed, in the background) now.
            await asyncio.to_thread(self.tool_search.prepare, listing)
            return overview(listing)
        tools = {f"{server}{SEPARATOR}{tool.name}": tool for server, _description, tool in listing}
        # In a thread: the first search of a listing embeds its tools, every search its query.
        ranked = await asyncio.to_thread(self.tool_search.search, listing, query, max(1, min(limit, 50)))
        if not ranked:
            return f"No tool matches '{query[:200]}'. {len(tools)} tools are available; search '*' lists them by server."
        lines = [declaration(f"tools.{name}", tools[name].description, tools[name].input_schema, tools[name].output_schema)
                 for name in ranked]
        return "\n".join(lines)

    async def execute(self, caller: Caller, code: str) -> dict[str, Any]:
        if len(code) > MAX_CODE_CHARS:
            return {"result": None, "logs": [], "error": f"code longer than {MAX_CODE_CHARS} characters", "duration_ms": 0.0}
        listed = await self.upstream_tools(caller)
        names = [f"{server}{SEPARATOR}{tool.name}" for server, tool in listed]
        # A model that executes before it searches: index (and embed, in the background) now.
        await asyncio.to_thread(self.tool_search.prepare,
                                [(server, self.settings.upstreams[server].description, tool) for server, tool in listed])

        async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
            try:
                result = await self.call(caller, name, arguments, via="execute")
            except PortalError as exc:
                raise RuntimeError(str(exc)) from None
            if result.is_error:
                raise RuntimeError(_text(result) or f"{name} failed")
            return _value(result)

        return (await self.sandbox.execute(code, names, call_tool)).to_json()

    # -- resources and prompts (aggregation mode) --------------------------------------------

    async def _listings(self, caller: Caller, method: str) -> list[tuple[str, Any]]:
        """`list_resources` or `list_prompts` of every permitted, reachable upstream."""
        found = []
        for name, upstream in self.upstreams.items():
            if self.allowed(caller, name):
                try:
                    found.append((name, await upstream.call(method)))
                except UpstreamError:
                    continue  # a down upstream contributes nothing; the others still answer
        return found

    async def resources(self, caller: Caller) -> list[types.Resource]:
        return [r.model_copy(update={"name": f"{name}{SEPARATOR}{r.name}"})
                for name, listed in await self._listings(caller, "list_resources") for r in listed.resources]

    async def read_resource(self, caller: Caller, uri: str) -> types.ReadResourceResult:
        for name, listed in await self._listings(caller, "list_resources"):
            if any(str(r.uri) == uri for r in listed.resources):
                try:
                    return await self.upstreams[name].call("read_resource", uri)
                except UpstreamError as exc:
                    raise PortalError(str(exc)) from None
        raise PortalError(f"no permitted upstream offers resource {uri}")

    async def prompts(self, caller: Caller) -> list[types.Prompt]:
        return [p.model_copy(update={"name": f"{name}{SEPARATOR}{p.name}"})
                for name, listed in await self._listings(caller, "list_prompts") for p in listed.prompts]

    async def get_prompt(self, caller: Caller, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        server, prompt = self._split(name)
        if not self.allowed(caller, server):
            raise PortalError(f"you are not allowed to use '{name}'")
        try:
            return await self.upstreams[server].call("get_prompt", prompt, arguments or {})
        except UpstreamError as exc:
            raise PortalError(str(exc)) from None

    def status(self) -> dict[str, Any]:
        return {name: {"status": u.state.status, "error": u.state.last_error, "restarts": u.state.restarts}
                for name, u in self.upstreams.items()}


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _value(result: types.CallToolResult) -> Any:
    """What a tool call returns inside execute: structured content, else JSON text parsed, else text."""
    if result.structured_content is not None:
        return result.structured_content
    text = _text(result)
    try:
        return json.loads(text)
    except ValueError:
        return text
