"""A pool of sandbox worker processes for Code Mode's `execute`.

Untrusted code never runs in the portal process. Each job gets a fresh V8 isolate in a
pre-started worker. Around each job the portal keeps its own guards, none of which depends on
the worker's messages:

- a deadline timer (wall time plus a grace period) and a memory thread that reads the worker's
  resident set every `memory_poll_seconds` (so ArrayBuffer and Wasm memory, which V8's heap
  limit does not see, count too); either kills the worker;
- the job's tool calls are tasks owned by the job: when it ends or is killed they are
  cancelled, which cancels the upstream request as well;
- replies and calls carry the job number, so nothing late reaches the next job;
- whether a worker is reused is decided by the structured `status` of its last job, never by
  message text; a worker that hit a limit, crashed or misbehaved is killed and replaced.

Workers are shared fairly: one user runs at most `per_user_concurrency` executes at once, and
the rest wait in a bounded queue while other users go first. See docs/portal-sandbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiplane.config import SandboxSettings
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.portal.sandbox")
GRACE_SECONDS = 1.0
# A job whose worker says one of these may leave the worker for the next job; anything else
# (timeout, memory, crashed, an unknown word) gets a fresh worker.
REUSABLE = frozenset({"ok", "error", "too_large"})
MAX_ERROR_MESSAGE_BYTES = 2000
WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
# One tool result handed to the code (it may filter a large one down; it may not flood the worker).
MAX_REPLY_BYTES = 8 * 1024 * 1024
# Tool calls of one execute in flight at once (more wait their turn): bounds what the portal holds for it.
MAX_CALLS_IN_FLIGHT = 8

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ToolCallError(Exception):
    """A tool call that failed in a way the code may see: a fixed code and a message we wrote."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ExecuteResult:
    result: Any = None
    logs: list[str] | None = None
    error: str | None = None
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "logs": self.logs or [], "error": self.error, "duration_ms": self.duration_ms}


class Worker:
    def __init__(self, process: asyncio.subprocess.Process, workdir: Path) -> None:
        self.process = process
        self.workdir = workdir

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        try:
            line = await self.process.stdout.readline()
        except ValueError:  # a line over the stream limit
            return {"type": "garbage"}
        if not line:
            return None
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return {"type": "garbage"}
        return message if isinstance(message, dict) else {"type": "garbage"}

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.process.pid}/statm", "rb") as status:
                return int(status.read().split()[1]) * _PAGE_MB
        except (OSError, ValueError, IndexError):
            return 0.0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def stop(self) -> None:
        self.kill()
        if self.process.stdin is not None:
            self.process.stdin.close()  # else the transport outlives the loop and complains
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), timeout=5)
        with contextlib.suppress(OSError):
            self.workdir.rmdir()


def _page_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


_PAGE_MB = _page_mb()


@dataclass
class _Waiter:
    user: str
    future: asyncio.Future


class SandboxBusy(Exception):
    """This user has too many executes running and waiting."""


# Spawning after a worker failed to start waits this long, doubling up to the maximum: a broken
# V8 or a full machine must not be hammered with restarts.
SPAWN_BACKOFF_SECONDS = 0.5
SPAWN_BACKOFF_MAX_SECONDS = 30.0
UNAVAILABLE = "sandbox_unavailable: no sandbox worker can start right now; try again later"


