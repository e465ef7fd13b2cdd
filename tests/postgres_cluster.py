"""A throwaway PostgreSQL cluster on loopback, for tests and benchmarks (Debian's server binaries)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


class PostgresUnavailable(Exception):
    pass


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield a postgresql+asyncpg URL to a fresh cluster; remove it afterwards."""
    initdb, postgres = _binary("initdb"), _binary("postgres")
    if not initdb or not postgres:
        raise PostgresUnavailable("PostgreSQL server binaries are not installed")
    base = Path(tempfile.mkdtemp(prefix="aiplane-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no postgres account") from None
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "aiplane", "--no-sync"], check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(
        [*run_as, postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(base), "-F"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
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
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
