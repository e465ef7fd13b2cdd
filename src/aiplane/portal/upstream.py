"""One upstream MCP server: started on first use, restarted with backoff after a crash.

The connection lives in its own task (the SDK's transports are anyio context managers that must
be entered and left in one task); requests from any task use the session it holds. A dead
upstream fails only its own calls, with a message naming it; the portal stays up.

A hostile or wedged server must not hold anyone else up:

- `initialize` and each listing have their own short limits (`initialize_timeout_seconds`,
  `list_timeout_seconds`); a server that runs past either is marked down and its connection
  closed, so nobody else waits for it until its backoff has passed;
- listings are served from a cache; once stale they are refreshed in the background (one
  refresh at a time) while callers get the cached copy;
- stopping a stdio server always runs the SDK's escalation to the end: close stdin, wait,
  SIGTERM to its process group, wait, SIGKILL. It is never cut short by a task cancellation
  (which would leave the process running); only anyio cancel scopes are used here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp.client.stdio as sdk_stdio
from mcp import Client, MCPError, StdioServerParameters, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from mcp.types import CONNECTION_CLOSED

from aiplane.config import UpstreamSettings
from aiplane.logs import log_fields
from aiplane.portal.limits import json_depth

log = logging.getLogger("aiplane.portal")
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
# What each listing is called on the client and in its result.
LISTINGS = {
    "tools": ("list_tools", "tools"),
    "resources": ("list_resources", "resources"),
    "templates": ("list_resource_templates", "resource_templates"),
    "prompts": ("list_prompts", "prompts"),
}
MAX_PAGES = 50
# The SDK's stop sequence takes at most about 7 s (flush, stdin grace, SIGTERM grace, reap).
STOP_SECONDS = 10.0


# The SDK parses each stdout line with pydantic-core, whose JSON parser gives up past ~200
# levels: such a line is dropped, and the request behind it waits out its timeout (a tool
# listing with one 120-deep schema made the whole upstream look hung). The portal reads those
# lines itself: schemas are cut to `{}` (any value, `unknown` in signatures) past
# SCHEMA_DEPTH, and a reply still too deep becomes an error for its request, at once.
SCHEMA_DEPTH = 24
MESSAGE_DEPTH = 150
_SCHEMA_KEYS = ("inputSchema", "outputSchema")
_sdk_parse_line = sdk_stdio._parse_line


def _cut(value: Any, depth: int) -> Any:
    """`value` with every object or array deeper than `depth` replaced by `{}` (iterative)."""
    if not isinstance(value, (dict, list)):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root, 1)]
    while stack:
        source, target, level = stack.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in pairs:
            if isinstance(child, (dict, list)):
                if level >= depth:
                    copied: Any = {}
                else:
                    copied = {} if isinstance(child, dict) else []
                    stack.append((child, copied, level + 1))
            else:
                copied = child
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _cut_schemas(message: Any) -> None:
    result = message.get("result") if isinstance(message, dict) else None
    tools = result.get("tools") if isinstance(result, dict) else None
    for tool in tools if isinstance(tools, list) else []:
        for key in _SCHEMA_KEYS:
            if isinstance(tool, dict) and isinstance(tool.get(key), dict):
                tool[key] = _cut(tool[key], SCHEMA_DEPTH)


def parse_line(line: str) -> SessionMessage | Exception:
    """One stdout line of a stdio upstream, as the SDK parses it, but deep JSON fails small."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        if "recursion limit" not in str(exc):
            return _sdk_parse_line(line)  # the SDK's own handling (and log) of a bad line
    try:
        data = json.loads(line)  # the stdlib parser goes deeper (and raises, never crashes, past it)
    except (ValueError, RecursionError):
        return _sdk_parse_line(line)
    _cut_schemas(data)
    if json_depth(data, MESSAGE_DEPTH) > MESSAGE_DEPTH:
        if not (isinstance(data, dict) and "id" in data and ("result" in data or "error" in data)):
            return _sdk_parse_line(line)
        data = {"jsonrpc": "2.0", "id": data["id"],
                "error": {"code": -32603, "message": f"the server's reply nests deeper than {MESSAGE_DEPTH} levels"}}
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_python(data, by_name=False))
    except ValueError:
        return _sdk_parse_line(line)


# The SDK's stdio transport calls this module-level function for every line it reads.
sdk_stdio._parse_line = parse_line


class UpstreamError(Exception):
    """The upstream cannot serve a call right now; the message is safe for clients."""