class SandboxPool:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._idle: list[Worker] = []
        self._waiting: list[_Waiter] = []
        self._running: Counter[str] = Counter()
        self._started = False
        self._workers: set[Worker] = set()
        self._spawning = 0
        self._jobs = itertools.count(1)
        self._background: set[asyncio.Task] = set()
        self.replaced = 0
        # The resident set a worker had when the memory timer killed it (for tests and logs).
        self.killed_at_rss_mb: deque[float] = deque(maxlen=32)
        # Busy workers, and why the portal killed each (empty while it has not).
        self._watched: dict[Worker, list[str]] = {}
        self._closing = threading.Event()
        self._memory_thread: threading.Thread | None = None
        self.spawn_attempts = 0
        self._spawn_backoff = 0.0
        self._next_spawn = 0.0  # monotonic time before which no worker is started

    @property
    def line_limit(self) -> int:
        # A done message holds the result and the logs, each up to max_output_bytes, JSON escaped.
        return 14 * self.settings.max_output_bytes + 1024 * 1024

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._memory_thread = threading.Thread(target=self._watch_memory, name="sandbox-memory", daemon=True)
        self._memory_thread.start()
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.settings.workers)), return_exceptions=True)
        for worker in workers:
            if isinstance(worker, Worker):
                self._idle.append(worker)
            else:
                self._spawn_failed(worker)
        self._dispatch()

    def _spawn_failed(self, exc: BaseException) -> None:
        self._spawn_backoff = min(max(self._spawn_backoff * 2, SPAWN_BACKOFF_SECONDS), SPAWN_BACKOFF_MAX_SECONDS)
        self._next_spawn = time.monotonic() + self._spawn_backoff
        log.error("sandbox worker failed to start", extra=log_fields(error=exc.__class__.__name__, retry_in_s=self._spawn_backoff))
        if not self._workers and not self._spawning:
            # Nothing can serve the waiters: they fail now, with a clear code, not at their timeout.
            for waiter in self._waiting:
                if not waiter.future.done():
                    waiter.future.set_exception(SandboxBusy(UNAVAILABLE))
            self._waiting.clear()

    def _unavailable(self) -> bool:
        """No worker exists and none may be started yet (the last start failed)."""
        return not self._workers and not self._spawning and time.monotonic() < self._next_spawn

    async def _spawn(self) -> Worker:
        self._spawning += 1
        self.spawn_attempts += 1
        try:
            workdir = Path(tempfile.mkdtemp(prefix="aiplane-sandbox-"))
            process = await asyncio.create_subprocess_exec(
                # By path, not -m: -I ignores PYTHONPATH, and the worker must be this portal's own
                # code (it imports nothing of aiplane).
                sys.executable, "-I", str(WORKER_SCRIPT),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                cwd=workdir,
                # Nothing of the portal's environment (provider keys, upstream tokens) reaches the worker.
                env={"LANG": "C.UTF-8"},
                limit=self.line_limit,
                start_new_session=True,
            )
            worker = Worker(process, workdir)
            try:
                ready = await asyncio.wait_for(worker.receive(), timeout=60)
                if not ready or ready.get("type") != "ready":
                    raise RuntimeError("the sandbox worker did not start")
            except BaseException:
                await asyncio.shield(worker.stop())
                raise
            self._workers.add(worker)
            self._spawn_backoff = 0.0
            return worker
        finally:
            self._spawning -= 1

    def _in_background(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _replace(self, worker: Worker) -> None:
        await asyncio.shield(worker.stop())
        self._workers.discard(worker)
        self.replaced += 1
        self._spawning += 1
        await self._grow(reserved=True)

    # -- fair sharing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand idle workers to waiters, oldest first, skipping users already at their limit."""
        limit = self.settings.per_user_concurrency
        while self._idle:
            waiter = next((w for w in self._waiting if not w.future.done() and self._running[w.user] < limit), None)
            if waiter is None:
                break
            self._waiting.remove(waiter)
            self._running[waiter.user] += 1
            waiter.future.set_result(self._idle.pop())
        if not self._idle and self._waiting and len(self._workers) + self._spawning < self.settings.workers:
            self._spawning += 1  # counted now, so that dispatching again does not start a second one
            self._in_background(self._grow(reserved=True))

    async def _grow(self, reserved: bool = False) -> None:
        try:
            wait = self._next_spawn - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # backing off after a failed start
        finally:
            if reserved:
                self._spawning -= 1
        try:
            self._idle.append(await self._spawn())
        except Exception as exc:  # noqa: BLE001 - backed off; waiters fail with UNAVAILABLE when nothing is left
            self._spawn_failed(exc)
        self._dispatch()

    async def _acquire(self, user: str) -> Worker:
        await self.start()
        settings = self.settings
        if self._unavailable():
            raise SandboxBusy(UNAVAILABLE)
        if self._idle and self._running[user] < settings.per_user_concurrency and not self._waiting:
            self._running[user] += 1
            return self._idle.pop()
        if sum(1 for w in self._waiting if w.user == user) >= settings.per_user_queue:
            raise SandboxBusy(f"you already have {settings.per_user_concurrency} execute(s) running and "
                              f"{settings.per_user_queue} waiting; wait for them to finish")
        waiter = _Waiter(user, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        self._dispatch()
        try:
            await asyncio.wait({waiter.future}, timeout=settings.queue_timeout_seconds)
        finally:
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    self._release(user, waiter.future.result(), healthy=True)
            else:
                waiter.future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
        if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is not None:
            raise waiter.future.exception()  # type: ignore[misc]
        if not waiter.future.done() or waiter.future.cancelled():
            raise SandboxBusy(f"no sandbox worker was free within {settings.queue_timeout_seconds:g} s; try again later")
        return waiter.future.result()

    def _release(self, user: str, worker: Worker, healthy: bool) -> None:
        self._running[user] -= 1
        if self._running[user] <= 0:
            del self._running[user]
        if healthy and worker.alive:
            self._idle.append(worker)
        else:
            self._in_background(self._replace(worker))
        self._dispatch()

    # -- one execute ----------------------------------------------------------------------------

    async def execute(self, code: str, tools: list[str], call_tool: ToolCaller, user: str = "") -> ExecuteResult:
        """Run `code` (the body of an async JS function) with `tools.<name>(args)` bound to `call_tool`."""
        started = time.perf_counter()
        try:
            worker = await self._acquire(user)
        except SandboxBusy as exc:
            return self._failed(started, str(exc))
        healthy = False
        try:
            result, healthy = await self._run(worker, code, tools, call_tool, started)
            return result
        finally:
            self._release(user, worker, healthy)

    async def _run(self, worker: Worker, code: str, tools: list[str], call_tool: ToolCaller,
                   started: float) -> tuple[ExecuteResult, bool]:
        settings = self.settings
        job_id = next(self._jobs)
        job = {"type": "run", "job": job_id, "code": code, "tools": tools, "wall_time_seconds": settings.wall_time_seconds,
               "memory_mb": settings.memory_mb, "max_output_bytes": settings.max_output_bytes,
               "max_tool_calls": settings.max_tool_calls}
        killed: list[str] = []  # why the portal killed the worker, if it did
        calls: set[asyncio.Task] = set()
        in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
        loop = asyncio.get_running_loop()

        def kill(reason: str) -> None:
            if not killed:
                killed.append(reason)
            worker.kill()

        deadline = loop.call_later(settings.wall_time_seconds + GRACE_SECONDS, kill, "timeout")
        self._watched[worker] = killed  # the memory thread reads it from now on
        try:
            await worker.send(job)
            while True:
                message = await worker.receive()
                if message is None:
                    break
                kind = message.get("type")
                if kind == "call" and message.get("job") == job_id:
                    if len(calls) >= settings.max_tool_calls:
                        kill("misbehaved")  # the worker counts calls itself; one that does not is not ours
                        break
                    # Each call runs as its own task, so Promise.all in the code gets real concurrency.
                    task = asyncio.create_task(self._answer(worker, job_id, message, call_tool, in_flight))
                    calls.add(task)
                elif kind == "done" and message.get("job") == job_id:
                    status = message.get("status")
                    logs = message.get("logs")
                    return (ExecuteResult(message.get("result"), [str(x) for x in logs] if isinstance(logs, list) else [],
                                          _bounded(message.get("error")), _duration(message.get("duration_ms"), started)),
                            status in REUSABLE and not killed)
                else:
                    kill("misbehaved")
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            deadline.cancel()
            self._watched.pop(worker, None)
            # The execute is over: its tool calls (and the upstream requests behind them) stop too.
            for task in calls:
                if not task.done():
                    task.cancel()
                    self._in_background(_quietly(task))
        reason = killed[0] if killed else "crashed"
        if reason == "memory":
            error = f"memory limit of {settings.memory_mb} MB exceeded"
        elif reason == "timeout":
            error = f"time limit of {settings.wall_time_seconds} s exceeded"
        elif reason == "misbehaved":
            error = "the sandbox sent something unreadable"
        else:
            error = "the sandbox stopped unexpectedly"
        return self._failed(started, error), False

    def _watch_memory(self) -> None:
        """A thread: every `memory_poll_seconds`, the resident set of each busy worker. A thread,
        so that neither the worker's messages nor a busy portal event loop can delay it."""
        limit = self.settings.memory_mb + self.settings.rss_headroom_mb
        while not self._closing.wait(self.settings.memory_poll_seconds):
            for worker, killed in list(self._watched.items()):
                if worker.process.returncode is not None:
                    continue
                rss = worker.rss_mb()
                if rss > limit and not killed:
                    killed.append("memory")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.process.pid, signal.SIGKILL)
                    self.killed_at_rss_mb.append(rss)
                    log.warning("sandbox worker over its memory limit", extra=log_fields(rss_mb=round(rss), limit_mb=limit))

    async def _answer(self, worker: Worker, job_id: int, message: dict[str, Any], call_tool: ToolCaller,
                      in_flight: asyncio.Semaphore) -> None:
        reply: dict[str, Any] = {"type": "reply", "job": job_id, "id": message.get("id")}
        try:
            args = message.get("args")
            async with in_flight:
                value = await call_tool(str(message.get("tool")), args if isinstance(args, dict) else {})
            # Only JSON crosses: a value that is not (NaN, a Python object) is an internal error, never a repr.
            if len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode()) > MAX_REPLY_BYTES:
                raise ToolCallError("too_large", f"the tool's result is larger than {MAX_REPLY_BYTES} bytes")
            reply["value"] = value
        except ToolCallError as exc:
            reply["error"] = {"code": exc.code, "message": _bounded(exc.message)}
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - no host exception text reaches the code
            reply["error"] = {"code": "internal", "message": "the tool call failed inside the portal"}
        with contextlib.suppress(Exception):
            await worker.send(reply)

    @staticmethod
    def _failed(started: float, error: str) -> ExecuteResult:
        return ExecuteResult(None, [], error, round((time.perf_counter() - started) * 1000, 2))

    async def close(self) -> None:
        self._closing.set()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for waiter in self._waiting:
            waiter.future.cancel()
        for worker in list(self._workers):
            await worker.stop()
        self._workers.clear()
        self._idle.clear()


async def _quietly(task: asyncio.Task) -> None:
    with contextlib.suppress(BaseException):
        await task


def _bounded(text: Any) -> str | None:
    if text is None:
        return None
    data = str(text).encode("utf-8", "replace")[:MAX_ERROR_MESSAGE_BYTES]
    return data.decode("utf-8", "ignore")


def _duration(value: Any, started: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e9:
        return float(value)
    return round((time.perf_counter() - started) * 1000, 2)
