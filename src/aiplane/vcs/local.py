"""A host for reviews outside a code host: the comment goes to stdout or a file, and the memory
of earlier rounds lives in `<repo>/.aiplane/state/review.json` (ignored by git)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiplane.repository.tree import WorkTree
from aiplane.vcs.model import ChangeRequest, Comment, StatusState, Thread, VcsError

BOT = "aiplane"
MAX_STATE_BYTES = 16 * 1024 * 1024


class LocalHost:
    name = "local"

    def __init__(self, repo: Path, base_sha: str = "", head_sha: str = "", title: str = "", body: str = "") -> None:
        self.repo = repo
        self.state_dir = repo / ".aiplane" / "state"
        self.state_path = self.state_dir / "review.json"
        self._cr = ChangeRequest(number="local", title=title, body=body, base_sha=base_sha, head_sha=head_sha)
        self._state = self._load()
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        tree = WorkTree(self.repo)
        relative = self.state_path.relative_to(self.repo).as_posix()
        if tree.kind(relative) is None:
            return {"summary": None, "threads": []}
        raw = tree.read_text(relative, MAX_STATE_BYTES)
        if raw is None:
            raise VcsError(f"{self.state_path}: not a regular file, or larger than {MAX_STATE_BYTES // (1024 * 1024)} MiB; "
                           "delete it to start afresh")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise VcsError(f"{self.state_path}: unreadable review state ({exc.__class__.__name__}); delete it to start afresh") from None
        if not isinstance(data, dict) or not isinstance(data.get("threads", []), list):
            raise VcsError(f"{self.state_path}: not a review state file; delete it to start afresh")
        return {"summary": data.get("summary"), "threads": data.get("threads", [])}

    def whoami(self) -> str:
        return BOT

    def change_request(self) -> ChangeRequest:
        return self._cr

    def comments(self) -> list[Comment]:
        summary = self._state.get("summary")
        return [Comment("summary", summary, BOT, True)] if summary else []

    def threads(self) -> list[Thread]:
        threads = []
        for raw in self._state["threads"]:
            replies = [Comment(**r) for r in raw.get("replies", [])]
            threads.append(Thread(**{**raw, "replies": replies}))
        return threads

    def _save_threads(self, threads: list[Thread]) -> None:
        self._state["threads"] = [asdict(t) for t in threads]
        self._dirty = True

    def upsert_summary(self, is_ours: Callable[[str], bool], body: str) -> str:
        self._state["summary"] = body
        self._dirty = True
        return "summary"

    def post_inline(self, path: str, line: int, body: str) -> str | None:
        thread = Thread(id=uuid.uuid4().hex[:12], comment_id=uuid.uuid4().hex[:12], body=body, author=BOT, path=path, line=line)
        self._save_threads([*self.threads(), thread])
        return thread.id

    def _update(self, thread_id: str, **changes: Any) -> None:
        threads = self.threads()
        for thread in threads:
            if thread.id == thread_id:
                for key, value in changes.items():
                    setattr(thread, key, value)
        self._save_threads(threads)

    def edit_inline(self, thread: Thread, body: str) -> None:
        self._update(thread.id, body=body)

    def reply(self, thread: Thread, body: str) -> None:
        self._update(thread.id, replies=[*thread.replies, Comment(uuid.uuid4().hex[:12], body, BOT, True)])

    def resolve(self, thread: Thread) -> None:
        self._update(thread.id, resolved=True, resolved_by=BOT)

    def set_status(self, state: StatusState, description: str) -> None:
        return None

    def approve(self, approved: bool) -> bool:
        return False

    def authorized(self, comment: Comment) -> bool:
        # Only the local user writes here besides the reviewer itself.
        return not comment.is_bot and comment.author != BOT

    def authority_rule(self) -> str:
        return "the local user"

    def close(self) -> None:
        """Write the state atomically, so an interrupted run never leaves half a file."""
        if not self._dirty:
            return
        try:
            # Never through a symlink: a checkout could point .aiplane or its state anywhere.
            for folder in (self.repo / ".aiplane", self.state_dir):
                if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                    raise VcsError(f"{folder} is not a plain folder (a symlink?); the review state was not saved")
                folder.mkdir(exist_ok=True)
            ignore = self.state_dir / ".gitignore"
            if not ignore.is_symlink() and not ignore.exists():
                _write_new(ignore, "*\n")
            tmp = self.state_path.with_suffix(f".json.{os.getpid()}.tmp")
            _write_new(tmp, json.dumps(self._state, indent=1))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            raise VcsError(f"cannot write {self.state_path} ({exc.__class__.__name__})") from None


def _write_new(path: Path, text: str) -> None:
    """Create a file that must not exist yet (O_EXCL, O_NOFOLLOW): no symlink is ever written through."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
