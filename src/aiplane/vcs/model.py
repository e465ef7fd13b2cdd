"""What every host offers: the change request, its comments and inline threads, and the calls
that publish to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

StatusState = Literal["success", "failure", "pending", "error"]


class VcsError(Exception):
    """A host call that failed for good; the message is safe to print (no tokens, no bodies)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ChangeRequest:
    number: str
    title: str
    body: str
    base_sha: str
    head_sha: str
    base_ref: str = ""
    head_ref: str = ""
    url: str = ""
    start_sha: str = ""
    # owner/name (GitHub) or group/project (GitLab): how reviews are named on the dashboard.
    repository: str = ""


@dataclass
class Comment:
    id: str
    body: str
    author: str
    is_bot: bool = False


@dataclass
class Thread:
    """An inline discussion: the first comment anchors it on a line; the rest are replies."""

    id: str
    comment_id: str
    body: str
    author: str
    path: str | None = None
    line: int | None = None
    resolved: bool = False
    resolved_by: str | None = None
    replies: list[Comment] = field(default_factory=list)


class VcsHost(Protocol):
    name: str

    def whoami(self) -> str: ...

    def change_request(self) -> ChangeRequest: ...

    def comments(self) -> list[Comment]: ...

    def threads(self) -> list[Thread]: ...

    def upsert_summary(self, marker: str, body: str) -> str:
        """Edit our comment that contains `marker`, or create it; returns its id."""
        ...

    def post_inline(self, path: str, line: int, body: str) -> str | None:
        """A new thread on a changed line; None when the host refuses that line."""
        ...

    def edit_inline(self, thread: Thread, body: str) -> None: ...

    def reply(self, thread: Thread, body: str) -> None: ...

    def resolve(self, thread: Thread) -> None: ...

    def set_status(self, state: StatusState, description: str) -> None: ...

    def approve(self, approved: bool) -> bool:
        """Approve (or withdraw approval); False when the token is not allowed to."""
        ...

    def close(self) -> None: ...


class RepoHost(Protocol):
    """Repository-level calls, for proposing a change (the AGENTS.md rollout)."""

    name: str

    def open_change(self, branch: str, target: str, title: str, body: str) -> tuple[str, bool]:
        """The URL of the open PR/MR from `branch`, created if there is none; True when created."""
        ...

    def close(self) -> None: ...