@dataclass
class Listing:
    items: list[Any]
    listed_at: float
    # The upstream listed more than the portal kept (max items or pages): entries it never saw
    # cannot take part in a policy decision, so reads that depend on them are refused.
    truncated: bool = False


@dataclass
class UpstreamState:
    status: str = "idle"  # idle, starting, ready, failed
    last_error: str | None = None
    restarts: int = 0
    next_attempt: float = 0.0
    backoff: float = 0.0
    listings: dict[str, Listing] = field(default_factory=dict)


class Upstream:
    def __init__(self, name: str, settings: UpstreamSettings, backoff: float = 1.0, backoff_max: float = 60.0,
                 max_items: int = 10_000) -> None:
        self.name = name
        self.settings = settings
        self.state = UpstreamState()
        self.max_items = max_items
        self._backoff_initial = backoff
        self._backoff_max = backoff_max
        self._client: Client | None = None
        self._task: asyncio.Task | None = None
        self._scope: anyio.CancelScope | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._refreshing: dict[str, asyncio.Task] = {}
        self._generation = 0

    def _server(self) -> tuple[Any, httpx2.AsyncClient | None, Any]:
        """The transport, its HTTP client (HTTP upstreams) and the stderr pipe's write end (stdio)."""
        settings = self.settings
        if settings.command is not None:
            env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
            env.update({k: v.get_secret_value() for k, v in settings.env.items()})
            params = StdioServerParameters(command=settings.command, args=settings.args, env=env)
            errlog = stderr_sink(self.name, settings.stderr)
            return sdk_stdio.stdio_client(params, errlog=errlog), None, errlog
        headers = {k: v.get_secret_value() for k, v in settings.headers.items()}
        http = httpx2.AsyncClient(headers=headers, timeout=settings.timeout_seconds)
        return streamable_http_client(str(settings.url), http_client=http), http, None

    async def _hold(self, generation: int) -> None:
        """Open the connection, publish it, and keep it until asked to stop or it breaks."""
        http = errlog = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                server, http, errlog = self._server()
                # No client-side response cache: the portal keeps its own, with its own limits.
                async with Client(server, read_timeout_seconds=self.settings.timeout_seconds, cache=None) as client:
                    if generation == self._generation:
                        self._client = client
                        self.state.status, self.state.last_error, self.state.backoff = "ready", None, 0.0
                        self._ready.set()
                        await self._stop.wait()
            if scope.cancelled_caught and generation == self._generation and self.state.status != "failed":
                self._mark_failed(TimeoutError("stopped"))
        except Exception as exc:  # noqa: BLE001 - any transport failure marks this upstream down
            self._mark_failed_once(exc, generation)
        except BaseException as exc:  # anyio wraps child-process deaths in exception groups
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            self._mark_failed_once(exc, generation)
        finally:
            if errlog is not None:
                errlog.close()  # the process is gone: its reader sees the end of the pipe
            if http is not None:
                with anyio.CancelScope(shield=True):
                    await http.aclose()
            if generation == self._generation:
                self._client = None
                self._ready.set()  # wake waiters; they look at the status

    def _mark_failed_once(self, exc: BaseException, generation: int) -> None:
        # A call that saw the break has already marked it; closing the dead connection must not
        # count as a second failure (that would double the backoff).
        if generation == self._generation and self.state.status != "failed":
            self._mark_failed(exc)

    def _mark_failed(self, exc: BaseException) -> None:
        message = _describe(exc)
        self.state.status, self.state.last_error = "failed", message
        self.state.backoff = min(max(self.state.backoff * 2, self._backoff_initial), self._backoff_max)
        self.state.next_attempt = time.monotonic() + self.state.backoff
        log.warning("upstream down", extra=log_fields(upstream=self.name, error=message, retry_in_s=self.state.backoff))

    def _down(self) -> UpstreamError:
        wait = max(self.state.next_attempt - time.monotonic(), 0)
        return UpstreamError(f"upstream '{self.name}' is down ({self.state.last_error}); next restart in {wait:.0f} s")

    async def client(self) -> Client:
        """The live session, (re)starting the upstream when allowed by the backoff."""
        if self._client is not None and self.state.status == "ready":
            return self._client
        async with self._lock:
            if self._client is not None and self.state.status == "ready":
                return self._client
            if self.state.status == "failed" and time.monotonic() < self.state.next_attempt:
                raise self._down()
            if self.state.status == "failed":
                self.state.restarts += 1
            self.state.status = "starting"
            self.state.listings.clear()
            self._generation += 1
            self._ready = asyncio.Event()
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._hold(self._generation), name=f"mcp-upstream-{self.name}")
            limit = self.settings.initialize_timeout_seconds
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=limit)
            except TimeoutError:
                # Marked down now; the holder winds the process down in the background.
                self._mark_failed(TimeoutError(f"no answer to initialize within {limit:g} s"))
                self._disconnect()
            if self._client is None or self.state.status != "ready":
                raise UpstreamError(f"upstream '{self.name}' is down ({self.state.last_error})")
            return self._client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await asyncio.wait_for(getattr(client, method)(*args, **kwargs), timeout=self.settings.timeout_seconds)
        except TimeoutError:
            raise UpstreamError(f"upstream '{self.name}' did not answer within {self.settings.timeout_seconds:g} s") from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                # The server answered with a protocol error (unknown tool, bad params): it is alive.
                raise UpstreamError(f"upstream '{self.name}': {str(exc.message)[:300]}") from None
            self._broken(exc)
            raise UpstreamError(f"upstream '{self.name}' failed: the connection closed (the server exited)") from None
        except Exception as exc:  # noqa: BLE001 - the connection broke mid-call: restart it later
            self._broken(exc)
            raise UpstreamError(f"upstream '{self.name}' failed: {_describe(exc)}") from None

    def _broken(self, exc: BaseException) -> None:
        """The connection is gone or wedged: mark it down and let the holder wind it down."""
        if self.state.status != "failed":
            self._mark_failed(exc)
        self._disconnect()

    def _disconnect(self) -> None:
        self._client = None
        self._stop.set()
        # Cancels only what the holder is waiting on (initialize, say); the SDK's shielded stop
        # sequence still runs to the end, so the process is always terminated and reaped.
        if self._scope is not None:
            self._scope.cancel()

    # -- listings -----------------------------------------------------------------------------

    async def listing(self, kind: str, max_age: float, restart: bool = False) -> list[Any]:
        """The upstream's tools, resources, templates or prompts, served stale while revalidating.

        The first listing after a (re)start waits, up to `list_timeout_seconds`; later ones get the
        cached copy at once and, when it is older than `max_age`, start one background refresh.
        A server that is down contributes nothing and costs no wait: once its backoff has passed it
        is restarted in the background, unless `restart` asks to wait for it (a call to one of
        its own tools does).
        """
        if not restart:
            if self.state.status == "failed":
                if time.monotonic() >= self.state.next_attempt:
                    self._refresh_in_background("restart")
                raise self._down()
            if self.state.status == "starting" and self.state.restarts > 0:
                # Restarting after a failure (in the background, or for a call to one of its
                # tools): listings do not wait for it; only the very first start is waited for.
                raise UpstreamError(f"upstream '{self.name}' is restarting")
        await self.client()
        cached = self.state.listings.get(kind)
        if cached is None:
            return await self._refresh(kind)
        if time.monotonic() - cached.listed_at > max_age:
            self._refresh_in_background(kind)
        return cached.items

    def _refresh_in_background(self, kind: str) -> None:
        running = self._refreshing.get(kind)
        if running is not None and not running.done():
            return
        work = self.client() if kind == "restart" else self._refresh(kind)
        task = asyncio.create_task(_swallow(work), name=f"mcp-upstream-{self.name}-{kind}")
        self._refreshing[kind] = task

    async def _refresh(self, kind: str) -> list[Any]:
        client = await self.client()
        method, attribute = LISTINGS[kind]
        limit = self.settings.list_timeout_seconds
        try:
            with anyio.fail_after(limit):
                items, truncated = await self._pages(client, method, attribute)
        except TimeoutError:
            # A server that hangs on a listing is wedged: down, and its process stopped.
            self._broken(TimeoutError(f"no answer to {kind} listing within {limit:g} s"))
            raise UpstreamError(f"upstream '{self.name}' is down (no answer to its {kind} listing within {limit:g} s)") from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._broken(exc)
                raise UpstreamError(f"upstream '{self.name}' failed: the connection closed (the server exited)") from None
            items, truncated = [], False  # alive, but does not offer this kind (method not found): an empty listing
        except Exception as exc:  # noqa: BLE001 - the connection broke: restart it later
            self._broken(exc)
            raise UpstreamError(f"upstream '{self.name}' failed: {_describe(exc)}") from None
        self.state.listings[kind] = Listing(items, time.monotonic(), truncated)
        return items

    def truncated(self, kind: str) -> bool:
        """Whether the cached `kind` listing left out entries the upstream has (or has none cached)."""
        cached = self.state.listings.get(kind)
        return cached is None or cached.truncated

    async def _pages(self, client: Client, method: str, attribute: str) -> tuple[list[Any], bool]:
        items: list[Any] = []
        cursor = None
        for _ in range(MAX_PAGES):
            page = await getattr(client, method)(cursor=cursor)
            items.extend(getattr(page, attribute) or [])
            cursor = page.next_cursor
            if cursor is None or len(items) >= self.max_items:
                break
        truncated = len(items) > self.max_items or cursor is not None
        if truncated:
            log.warning("upstream lists too many items, the rest left out",
                        extra=log_fields(upstream=self.name, method=method, listed=len(items), kept=self.max_items))
        return items[: self.max_items], truncated

    async def tools(self, max_age: float) -> list[Any]:
        return await self.listing("tools", max_age)

    async def close(self) -> None:
        for task in self._refreshing.values():
            task.cancel()
        self._stop.set()
        task = self._task
        if task is None:
            return
        if self._client is None and self._scope is not None:
            self._scope.cancel()  # still starting: stop waiting for initialize (the stop sequence still runs)
        # Wait for the SDK to stop the process (it escalates to SIGKILL); a task cancel here
        # would abandon a process that ignores EOF and SIGTERM.
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not done and self._scope is not None:
            self._scope.cancel()
            await asyncio.wait({task}, timeout=STOP_SECONDS)


