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
import re
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
from aiplane.portal.limits import json_depth, per_upstream, within_bytes
from aiplane.portal.naming import SEPARATOR, exposed, map_names, safe_suffix
from aiplane.portal.sandbox import SandboxPool, ToolCallError
from aiplane.portal.signatures import declaration
from aiplane.portal.toolsearch import ToolSearch, is_browse, overview
from aiplane.portal.upstream import Upstream, UpstreamError
from aiplane.store.schema import portal_calls

log = logging.getLogger("aiplane.portal")
MAX_AUDITED_ARGUMENT_BYTES = 4096
MAX_CODE_BYTES = 100_000
# Nesting of a tool call's arguments. The MCP SDK's JSON parser (pydantic-core) drops a message
# nested past ~200 levels, so deeper arguments would make the call wait out its timeout.
MAX_ARGUMENT_DEPTH = 64
# Resources are namespaced by server: `aiplane://<server>/<the upstream's own URI>`, so two
# upstreams that list the same URI stay apart, and a read goes to the server it names.
RESOURCE_SCHEME = "aiplane://"
MAX_URI_BYTES = 2048
_URI_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
# What code in execute may read when a tool call fails: a code and a message we wrote. The
# portal's own errors (host paths, exception names) never reach the sandbox.
CALL_ERRORS = {
    "unknown_tool": "no such tool",
    "denied": "you are not allowed to use this tool",
    "unavailable": "the tool's server is unavailable right now; try again later",
    "timeout": "the tool's server did not answer in time",
    "too_deep": f"the arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels",
}
AUDIT_BATCH = 200
AUDIT_FLUSH_SECONDS = 0.25
AUDIT_BACKLOG_MAX = 100_000


@dataclass(frozen=True)
class Caller:
    subject: str
    groups: tuple[str, ...]
    user_id: str


