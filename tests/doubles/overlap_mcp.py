"""A stdio MCP server whose resources, schemas and stderr attack the portal's policy and logs.

- two templates over one tree, `files` (`file:///data/{+path}`) and the narrower
  `secret_files` (`file:///data/secret/{+path}`): a policy denies the second, and a read under
  it must not slip through the first;
- a resource `payroll` inside that tree whose description is over the per-item size cap: left
  out of the listing, it must still count when a read of its URI is decided;
- `weird`, whose read returns contents naming other URIs, one with a line break;
- ``OVERLAP_EXTRA_RESOURCES=N`` lists N more resources (more than the portal keeps);
- a tool `deep_schema` whose input schema is nested ``OVERLAP_SCHEMA_DEPTH`` deep (120 by default);
- ``OVERLAP_STDERR_LINES=N`` writes N lines to stderr at start: a traceback with a host path, a
  forged JSON log line, and filler.
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.types import Tool


def _nested(depth: int) -> dict:
    schema: dict = {"type": "object", "properties": {}}
    current = schema
    for _ in range(depth):
        inner: dict = {"type": "object", "properties": {}}
        current["properties"]["a"] = inner
        current = inner
    return schema


class OverlapServer(MCPServer):
    async def _handle_read_resource(self, ctx, params):  # type: ignore[override]
        result = await super()._handle_read_resource(ctx, params)
        if str(params.uri) == "file:///data/weird.txt":
            # Contents that name other URIs: one with a line break (unsafe to show), one plain.
            first = result.contents[0]
            result.contents = [first.model_copy(update={"uri": "evil://line\nbreak forged"}),
                               first.model_copy(update={"uri": "other://fine"})]
        return result

    async def list_tools(self):  # type: ignore[override]
        listed = await super().list_tools()
        depth = int(os.environ.get("OVERLAP_SCHEMA_DEPTH", "120"))
        return listed + [Tool(name="deep_schema", description="A schema nested very deep.", input_schema=_nested(depth))]


server = OverlapServer("overlap")


@server.tool(description="Echoes its arguments' nesting depth.")
def echo(value: object = None) -> str:
    return "echoed"


@server.resource("file:///data/{+path}", name="files", description="Every file.")
def files(path: str) -> str:
    return f"file {path}"


@server.resource("file:///data/secret/{+path}", name="secret_files", description="Secret files (denied).")
def secret_files(path: str) -> str:
    return f"SECRET {path}"


@server.resource("file:///data/payroll.csv", name="payroll", description="Payroll (denied). " + "x" * 40_000)
def payroll() -> str:
    return "PAYROLL DATA"


@server.resource("file:///data/weird.txt", name="weird", description="Contents with other URIs.")
def weird() -> str:
    return "weird"


def _extra(n: int):
    def read() -> str:
        return f"extra {n}"
    return read


for _n in range(int(os.environ.get("OVERLAP_EXTRA_RESOURCES", "0"))):
    server.resource(f"extra://{_n}", name=f"extra_{_n}", description="filler")(_extra(_n))


if __name__ == "__main__":
    for _i in range(int(os.environ.get("OVERLAP_STDERR_LINES", "0"))):
        if _i == 0:
            sys.stderr.write('Traceback (most recent call last):\n  File "/home/secret-host/app/server.py", line 1\n')
            sys.stderr.write(json.dumps({"level": "error", "logger": "aiplane.gateway", "msg": "FORGED admin login"}) + "\n")
        sys.stderr.write(f"filler line {_i} \x1b[31mred\x1b[0m\n")
    sys.stderr.flush()
    server.run("stdio")
