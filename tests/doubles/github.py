"""A GitHub REST v3 + GraphQL double for one pull request, speaking GitHub's wire format.

Real paths and JSON shapes; `Link` pagination honouring `per_page`; 401 for bad tokens; 422 for
review comments off the diff; 403 for an installation token reading /user; scripted failures
(429 with Retry-After, 403, 404, 5xx) per method and path. Comments carry `author_association`
(GraphQL: `authorAssociation`), scripted per login, "NONE" by default; a user's repository role
(`collaborators/{username}/permission`) is scripted per login: a login GitHub has never seen is
"not a user" (404), anyone else without a role gets `read` on a public repository, `none` on a private one.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "ghs_test_installation_token_0123456789"
BOT = "github-actions[bot]"
# role_name -> the legacy `permission` GitHub reports next to it (maintain folds into write, triage into read).
LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none"}


@dataclass
class GitHubState:
    owner: str = "acme"
    repo: str = "widgets"
    number: int = 7
    title: str = "Add feature"
    body: str = "This adds a feature."
    base_sha: str = ""
    head_sha: str = ""
    # Lines GitHub shows in the diff, per path; an inline comment elsewhere gets 422.
    diff_lines: dict[str, set[int]] = field(default_factory=dict)
    issue_comments: list[dict[str, Any]] = field(default_factory=list)
    review_comments: list[dict[str, Any]] = field(default_factory=list)
    resolved: dict[int, str] = field(default_factory=dict)  # root comment id -> resolver login
    statuses: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    edits: int = 0
    pulls: list[dict[str, Any]] = field(default_factory=list)  # opened through POST /pulls, or merged history
    # Review comments of other (e.g. merged) pull requests, by number, for history readers.
    pull_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # login -> author_association on this repository (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR,
    # FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, NONE...); unlisted logins are NONE.
    associations: dict[str, str] = field(default_factory=dict)
    # login -> role_name on the repository (read, triage, write, maintain, admin, or a custom role
    # given as "name:base" such as "auditor:write"); unlisted logins have none.
    roles: dict[str, str] = field(default_factory=dict)
    private: bool = False
    # Logins GitHub knows besides those who commented or have a role (the rest are "not a user").
    known_users: set[str] = field(default_factory=set)
    # (method, path regex) -> list of (status, headers, body) served before the real answer.
    failures: dict[tuple[str, str], list[tuple[int, dict[str, str], dict]]] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1000))

    def user(self, login: str) -> dict[str, Any]:
        self.known_users.add(login)
        return {"login": login, "id": abs(hash(login)) % 10**6, "type": "Bot" if login.endswith("[bot]") else "User"}

    def association(self, login: str) -> str:
        return self.associations.get(login, "NONE")

    def add_issue_comment(self, login: str, body: str) -> dict[str, Any]:
        comment = {"id": next(self.ids), "body": body, "user": self.user(login), "author_association": self.association(login),
                   "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z"}
        self.issue_comments.append(comment)
        return comment

    def edit(self, comment: dict[str, Any], body: str) -> None:
        """Someone with write access edits a comment: GitHub keeps its author and moves updated_at."""
        comment["body"] = body
        comment["updated_at"] = "2026-11-22T11:00:00Z"
        comment["last_edited_at"] = "2026-11-22T11:00:00Z"

    def reply(self, root_id: int, login: str, body: str) -> None:
        root = next(c for c in self.review_comments if c["id"] == root_id)
        self.review_comments.append({"id": next(self.ids), "body": body, "user": self.user(login), "path": root["path"],
                                     "line": root["line"], "in_reply_to_id": root_id, "commit_id": root["commit_id"],
                                     "author_association": self.association(login), "created_at": "2026-11-22T10:00:00Z",
                                     "updated_at": "2026-11-22T10:00:00Z"})

    def roots(self) -> list[dict[str, Any]]:
        return [c for c in self.review_comments if c.get("in_reply_to_id") is None]

    def bot_summaries(self) -> list[dict[str, Any]]:
        return [c for c in self.issue_comments if c["user"]["login"] == BOT]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": "https://docs.github.com/rest"}, status, headers=headers)


def _page(request: Request, items: list[Any]) -> JSONResponse:
    per_page = min(int(request.query_params.get("per_page", 30)), 100)
    page = int(request.query_params.get("page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    last = max((len(items) + per_page - 1) // per_page, 1)
    if page < last:
        base = str(request.url.replace(query=""))
        headers["link"] = f'<{base}?per_page={per_page}&page={page + 1}>; rel="next", <{base}?per_page={per_page}&page={last}>; rel="last"'
    return JSONResponse(chunk, headers=headers)


def build_github_app(state: GitHubState) -> Starlette:
    prefix = f"/repos/{state.owner}/{state.repo}"

    async def guard(request: Request) -> Response | None:
        state.requests.append((request.method, request.url.path))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401, "Bad credentials")
        for (method, pattern), queue in state.failures.items():
            if method == request.method and re.fullmatch(pattern, request.url.path) and queue:
                status, headers, body = queue.pop(0)
                return JSONResponse(body or {"message": f"scripted {status}"}, status, headers=headers)
        return None

    def endpoint(handler):  # noqa: ANN001, ANN202
        async def wrapped(request: Request) -> Response:
            refused = await guard(request)
            return refused if refused is not None else await handler(request)

        return wrapped

    async def user(_request: Request) -> Response:
        return _error(403, "Resource not accessible by integration")

    async def pull(request: Request) -> Response:
        other = next((p for p in state.pulls if p["number"] == int(request.path_params["number"])), None)
        if other is not None:
            return JSONResponse(other)
        if int(request.path_params["number"]) != state.number:
            return _error(404, "Not Found")
        return JSONResponse({
            "number": state.number, "state": "open", "title": state.title, "body": state.body,
            "html_url": f"https://github.com/{state.owner}/{state.repo}/pull/{state.number}",
            "user": state.user("dev"), "head": {"sha": state.head_sha, "ref": "feature"}, "base": {"sha": state.base_sha, "ref": "main"},
        })

    async def issue_comments(request: Request) -> Response:
        if request.method == "GET":
            return _page(request, state.issue_comments)
        body = await request.json()
        comment = state.add_issue_comment(BOT, body["body"])
        return JSONResponse(comment, 201)

    async def edit_issue_comment(request: Request) -> Response:
        comment = next((c for c in state.issue_comments if c["id"] == int(request.path_params["id"])), None)
        if comment is None:
            return _error(404, "Not Found")
        comment["body"] = (await request.json())["body"]
        comment["updated_at"] = "2026-11-22T12:00:00Z"
        state.edits += 1
        return JSONResponse(comment)

    async def review_comments(request: Request) -> Response:
        number = int(request.path_params["number"])
        if request.method == "GET":
            if number != state.number:
                return _page(request, state.pull_comments.get(number, []))
            return _page(request, state.review_comments)
        body = await request.json()
        if body.get("commit_id") != state.head_sha:
            return _error(422, "Validation Failed: commit_id is not part of the pull request")
        if body.get("line") not in state.diff_lines.get(body.get("path"), set()):
            return _error(422, "Validation Failed: pull_request_review_thread.line must be part of the diff")
        comment = {"id": next(state.ids), "body": body["body"], "user": state.user(BOT), "path": body["path"],
                   "line": body["line"], "side": body.get("side", "RIGHT"), "commit_id": body["commit_id"], "in_reply_to_id": None,
                   "author_association": state.association(BOT)}
        state.review_comments.append(comment)
        return JSONResponse(comment, 201)

    async def edit_review_comment(request: Request) -> Response:
        comment = next((c for c in state.review_comments if c["id"] == int(request.path_params["id"])), None)
        if comment is None:
            return _error(404, "Not Found")
        comment["body"] = (await request.json())["body"]
        return JSONResponse(comment)

    async def reply(request: Request) -> Response:
        root_id = int(request.path_params["id"])
        if not any(c["id"] == root_id for c in state.roots()):
            return _error(404, "Not Found")
        state.reply(root_id, BOT, (await request.json())["body"])
        return JSONResponse(state.review_comments[-1], 201)

    async def statuses(request: Request) -> Response:
        body = await request.json()
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return _error(422, "Validation Failed")
        status = {"sha": request.path_params["sha"], **body}
        state.statuses.append(status)
        return JSONResponse(status, 201)

    async def reviews(request: Request) -> Response:
        body = await request.json()
        review = {"id": next(state.ids), "state": "APPROVED" if body.get("event") == "APPROVE" else "COMMENTED", "body": body.get("body")}
        state.reviews.append(review)
        return JSONResponse(review)

    async def pulls(request: Request) -> Response:
        if request.method == "GET":
            head = request.query_params.get("head")
            wanted = request.query_params.get("state", "open")
            found = [p for p in state.pulls if (head is None or f"{state.owner}:{p['head']['ref']}" == head)
                     and (wanted == "all" or p["state"] == wanted)]
            return _page(request, found)
        body = await request.json()
        if any(p["head"]["ref"] == body.get("head") and p["state"] == "open" for p in state.pulls):
            return _error(422, f"Validation Failed: A pull request already exists for {state.owner}:{body.get('head')}.")
        number = len(state.pulls) + 100
        pull = {"number": number, "state": "open", "title": body["title"], "body": body.get("body"),
                "head": {"ref": body["head"]}, "base": {"ref": body["base"]},
                "html_url": f"https://github.com/{state.owner}/{state.repo}/pull/{number}"}
        state.pulls.append(pull)
        return JSONResponse(pull, 201)

    async def graphql(request: Request) -> Response:
        payload = await request.json()
        query, variables = payload["query"], payload.get("variables") or {}
        if "resolveReviewThread" in query:
            root_id = int(variables["id"].removeprefix("PRRT_"))
            if not any(c["id"] == root_id for c in state.roots()):
                return JSONResponse({"data": None, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a node"}]})
            state.resolved[root_id] = BOT
            return JSONResponse({"data": {"resolveReviewThread": {"thread": {"id": variables["id"], "isResolved": True}}}})
        nodes = []
        for root in state.roots():
            thread = [root, *(c for c in state.review_comments if c.get("in_reply_to_id") == root["id"])]
            resolver = state.resolved.get(root["id"])
            nodes.append({
                "id": f"PRRT_{root['id']}", "isResolved": resolver is not None, "path": root["path"], "line": root["line"],
                "resolvedBy": {"login": resolver.removesuffix("[bot]") if resolver == BOT else resolver} if resolver else None,
                "comments": {"nodes": [{"databaseId": c["id"], "body": c["body"], "authorAssociation": c["author_association"],
                                        "lastEditedAt": c.get("last_edited_at"),
                                        "author": {"login": c["user"]["login"].removesuffix("[bot]"), "__typename": c["user"]["type"]}}
                                       for c in thread]},
            })
        return JSONResponse({"data": {"repository": {"pullRequest": {"reviewThreads": {
            "pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": nodes}}}}})

    async def permission(request: Request) -> Response:
        login = request.path_params["username"]
        if login not in state.known_users and login not in state.roles:
            return _error(404, f"{login} is not a user")
        role = state.roles.get(login) or ("none" if state.private else "read")
        role_name, _, base = role.partition(":")  # a custom role reports its base role as `permission`
        permission = base or LEGACY_PERMISSION[role_name]
        rank = list(LEGACY_PERMISSION)[::-1].index(role_name if not base else permission)  # none 0 … admin 5
        permissions = {"pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3, "maintain": rank >= 4, "admin": rank >= 5}
        return JSONResponse({"permission": permission, "role_name": role_name,
                             "user": {**state.user(login), "permissions": permissions, "role_name": role_name}})

    routes = [
        Route("/user", endpoint(user)),
        Route(f"{prefix}/collaborators/{{username}}/permission", endpoint(permission)),
        Route(f"{prefix}/pulls", endpoint(pulls), methods=["GET", "POST"]),
        Route(f"{prefix}/pulls/{{number}}", endpoint(pull)),
        Route(f"{prefix}/issues/{{number}}/comments", endpoint(issue_comments), methods=["GET", "POST"]),
        Route(f"{prefix}/issues/comments/{{id}}", endpoint(edit_issue_comment), methods=["PATCH"]),
        Route(f"{prefix}/pulls/{{number}}/comments", endpoint(review_comments), methods=["GET", "POST"]),
        Route(f"{prefix}/pulls/comments/{{id}}", endpoint(edit_review_comment), methods=["PATCH"]),
        Route(f"{prefix}/pulls/{{number}}/comments/{{id}}/replies", endpoint(reply), methods=["POST"]),
        Route(f"{prefix}/statuses/{{sha}}", endpoint(statuses), methods=["POST"]),
        Route(f"{prefix}/pulls/{{number}}/reviews", endpoint(reviews), methods=["POST"]),
        Route("/graphql", endpoint(graphql), methods=["POST"]),
    ]
    return Starlette(routes=routes)