class PortalError(Exception):
    """A refusal or failure the client sees as a tool error; `code` is what execute's code sees."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code


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
            name: Upstream(name, upstream, settings.restart_backoff_seconds, settings.restart_backoff_max_seconds,
                           max_items=settings.max_tools_per_upstream)
            for name, upstream in settings.upstreams.items()
            if upstream.enabled
        }
        # Per upstream: the listing it was built from, exposed suffix → tool, exposed suffix → upstream name.
        self._tables: dict[str, tuple[list[Any], dict[str, types.Tool], dict[str, str]]] = {}
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
        applicable = self._applicable(caller)

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

    def _applicable(self, caller: Caller) -> list[Any]:
        return [p for p in self.settings.policies
                if (not p.users and not p.groups) or caller.subject in p.users or set(caller.groups) & set(p.groups)]

    # -- tools -------------------------------------------------------------------------------

    async def _tool_table(self, server: str, restart: bool = False) -> tuple[dict[str, types.Tool], dict[str, str]]:
        """The upstream's tools under their exposed names, validated and bounded (cached per listing)."""
        items = await self.upstreams[server].listing("tools", self.settings.listing_ttl_seconds, restart)
        cached = self._tables.get(server)
        if cached is not None and cached[0] is items:
            return cached[1], cached[2]
        tools = [t for t in items if isinstance(t, types.Tool)]
        mapping, refused = map_names(server, [t.name for t in tools])
        if refused:
            log.warning("upstream tool names refused", extra=log_fields(upstream=server, count=len(refused)))
        by_name: dict[str, types.Tool] = {}
        for tool in tools:
            by_name.setdefault(tool.name, tool)
        renamed = [by_name[original].model_copy(update={"name": suffix}) for suffix, original in mapping.items()]
        kept = per_upstream(server, renamed, self.settings.max_tools_per_upstream, self.settings.max_tool_bytes, "tools")
        table = {t.name: t for t in kept}
        mapping = {suffix: mapping[suffix] for suffix in table}
        self._tables[server] = (items, table, mapping)
        return table, mapping

    async def upstream_tools(self, caller: Caller) -> list[tuple[str, types.Tool]]:
        """Every permitted tool of every reachable upstream, named by its exposed suffix; an
        unreachable upstream contributes none and (served from the cache, or marked down) costs no wait."""
        servers = [name for name in self.upstreams if self.allowed(caller, name)]

        async def one(name: str) -> list[tuple[str, types.Tool]]:
            try:
                table, _mapping = await self._tool_table(name)
            except UpstreamError as exc:
                log.warning("upstream tools unavailable", extra=log_fields(upstream=name, error=str(exc)))
                return []
            return [(name, tool) for suffix, tool in table.items() if self.allowed(caller, name, suffix)]

        found = await asyncio.gather(*(one(name) for name in servers))
        return [pair for group in found for pair in group]

    async def aggregated_tools(self, caller: Caller) -> list[types.Tool]:
        groups: dict[str, list[types.Tool]] = {}
        for server, tool in await self.upstream_tools(caller):
            groups.setdefault(server, []).append(tool.model_copy(update={"name": exposed(server, tool.name)}))
        tools = within_bytes(list(groups.values()), self.settings.max_listing_bytes, "tools")
        self.schemas.update({t.name: t.input_schema for t in tools})
        return tools

    def _split(self, name: str) -> tuple[str, str]:
        server, sep, tool = name.partition(SEPARATOR)
        if not sep or server not in self.upstreams or not tool:
            raise PortalError(f"unknown tool '{name[:100]}'; tools are named <server>{SEPARATOR}<tool>", "unknown_tool")
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
                raise PortalError(f"you are not allowed to use '{name}'", "denied")
            if json_depth(arguments, MAX_ARGUMENT_DEPTH) > MAX_ARGUMENT_DEPTH:
                raise PortalError(f"arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels", "too_deep")
            _table, mapping = await self._tool_table(server, restart=True)
            if tool not in mapping:
                raise PortalError(f"unknown tool '{name[:100]}'", "unknown_tool")
            result = await self.upstreams[server].call("call_tool", mapping[tool], arguments)
            status = "error" if result.is_error else "ok"
            return result
        except UpstreamError as exc:
            raise PortalError(str(exc), "timeout" if "did not answer" in str(exc) else "unavailable") from None
        except asyncio.CancelledError:
            status = "cancelled"  # the execute it belonged to ended; the upstream request was cancelled too
            raise
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
        # In a thread too: declarations are bounded, but an upstream's schemas are its to make.
        return await asyncio.to_thread(lambda: "\n".join(
            declaration(f"tools.{name}", tools[name].description, tools[name].input_schema, tools[name].output_schema)
            for name in ranked))

    async def execute(self, caller: Caller, code: str) -> dict[str, Any]:
        if len(code.encode("utf-8", "replace")) > MAX_CODE_BYTES:
            return {"result": None, "logs": [], "error": f"code larger than {MAX_CODE_BYTES} bytes", "duration_ms": 0.0}
        listed = await self.upstream_tools(caller)
        names = [f"{server}{SEPARATOR}{tool.name}" for server, tool in listed]
        # A model that executes before it searches: index (and embed, in the background) now.
        await asyncio.to_thread(self.tool_search.prepare,
                                [(server, self.settings.upstreams[server].description, tool) for server, tool in listed])

        async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
            try:
                result = await self.call(caller, name, arguments, via="execute")
            except PortalError as exc:
                code = exc.code if exc.code in CALL_ERRORS else "unavailable"
                raise ToolCallError(code, f"{name[:100]}: {CALL_ERRORS[code]}") from None
            if result.is_error:
                # The tool's own error text: what a direct call shows the client too.
                raise ToolCallError("tool_error", _text(result) or f"{name[:100]} failed")
            return _value(result)

        return (await self.sandbox.execute(code, names, call_tool, caller.user_id)).to_json()

    # -- resources, templates and prompts (aggregation mode) -----------------------------------

    async def _listed(self, caller: Caller, kind: str) -> list[tuple[str, list[Any]]]:
        """One listing kind from every permitted, reachable upstream (down ones contribute nothing)."""
        servers = [name for name in self.upstreams if self.allowed(caller, name)]

        async def one(name: str) -> tuple[str, list[Any]]:
            try:
                return name, await self.upstreams[name].listing(kind, self.settings.listing_ttl_seconds)
            except UpstreamError:
                return name, []

        return list(await asyncio.gather(*(one(name) for name in servers)))

    def _bounded(self, server: str, items: list[Any], kind: str) -> list[Any]:
        return per_upstream(server, items, self.settings.max_tools_per_upstream, self.settings.max_tool_bytes, kind)

    async def resources(self, caller: Caller) -> list[types.Resource]:
        groups = []
        for server, items in await self._listed(caller, "resources"):
            groups.append(found := [])
            for resource in self._bounded(server, [r for r in items if isinstance(r, types.Resource)], "resources"):
                suffix = safe_suffix(server, resource.name)
                if _safe_uri(resource.uri) and self.allowed(caller, server, suffix):
                    found.append(resource.model_copy(update={"name": exposed(server, suffix),
                                                             "uri": _namespaced(server, resource.uri)}))
        return within_bytes(groups, self.settings.max_listing_bytes, "resources")

    async def resource_templates(self, caller: Caller) -> list[types.ResourceTemplate]:
        groups = []
        for server, items in await self._listed(caller, "templates"):
            groups.append(found := [])
            for template in self._bounded(server, [t for t in items if isinstance(t, types.ResourceTemplate)], "templates"):
                suffix = safe_suffix(server, template.name)
                if _safe_uri(template.uri_template) and self.allowed(caller, server, suffix):
                    found.append(template.model_copy(update={"name": exposed(server, suffix),
                                                             "uri_template": _namespaced(server, template.uri_template)}))
        return within_bytes(groups, self.settings.max_listing_bytes, "templates")

    async def read_resource(self, caller: Caller, uri: str) -> types.ReadResourceResult:
        server, original = _split_uri(uri)
        refused = PortalError(f"no permitted upstream offers resource {uri[:200]}", "denied")
        if server not in self.upstreams or not self.allowed(caller, server):
            raise refused
        try:
            names = await self._resource_names(caller, server, original)
            # Checked under the same policy as tools, `<server>__<resource or template name>`, for
            # EVERY entry that matches the URI: a denied template is not bypassed through a broader
            # allowed one. Entries the listing caps left out still count (see _resource_names).
            if names is None or not names or not all(self.allowed(caller, server, name) for name in names):
                raise refused
            result = await self.upstreams[server].call("read_resource", original)
        except UpstreamError as exc:
            raise PortalError(str(exc)) from None
        # Contents name their own URIs; each comes back namespaced like the listing's, and one
        # that is unsafe to show (controls, spaces, oversized) is replaced by the URI that was read.
        contents = [c.model_copy(update={"uri": _namespaced(server, str(c.uri) if _safe_uri(str(c.uri)) else original)})
                    for c in result.contents]
        return result.model_copy(update={"contents": contents})

    async def _resource_names(self, caller: Caller, server: str, uri: str) -> list[str] | None:
        """The names of every resource and template of `server` that match `uri`, from the whole
        listing the portal holds (also entries the per-item size cap keeps out of the listing
        clients see). None when the decision cannot be made: the upstream listed more entries than
        the portal kept, and a policy names items of this server, so an unseen denied one might match."""
        ttl = self.settings.listing_ttl_seconds
        upstream = self.upstreams[server]
        resources = await upstream.listing("resources", ttl)
        templates = await upstream.listing("templates", ttl)
        if (upstream.truncated("resources") or upstream.truncated("templates")) and self._names_items(caller):
            log.warning("resource read refused: the upstream lists more than the portal keeps",
                        extra=log_fields(upstream=server))
            return None
        names = [safe_suffix(server, r.name) for r in resources if isinstance(r, types.Resource) and str(r.uri) == uri]
        names += [safe_suffix(server, t.name) for t in templates
                  if isinstance(t, types.ResourceTemplate) and _template_matches(t.uri_template, uri)]
        return names

    def _names_items(self, caller: Caller) -> bool:
        """Whether a policy of the caller's could single out one item (a `server__name` pattern or a glob)."""
        return any(SEPARATOR in pattern or any(c in pattern for c in "*?[")
                   for policy in self._applicable(caller) for pattern in (*policy.allow, *policy.deny))

    async def _prompt_table(self, server: str, items: list[Any]) -> dict[str, types.Prompt]:
        prompts = [p for p in self._bounded(server, items, "prompts") if isinstance(p, types.Prompt)]
        mapping, _refused = map_names(server, [p.name for p in prompts])
        by_name = {p.name: p for p in reversed(prompts)}
        return {suffix: by_name[original] for suffix, original in mapping.items()}

    async def prompts(self, caller: Caller) -> list[types.Prompt]:
        groups = []
        for server, items in await self._listed(caller, "prompts"):
            groups.append(found := [])
            for suffix, prompt in (await self._prompt_table(server, items)).items():
                if self.allowed(caller, server, suffix):
                    found.append(prompt.model_copy(update={"name": exposed(server, suffix)}))
        return within_bytes(groups, self.settings.max_listing_bytes, "prompts")

    async def get_prompt(self, caller: Caller, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        server, suffix = self._split(name)
        if not self.allowed(caller, server, suffix):
            raise PortalError(f"you are not allowed to use '{name}'", "denied")
        try:
            table = await self._prompt_table(server, await self.upstreams[server].listing("prompts", self.settings.listing_ttl_seconds))
            if suffix not in table:
                raise PortalError(f"unknown prompt '{name[:100]}'", "unknown_tool")
            return await self.upstreams[server].call("get_prompt", table[suffix].name, arguments or {})
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


def _safe_uri(uri: Any) -> bool:
    return isinstance(uri, str) and 0 < len(uri.encode()) <= MAX_URI_BYTES and not _URI_UNSAFE.search(uri)


def _namespaced(server: str, uri: str) -> str:
    return f"{RESOURCE_SCHEME}{server}/{uri}"


def _split_uri(uri: str) -> tuple[str, str]:
    server, sep, original = uri.removeprefix(RESOURCE_SCHEME).partition("/")
    if not uri.startswith(RESOURCE_SCHEME) or not sep or not original or not _safe_uri(original):
        raise PortalError(f"resources are named {RESOURCE_SCHEME}<server>/<uri>; '{uri[:200]}' is not", "unknown_tool")
    return server, original


def _template_matches(template: str, uri: str) -> bool:
    """Whether `uri` is an expansion of an RFC 6570 template. Simple expressions (`{x}`) match
    within one path segment, operator ones (`{+x}`, `{/x}`, ...) anything. Matched by scanning,
    not by a backtracking regular expression: both strings come from outside."""
    if not _safe_uri(template) or template.count("{") > 20:
        return False
    parts = re.split(r"(\{[^}]*\})", template)  # literal, expression, literal, ...
    position = 0
    for index in range(0, len(parts), 2):
        literal = parts[index]
        if index == 0:
            if not uri.startswith(literal):
                return False
            position = len(literal)
            continue
        expression = parts[index - 1]
        simple = expression[1:2].isalnum() or expression[1:2] == "_"
        end = uri.find(literal, position) if literal else len(uri)
        if index == len(parts) - 1 and literal:
            end = len(uri) - len(literal) if uri.endswith(literal) and len(uri) - len(literal) >= position else -1
        if end < 0 or (simple and re.search(r"[/?#]", uri[position:end])):
            return False
        position = end + len(literal)
    return position == len(uri)
