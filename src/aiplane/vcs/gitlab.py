"""GitLab (REST v4): MR notes, diff discussions, resolving, commit statuses and approvals.

Token: a project or group access token with the `api` scope and at least the Developer role
(Reporter cannot set commit statuses); approving also needs the token's user to be an eligible
approver. `CI_JOB_TOKEN` cannot write notes, so it is not enough.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlsplit

from aiplane.logs import log_fields
from aiplane.vcs.http import ApiClient
from aiplane.vcs.model import ChangeRequest, Comment, ConversationHost, StatusState, Thread, VcsError

STATUS_NAME = "aiplane/review"
_STATES = {"success": "success", "failure": "failed", "pending": "running", "error": "failed"}
ACCESS_LEVELS = {10: "Guest", 20: "Reporter", 30: "Developer", 40: "Maintainer", 50: "Owner"}
# The users behind project and group access tokens, and service accounts: bots, whatever their role.
_BOT_USERNAME = re.compile(r"^(?:project|group)_\d+_bot(?:_|\d|$)|^service_account_")

log = logging.getLogger("aiplane.vcs")


class GitLabHost(ConversationHost):
    name = "gitlab"
    comment_anchor_prefix = "note_"

    def __init__(self, project: str, iid: str, token: str, api_url: str = "https://gitlab.com/api/v4",
                 min_access_level: int = 40, **client_options: Any) -> None:
        if not project:
            raise VcsError("GitLab project is missing (CI_PROJECT_ID or a path like group/project)")
        if not str(iid).isdigit():
            raise VcsError(f"GitLab merge request IID must be a number, not {iid!r}")
        if not token:
            raise VcsError("no GitLab token: set GITLAB_TOKEN (a project access token with the api scope)")
        self.project = quote(str(project), safe="")
        self.iid = str(iid)
        self.api = ApiClient(api_url, {"private-token": token}, "GitLab", token, **client_options)
        self._me: str | None = None
        self._mr: ChangeRequest | None = None
        self.min_access_level = min_access_level
        self._levels: dict[str, int] = {}  # user id -> access level on the project, looked up once per run

    @property
    def _base(self) -> str:
        return f"/projects/{self.project}/merge_requests/{self.iid}"

    def whoami(self) -> str:
        if self._me is None:
            self._me = self.api.json("GET", "/user")["username"]
        return self._me

    def change_request(self) -> ChangeRequest:
        if self._mr is not None:
            return self._mr
        data = self.api.json("GET", self._base)
        refs = data.get("diff_refs") or {}
        if not refs.get("head_sha"):
            raise VcsError("GitLab: the merge request has no diff yet (diff_refs is empty); retry when GitLab has computed it")
        self._mr = ChangeRequest(
            number=self.iid, title=data.get("title") or "", body=data.get("description") or "",
            base_sha=refs["base_sha"], head_sha=refs["head_sha"], start_sha=refs.get("start_sha") or refs["base_sha"],
            base_ref=data.get("target_branch", ""), head_ref=data.get("source_branch", ""), url=data.get("web_url", ""),
            repository=((data.get("references") or {}).get("full", "").split("!")[0]
                        or urlsplit(data.get("web_url", "")).path.split("/-/")[0].strip("/")),
        )
        return self._mr

    def _user(self, user: dict[str, Any] | None) -> tuple[str, str, bool]:
        """Username, id and whether it is a bot (or us)."""
        user = user or {}
        name = str(user.get("username") or "")
        bot = bool(user.get("bot")) or bool(_BOT_USERNAME.match(name)) or name == self.whoami()
        return name, str(user.get("id") or ""), bot

    def _comment(self, note: dict[str, Any]) -> Comment:
        name, user_id, bot = self._user(note.get("author"))
        updated, created = note.get("updated_at"), note.get("created_at")
        # Resolving a discussion touches updated_at too; only a change that is not the resolution is an edit.
        edited = bool(updated) and updated != created and updated != note.get("resolved_at")
        return Comment(str(note["id"]), note.get("body") or "", name, bot, author_id=user_id, edited=edited)

    def _list_comments(self) -> list[Comment]:
        return [self._comment(note) for note in self.api.paginate(f"{self._base}/notes", {"sort": "asc", "order_by": "created_at"})
                if not note.get("system") and note.get("type") != "DiffNote"]

    def authorized(self, comment: Comment) -> bool:
        if comment.is_bot or not comment.author_id or comment.author == self.whoami():
            return False
        return self._level(comment.author_id) >= self.min_access_level

    def authority_rule(self) -> str:
        role = ACCESS_LEVELS.get(self.min_access_level)
        return f"the {role} role or higher" if role else f"an access level of {self.min_access_level} or higher"

    def _level(self, user_id: str) -> int:
        """The member's access level on the project, inherited ones included; 0 for a non-member
        (404) or when GitLab will not say, so a failed look-up never authorises."""
        if user_id not in self._levels:
            level = 0
            try:
                response = self.api.request("GET", f"/projects/{self.project}/members/all/{quote(user_id, safe='')}", ok=(404,))
                if response.status_code == 200:
                    data = response.json()
                    if data.get("state", "active") == "active":
                        level = int(data.get("access_level") or 0)
            except (VcsError, ValueError, TypeError, AttributeError) as exc:
                log.warning("membership look-up failed", extra=log_fields(vcs=self.name, user_id=user_id, error=str(exc)[:300]))
            self._levels[user_id] = level
        return self._levels[user_id]

    def threads(self) -> list[Thread]:
        threads = []
        for discussion in self.api.paginate(f"{self._base}/discussions"):
            notes = discussion.get("notes") or []
            if not notes or notes[0].get("type") != "DiffNote":
                continue
            first = notes[0]
            position = first.get("position") or {}
            name = self._user(first.get("author"))[0]
            replies = [self._comment(note) for note in notes[1:] if not note.get("system")]
            resolver, resolver_id, resolver_bot = self._user(first.get("resolved_by"))
            threads.append(Thread(
                id=str(discussion["id"]), comment_id=str(first["id"]), body=first.get("body") or "", author=name,
                path=position.get("new_path"), line=position.get("new_line"), resolved=bool(first.get("resolved")),
                resolved_by=resolver or None, replies=replies, resolved_by_id=resolver_id, resolved_by_bot=resolver_bot,
            ))
        return threads

    def _edit_comment(self, comment_id: str, body: str) -> None:
        self.api.request("PUT", f"{self._base}/notes/{comment_id}", json={"body": body})

    def _create_comment(self, body: str) -> str:
        return str(self.api.json("POST", f"{self._base}/notes", json={"body": body})["id"])

    def post_inline(self, path: str, line: int, body: str) -> str | None:
        mr = self._mr or self.change_request()
        position = {"position_type": "text", "base_sha": mr.base_sha, "start_sha": mr.start_sha, "head_sha": mr.head_sha,
                    "new_path": path, "old_path": path, "new_line": line}
        response = self.api.request("POST", f"{self._base}/discussions", ok=(400,), json={"body": body, "position": position})
        if response.status_code == 400:
            return None  # GitLab refuses positions outside the diff
        return str(response.json()["id"])

    def edit_inline(self, thread: Thread, body: str) -> None:
        self.api.request("PUT", f"{self._base}/discussions/{thread.id}/notes/{thread.comment_id}", json={"body": body})

    def reply(self, thread: Thread, body: str) -> None:
        self.api.request("POST", f"{self._base}/discussions/{thread.id}/notes", json={"body": body})

    def resolve(self, thread: Thread) -> None:
        self.api.request("PUT", f"{self._base}/discussions/{thread.id}", params={"resolved": "true"})

    def set_status(self, state: StatusState, description: str) -> None:
        mr = self._mr or self.change_request()
        self.api.request("POST", f"/projects/{self.project}/statuses/{mr.head_sha}",
                         json={"state": _STATES[state], "name": STATUS_NAME, "description": description[:255]})

    def approve(self, approved: bool) -> bool:
        action = "approve" if approved else "unapprove"
        # 401/403: the token may not approve; 404 on unapprove: there was no approval to withdraw.
        response = self.api.request("POST", f"{self._base}/{action}", ok=(401, 403, 404, 405))
        return response.status_code < 400

    def close(self) -> None:
        self.api.close()


class GitLabProject:
    name = "gitlab"

    def __init__(self, project: str, token: str, api_url: str = "https://gitlab.com/api/v4", **client_options: Any) -> None:
        if not project:
            raise VcsError("GitLab project is missing (an ID or a path like group/project)")
        if not token:
            raise VcsError("no GitLab token: set GITLAB_TOKEN (a project or group access token with the api scope)")
        self.project = quote(str(project), safe="")
        self.api = ApiClient(api_url, {"private-token": token}, "GitLab", token, **client_options)

    def open_change(self, branch: str, target: str, title: str, body: str) -> tuple[str, bool]:
        path = f"/projects/{self.project}/merge_requests"
        for mr in self.api.paginate(path, {"state": "opened", "source_branch": branch}):
            return mr["web_url"], False
        created = self.api.json("POST", path, json={"source_branch": branch, "target_branch": target, "title": title,
                                                    "description": body, "remove_source_branch": True})
        return created["web_url"], True

    def close(self) -> None:
        self.api.close()
