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

from aiplane.config_types import ModelEndpoint
from aiplane.llm import chat
from aiplane.llm.chat import ModelError
from aiplane.llm.client import ModelHandle, native
from aiplane.llm.routing import RemoteRouting, endpoint_for
from aiplane.review.agents import AgentSpec
from aiplane.review.specialists import ReviewBudget, ReviewerBudget, Workspace, run_specialist

_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    line = json.dumps(event, separators=(",", ":"), default=str)
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Router:
    """The models to try for an agent, in order: the central routing document (re-read, 5 s cache,
    before every attempt, so a provider switched off mid-run is skipped), else routes from
    plugins, else the tier's configured model and failbacks."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        routing = job.get("routing") or {}
        self.gateway = routing.get("gateway")
        self.routes: dict[str, list[str]] = routing.get("routes") or {}
        self.remote = RemoteRouting.from_job(routing["remote"]) if routing.get("remote") else None

    async def candidates(self, agent: str, tier: str) -> list[ModelEndpoint]:
        template = self._tier_chain(tier)
        refs: list[str] = []
        if self.remote is not None:
            document = await asyncio.to_thread(self.remote.get)
            refs = document.chain(agent) if document is not None else []
        if not refs:
            refs = self.routes.get(agent) or self.routes.get("*") or []
        if refs and self.gateway:
            like = template[0] if template else None
            return [endpoint_for(ref, self.gateway["url"], self.gateway.get("token"), like) for ref in refs]
        return template

    def _tier_chain(self, tier: str) -> list[ModelEndpoint]:
        models = self.job.get("models") or {}
        if not models:
            return []
        # The tier that actually serves this one (light and coordinator fall back to specialist).
        key = tier if tier in models else ("specialist" if "specialist" in models else next(iter(models)))
        return [ModelEndpoint.model_validate(raw) for raw in [models[key], *self.job.get("failback", {}).get(key, [])]]


def _label(endpoint: ModelEndpoint) -> str:
    return f"{endpoint.kind}:{endpoint.model}@{endpoint.base_url}"


async def _review_one(spec: AgentSpec, job: dict[str, Any], router: Router, workspace: Workspace, limit: asyncio.Semaphore,
                      review_budget: ReviewBudget, first_response: asyncio.Event | None = None) -> None:
    tier = "light" if spec.model_tier == "light" else "specialist"
    budgets = job.get("budgets") or {}
    async with limit:
        if review_budget.exhausted():
            # The review's budget went to the reviewers before this one: say so, never skip silently.
            emit({"type": "budget", "agent": spec.name, "scope": "review", "action": "skipped"})
            emit({"type": "step_finish", "agent": spec.name, "status": "skipped"})
            if first_response is not None:
                first_response.set()
            return
        emit({"type": "step_start", "agent": spec.name})
        tried: set[str] = set()
        while True:
            remaining = [e for e in await router.candidates(spec.name, tier) if _label(e) not in tried]
            if not remaining:
                if not tried:
                    emit({"type": "error", "agent": spec.name, "model": None, "kind": "abort", "message": "no enabled model"})
                emit({"type": "step_finish", "agent": spec.name, "status": "failed"})
                if first_response is not None:
                    first_response.set()
                return
            endpoint = remaining[0]
            tried.add(_label(endpoint))
            handle = ModelHandle(tier, endpoint, native(endpoint))
            budget = ReviewerBudget(spec.name, int(budgets.get("reviewer_input_tokens") or 0), review_budget,
                                    base=review_budget.spent.get(spec.name, 0))
            try:
                result = await run_specialist(
                    spec, handle, job["context"], workspace,
                    inline_patches=job["tier"] == "trivial", notes=job.get("agent_notes", {}).get(spec.name, ""),
                    inlined=set(job.get("inlined") or ()), cache_key=job.get("cache_key"), budget=budget,
                    on_first_response=first_response.set if first_response is not None else None,
                    with_tools=not job.get("single_call", False),
                )
                error = result.error
            except ModelError as exc:  # its message is safe to show: never the key
                result, error = None, f"{exc.__class__.__name__}: {exc}"
                if first_response is not None:
                    first_response.set()
            except Exception as exc:  # noqa: BLE001 - classified below; the worker keeps going
                result, error = None, exc.__class__.__name__
                if first_response is not None:
                    first_response.set()
            review_budget.spent[spec.name] = budget.base + (result.input_tokens if result is not None else 0)
            if result is not None:
                emit({"type": "usage", "agent": spec.name, "model": handle.label, "requests": result.requests,
                      "catalog_id": handle.endpoint.catalog_id or handle.endpoint.kind,
                      "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                      "cached_tokens": result.cached_tokens})
                if result.budget_cut:
                    emit({"type": "budget", "agent": spec.name, "scope": result.budget_cut, "action": "answered early"})
            if error is None and result is not None:
                for finding in result.findings:
                    emit({"type": "finding", "agent": spec.name, **asdict(finding)})
                emit({"type": "step_finish", "agent": spec.name, "status": "ok", "model": handle.label})
                return
            last = len(remaining) == 1
            emit({"type": "error", "agent": spec.name, "model": handle.label, "kind": "abort" if last else "failback", "message": error})


async def work(job: dict[str, Any]) -> None:
    try:
        await _work(job)
    finally:
        await chat.close()


async def _work(job: dict[str, Any]) -> None:
    repo = Path(job["repo"])
    selected = [AgentSpec.model_validate(raw) for raw in job["agent_specs"]]
    patches = job.get("patches") or {
        path: Path(file).read_text(encoding="utf-8") for path, file in job.get("patch_files", {}).items()
    }
    workspace = Workspace(repo, job["head"], patches, inlined=frozenset(job.get("inlined") or ()),
                          surroundings=frozenset(job.get("surroundings") or ()))
    limit = asyncio.Semaphore(max(int(job.get("max_concurrency", 4)), 1))
    router = Router(job)
    review_budget = ReviewBudget(int((job.get("budgets") or {}).get("review_input_tokens") or 0))
    if not selected:
        return
    if job.get("warmup", True) and len(selected) > 1:
        # The first reviewer writes the shared prefix into the provider's cache; the others start
        # once its first response is back, so they read that cache instead of each writing it.
        first_response = asyncio.Event()
        first = asyncio.ensure_future(_review_one(selected[0], job, router, workspace, limit, review_budget, first_response))
        waiter = asyncio.ensure_future(first_response.wait())
        await asyncio.wait({first, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await asyncio.gather(first, *(_review_one(spec, job, router, workspace, limit, review_budget) for spec in selected[1:]))
        return
    await asyncio.gather(*(_review_one(spec, job, router, workspace, limit, review_budget) for spec in selected))


def _preload() -> None:
    """Readies what the first model request needs (the TLS context, the output tool's schema)
    while a pre-started worker waits for its job."""
    from aiplane.llm import chat, toolloop
    from aiplane.review.specialists import ReviewerOutput

    chat.warm()
    toolloop.output_tool(ReviewerOutput)


def main() -> None:
    _preload()
    raw = sys.stdin.buffer.read()
    if not raw:
        return  # a pre-started worker nobody needed
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
