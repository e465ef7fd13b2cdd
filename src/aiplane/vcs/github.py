"""GitHub (REST v3, plus GraphQL where REST has no call: review threads and resolving them).

Token scopes: `pull-requests: write` (comments, reviews), `statuses: write` (the verdict),
`contents: read` (checkout). A GitHub Actions `GITHUB_TOKEN` with those permissions is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from aiplane.logs import log_fields
from aiplane.vcs.http import ApiClient
from aiplane.vcs.model import ChangeRequest, Comment, ConversationHost, StatusState, Thread, VcsError

STATUS_CONTEXT = "aiplane/review"
ACTIONS_BOT = "github-actions[bot]"
# Repository roles, weakest first; `role_name` names them all, the legacy `permission` folds
# maintain into write and triage into read.
PERMISSIONS = ("none", "read", "triage", "write", "maintain", "admin")
DEFAULT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")

log = logging.getLogger("aiplane.vcs")

_THREADS = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $cursor) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id isResolved path line
          resolvedBy { login }
          comments(first: 50) { nodes { databaseId body authorAssociation lastEditedAt author { login __typename } } }
        }
      }
    }
  }
}
"""
_RESOLVE = "mutation($id: ID!) { resolveReviewThread(input: {threadId: $id}) { thread { id isResolved } } }"


def _login(user: dict[str, Any] | None) -> str:
    # REST names bots "app[bot]", GraphQL names the same actor "app": compare without the suffix.
    return str((user or {}).get("login") or "").removesuffix("[bot]")


