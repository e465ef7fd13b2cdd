"""A pool of sandbox worker processes for Code Mode's `execute`.

Untrusted code never runs in the portal process. Each job gets a fresh V8 isolate in a
pre-started worker; a worker that overruns its wall time (plus a grace period), grows past its
memory budget, or dies is killed and replaced, and the portal carries on. See
docs/portal-sandbox.md for the threat model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiplane.config import SandboxSettings
from aiplane.logs import log_fields

log = logging.getLogger("aiplane.portal.sandbox")
GRACE_SECONDS = 1.0
# Resident memory beyond the isolate's heap limit that a worker may use (V8 itself, Python, code).
RSS_OVERHEAD_MB = 256
MAX_LINE_BYTES = 64 * 1024 * 1024

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]


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
        self.process.stdin.write((json.dumps(message, separators=(",", ":"), default=str) + "\n").encode())
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return {"type": "garbage"}

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0.0

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), timeout=5)
        with contextlib.suppress(OSError):
            self.workdir.rmdir()


class SandboxPool:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._started = False
        self._workers: set[Worker] = set()
        self.replaced = 0

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.settings.workers)), return_exceptions=True)
        for worker in workers:
            if isinstance(worker, Worker):
                self._idle.put_nowait(worker)
            else:
                log.error("sandbox worker failed to start", extra=log_fields(error=str(worker)))

    async def _spawn(self) -> Worker:
        workdir = Path(tempfile.mkdtemp(prefix="aiplane-sandbox-"))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "aiplane.portal.sandbox_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            cwd=workdir,
            # Nothing of the portal's environment (provider keys, upstream tokens) reaches the worker.
            env={"LANG": "C.UTF-8"},
            limit=MAX_LINE_BYTES,
            start_new_session=True,
        )
        worker = Worker(process, workdir)
        ready = await asyncio.wait_for(worker.receive(), timeout=60)
        if not ready or ready.get("type") != "ready":
            await worker.kill()
            raise RuntimeError("the sandbox worker did not start")
        self._workers.add(worker)
        return worker

    async def _replace(self, worker: Worker) -> None:
        self._workers.discard(worker)
        await worker.kill()
        self.replaced += 1
        try:
            self._idle.put_nowait(await self._spawn())
        except Exception as exc:  # noqa: BLE001 - the pool shrinks; the next execute spawns on demand
            log.error("sandbox worker failed to restart", extra=log_fields(error=str(exc)))

    async def _acquire(self) -> Worker:
        await self.start()
        if self._idle.empty() and not self._workers:
            return await self._spawn()
        return await self._idle.get()

    async def execute(self, code: str, tools: list[str], call_tool: ToolCaller) -> ExecuteResult:
        """Run `code` (the body of an async JS function) with `tools.<name>(args)` bound to `call_tool`."""
        worker = await self._acquire()
        settings = self.settings
        job = {"type": "run", "code": code, "tools": tools, "wall_time_seconds": settings.wall_time_seconds,
               "memory_mb": settings.memory_mb, "max_output_bytes": settings.max_output_bytes,
               "max_tool_calls": settings.max_tool_calls}
        started = time.perf_counter()
        deadline = time.monotonic() + settings.wall_time_seconds + GRACE_SECONDS
        healthy = False
        try:
            await worker.send(job)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._failed(started, f"time limit of {settings.wall_time_seconds} s exceeded")
                try:
                    message = await asyncio.wait_for(worker.receive(), timeout=min(remaining, 0.25))
                except TimeoutError:
                    if worker.rss_mb() > settings.memory_mb + RSS_OVERHEAD_MB:
                        return self._failed(started, f"memory limit of {settings.memory_mb} MB exceeded")
                    continue
                if message is None:
                    return self._failed(started, "the sandbox stopped unexpectedly")
                kind = message.get("type")
                if kind == "call":
                    # Each call runs as its own task, so Promise.all in the code gets real concurrency.
                    asyncio.create_task(self._answer(worker, message, call_tool))
                elif kind == "done":
                    healthy = message.get("error") is None or "limit" not in str(message.get("error"))
                    return ExecuteResult(message.get("result"), message.get("logs") or [], message.get("error"),
                                         message.get("duration_ms") or round((time.perf_counter() - started) * 1000, 2))
                else:
                    return self._failed(started, "the sandbox sent something unreadable")
        except (BrokenPipeError, ConnectionResetError):
            return self._failed(started, "the sandbox stopped unexpectedly")
        finally:
            if healthy and worker.alive:
                self._idle.put_nowait(worker)
            else:
                # A worker that hit a limit or misbehaved is never reused.
                asyncio.create_task(self._replace(worker))

    async def _answer(self, worker: Worker, message: dict[str, Any], call_tool: ToolCaller) -> None:
        try:
            value = await call_tool(str(message.get("tool")), message.get("args") if isinstance(message.get("args"), dict) else {})
            reply = {"type": "reply", "id": message.get("id"), "value": value}
        except Exception as exc:  # noqa: BLE001 - becomes a JS exception in the code
            reply = {"type": "reply", "id": message.get("id"), "error": str(exc) or exc.__class__.__name__}
        with contextlib.suppress(Exception):
            await worker.send(reply)

    @staticmethod
    def _failed(started: float, error: str) -> ExecuteResult:
        return ExecuteResult(None, [], error, round((time.perf_counter() - started) * 1000, 2))

    async def close(self) -> None:
        for worker in list(self._workers):
            await worker.kill()
        self._workers.clear()
