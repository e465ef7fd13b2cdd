"""The review worker: a child process that runs the reviewer agents and reports JSONL events.

The runner sends the whole job as JSON on stdin (never argv: argv fails with E2BIG near 200 KB,
and descriptions can be megabytes). Every event is one JSON line on stdout, flushed at once, so
whatever the worker managed to do survives a crash.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiplane.config import ModelEndpoint
from aiplane.llm.client import ModelHandle, build
from aiplane.review.agents import AgentSpec, load_agents
from aiplane.review.specialists import Workspace, run_specialist

_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    line = json.dumps(event, separators=(",", ":"), default=str)
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _chain(job: dict[str, Any], tier: str) -> list[ModelHandle]:
    models = job["models"]
    # The tier that actually serves this one (light and coordinator fall back to specialist).
    key = tier if tier in models else ("specialist" if "specialist" in models else next(iter(models)))
    endpoints = [models[key]] + list(job.get("failback", {}).get(key, []))
    handles = []
    for raw in endpoints:
        endpoint = ModelEndpoint.model_validate(raw)
        handles.append(ModelHandle(tier, endpoint, build(endpoint)))
    return handles


async def _review_one(spec: AgentSpec, job: dict[str, Any], workspace: Workspace, limit: asyncio.Semaphore) -> None:
    tier = "light" if spec.model_tier == "light" else "specialist"
    async with limit:
        emit({"type": "step_start", "agent": spec.name})
        chain = _chain(job, tier)
        for position, handle in enumerate(chain):
            try:
                result = await run_specialist(
                    spec, handle, job["context"], workspace,
                    inline_patches=job["tier"] == "trivial", notes=job.get("agent_notes", {}).get(spec.name, ""),
                )
                error = result.error
            except Exception as exc:  # noqa: BLE001 - classified below; the worker keeps going
                result, error = None, exc.__class__.__name__
            if result is not None:
                emit({"type": "usage", "agent": spec.name, "model": handle.label, "requests": result.requests,
                      "catalog_id": handle.endpoint.catalog_id or handle.endpoint.kind,
                      "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                      "cached_tokens": result.cached_tokens})
            if error is None and result is not None:
                for finding in result.findings:
                    emit({"type": "finding", "agent": spec.name, **asdict(finding)})
                emit({"type": "step_finish", "agent": spec.name, "status": "ok", "model": handle.label})
                return
            last = position == len(chain) - 1
            emit({"type": "error", "agent": spec.name, "model": handle.label, "kind": "abort" if last else "failback", "message": error})
        emit({"type": "step_finish", "agent": spec.name, "status": "failed"})


async def work(job: dict[str, Any]) -> None:
    repo = Path(job["repo"])
    agents = load_agents(repo)
    selected = [agents[name] for name in job["agents"] if name in agents]
    patches = job.get("patches") or {
        path: Path(file).read_text(encoding="utf-8") for path, file in job.get("patch_files", {}).items()
    }
    workspace = Workspace(repo, patches)
    limit = asyncio.Semaphore(max(int(job.get("max_concurrency", 4)), 1))
    await asyncio.gather(*(_review_one(spec, job, workspace, limit) for spec in selected))


def main() -> None:
    raw = sys.stdin.buffer.read()
    try:
        job = json.loads(raw)
    except ValueError:
        emit({"type": "error", "kind": "abort", "message": "the job on stdin is not JSON"})
        sys.exit(2)
    emit({"type": "job_received", "bytes": len(raw), "agents": job.get("agents", [])})
    asyncio.run(work(job))
    emit({"type": "done"})


if __name__ == "__main__":
    main()