class GitHubHost(ConversationHost):
    name = "github"
    comment_anchor_prefix = "issuecomment-"

    def __init__(self, repository: str, number: str, token: str, api_url: str = "https://api.github.com",
                 graphql_url: str | None = None, bot_login: str | None = None,
                 associations: Iterable[str] = DEFAULT_ASSOCIATIONS, min_permission: str = "maintain",
                 **client_options: Any) -> None:
        if repository.count("/") != 1:
            raise VcsError(f"GitHub repository must be 'owner/name', not {repository!r}")
        if not str(number).isdigit():
            raise VcsError(f"GitHub pull request number must be a number, not {number!r}")
        if not token:
            raise VcsError("no GitHub token: set GITHUB_TOKEN (pull-requests: write, statuses: write)")
        self.owner, self.repo = repository.split("/")
        self.number = str(number)
        self.api = ApiClient(api_url, {"authorization": f"Bearer {token}", "accept": "application/vnd.github+json",
                                       "x-github-api-version": "2022-11-28"}, "GitHub", token, **client_options)
        self.graphql_url = graphql_url or (api_url.rstrip("/").removesuffix("/v3") + "/graphql" if api_url.rstrip("/").endswith("/api/v3") else api_url.rstrip("/") + "/graphql")
        self._me = bot_login.removesuffix("[bot]") if bot_login else None
        self._head: str | None = None
        self._pull: ChangeRequest | None = None
        if min_permission not in PERMISSIONS[1:]:
            raise VcsError(f"GitHub minimum permission must be one of {', '.join(PERMISSIONS[1:])}, not {min_permission!r}")
        self.associations = frozenset(a.upper() for a in associations)
        self.min_permission = min_permission
        self._roles: dict[str, str] = {}  # login -> repository role, looked up once per run

    @property
    def _pr(self) -> str:
        return f"/repos/{self.owner}/{self.repo}/pulls/{self.number}"

    def whoami(self) -> str:
        if self._me is None:
            response = self.api.request("GET", "/user", ok=(403,))
            # An installation token (GITHUB_TOKEN) may not read /user; it posts as the Actions bot.
            self._me = _login(response.json()) if response.status_code == 200 else ACTIONS_BOT.removesuffix("[bot]")
        return self._me

    def change_request(self) -> ChangeRequest:
        if self._pull is not None:
            return self._pull
        data = self.api.json("GET", self._pr)
        self._head = data["head"]["sha"]
        self._pull = ChangeRequest(
            number=self.number, title=data.get("title") or "", body=data.get("body") or "",
            base_sha=data["base"]["sha"], head_sha=data["head"]["sha"], base_ref=data["base"].get("ref", ""),
            head_ref=data["head"].get("ref", ""), url=data.get("html_url", ""), repository=f"{self.owner}/{self.repo}",
        )
        return self._pull

    def _is_bot(self, user: dict[str, Any] | None) -> bool:
        return (user or {}).get("type") == "Bot" or _login(user) == self.whoami()

    def _list_comments(self) -> list[Comment]:
        return [
            Comment(str(c["id"]), c.get("body") or "", _login(c.get("user")), self._is_bot(c.get("user")),
                    association=str(c.get("author_association") or ""), author_id=str((c.get("user") or {}).get("id") or ""),
                    edited=bool(c.get("updated_at")) and c.get("updated_at") != c.get("created_at"))
            for c in self.api.paginate(f"/repos/{self.owner}/{self.repo}/issues/{self.number}/comments")
        ]

    def authorized(self, comment: Comment) -> bool:
        if comment.is_bot or not comment.author or comment.author == self.whoami():
            return False
        if comment.association.upper() in self.associations:
            return True
        return PERMISSIONS.index(self._role(comment.author)) >= PERMISSIONS.index(self.min_permission)

    def authority_rule(self) -> str:
        rules = []
        if self.associations:
            rules.append("an author association of " + " or ".join(sorted(self.associations)))
        rules.append(f"the {self.min_permission} permission or higher on {self.owner}/{self.repo}")
        return ", or ".join(rules)

    def _role(self, login: str) -> str:
        """The user's role on the repository; "none" when GitHub will not say (404: not a user or
        not visible; 403: the token may not ask), so a failed look-up never authorises."""
        if login not in self._roles:
            role = "none"
            try:
                response = self.api.request("GET", f"/repos/{self.owner}/{self.repo}/collaborators/{quote(login, safe='')}/permission",
                                            ok=(404,))
                if response.status_code == 200:
                    data = response.json()
                    named = str(data.get("role_name") or "").lower()
                    # A custom role's name says nothing of its rank: its base `permission` does.
                    role = named if named in PERMISSIONS else str(data.get("permission") or "none").lower()
            except (VcsError, ValueError, AttributeError) as exc:
                log.warning("permission look-up failed", extra=log_fields(vcs=self.name, user=login, error=str(exc)[:300]))
            self._roles[login] = role if role in PERMISSIONS else "none"
        return self._roles[login]

    def threads(self) -> list[Thread]:
        me = self.whoami()
        threads: list[Thread] = []
        cursor = None
        for _page in range(50):
            data = self._graphql(_THREADS, {"owner": self.owner, "name": self.repo, "number": int(self.number), "cursor": cursor})
            block = data["repository"]["pullRequest"]["reviewThreads"]
            for node in block["nodes"]:
                comments = node["comments"]["nodes"]
                if not comments:
                    continue
                first = comments[0]
                author = _login(first.get("author"))
                threads.append(Thread(
                    id=node["id"], comment_id=str(first["databaseId"]), body=first.get("body") or "", author=author,
                    path=node.get("path"), line=node.get("line"), resolved=bool(node.get("isResolved")),
                    resolved_by=_login(node.get("resolvedBy")) or None,
                    replies=[Comment(str(c["databaseId"]), c.get("body") or "", _login(c.get("author")),
                                     (c.get("author") or {}).get("__typename") == "Bot" or _login(c.get("author")) == me,
                                     association=str(c.get("authorAssociation") or ""), edited=bool(c.get("lastEditedAt")))
                             for c in comments[1:]],
                    resolved_by_bot=_login(node.get("resolvedBy")) == me,
                ))
            if not block["pageInfo"]["hasNextPage"]:
                break
            cursor = block["pageInfo"]["endCursor"]
        return threads

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        data = self.api.json("POST", self.graphql_url, json={"query": query, "variables": variables})
        if data.get("errors"):
            message = "; ".join(str(e.get("message", "")) for e in data["errors"])[:300]
            raise VcsError(f"GitHub GraphQL: {message}")
        return data["data"]

    def _edit_comment(self, comment_id: str, body: str) -> None:
        self.api.request("PATCH", f"/repos/{self.owner}/{self.repo}/issues/comments/{comment_id}", json={"body": body})

    def _create_comment(self, body: str) -> str:
        created = self.api.json("POST", f"/repos/{self.owner}/{self.repo}/issues/{self.number}/comments", json={"body": body})
        return str(created["id"])

    def post_inline(self, path: str, line: int, body: str) -> str | None:
        if self._head is None:
            self.change_request()
        response = self.api.request("POST", f"{self._pr}/comments", ok=(422,),
                                    json={"body": body, "commit_id": self._head, "path": path, "line": line, "side": "RIGHT"})
        if response.status_code == 422:
            return None  # the line is not part of the diff GitHub shows
        return str(response.json()["id"])

    def edit_inline(self, thread: Thread, body: str) -> None:
        self.api.request("PATCH", f"/repos/{self.owner}/{self.repo}/pulls/comments/{thread.comment_id}", json={"body": body})

    def reply(self, thread: Thread, body: str) -> None:
        self.api.request("POST", f"{self._pr}/comments/{thread.comment_id}/replies", json={"body": body})

    def resolve(self, thread: Thread) -> None:
        self._graphql(_RESOLVE, {"id": thread.id})

    def set_status(self, state: StatusState, description: str) -> None:
        if self._head is None:
            self.change_request()
        self.api.request("POST", f"/repos/{self.owner}/{self.repo}/statuses/{self._head}",
                         json={"state": state, "context": STATUS_CONTEXT, "description": description[:140]})

    def approve(self, approved: bool) -> bool:
        if not approved:
            return False  # GitHub has no un-approve; a failing status carries request-changes
        response = self.api.request("POST", f"{self._pr}/reviews", ok=(403, 422),
                                    json={"event": "APPROVE", "body": "Approved by aiplane review."})
        return response.status_code < 400

    def close(self) -> None:
        self.api.close()


class GitHubRepository:
    name = "github"

    def __init__(self, repository: str, token: str, api_url: str = "https://api.github.com", **client_options: Any) -> None:
        if repository.count("/") != 1:
            raise VcsError(f"GitHub repository must be 'owner/name', not {repository!r}")
        if not token:
            raise VcsError("no GitHub token: set GITHUB_TOKEN (contents: write, pull-requests: write)")
        self.owner, self.repo = repository.split("/")
        self.api = ApiClient(api_url, {"authorization": f"Bearer {token}", "accept": "application/vnd.github+json",
                                       "x-github-api-version": "2022-11-28"}, "GitHub", token, **client_options)

    def open_change(self, branch: str, target: str, title: str, body: str) -> tuple[str, bool]:
        path = f"/repos/{self.owner}/{self.repo}/pulls"
        for pull in self.api.paginate(path, {"state": "open", "head": f"{self.owner}:{branch}"}):
            return pull["html_url"], False
        created = self.api.json("POST", path, json={"title": title, "head": branch, "base": target, "body": body,
                                                    "maintainer_can_modify": True})
        return created["html_url"], True

    def close(self) -> None:
        self.api.close()
