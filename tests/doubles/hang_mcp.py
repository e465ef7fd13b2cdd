"""A stdio MCP server that hangs on demand, for the portal's upstream-isolation tests.

Set by environment variables (the portal passes an upstream's `env`):

- ``HANG_ON=initialize``: never answers anything, not even ``initialize``;
- ``HANG_ON=list``: answers the first ``tools/list``, then never answers another;
- ``HANG_STUBBORN=1``: ignores SIGTERM and keeps running after its stdin closes (only SIGKILL stops it);
- ``HANG_PID_FILE``: where to write its pid; ``HANG_EVENTS``: a file where ``slow`` appends
  ``started`` and ``cancelled`` lines.

Tools: ``ping`` answers pong; ``slow(seconds)`` sleeps, recording whether it was cancelled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

# First of all, before the slow imports: the tests look for this process by its pid.
if os.environ.get("HANG_PID_FILE"):
    with open(os.environ["HANG_PID_FILE"], "w") as out:
        out.write(str(os.getpid()))
if os.environ.get("HANG_STUBBORN"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

from mcp.server.mcpserver import MCPServer  # noqa: E402

HANG_ON = os.environ.get("HANG_ON", "")
EVENTS = os.environ.get("HANG_EVENTS")


def _event(text: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as out:
            out.write(text + "\n")


class HangingServer(MCPServer):
    listed = 0

    async def list_tools(self):  # type: ignore[override]
        HangingServer.listed += 1
        if HANG_ON == "list" and HangingServer.listed > 1:
            await asyncio.sleep(3600)
        return await super().list_tools()


server = HangingServer("hang")


@server.tool(description="Answer pong.")
def ping() -> str:
    return "pong"


@server.tool(description="Sleep for a number of seconds, then answer done.")
async def slow(seconds: float = 30) -> str:
    _event("started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _event("cancelled")
        raise
    _event("finished")
    return "done"


def main() -> None:
    if HANG_ON == "initialize":
        while True:
            time.sleep(3600)
    server.run("stdio")
    if os.environ.get("HANG_STUBBORN"):
        while True:  # stdin closed: a well-behaved server would exit here
            time.sleep(3600)


if __name__ == "__main__":
    main()
