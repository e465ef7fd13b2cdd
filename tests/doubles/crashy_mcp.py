"""A tiny stdio MCP server that can be told to crash, for the portal's restart tests."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("crashy")


@server.tool(description="Answer pong.")
def ping() -> str:
    return "pong"


@server.tool(description="Exit the process at once, as a crash would.")
def die() -> str:
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
