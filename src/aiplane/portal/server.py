"""The portal over MCP streamable HTTP: one endpoint, one login, two modes.

`?mode=codemode` (or `portal.default_mode = "codemode"`) shows `search` and `execute`;
`?mode=aggregate` shows every permitted upstream tool as `<server>__<tool>`, with resources and
prompts passed through. Whoever serves it (`aiplane portal serve`, or the gateway at `/mcp`)
supplies `authenticate`, which turns request headers into a Caller or refuses.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mcp import MCPError, types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from aiplane.httpbody import BodyTooLarge, buffer_limited
from aiplane.portal.core import Caller, Portal, PortalError
from aiplane.portal.oauth import ProtectedResource

Authenticate = Callable[[dict[str, str]], Awaitable[Caller | None]]
MODES = ("aggregate", "codemode")
INSTRUCTIONS = (
    "aiplane MCP portal: many MCP servers behind one endpoint. In Code Mode, call search to find tools, "
    "then execute JavaScript that calls them as await tools.<server>__<tool>(args)."
)


def _caller_and_mode(ctx: Any, default_mode: str) -> tuple[Caller, str]:
    request = ctx.request
    caller = request.scope["state"]["aiplane_caller"]
    return caller, request.query_params.get("mode") or default_mode


def _text_result(text: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


def build_mcp_server(portal: Portal) -> Server:
    default_mode = portal.settings.default_mode

    async def list_tools(ctx: Any, _params: Any) -> types.ListToolsResult:
        caller, mode = _caller_and_mode(ctx, default_mode)
        tools = portal.codemode_tools if mode == "codemode" else await portal.aggregated_tools(caller)
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        caller, mode = _caller_and_mode(ctx, default_mode)
        arguments = params.arguments or {}
        try:
            if mode == "codemode":
                if params.name == "search":
                    limit = arguments.get("limit")
                    return _text_result(await portal.search(caller, str(arguments.get("query", "")), int(limit) if isinstance(limit, int) else 8))
                if params.name == "execute":
                    outcome = await portal.execute(caller, str(arguments.get("code", "")))
                    # ensure_ascii off: escaping would send each non-ASCII character as 6-12 bytes,
                    # past the byte caps the sandbox counted (it counts this same JSON form).
                    text = json.dumps(outcome, default=str, ensure_ascii=False)
                    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                                structured_content=outcome, is_error=outcome["error"] is not None)
                return _text_result("Code Mode has two tools: search and execute.", error=True)
            return await portal.call(caller, params.name, arguments)
        except PortalError as exc:
            return _text_result(str(exc), error=True)

    async def list_resources(ctx: Any, _params: Any) -> types.ListResourcesResult:
        caller, mode = _caller_and_mode(ctx, default_mode)
        return types.ListResourcesResult(resources=[] if mode == "codemode" else await portal.resources(caller))

    async def list_resource_templates(ctx: Any, _params: Any) -> types.ListResourceTemplatesResult:
        caller, mode = _caller_and_mode(ctx, default_mode)
        return types.ListResourceTemplatesResult(
            resource_templates=[] if mode == "codemode" else await portal.resource_templates(caller))

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        caller, _mode = _caller_and_mode(ctx, default_mode)
        try:
            return await portal.read_resource(caller, str(params.uri))
        except PortalError as exc:
            raise MCPError(code=-32002, message=str(exc)) from None

    async def list_prompts(ctx: Any, _params: Any) -> types.ListPromptsResult:
        caller, mode = _caller_and_mode(ctx, default_mode)
        return types.ListPromptsResult(prompts=[] if mode == "codemode" else await portal.prompts(caller))

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        caller, _mode = _caller_and_mode(ctx, default_mode)
        try:
            return await portal.get_prompt(caller, params.name, params.arguments)
        except PortalError as exc:
            raise MCPError(code=-32602, message=str(exc)) from None

    return Server(
        "aiplane-portal", instructions=INSTRUCTIONS, get_tool_input_schema=portal.schemas.get,
        on_list_tools=list_tools, on_call_tool=call_tool,
        on_list_resources=list_resources, on_list_resource_templates=list_resource_templates, on_read_resource=read_resource,
        on_list_prompts=list_prompts, on_get_prompt=get_prompt,
    )


class PortalEndpoint:
    """The ASGI endpoint: authenticate, pick the mode, hand over to the MCP transport."""

    def __init__(self, portal: Portal, authenticate: Authenticate, oauth: ProtectedResource | None = None) -> None:
        self.portal = portal
        self.authenticate = authenticate
        self.oauth = oauth
        self.manager = StreamableHTTPSessionManager(app=build_mcp_server(portal), stateless=True)
        self.transport = StreamableHTTPASGIApp(self.manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        caller = await self.authenticate(headers)
        if caller is None:
            await _json(send, 401, {"error": {"type": "authentication_error", "message": "missing or invalid credentials"}},
                        [(b"www-authenticate", self.oauth.challenge(scope) if self.oauth else b"Bearer")])
            return
        query = scope.get("query_string", b"").decode("latin-1")
        mode = next((part.split("=", 1)[1] for part in query.split("&") if part.startswith("mode=")), None)
        if mode is not None and mode not in MODES:
            await _json(send, 400, {"error": {"type": "invalid_request", "message": "mode must be aggregate or codemode"}})
            return
        try:
            # The MCP transport reads the whole body itself, unbounded: read it first, bounded.
            receive = await buffer_limited(scope, receive, self.portal.settings.max_request_bytes)
        except BodyTooLarge as exc:
            await _json(send, 413, {"error": {"type": "request_too_large", "message": str(exc)}}, [(b"connection", b"close")])
            return
        scope.setdefault("state", {})["aiplane_caller"] = caller
        await self.transport(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        await self.portal.start()
        try:
            async with self.manager.run():
                yield
        finally:
            await self.portal.close()


async def _json(send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(extra or [])]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def authenticator(
    token_from_headers: Callable[[dict[str, str]], str | None],
    verify: Callable[[str], Awaitable[Any]],
    user_id: Callable[[str], Awaitable[str]],
    refused: type[Exception],
) -> Authenticate:
    """A Caller from the gateway's own token checks (JWT or dev token) and anonymous user ids."""

    async def authenticate(headers: dict[str, str]) -> Caller | None:
        token = token_from_headers(headers)
        if token is None:
            return None
        try:
            identity = await verify(token)
        except refused:
            return None
        return Caller(identity.subject, tuple(identity.groups), await user_id(identity.subject))

    return authenticate
