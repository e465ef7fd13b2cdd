"""Running an eval: every (case, variant, run) unit through the pipeline, then the judge; results
appended to `results.jsonl` as they finish, so an interrupted eval resumes where it stopped.

The output folder holds `run.json` (what makes the results reproducible: aiplane's version and
commit, models, the prompts' hash, the dataset's hash), `results.jsonl`, and at the end
`report.json` and `report.md`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from aiplane.config import ModelEndpoint, Settings
from aiplane.repository import git as gitrun
from aiplane.review.evaluation import judge as judging
from aiplane.review.evaluation.dataset import Case, Dataset
from aiplane.review.evaluation.metrics import summarize
from aiplane.review.evaluation.variants import Variant, run_unit

RESULTS = "results.jsonl"
RUN_LOG = "run.json"
_CLONE_URL = re.compile(r"^(https://|ssh://|git@[A-Za-z0-9.-]+:)[^\s]+$")


class EvalError(Exception):
    """The eval cannot start or go on; the message says why (no secrets)."""


@dataclass
class EvalOptions:
    out_dir: Path
    variants: list[Variant]
    runs: int = 1
    concurrency: int = 2
    judge: ModelEndpoint | None = None
    resume: bool = True
    label: str = ""


@dataclass
class EvalOutcome:
    out_dir: Path
    summary: dict[str, Any]
    run_log: dict[str, Any]
    ran: int = 0
    skipped: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


def prompts_sha256() -> str:
    """One hash over every prompt and reviewer definition a review or the judge reads."""
    digest = hashlib.sha256()
    root = resources.files("aiplane.review")
    for folder in ("prompts", "agents"):
        for item in sorted(root.joinpath(folder).iterdir(), key=lambda p: p.name):
            if item.name.endswith(".md"):
                digest.update(item.name.encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()


def _aiplane_commit() -> str | None:
    source = Path(__file__).resolve().parents[4]
    if not (source / ".git").exists():
        return None
    try:
        return gitrun.text(source, "rev-parse", "HEAD", check=True, timeout=10).strip() or None
    except gitrun.GitError:
        return None


def _model_label(endpoint: ModelEndpoint | None) -> str | None:
    return f"{endpoint.kind}:{endpoint.model}" if endpoint else None


def run_log(dataset: Dataset, settings: Settings, options: EvalOptions) -> dict[str, Any]:
    return _plain({
        "label": options.label,
        "aiplane_version": metadata.version("aiplane"),
        "aiplane_commit": _aiplane_commit(),
        "dataset": {"path": dataset.path, "sha256": dataset.sha256, "cases": len(dataset.cases)},
        "variants": [asdict(v) for v in options.variants],
        "runs": options.runs,
        "models": {tier: _model_label(e) for tier, e in sorted(settings.llm.models.items())},
        "gateway_model": settings.review.model,
        "judge": _model_label(options.judge) or "location (no judge model: same file, overlapping lines)",
        "judge_prompt_sha256": judging.PROMPT_SHA256,
        "prompts_sha256": prompts_sha256(),
    })


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    # As it reads back from run.json (tuples become lists), so a resume compares like with like.
    return json.loads(json.dumps(value))


_SAME_RUN_KEYS = ("dataset", "variants", "runs", "models", "gateway_model", "judge", "prompts_sha256")


def _open_folder(out_dir: Path, log: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """Earlier results in the folder when resuming the same eval; refuses to mix two evals."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, results_path = out_dir / RUN_LOG, out_dir / RESULTS
    previous: list[dict[str, Any]] = []
    if log_path.exists() and results_path.exists():
        try:
            earlier = json.loads(log_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = {}
        if resume:
            changed = [k for k in _SAME_RUN_KEYS if earlier.get(k) != log.get(k)]
            if changed:
                raise EvalError(f"{out_dir} holds an eval with a different {', '.join(changed)}; use a new --out, "
                                "or --no-resume to start over (the old results are kept aside)")
            previous = _read_results(results_path)
        else:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            results_path.rename(out_dir / f"results.{stamp}.jsonl")
    log = {**log, "started": datetime.now(UTC).isoformat(timespec="seconds")}
    log_path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return previous


def _read_results(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that unit runs again
            if isinstance(record, dict) and {"case_id", "variant", "run"} <= record.keys():
                records.append(record)
    return records


def _key(case_id: str, variant: str, run: int) -> tuple[str, str, int]:
    return case_id, variant, run


def repository(case: Case, cache: Path) -> Path:
    """The case's repository: a local folder, or a clone URL cloned once into the output folder."""
    if _CLONE_URL.fullmatch(case.repo):
        target = cache / hashlib.sha256(case.repo.encode()).hexdigest()[:16]
        if not (target / "HEAD").exists():
            cache.mkdir(parents=True, exist_ok=True)
            try:
                gitrun.run(cache, "clone", "--quiet", "--bare", "--", case.repo, str(target), timeout=1800)
            except gitrun.GitError as exc:
                raise EvalError(f"case {case.id}: cannot clone its repository ({str(exc)[:200]})") from None
        return target
    if case.repo.startswith("-") or "::" in case.repo:
        raise EvalError(f"case {case.id}: repo must be a local folder or an https/ssh clone URL")
    path = Path(case.repo).expanduser()
    if not path.is_dir():
        raise EvalError(f"case {case.id}: repository folder {case.repo!r} does not exist")
    return path.resolve()


def run_eval(dataset: Dataset, settings: Settings, options: EvalOptions, environ: dict[str, str] | None = None,
             on_unit: Callable[[int, int, dict[str, Any]], None] | None = None) -> EvalOutcome:
    if options.runs < 1 or options.concurrency < 1:
        raise EvalError("--runs and --concurrency must be at least 1")
    if not options.variants:
        raise EvalError("no variant to run")
    names = [v.name for v in options.variants]
    if len(set(names)) != len(names):
        raise EvalError("each variant may be given once")
    environ = dict(os.environ if environ is None else environ)
    log = run_log(dataset, settings, options)
    previous = _open_folder(options.out_dir, log, options.resume)
    done = {_key(r["case_id"], r["variant"], r["run"]): r for r in previous if not r.get("error")}
    repos = {case.id: repository(case, options.out_dir / "repos") for case in dataset.cases}
    units = [(case, variant, run) for case in dataset.cases for variant in options.variants for run in range(1, options.runs + 1)]
    todo = [u for u in units if _key(u[0].id, u[1].name, u[2]) not in done]
    judge_fn = judging.llm_judge(options.judge) if options.judge else None
    lock = threading.Lock()
    finished = [len(units) - len(todo)]
    records = dict(done)

    def one(unit: tuple[Case, Variant, int]) -> None:
        case, variant, run = unit
        result = run_unit(case, repos[case.id], variant, settings, environ)
        record: dict[str, Any] = {"case_id": case.id, "variant": variant.name, "run": run, "tags": list(case.tags),
                                  "golden": [g.model_dump(exclude_none=True) for g in case.golden], **asdict(result), "matches": []}
        if result.error is None:
            golden = [judging.Golden(g.text, g.severity, g.file, g.lines()) for g in case.golden]
            candidates = [judging.Candidate.from_json(f) for f in result.findings]
            matching = asyncio.run(judging.match(golden, candidates, judge_fn))
            record.update(matches=sorted([g, f] for g, f in matching.pairs.items()), match_methods=matching.method,
                          judge_calls=matching.judge_calls, judge_input_tokens=matching.judge_input_tokens,
                          judge_output_tokens=matching.judge_output_tokens, judge_errors=matching.errors,
                          judge_capped=matching.capped)
        record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with lock:
            with (options.out_dir / RESULTS).open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            records[_key(case.id, variant.name, run)] = record
            finished[0] += 1
            if on_unit:
                on_unit(finished[0], len(units), record)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="aiplane-eval") as pool:
        for future in [pool.submit(one, unit) for unit in todo]:
            future.result()
    ordered = [records[_key(c.id, v.name, r)] for c, v, r in units if _key(c.id, v.name, r) in records]
    summary = summarize(ordered)
    log["wall_s"] = round(time.monotonic() - started, 3)
    return EvalOutcome(options.out_dir, summary, log, ran=len(todo), skipped=len(units) - len(todo), records=ordered)
