"""Real MCP servers from PyPI and npm, as portal upstreams, for the search evaluation.

PyPI (dev extra): mcp-server-git, mcp-server-time, mcp-server-fetch.
npm (tests/e2e/package.json): @modelcontextprotocol/server-everything, -memory, -filesystem,
-sequential-thinking, -github. Descriptions are the packages' own registry summaries, as an
operator would paste them into `description`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / "tests" / "e2e" / "node_modules" / ".bin"
PY_BIN = Path(sys.executable).parent

def servers(root: Path) -> dict[str, tuple[Path, list[str], dict[str, str], str]]:
    """name -> (executable, args, env, description), with a git repository and a folder made under `root`."""
    repo = root / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    files = root / "files"
    files.mkdir(exist_ok=True)
    return {
        "git": (PY_BIN / "mcp-server-git", ["--repository", str(repo)], {},
                "Tools to read, search, and manipulate Git repositories"),
        "time": (PY_BIN / "mcp-server-time", ["--local-timezone", "UTC"], {},
                 "Tools for time queries and timezone conversions"),
        "fetch": (PY_BIN / "mcp-server-fetch", [], {},
                  "Tools to fetch and convert web content"),
        "everything": (NODE_BIN / "mcp-server-everything", [], {},
                       "Exercises all the features of the MCP protocol"),
        "memory": (NODE_BIN / "mcp-server-memory", [], {"MEMORY_FILE_PATH": str(root / "memory.jsonl")},
                   "Memory through a knowledge graph"),
        "filesystem": (NODE_BIN / "mcp-server-filesystem", [str(files)], {},
                       "Filesystem access"),
        "thinking": (NODE_BIN / "mcp-server-sequential-thinking", [], {},
                     "Sequential thinking and problem solving"),
        # Tools are listed without a call to the API; the token is never sent anywhere.
        "github": (NODE_BIN / "mcp-server-github", [], {"GITHUB_PERSONAL_ACCESS_TOKEN": "unused-in-tests"},
                   "Using the GitHub API"),
    }


def missing() -> list[str]:
    return [name for name, (command, *_rest) in servers_static().items() if not command.exists()]


def servers_static() -> dict[str, tuple[Path, list[str], dict[str, str], str]]:
    return {
        "git": (PY_BIN / "mcp-server-git",), "time": (PY_BIN / "mcp-server-time",), "fetch": (PY_BIN / "mcp-server-fetch",),
        "everything": (NODE_BIN / "mcp-server-everything",),
        "memory": (NODE_BIN / "mcp-server-memory",), "filesystem": (NODE_BIN / "mcp-server-filesystem",),
        "thinking": (NODE_BIN / "mcp-server-sequential-thinking",), "github": (NODE_BIN / "mcp-server-github",),
    }


def portal_toml(root: Path) -> str:
    """[portal.upstreams.*] tables for an aiplane.toml."""
    out = []
    for name, (command, args, env, description) in servers(root).items():
        env_toml = ", ".join(f'{k} = "{v}"' for k, v in env.items())
        out.append(f'[portal.upstreams.{name}]\ncommand = "{command}"\nargs = {args!r}\n'.replace("'", '"')
                   + (f"env = {{ {env_toml} }}\n" if env else "") + f'description = "{description}"\n')
    return "\n".join(out)


async def list_all(root: Path) -> dict[str, list]:
    """Every server's tools, listed over stdio with the portal's own upstream client."""
    import asyncio

    from aiplane.config import UpstreamSettings
    from aiplane.portal.upstream import Upstream

    upstreams = {name: Upstream(name, UpstreamSettings(command=str(command), args=args, env=env))
                 for name, (command, args, env, _d) in servers(root).items()}
    try:
        listed = await asyncio.gather(*(u.tools(60) for u in upstreams.values()))
    finally:
        await asyncio.gather(*(u.close() for u in upstreams.values()), return_exceptions=True)
    return dict(zip(upstreams, listed, strict=True))
