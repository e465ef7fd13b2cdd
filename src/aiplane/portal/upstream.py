"""One upstream MCP server: started on first use, restarted with backoff after a crash.

The connection lives in its own task (the SDK's transports are anyio context managers that must
be entered and left in one task); requests from any task use the session it holds. A dead
upstream fails only its own calls, with a message naming it; the portal stays up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED

from aiplane.config import UpstreamSettings
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.portal")
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class UpstreamError(Exception):
    """The upstream cannot serve a call right now; the message is safe for clients."""


@dataclass
class UpstreamState:
    status: str = "idle"  # idle, starting, ready, failed
    last_error: str | None = None
    restarts: int = 0
    next_attempt: float = 0.0
    backoff: float = 0.0
    tools: list[Any] = field(default_factory=list)
    tools_listed_at: float = float("-inf")


class Upstream:
    def __init__(self, name: str, settings: UpstreamSettings, backoff: float = 1.0, backoff_max: float = 60.0) -> None:
        self.name = name
        self.settings = settings
        self.state = UpstreamState()
        self._backoff_initial = backoff
        self._backoff_max = backoff_max
        self._client: Client | None = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    def _server(self) -> Any:
        settings = self.settings
        if settings.command is not None:
            env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
            env.update({k: v.get_secret_value() for k, v in settings.env.items()})
            return StdioServerParameters(command=settings.command, args=settings.args, env=env)
        headers = {k: v.get_secret_value() for k, v in settings.headers.items()}
        http = httpx2.AsyncClient(headers=headers, timeout=settings.timeout_seconds)
        return streamable_http_client(str(settings.url), http_client=http)

    async def _hold(self) -> None:
        """Open the connection, publish it, and keep it until asked to stop or it breaks."""
        try:
            async with Client(self._server(), read_timeout_seconds=self.settings.timeout_seconds) as client:
                listed = await client.list_tools()
                self.state.tools, self.state.tools_listed_at = list(listed.tools), time.monotonic()
                self._client = client
                self.state.status, self.state.last_error, self.state.backoff = "ready", None, 0.0
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - any transport failure marks this upstream down
            self._mark_failed_once(exc)
        except BaseException as exc:  # anyio wraps child-process deaths in exception groups
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            self._mark_failed_once(exc)
        finally:
            self._client = None
            self._ready.set()  # wake waiters; they look at the status

    def _mark_failed_once(self, exc: BaseException) -> None:
        # A call that saw the break has already marked it; closing the dead connection must not
        # count as a second failure (that would double the backoff).
        if self.state.status != "failed":
            self._mark_failed(exc)

    def _mark_failed(self, exc: BaseException) -> None:
        message = _describe(exc)
        self.state.status, self.state.last_error = "failed", message
        self.state.backoff = min(max(self.state.backoff * 2, self._backoff_initial), self._backoff_max)
        self.state.next_attempt = time.monotonic() + self.state.backoff
        log.warning("upstream down", extra=log_fields(upstream=self.name, error=message, retry_in_s=self.state.backoff))

    async def client(self) -> Client:
        """The live session, (re)starting the upstream when allowed by the backoff."""
        if self._client is not None and self.state.status == "ready":
            return self._client
        async with self._lock:
            if self._client is not None and self.state.status == "ready":
                return self._client
            if self.state.status == "failed" and time.monotonic() < self.state.next_attempt:
                wait = self.state.next_attempt - time.monotonic()
                raise UpstreamError(f"upstream '{self.name}' is down ({self.state.last_error}); next restart in {wait:.0f} s")
            if self.state.status == "failed":
                self.state.restarts += 1
            self.state.status = "starting"
            self._ready = asyncio.Event()
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._hold(), name=f"mcp-upstream-{self.name}")
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=self.settings.timeout_seconds)
            except TimeoutError:
                self._task.cancel()
                self._mark_failed(TimeoutError(f"no answer within {self.settings.timeout_seconds:.0f} s"))
            if self._client is None:
                raise UpstreamError(f"upstream '{self.name}' is down ({self.state.last_error})")
            return self._client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await asyncio.wait_for(getattr(client, method)(*args, **kwargs), timeout=self.settings.timeout_seconds)
        except TimeoutError:
            raise UpstreamError(f"upstream '{self.name}' did not answer within {self.settings.timeout_seconds:.0f} s") from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                # The server answered with a protocol error (unknown tool, bad params): it is alive.
                raise UpstreamError(f"upstream '{self.name}': {exc.message}") from None
            self._broken(exc)
            raise UpstreamError(f"upstream '{self.name}' failed: the connection closed (the server exited)") from None
        except Exception as exc:  # noqa: BLE001 - the connection broke mid-call: restart it later
            self._broken(exc)
            raise UpstreamError(f"upstream '{self.name}' failed: {_describe(exc)}") from None

    def _broken(self, exc: BaseException) -> None:
        """The connection is gone: mark it down and let the holder task end; the next call restarts it."""
        self._mark_failed(exc)
        self._client = None
        self._stop.set()

    async def tools(self, max_age: float) -> list[Any]:
        """The upstream's tools, re-listed when older than `max_age` seconds (a (re)start lists them)."""
        await self.client()
        if time.monotonic() - self.state.tools_listed_at > max_age:
            listed = await self.call("list_tools")
            self.state.tools, self.state.tools_listed_at = list(listed.tools), time.monotonic()
        return self.state.tools

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except (TimeoutError, Exception):  # noqa: BLE001 - shutting down regardless
                self._task.cancel()


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
