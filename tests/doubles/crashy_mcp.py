"""A tiny stdio MCP server that can be told to crash, for the portal's restart tests; it also has
one resource and one prompt, for pass-through."""

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


@server.resource("crashy://status", description="Whether the server is up.")
def status() -> str:
    return "up"


@server.prompt(description="Greet someone by name.")
def greet(name: str) -> str:
    return f"Say hello to {name}."


if __name__ == "__main__":
    server.run("stdio")
