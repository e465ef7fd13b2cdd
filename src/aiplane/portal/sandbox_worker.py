"""The Code Mode sandbox worker: runs untrusted JavaScript in a fresh V8 isolate per job.

Started by `aiplane.portal.sandbox.SandboxPool` with an empty environment, an empty working
directory and no file writes (RLIMIT_FSIZE 0). V8 (through mini-racer) gives the code no
filesystem, network, process, environment or module loader; the only way out is the `tools`
object, whose calls travel as JSON lines to the portal, which applies permissions and audit.

Protocol (JSON lines): portal → worker `{"type": "run", ...}` and `{"type": "reply", "id", "value"|"error"}`;
worker → portal `{"type": "ready"}`, `{"type": "call", "id", "tool", "args"}`, `{"type": "done", ...}`.
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

PRELUDE = """
(() => {
  const call = globalThis.__aiplane_call, log = globalThis.__aiplane_log;
  delete globalThis.__aiplane_call; delete globalThis.__aiplane_log;
  const tools = Object.create(null);
  for (const name of %(names)s) {
    tools[name] = async (args) => {
      const reply = JSON.parse(await call(name, JSON.stringify(args === undefined ? {} : args)));
      if (reply.error !== undefined) throw new Error(reply.error);
      return reply.value;
    };
  }
  const show = (parts) => parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");
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
    line = json.dumps(message, separators=(",", ":"), default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Bridge:
    """Routes replies from the portal (read by a thread) to the calls awaiting them."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") == "reply":
                future = self.pending.pop(message.get("id"), None)
                if future is not None and self.loop is not None:
                    self.loop.call_soon_threadsafe(lambda f=future, m=message: f.done() or f.set_result(m))
            elif message.get("type") == "run":
                self.jobs.put(message)
        self.jobs.put(None)  # the portal went away


async def run_job(job: dict[str, Any], bridge: Bridge) -> dict[str, Any]:
    from py_mini_racer import MiniRacer

    started = time.perf_counter()
    bridge.loop = asyncio.get_running_loop()
    max_output = int(job["max_output_bytes"])
    max_calls = int(job["max_tool_calls"])
    logs: list[str] = []
    used = {"bytes": 0, "calls": 0, "truncated": False}

    async def call(name: str, args: str) -> str:
        used["calls"] += 1
        if used["calls"] > max_calls:
            return json.dumps({"error": f"more than {max_calls} tool calls in one execute"})
        call_id = next(bridge.ids)
        future = bridge.loop.create_future()
        bridge.pending[call_id] = future
        try:
            parsed = json.loads(args)
        except ValueError:
            parsed = {}
        send({"type": "call", "id": call_id, "tool": name, "args": parsed})
        reply = await future
        return json.dumps({"error": reply["error"]} if "error" in reply else {"value": reply.get("value")})

    async def log(text: str) -> None:
        size = len(text.encode("utf-8", "replace")) + 1
        if used["bytes"] + size > max_output:
            used["truncated"] = True
            return
        used["bytes"] += size
        logs.append(text)

    racer = MiniRacer()
    racer.set_hard_memory_limit(int(job["memory_mb"]) * 1024 * 1024)
    result: Any = None
    error: str | None = None
    try:
        async with racer.wrap_py_function(call) as js_call, racer.wrap_py_function(log) as js_log:
            scope = racer.eval("globalThis")
            scope["__aiplane_call"] = js_call
            scope["__aiplane_log"] = js_log
            racer.eval(PRELUDE % {"names": json.dumps(job["tools"])})
            source = "(async () => {\n" + job["code"] + "\n})().then((v) => JSON.stringify(v === undefined ? null : v))"
            wall = float(job["wall_time_seconds"])
            promise = await asyncio.wait_for(racer.eval_cancelable(source), timeout=wall)
            remaining = max(wall - (time.perf_counter() - started), 0.001)
            text = await asyncio.wait_for(promise, timeout=remaining) if hasattr(promise, "__await__") else promise
            if text is not None and len(text) > max_output:
                error = f"the result is larger than {max_output} bytes; return less (e.g. a summary or the first items)"
            else:
                result = json.loads(text) if isinstance(text, str) else text
    except TimeoutError:
        error = f"time limit of {job['wall_time_seconds']} s exceeded"
    except Exception as exc:  # noqa: BLE001 - every JS failure becomes the run's error
        name = exc.__class__.__name__
        if name == "JSOOMException":
            error = f"memory limit of {job['memory_mb']} MB exceeded"
        else:
            error = _js_message(exc)
    finally:
        racer.close()
    if used["truncated"]:
        logs.append(f"[output truncated at {max_output} bytes]")
    return {"type": "done", "result": result, "logs": logs, "error": error,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2)}


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
    bridge = Bridge()
    send({"type": "ready"})
    while True:
        job = bridge.jobs.get()
        if job is None:
            return
        send(asyncio.run(run_job(job, bridge)))


if __name__ == "__main__":
    main()