# A stdio upstream's stderr never reaches the portal's own output raw (it would carry host
# paths, and lines that look like the portal's JSON logs). Each line becomes the `line` field
# of a log record under the upstream's name: one line, no control characters, at most
# STDERR_LINE_CHARS, and at most STDERR_BURST lines then STDERR_LINES_PER_SECOND; the rest are
# counted and dropped.
STDERR_LINE_CHARS = 500
STDERR_BURST = 50
STDERR_LINES_PER_SECOND = 5.0
stderr_log = logging.getLogger("aiplane.portal.upstream_stderr")


def stderr_sink(name: str, mode: str) -> Any:
    """A file the upstream process writes its stderr to: /dev/null, or a pipe read by a thread."""
    if mode == "discard":
        return open(os.devnull, "w")  # noqa: SIM115 - closed by the holder when the process is gone
    read_end, write_end = os.pipe()
    threading.Thread(target=_read_stderr, args=(name, read_end), name=f"mcp-stderr-{name}", daemon=True).start()
    return os.fdopen(write_end, "w")


def _read_stderr(name: str, fd: int) -> None:
    from aiplane.portal.naming import clean_text

    tokens, last, dropped = float(STDERR_BURST), time.monotonic(), 0
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.readline(4 * STDERR_LINE_CHARS):  # bounded: a line without an end is cut in pieces
            now = time.monotonic()
            tokens, last = min(STDERR_BURST, tokens + (now - last) * STDERR_LINES_PER_SECOND), now
            if tokens < 1:
                if not dropped:  # said at once: the count follows when lines are kept again, or at the end
                    stderr_log.warning("upstream stderr over its rate, dropping lines", extra=log_fields(upstream=name))
                dropped += 1
                continue
            tokens -= 1
            if dropped:
                stderr_log.warning("upstream stderr lines dropped", extra=log_fields(upstream=name, dropped=dropped))
                dropped = 0
            line = clean_text(chunk.decode("utf-8", "replace"), STDERR_LINE_CHARS)
            if line:
                stderr_log.info("upstream stderr", extra=log_fields(upstream=name, line=line))
    if dropped:
        stderr_log.warning("upstream stderr lines dropped", extra=log_fields(upstream=name, dropped=dropped))


async def _swallow(work: Any) -> None:
    try:
        await work
    except UpstreamError:
        pass  # already marked and logged


def _describe(exc: BaseException) -> str:
    """What went wrong, for clients, /healthz and logs: the exception's class and only text that
    cannot carry host paths, URLs or secrets (an OS error's reason without its file name, the
    portal's own timeout texts, an MCP error's message)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    name = exc.__class__.__name__
    if isinstance(exc, TimeoutError) or isinstance(exc, MCPError):
        text = str(exc.message if isinstance(exc, MCPError) else exc).strip()
    elif isinstance(exc, OSError):
        text = exc.strerror or ""
    else:
        text = ""
    text = " ".join(text.split())[:200]
    return f"{name}: {text}" if text else name
