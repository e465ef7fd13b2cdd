from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.doubles.providers import (
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    OPENAI_KEY,
    DoubleState,
    build_app,
)
from tests.doubles.server import ServerThread, free_port

AIPLANE = str(Path(sys.executable).with_name("aiplane"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AIPLANE_")}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def upstream() -> Iterator[tuple[ServerThread, DoubleState]]:
    state = DoubleState()
    with ServerThread(build_app(state)) as server:
        yield server, state


class GatewayProcess:
    def __init__(self, data_dir: Path, env: dict[str, str], umask: int = -1, serve_args: tuple[str, ...] = ()) -> None:
        self.serve_args = serve_args  # e.g. ("--workers", "2")
        self.data_dir = data_dir
        self.env = env
        self.umask = umask  # -1 keeps the test runner's
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [AIPLANE, "gateway", "serve", "--port", str(self.port), *self.serve_args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            umask=self.umask,
        )
        # Worker processes re-import everything themselves: slow on a busy machine.
        deadline = time.monotonic() + (120 if "--workers" in self.serve_args else 30)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not start:\n{self.logs()}")

    def token(self, user: str = "alice@example.com", *args: str) -> str:
        result = subprocess.run(
            [AIPLANE, "gateway", "token", "create", "--user", user, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            cwd=self.data_dir,
        )
        return result.stdout.strip()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def usage_rows(self) -> list[dict]:
        conn = sqlite3.connect(self.data_dir / "aiplane.db")
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY id")]
        finally:
            conn.close()

    def wait_for_rows(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = self.usage_rows()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


def slow_stream(gateway: GatewayProcess, token: str):
    """Open a chat stream whose upstream pauses 0.6 s between chunks."""
    return httpx.stream(
        "POST",
        gateway.url + "/openai/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "slow-stream", "stream": True, "messages": []},
    )


def gateway_env(data_dir: Path, upstream_url: str, **extra: str) -> dict[str, str]:
    defaults = dict(
        AIPLANE_DATA_DIR=str(data_dir),
        AIPLANE_PROVIDERS__OPENAI__BASE_URL=upstream_url + "/v1",
        AIPLANE_PROVIDERS__OPENAI__API_KEY=OPENAI_KEY,
        AIPLANE_PROVIDERS__ANTHROPIC__BASE_URL=upstream_url,
        AIPLANE_PROVIDERS__ANTHROPIC__API_KEY=ANTHROPIC_KEY,
        AIPLANE_PROVIDERS__GOOGLE__BASE_URL=upstream_url,
        AIPLANE_PROVIDERS__GOOGLE__API_KEY=GOOGLE_KEY,
        AIPLANE_PROVIDERS__OPENAI__TIMEOUT_SECONDS="1.5",
        AIPLANE_PROVIDERS__ANTHROPIC__TIMEOUT_SECONDS="1.5",
        # No catalog refresh unless a test asks for one: tests never leave loopback.
        AIPLANE_CATALOG__URL="",
    )
    return clean_env(**{**defaults, **extra})


@pytest.fixture()
def make_gateway(tmp_path, upstream):
    server, _state = upstream
    started: list[GatewayProcess] = []

    def factory(name: str = "gw", serve_args: tuple[str, ...] = (), **extra: str) -> GatewayProcess:
        data_dir = tmp_path / name
        gw = GatewayProcess(data_dir, gateway_env(data_dir, server.url, **extra), serve_args=serve_args)
        started.append(gw.start())
        return gw

    yield factory
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def model():
    """The scripted OpenAI double for reviewer, codex and AGENTS.md tests: (server, state)."""
    from tests.doubles.reviewer_model import reviewer_model

    yield from reviewer_model()


@pytest.fixture()
def gateway(make_gateway) -> GatewayProcess:
    return make_gateway()
