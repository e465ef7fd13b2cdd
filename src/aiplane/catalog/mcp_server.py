"""The catalog as an MCP server (official `mcp` SDK): stdio or streamable HTTP.

Tool descriptions are short on purpose: each one costs context tokens in every agent session.
Results are structured objects with a published output schema (the TypedDicts in `tools`), also
sent as compact JSON text for clients without structured content; a size cap and offset pagination.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from mcp.types import CallToolResult, TextContent
from starlette.types import ASGIApp, Receive, Scope, Send

from aiplane.catalog import tools
from aiplane.catalog.store import LiveIndex
from aiplane.httpbody import BodyTooLarge, buffer_limited

# Tool calls here carry a few short strings.
MAX_BODY_BYTES = 1024 * 1024

INSTRUCTIONS = (
    "Service catalog (Backstage model). Entity refs look like kind:namespace/name; kind and namespace "
    "default to component and default. Use who_owns for ownership, dependents for blast radius."
)


def _compact(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False, default=str)


def _inline_refs(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """The schema with `$ref`s to its own `$defs` replaced by their bodies (our types do not recurse):
    clients that render schemas, such as the portal's Code Mode signatures, see the real shapes."""
    if depth > 12:
        return {}
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
            return _inline_refs(defs[ref[8:]], defs, depth + 1)
        return {k: _inline_refs(v, defs, depth + 1) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs, depth + 1) for v in schema]
    return schema


def build_server(live: LiveIndex) -> MCPServer:
    server = MCPServer("aiplane-catalog", instructions=INSTRUCTIONS)

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        index = await live.get()
        try:
            data = fn(index, *args, **kwargs)
            # The SDK checks structured content against the tool's output schema; the text copy is
            # compact JSON (the SDK's default is indented, which costs agents tokens).
            return CallToolResult(content=[TextContent(type="text", text=_compact(data))], structured_content=data)
        except tools.ToolError as exc:
            # The SDK's ToolError carries its message to the agent; other exceptions are masked.
            raise McpToolError(str(exc)) from None

    @server.tool(description="Full entity with relations, by ref.")
    async def get_entity(ref: str) -> tools.Entity:
        return await run(tools.get_entity, ref)

    @server.tool(description="Find entities by text and/or kind, spec.type, owner. Paginated.")
    async def search_entities(
        query: str = "", kind: str = "", type: str = "", owner: str = "", limit: int = 25, offset: int = 0
    ) -> tools.SummaryPage:
        return await run(tools.search_entities, query, kind, type, owner, limit, offset)

    @server.tool(description="Owner of an entity ref, or of a repo path/URL via source-location annotations.")
    async def who_owns(target: str) -> tools.Ownership:
        return await run(tools.who_owns, target)

    @server.tool(description="What an entity depends on (dependsOn, consumed APIs), up to depth hops.")
    async def dependencies(ref: str, depth: int = 1, limit: int = 50, offset: int = 0) -> tools.HopPage:
        return await run(tools.dependencies, ref, depth, limit, offset)

    @server.tool(description="Blast radius: entities that depend on this one, up to depth hops.")
    async def dependents(ref: str, depth: int = 1, limit: int = 50, offset: int = 0) -> tools.HopPage:
        return await run(tools.dependents, ref, depth, limit, offset)

    @server.tool(description="APIs an entity provides and consumes (or an API's providers and consumers).")
    async def apis_of(ref: str) -> tools.Apis:
        return await run(tools.apis_of, ref)

    @server.tool(description="Database resources an entity depends on, directly or via dependencies.")
    async def databases_of(ref: str, depth: int = 2) -> tools.Databases:
        return await run(tools.databases_of, ref, depth)

    @server.tool(description="Members of a group, optionally including subgroups.")
    async def team_members(group: str, include_subgroups: bool = False) -> tools.Team:
        return await run(tools.team_members, group, include_subgroups)

    @server.tool(description="A system's parts by kind, owners, domain and dependency edges.")
    async def system_map(system: str) -> tools.SystemMap:
        return await run(tools.system_map, system)

    for tool in server._tool_manager.list_tools():  # noqa: SLF001 - the SDK has no public setter
        schema = tool.fn_metadata.output_schema
        if schema and "$defs" in schema:
            tool.fn_metadata.output_schema = _inline_refs(schema, schema["$defs"])
    return server


Authorize = Callable[[dict[str, str]], Awaitable[bool]]


class RequireToken:
    """ASGI guard for the HTTP transport: no valid gateway token, no MCP; bodies over MAX_BODY_BYTES get 413."""

    def __init__(self, app: ASGIApp, authorize: Authorize, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.authorize = authorize
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not await self.authorize(headers):
                body = json.dumps({"error": {"type": "authentication_error", "message": "missing or invalid credentials"}}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
            try:
                receive = await buffer_limited(scope, receive, self.max_body_bytes)
            except BodyTooLarge as exc:
                body = json.dumps({"error": {"type": "request_too_large", "message": str(exc)}}).encode()
                await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
