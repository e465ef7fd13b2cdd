"""What every host offers: the change request, its comments and inline threads, and the calls
that publish to it."""

from __future__ import annotations

from collections.abc import Callable
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
    # What the host says of the author's relation to the repository (GitHub's author_association:
    # OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE...); "" when the host says nothing.
    association: str = ""
    # The author's id on the host (GitLab's numeric user id), for permission look-ups; "" when unknown.
    author_id: str = ""
    # Changed after it was posted: the host still names the author, but someone else with write
    # access may have done it, so an edited comment never carries anyone's authority.
    edited: bool = False


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
    # Who resolved it, as the host knows them: their id and whether they are a bot (or us).
    resolved_by_id: str = ""
    resolved_by_bot: bool = False

    def resolver(self) -> Comment | None:
        """Who resolved the thread, as a body-less comment, so hosts judge their authority as anyone's."""
        if not self.resolved or not self.resolved_by:
            return None
        return Comment("", "", self.resolved_by, self.resolved_by_bot, author_id=self.resolved_by_id)


class ConversationHost:
    """What the REST hosts share: the conversation is listed once per run, and our summary is
    found in that listing by its marker and its author, then edited, or created."""

    _listed: list[Comment] | None = None

    def whoami(self) -> str:
        raise NotImplementedError

    def _list_comments(self) -> list[Comment]:
        raise NotImplementedError

    def _edit_comment(self, comment_id: str, body: str) -> None:
        raise NotImplementedError

    def _create_comment(self, body: str) -> str:
        raise NotImplementedError

    def comments(self) -> list[Comment]:
        self._listed = self._list_comments()
        return self._listed

    @property
    def truncated(self) -> list[str]:
        """Listings that were cut short (a flood of comments); the review says so."""
        return list(getattr(getattr(self, "api", None), "truncated", []))

    # How a comment is anchored on the change request's web page: GitHub "#issuecomment-<id>",
    # GitLab "#note_<id>"; "" when the host has no such page.
    comment_anchor_prefix = ""

    def comment_url(self, change_url: str, comment_id: str) -> str:
        """The web address of one of the change request's comments, or "" when unknown."""
        if not self.comment_anchor_prefix or not change_url.startswith(("https://", "http://")) or not comment_id.isdigit():
            return ""
        return f"{change_url.split('#', 1)[0]}#{self.comment_anchor_prefix}{comment_id}"

    def upsert_summary(self, is_ours: Callable[[str], bool], body: str) -> str:
        # The listing read earlier in this run is enough: a PR with hundreds of comments is
        # paginated once per run, not twice.
        listed = self._listed if self._listed is not None else self.comments()
        # Ours by author and by `is_ours` (the caller knows its own format): another workflow
        # posting as the same account must never be taken over. The newest, as the caller's memory
        # reads the newest: both agree on which comment is ours.
        ours = next((c for c in reversed(listed) if c.author == self.whoami() and is_ours(c.body)), None)
        if ours is None:
            return self._create_comment(body)
        self._edit_comment(ours.id, body)
        return ours.id


class VcsHost(Protocol):
    name: str

    def whoami(self) -> str: ...

    def change_request(self) -> ChangeRequest: ...

    def comments(self) -> list[Comment]: ...

    def threads(self) -> list[Thread]: ...

    def upsert_summary(self, is_ours: Callable[[str], bool], body: str) -> str:
        """Edit our newest comment that `is_ours` recognises, or create one; returns its id."""
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

    def authorized(self, comment: Comment) -> bool:
        """Whether the comment's author may break glass or dismiss a finding: never a bot; a
        human by their role on the repository. A role the host will not tell is no authority."""
        ...

    def authority_rule(self) -> str:
        """What authorises someone here, for notices (e.g. "the Maintainer role or higher")."""
        ...

    def close(self) -> None: ...


class RepoHost(Protocol):
    """Repository-level calls, for proposing a change (the AGENTS.md rollout)."""

    name: str

    def open_change(self, branch: str, target: str, title: str, body: str) -> tuple[str, bool]:
        """The URL of the open PR/MR from `branch`, created if there is none; True when created."""
        ...

    def close(self) -> None: ...
