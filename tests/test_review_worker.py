"""The review worker process: stdin jobs, JSONL events, heartbeats, memory cap, crashes, failback."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from aiplane.config import load_settings
from aiplane.review.agents import load_agents
from aiplane.review.engine import ReviewRequest, run
from aiplane.review.runner import run_worker
from tests.doubles.server import free_port
from tests.test_review_deterministic import Repo, _lines


@pytest.fixture()
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


def _settings(monkeypatch, model_url: str, tmp_path: Path, **extra: str):
    for key in list(os.environ):
        if key.startswith("AIPLANE_"):
            monkeypatch.delenv(key)
    values = {
        "AIPLANE_DATA_DIR": str(tmp_path / "data"),
        "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": model_url + "/v1",
        "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini",
        "AIPLANE_LLM__MODELS__SPECIALIST__API_KEY": "sk-test-reviewer",
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def _job(model_url: str, repo: Path, context: str) -> dict:
    endpoint = {"kind": "openai", "base_url": model_url + "/v1", "model": "gpt-4o-mini", "api_key": "sk-x"}
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return {"repo": str(repo), "head": head, "tier": "trivial", "agents": ["generalist"], "context": context,
            "agent_specs": [load_agents().agents["generalist"].model_dump()],
            "patches": {"app.py": "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"},
            "models": {"specialist": endpoint}, "failback": {}, "max_concurrency": 2}


def test_five_megabyte_description_goes_over_stdin(repo, model, tmp_path):
    server, _state = model
    body = "lorem ipsum " * (5 * 1024 * 1024 // 12)
    log = tmp_path / "worker.log"
    result = run_worker(_job(server.url, repo.path, body), log_path=log)
    assert result.completed
    received = next(e for e in result.events if e["type"] == "job_received")
    assert received["bytes"] > 5 * 1024 * 1024
    types = [e["type"] for e in result.events]
    assert types[0] == "job_received" and types[-1] == "done" and "step_finish" in types and "usage" in types
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["type"] for e in logged] == types  # every event reached the buffered log


def test_heartbeat_while_the_model_thinks(repo, model):
    server, _state = model
    notices = io.StringIO()
    result = run_worker(_job(server.url, repo.path, "MODEL:SLEEP"), heartbeat_seconds=0.4, notify=notices)
    assert result.completed
    assert "model is thinking… (" in notices.getvalue() and "s since last output)" in notices.getvalue()


def test_memory_cap_kills_a_worker_without_hurting_the_runner(repo, model):
    server, _state = model
    result = run_worker(_job(server.url, repo.path, "hi"), memory_cap_bytes=40 * 1024 * 1024)
    assert not result.completed and result.exit_code != 0


def test_crashed_worker_keeps_what_it_reported(repo, model, monkeypatch, tmp_path):
    server, _state = model
    repo.write({"app.py": "import os\nvalue = eval(os.environ['X'])  # MODEL:FLAG MODEL:SLEEP\n", "feature.py": _lines(40)})
    repo.commit("lite change")
    settings = _settings(monkeypatch, server.url, tmp_path)

    def kill_after_first_finding(event: dict, pid: int) -> None:
        if event["type"] == "finding":
            os.kill(pid, signal.SIGKILL)

    review = run(ReviewRequest(repo=repo.path, settings=settings, on_event=kill_after_first_finding))
    assert review.tier == "lite"
    assert any(f.file == "app.py" for f in review.findings)  # reported before the crash
    assert any("stopped unexpectedly (exit -9)" in n for n in review.notices)


def test_failback_to_the_next_model(repo, model, monkeypatch, tmp_path):
    server, _state = model
    repo.write({"app.py": "def main():\n    return 9  # MODEL:FLAG\n"})
    repo.commit("x")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = _settings(
        monkeypatch, server.url, tmp_path,
        AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=dead,
        AIPLANE_LLM__FAILBACK='{"specialist": [{"base_url": "' + server.url + '/v1", "model": "gpt-4o", "api_key": "sk-fb"}]}',
    )
    review = run(ReviewRequest(repo=repo.path, settings=settings))
    assert review.ai_ran and len(review.findings) == 1
    assert any("trying the next model" in n for n in review.notices)
    assert review.usage[0]["model"] == "openai:gpt-4o"


def test_unreadable_worker_lines_are_reported():
    from aiplane.review.engine import _apply_events
    from aiplane.review.report import Review
    from aiplane.review.runner import WorkerResult

    review = Review(repository="r", base="b", head="h", tier="lite", tier_reasons=[], agents=[])
    result = WorkerResult(events=[{"type": "done"}], exit_code=0, malformed_lines=2)
    assert _apply_events(review, result) == []
    assert any("2 unreadable line(s)" in n for n in review.notices)
