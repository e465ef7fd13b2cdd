"""The gateway on PostgreSQL: a throwaway cluster on loopback, started by the test.

Skipped only where the PostgreSQL server binaries are absent (the project's machines ship them).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import AIPLANE
from tests.doubles.server import free_port


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_url():
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    if not initdb or not postgres:
        pytest.skip("PostgreSQL server binaries are not installed")
    base = Path(tempfile.mkdtemp(prefix="aiplane-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres account to run the server")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "aiplane", "--no-sync"],
        check=True, capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [*run_as, postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(base), "-F"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("PostgreSQL did not start") from None
            time.sleep(0.1)
    time.sleep(0.5)  # accepting TCP comes just before accepting logins
    yield f"postgresql+asyncpg://aiplane@127.0.0.1:{port}/postgres"
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def test_usage_and_identities_on_postgres(make_gateway, postgres_url):
    gateway = make_gateway("pg1", AIPLANE_DATABASE__URL=postgres_url)
    client = openai.OpenAI(base_url=gateway.url + "/openai", api_key=gateway.token("dana@example.com"))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True).close()
    gateway.stop()

    # A second gateway on the same database keeps the same anonymous id for the same person.
    again = make_gateway("pg2", AIPLANE_DATABASE__URL=postgres_url)
    client = openai.OpenAI(base_url=again.url + "/openai", api_key=again.token("dana@example.com"))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    report = subprocess.run(
        [AIPLANE, "usage", "report", "--group-by", "user", "--json"],
        env=again.env, capture_output=True, text=True, timeout=60,
    )
    again.stop()
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["requests"] == 3
    assert rows[0]["input_tokens"] >= 240


def test_bad_postgres_url_fails_cleanly(tmp_path):
    from tests.conftest import clean_env

    url = f"postgresql+asyncpg://aiplane:s3cret-pw@127.0.0.1:{free_port()}/nope"
    result = subprocess.run(
        [AIPLANE, "usage", "report"],
        env=clean_env(AIPLANE_DATA_DIR=str(tmp_path), AIPLANE_DATABASE__URL=url), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot read usage" in result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr
