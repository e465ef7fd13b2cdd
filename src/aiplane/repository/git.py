"""The one way aiplane runs git on a repository it does not trust.

Repositories are data. A checkout's own files must not change what git does for us, so every
call here runs *isolated*: from an empty directory, with an explicit `--git-dir`, an empty work
tree and no index. That way `.gitattributes` in the checkout cannot mark source files binary
(hiding them from the diff, the secret scan and grep), select diff drivers or textconv filters,
and no working-tree file is ever read by git on our behalf. Revisions are validated before use
(object ids, or refs resolved to object ids with `--end-of-options`), paths always follow `--`,
and output is bounded: a command that prints more than its limit is stopped, not buffered.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

OBJECT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024


class GitError(Exception):
    """git failed, or was asked to do something unsafe; the message is safe to print."""


def is_object_id(value: object) -> bool:
    """A full SHA-1 or SHA-256 object id, lower-case hex: the only revisions taken from untrusted text."""
    return isinstance(value, str) and bool(OBJECT_ID.match(value))


def object_id(value: object, what: str = "revision") -> str:
    if not is_object_id(value):
        raise GitError(f"{what} is not a commit id")
    return value  # type: ignore[return-value]


_empty_lock = threading.Lock()
_empty_dir: Path | None = None


def _isolation_dir() -> Path:
    """An empty directory to run git from and to use as its work tree (made once per process)."""
    global _empty_dir
    with _empty_lock:
        if _empty_dir is None or not _empty_dir.is_dir():
            _empty_dir = Path(tempfile.mkdtemp(prefix="aiplane-git-"))
            atexit.register(shutil.rmtree, _empty_dir, True)
        return _empty_dir


_git_dirs: dict[str, Path] = {}


def git_dir(repo: Path) -> Path:
    """The repository's git directory (absolute), found once with git's own discovery."""
    key = str(repo)
    found = _git_dirs.get(key)
    if found is not None:
        return found
    try:
        result = subprocess.run(["git", "-C", str(repo), "rev-parse", "--absolute-git-dir"], capture_output=True,
                                text=True, timeout=30)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError("git rev-parse timed out") from None
    if result.returncode != 0 or not result.stdout.strip():
        raise GitError(f"{repo} is not a git repository")
    found = _git_dirs[key] = Path(result.stdout.strip())
    return found


def _environment(extra: dict[str, str] | None) -> dict[str, str]:
    isolation = _isolation_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_INDEX_FILE": str(isolation / "no-index"),
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
    })
    env.update(extra or {})
    return env


def run(repo: Path, *args: str, check: bool = True, timeout: float = 120, max_output: int = DEFAULT_MAX_OUTPUT,
        input: bytes | None = None, env: dict[str, str] | None = None, truncate: bool = False) -> bytes:
    """Run `git <args>` isolated from the checkout's files; stdout as bytes, at most `max_output` bytes.

    More output than that is an error, or with `truncate` the first `max_output` bytes (git is stopped).
    """
    isolation = _isolation_dir()
    command = ["git", f"--git-dir={git_dir(repo)}", f"--work-tree={isolation}", "-c", "core.attributesFile=/dev/null",
               "-c", "core.quotePath=true", *args]
    try:
        process = subprocess.Popen(command, cwd=isolation, env=_environment(env), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    name = args[0] if args else "git"
    result: dict[str, bytes] = {}

    def read_stderr() -> None:
        assert process.stderr is not None
        result["stderr"] = process.stderr.read(64 * 1024)
        process.stderr.read()  # drain the rest so git never blocks on it

    def feed() -> None:
        assert process.stdin is not None
        try:
            process.stdin.write(input or b"")
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    helpers = [threading.Thread(target=read_stderr, daemon=True)]
    if input is not None:
        helpers.append(threading.Thread(target=feed, daemon=True))
    for helper in helpers:
        helper.start()
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    chunks, size, too_big = [], 0, False
    try:
        assert process.stdout is not None
        while True:
            chunk = process.stdout.read(1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > max_output:
                too_big = True
                process.kill()
                chunks.append(chunk[: max_output - (size - len(chunk))])
                break
            chunks.append(chunk)
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.stdout is not None:
            process.stdout.close()
    for helper in helpers:
        helper.join(timeout=5)
    if too_big and truncate:
        return b"".join(chunks)
    if too_big:
        limit = f"{max_output // (1024 * 1024)} MiB" if max_output >= 1024 * 1024 else f"{max_output} bytes"
        raise GitError(f"git {name} printed more than {limit}")
    if timed_out.is_set():
        raise GitError(f"git {name} timed out")
    if check and returncode != 0:
        message = (result.get("stderr", b"").decode("utf-8", "replace").strip().splitlines() or ["unknown error"])[-1]
        raise GitError(f"git {name} failed: {message[:300]}")
    return b"".join(chunks)


def decode_path(raw: bytes) -> str:
    """A path git printed, as text that always encodes back and never names two paths alike.

    Valid UTF-8 without a backslash is itself. Otherwise a backslash is written `\\\\` and a byte
    that is not UTF-8 `\\xNN`, so a file literally named `\\xe9` and a file whose name holds the
    byte 0xE9 stay two files.
    """
    text = raw.decode("utf-8", "surrogateescape")
    if "\\" not in text and text.isprintable() or text.isascii() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def text(repo: Path, *args: str, **options) -> str:  # noqa: ANN003 - the options of run()
    return run(repo, *args, **options).decode("utf-8", "replace")


def resolve_commit(repo: Path, rev: str) -> str | None:
    """The commit id a revision names, or None. Anything that looks like an option is never an option here."""
    if not rev or "\n" in rev or "\0" in rev:
        return None
    out = run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False, timeout=30)
    found = out.decode("ascii", "replace").strip()
    return found if is_object_id(found) else None


def has_commit(repo: Path, sha: str) -> bool:
    return resolve_commit(repo, object_id(sha)) == sha
