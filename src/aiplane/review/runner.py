"""Starting the review worker and following it: events as they arrive, heartbeats, buffered logs.

The worker runs with a memory cap (RLIMIT_AS). If it dies, every event it emitted before is kept.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_MEMORY_CAP = int(2.5 * 1024**3)
# The worker gets only these from our environment (plus what plugins set): it talks to models and
# reads git objects, and never needs the CI job's tokens. Model keys travel in the job on stdin.
WORKER_ENV_ALLOWLIST = frozenset({
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "VIRTUAL_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
})


def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in WORKER_ENV_ALLOWLIST or k.startswith("LC_")}
    return {**env, **(extra or {}), "PYTHONUNBUFFERED": "1"}
LOG_FLUSH_LINES = 100
LOG_FLUSH_SECONDS = 0.05


def _command() -> list[str]:
    # -P: the working directory is not on sys.path. The review runs inside a checkout the change
    # controls, and a planted `aiplane/` or `json.py` there must never be imported.
    return [sys.executable, "-P", "-m", "aiplane.review.worker"]


@dataclass
class _Prestarted:
    process: subprocess.Popen
    memory_cap_bytes: int


_prestarted: _Prestarted | None = None


def prestart(memory_cap_bytes: int = DEFAULT_MEMORY_CAP) -> None:
    """Start a review worker now, before there is a job for it: its imports (httpx, pydantic, the
    reviewer) and its TLS context then cost nothing while the parent reads the change.

    The worker is started exactly as `run_worker` starts one (allowlisted environment, memory cap,
    `-P`, a working directory outside the checkout); `run_worker` uses it only when it would have
    started the same process (no extra environment, the same memory cap), else discards it. An
    unused worker gets an empty stdin and exits.
    """
    global _prestarted
    if _prestarted is not None:
        return
    try:
        process = subprocess.Popen(
            _command(), cwd=tempfile.gettempdir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=_cap_memory(memory_cap_bytes) if memory_cap_bytes > 0 else None,  # noqa: PLW1509
            env=worker_environment(),
        )
    except OSError:
        return  # run_worker starts one when it needs it
    _prestarted = _Prestarted(process, memory_cap_bytes)
    atexit.register(discard_prestarted)


def discard_prestarted() -> None:
    global _prestarted
    found, _prestarted = _prestarted, None
    if found is None:
        return
    # It has done nothing but import; stopping it at once keeps an unused one from delaying exit.
    found.process.kill()
    found.process.wait()
    for stream in (found.process.stdin, found.process.stdout):
        if stream is not None:
            stream.close()


def _take_prestarted(env: dict[str, str] | None, memory_cap_bytes: int) -> subprocess.Popen | None:
    global _prestarted
    found = _prestarted
    if found is None:
        return None
    if env or found.memory_cap_bytes != memory_cap_bytes or found.process.poll() is not None:
        discard_prestarted()
        return None
    _prestarted = None
    return found.process


@dataclass
class WorkerResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    malformed_lines: int = 0

    @property
    def completed(self) -> bool:
        return self.exit_code == 0 and any(e.get("type") == "done" for e in self.events)


class BufferedLog:
    """Appends lines to a file, flushing every 100 lines or 50 ms, whichever comes first."""

    def __init__(self, path: Path | None) -> None:
        self._file: IO[str] | None = path.open("a", encoding="utf-8") if path else None
        self._pending: list[str] = []
        self._last_flush = time.monotonic()

    def write(self, line: str) -> None:
        if self._file is None:
            return
        self._pending.append(line)
        self.maybe_flush()

    def maybe_flush(self, force: bool = False) -> None:
        if self._file is None or not self._pending:
            return
        if force or len(self._pending) >= LOG_FLUSH_LINES or time.monotonic() - self._last_flush >= LOG_FLUSH_SECONDS:
            self._file.write("".join(line + "\n" for line in self._pending))
            self._file.flush()
            self._pending.clear()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self.maybe_flush(force=True)
        if self._file is not None:
            self._file.close()


def _cap_memory(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_worker(
    job: dict[str, Any],
    heartbeat_seconds: float = 30.0,
    memory_cap_bytes: int = DEFAULT_MEMORY_CAP,
    log_path: Path | None = None,
    on_event: Callable[[dict[str, Any], int], None] | None = None,
    notify: IO[str] = sys.stderr,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> WorkerResult:
    payload = json.dumps(job).encode()
    # A pre-started worker has no stderr log (it started before the log's path was known).
    process = _take_prestarted(env, memory_cap_bytes)
    worker_stderr = log_path.with_suffix(".stderr").open("ab") if log_path and process is None else None
    if process is None:
        process = subprocess.Popen(
            _command(),
            cwd=cwd or tempfile.gettempdir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=worker_stderr or subprocess.DEVNULL,
            preexec_fn=_cap_memory(memory_cap_bytes) if memory_cap_bytes > 0 else None,  # noqa: PLW1509
            env=worker_environment(env),
        )
    assert process.stdin is not None and process.stdout is not None

    def feed() -> None:
        try:
            process.stdin.write(payload)  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass  # the worker died; its exit code tells the story

    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        for raw in iter(process.stdout.readline, b""):  # type: ignore[union-attr]
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=feed, daemon=True).start()
    threading.Thread(target=read, daemon=True).start()
    result = WorkerResult()
    log = BufferedLog(log_path)
    last_output = started = time.monotonic()
    last_heartbeat = last_output
    try:
        while True:
            try:
                raw = lines.get(timeout=LOG_FLUSH_SECONDS)
            except queue.Empty:
                now = time.monotonic()
                if now - last_output >= heartbeat_seconds and now - last_heartbeat >= heartbeat_seconds:
                    notify.write(f"model is thinking… ({now - last_output:.0f}s since last output)\n")
                    notify.flush()
                    last_heartbeat = now
                log.maybe_flush()
                continue
            if raw is None:
                break
            last_output = last_heartbeat = time.monotonic()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            log.write(text)
            try:
                event = json.loads(text)
            except ValueError:
                result.malformed_lines += 1
                continue
            if not isinstance(event, dict):
                result.malformed_lines += 1
                continue
            event.setdefault("elapsed_s", round(last_output - started, 3))
            result.events.append(event)
            if on_event is not None:
                on_event(event, process.pid)
        result.exit_code = process.wait()
    finally:
        log.close()
        if worker_stderr is not None:
            worker_stderr.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    return result
