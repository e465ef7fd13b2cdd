"""The Code Mode sandbox worker: runs untrusted JavaScript in a fresh V8 isolate per job.

Started by `aiplane.portal.sandbox.SandboxPool` with an empty environment, an empty working
directory and no file writes (RLIMIT_FSIZE 0). V8 (through mini-racer) gives the code no
filesystem, network, process, environment or module loader; the only way out is the `tools`
object, whose calls travel as JSON lines to the portal, which applies permissions and audit.

Protocol (JSON lines), every message after `ready` carrying the job number it belongs to:
portal → worker `{"type": "run", "job", ...}` and `{"type": "reply", "job", "id", "value"|"error"}`;
worker → portal `{"type": "ready"}`, `{"type": "call", "job", "id", "tool", "args"}` and
`{"type": "done", "job", "status", "result", "logs", "error", "duration_ms"}`. `status` is set
here from what happened (never from message text) and tells the portal whether the worker may
be reused.

Nothing of Python crosses into JavaScript: the host functions never raise (a Python exception
would reach the code as a traceback with host paths), and tool errors arrive as
`{code, message}` pairs the portal chose.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import resource
import sys
import threading
import time
from typing import Any

# Arguments of one tool call, as JSON: the code's own calls are bounded before they cross.
MAX_ARGUMENT_BYTES = 1024 * 1024
# Nesting of one call's arguments (objects and arrays). Deeper JSON passes here but the MCP
# SDK's parser on the far side drops the message, and the call would wait out its timeout;
# refused at once instead (the portal checks the same limit for direct calls).
MAX_ARGUMENT_DEPTH = 64

PRELUDE = """
(() => {
  const call = globalThis.__aiplane_call, log = globalThis.__aiplane_log;
  delete globalThis.__aiplane_call; delete globalThis.__aiplane_log;
  const parse = JSON.parse, stringify = JSON.stringify, ErrorType = Error;
  const tools = Object.create(null);
  for (const name of %(names)s) {
    tools[name] = async (args) => {
      let text;
      try { text = stringify(args === undefined ? {} : args); } catch (e) { text = undefined; }
      const reply = parse(await call(name, typeof text === "string" ? text : ""));
      if (reply.error !== undefined) {
        const error = new ErrorType(reply.error.message);
        error.code = reply.error.code;
        throw error;
      }
      return reply.value;
    };
  }
  const show = (parts) => parts.map((p) => {
    if (typeof p === "string") return p;
    try { const s = stringify(p); return s === undefined ? String(s) : s; } catch (e) { return "[unprintable]"; }
  }).join(" ");
  globalThis.tools = Object.freeze(tools);
  globalThis.console = Object.freeze({
    log: (...parts) => { log(show(parts)); },
    info: (...parts) => { log(show(parts)); },
    warn: (...parts) => { log("warn: " + show(parts)); },
    error: (...parts) => { log("error: " + show(parts)); },
  });
})();
"""

_out_lock = threading.Lock()


def send(message: dict[str, Any]) -> None:
    # No default=: a value JSON cannot hold is a bug to surface, never a repr to leak.
    line = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _error(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


class JobBridge:
    """One job's calls awaiting replies; gone with the job, so a late reply has nowhere to land."""

    def __init__(self, job: int, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.loop = loop
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.closed = False

    def deliver(self, message: dict[str, Any]) -> None:
        """Called from the reader thread. Drops replies for calls nobody waits for any more."""
        if self.closed:
            return
        future = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if future is None:
            return
        try:
            self.loop.call_soon_threadsafe(_settle, future, message)
        except RuntimeError:
            pass  # the job's loop closed between the check and the call: the reply is late, drop it

    def close(self) -> None:
        self.closed = True
        self.pending.clear()


def _settle(future: asyncio.Future, message: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(message)


class Reader:
    """Reads the portal's lines on a thread: jobs go to a queue, replies to the current job only."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.current: JobBridge | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def attach(self, bridge: JobBridge | None) -> None:
        with self._lock:
            if self.current is not None:
                self.current.close()
            self.current = bridge

    def _read(self) -> None:
        try:
            for line in sys.stdin:
                try:
                    self._route(json.loads(line))
                except Exception:  # noqa: BLE001 - one bad line must never end the reader (or the worker)
                    continue
        finally:
            self.jobs.put(None)  # the portal went away

    def _route(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if message.get("type") == "reply":
            with self._lock:
                bridge = self.current
            if bridge is not None and message.get("job") == bridge.job:
                bridge.deliver(message)
        elif message.get("type") == "run":
            self.jobs.put(message)


async def run_job(job: dict[str, Any], reader: Reader) -> dict[str, Any]:
    from py_mini_racer import MiniRacer

    started = time.perf_counter()
    job_id = int(job["job"])
    bridge = JobBridge(job_id, asyncio.get_running_loop())
    reader.attach(bridge)
    max_output = int(job["max_output_bytes"])
    max_calls = int(job["max_tool_calls"])
    logs: list[str] = []
    used = {"bytes": 0, "calls": 0, "truncated": False}

    async def call(name: Any, args: Any) -> str:
        # Never raises: whatever goes wrong becomes an error code the code can read.
        try:
            if bridge.closed:
                return _error("cancelled", "the execute has ended")
            used["calls"] += 1
            if used["calls"] > max_calls:
                return _error("too_many_calls", f"more than {max_calls} tool calls in one execute")
            if not isinstance(args, str) or not args or len(args.encode("utf-8", "replace")) > MAX_ARGUMENT_BYTES:
                return _error("bad_arguments", f"arguments must be a JSON object of at most {MAX_ARGUMENT_BYTES} bytes")
            try:
                parsed = json.loads(args)
            except RecursionError:
                return _error("too_deep", f"arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")
            if not isinstance(parsed, dict):
                return _error("bad_arguments", "arguments must be a JSON object")
            if _depth(parsed) > MAX_ARGUMENT_DEPTH:
                return _error("too_deep", f"arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")
            call_id = next(bridge.ids)
            future = bridge.loop.create_future()
            bridge.pending[call_id] = future
            send({"type": "call", "job": job_id, "id": call_id, "tool": str(name), "args": parsed})
            reply = await future
            if "error" in reply:
                error = reply["error"] if isinstance(reply["error"], dict) else {}
                return _error(str(error.get("code") or "internal"), str(error.get("message") or "the tool call failed"))
            return json.dumps({"value": reply.get("value")}, ensure_ascii=False)
        except Exception:  # noqa: BLE001 - see above
            return _error("internal", "the tool call failed")

    async def log(text: Any) -> None:
        try:
            text = str(text)
            # Counted as the portal sends it: a JSON string (control characters become \uXXXX).
            size = len(json.dumps(text, ensure_ascii=False).encode("utf-8", "replace")) + 1
            if used["bytes"] + size > max_output:
                used["truncated"] = True
                return
            used["bytes"] += size
            logs.append(text)
        except Exception:  # noqa: BLE001 - a log line that cannot be kept is dropped
            used["truncated"] = True

    racer = MiniRacer()
    racer.set_hard_memory_limit(int(job["memory_mb"]) * 1024 * 1024)
    result: Any = None
    error: str | None = None
    status = "ok"
    try:
        async with racer.wrap_py_function(call) as js_call, racer.wrap_py_function(log) as js_log:
            scope = racer.eval("globalThis")
            scope["__aiplane_call"] = js_call
            scope["__aiplane_log"] = js_log
            racer.eval(PRELUDE % {"names": json.dumps(job["tools"])})
            # JSON.stringify is taken before the code runs: the code may replace it.
            source = ("((stringify) => (async () => {\n" + job["code"]
                      + "\n})().then((v) => stringify(v === undefined ? null : v)))(JSON.stringify)")
            wall = float(job["wall_time_seconds"])
            promise = await asyncio.wait_for(racer.eval_cancelable(source), timeout=wall)
            remaining = max(wall - (time.perf_counter() - started), 0.001)
            text = await asyncio.wait_for(promise, timeout=remaining) if hasattr(promise, "__await__") else promise
            # The cap counts UTF-8 bytes of the JSON the code returned, not characters.
            if isinstance(text, str) and len(text.encode("utf-8", "replace")) > max_output:
                status, error = "too_large", f"the result is larger than {max_output} bytes; return less (e.g. a summary or the first items)"
            else:
                result = json.loads(text) if isinstance(text, str) else None
    except TimeoutError:
        status, error = "timeout", f"time limit of {job['wall_time_seconds']} s exceeded"
    except Exception as exc:  # noqa: BLE001 - every JS failure becomes the run's error
        if exc.__class__.__name__ == "JSOOMException" or racer.was_hard_memory_limit_reached():
            status, error = "memory", f"memory limit of {job['memory_mb']} MB exceeded"
        else:
            status, error = "error", _js_message(exc)
    finally:
        reader.attach(None)
        racer.close()
    if used["truncated"]:
        logs.append(f"[output truncated at {max_output} bytes]")
    return {"type": "done", "job": job_id, "status": status, "result": result, "logs": logs, "error": error,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2)}


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in `value` (iterative: the value is the code's)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_ARGUMENT_DEPTH + 1:
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _js_message(exc: BaseException) -> str:
    lines = [line.replace("JavaScript rejected promise with reason: ", "") for line in str(exc).splitlines() if line.strip()]
    # mini-racer puts the failing line and a caret first; the "Error: ..." line is what helps.
    message = next((line.strip() for line in lines if "Error" in line and ":" in line), lines[-1] if lines else exc.__class__.__name__)
    return message[:500]


def main() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file writes, even if a way to reach a file existed
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from py_mini_racer import MiniRacer

    MiniRacer().close()  # initialise V8 once, before the first job (this is the slow part)
    reader = Reader()
    send({"type": "ready"})
    while True:
        job = reader.jobs.get()
        if job is None:
            return
        try:
            outcome = asyncio.run(run_job(job, reader))
        except Exception:  # noqa: BLE001 - a job that breaks the worker's own code: report, and let the portal replace us
            outcome = {"type": "done", "job": job.get("job"), "status": "crashed", "result": None, "logs": [],
                       "error": "the sandbox failed", "duration_ms": 0.0}
        send(outcome)


if __name__ == "__main__":
    main()
