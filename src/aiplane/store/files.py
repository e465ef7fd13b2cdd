"""Private files at rest: the data dir is 0700, what the gateway keeps in it is 0600.

Modes are set explicitly after creation, so they do not depend on the process umask. Existing
files and folders are tightened only when this process's user owns them; anything else is left
as it is (and reported by the caller if it matters).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TextIO

from aiplane.logs import log_fields

log = logging.getLogger("aiplane.files")

DIR_MODE = 0o700
FILE_MODE = 0o600


def _ours(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid()


def private_dir(path: Path, tighten_existing: bool = True) -> None:
    """Create `path` (and missing parents) as 0700; tighten it to 0700 if it exists and is ours.

    A sticky folder (like /tmp) or the user's home is never tightened, even when it is ours.
    """
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        if tighten_existing:
            tighten(path, DIR_MODE)
        return
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def tighten(path: Path, mode: int) -> None:
    """Set `path` to `mode` when it exists, is ours and is more open than that."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode == 0:
        return
    if stat.S_ISDIR(st.st_mode) and (st.st_mode & stat.S_ISVTX or _is_home(path)):
        return
    if not _ours(st):
        log.warning(
            "a data file is readable by others and not ours to fix",
            extra=log_fields(path=str(path), mode=oct(current)),
        )
        return
    os.chmod(path, mode)
    log.info("tightened file mode", extra=log_fields(path=str(path), old_mode=oct(current), mode=oct(mode)))


def _is_home(path: Path) -> bool:
    try:
        return path.resolve() == Path.home().resolve()
    except (OSError, RuntimeError):
        return False


def create_private_file(path: Path) -> bool:
    """Create an empty 0600 file if there is none; True when this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def open_private_append(path: Path) -> TextIO:
    """Open `path` for appending text, creating it 0600 (whatever the umask) if needed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != FILE_MODE and _ours(st):
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
