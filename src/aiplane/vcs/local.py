"""A host for reviews outside a code host: the comment goes to stdout or a file, and the memory
of earlier rounds lives in `<repo>/.aiplane/state/review.json` (ignored by git)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiplane.vcs.model import ChangeRequest, Comment, StatusState, Thread, VcsError

BOT = "aiplane"


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
        if not self.state_path.is_file():
            return {"summary": None, "threads": []}
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
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

    def upsert_summary(self, marker: str, body: str) -> str:
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
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ignore = self.state_dir / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n", encoding="utf-8")
            tmp = self.state_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self._state, indent=1), encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            raise VcsError(f"cannot write {self.state_path} ({exc.__class__.__name__})") from None
