"""A GitLab REST v4 double for one merge request, speaking GitLab's wire format.

Real paths and JSON shapes; pagination with `X-Next-Page`, `X-Total-Pages` and `Link`;
`PRIVATE-TOKEN` auth (401 otherwise); 400 for a DiffNote position outside the diff; approvals
that may be refused (401); scripted failures per method and path. Users have stable numeric ids;
project membership (`members/all/:user_id`) is scripted per username as an access level, and
anyone unlisted is not a member (404).
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "glpat-test-project-token-0123456789"
BOT = "project_42_bot_aiplane"


@dataclass
class GitLabState:
    project_id: int = 42
    iid: int = 3
    title: str = "Add feature"
    description: str = "This adds a feature."
    base_sha: str = ""
    head_sha: str = ""
    diff_lines: dict[str, set[int]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)  # top-level notes
    discussions: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    approved_by: set[str] = field(default_factory=set)
    can_approve: bool = True
    edits: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    merge_requests: list[dict[str, Any]] = field(default_factory=list)  # opened through POST /merge_requests, or merged history
    # Discussions of other (e.g. merged) merge requests, by IID, for history readers.
    mr_discussions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # username -> access level on the project (10 Guest, 20 Reporter, 30 Developer, 40 Maintainer,
    # 50 Owner), direct or inherited; unlisted users are not members. The token's bot is a Developer.
    access_levels: dict[str, int] = field(default_factory=lambda: {BOT: 30})
    user_ids: dict[str, int] = field(default_factory=lambda: {BOT: 1})
    failures: dict[tuple[str, str], list[tuple[int, dict[str, str], dict]]] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(500))

    def user_id(self, username: str) -> int:
        return self.user_ids.setdefault(username, 100 + len(self.user_ids))

    def author(self, username: str) -> dict[str, Any]:
        return {"id": self.user_id(username), "username": username, "name": username, "state": "active",
                "web_url": f"https://gitlab.example/{username}", "bot": username == BOT}

    def note(self, username: str, body: str, **extra: Any) -> dict[str, Any]:
        return {"id": next(self.ids), "type": None, "body": body, "author": self.author(username), "system": False,
                "resolvable": False, "resolved": False, "resolved_by": None, "created_at": "2026-11-22T10:00:00Z",
                "updated_at": "2026-11-22T10:00:00Z", **extra}

    def edit(self, note: dict[str, Any], body: str) -> None:
        """Someone edits a note: GitLab keeps its author and moves updated_at."""
        note["body"] = body
        note["updated_at"] = "2026-11-22T11:00:00Z"

    def add_note(self, username: str, body: str) -> dict[str, Any]:
        note = self.note(username, body)
        self.notes.append(note)
        return note

    def reply(self, discussion_id: str, username: str, body: str) -> None:
        discussion = next(d for d in self.discussions if d["id"] == discussion_id)
        discussion["notes"].append(self.note(username, body, type="DiffNote", resolvable=True))

    def resolve(self, discussion_id: str, username: str) -> None:
        """Someone resolves a discussion in the UI."""
        discussion = next(d for d in self.discussions if d["id"] == discussion_id)
        for note in discussion["notes"]:
            note["resolved"], note["resolved_by"] = True, self.author(username)
            note["resolved_at"] = note["updated_at"] = "2026-11-22T10:30:00Z"

    def bot_notes(self) -> list[dict[str, Any]]:
        return [n for n in self.notes if n["author"]["username"] == BOT]


def _page(request: Request, items: list[Any]) -> JSONResponse:
    per_page = min(int(request.query_params.get("per_page", 20)), 100)
    page = int(request.query_params.get("page", 1))
    total_pages = max((len(items) + per_page - 1) // per_page, 1)
    headers = {"x-page": str(page), "x-per-page": str(per_page), "x-total": str(len(items)), "x-total-pages": str(total_pages),
               "x-next-page": str(page + 1) if page < total_pages else ""}
    if page < total_pages:
        base = str(request.url.replace(query=""))
        headers["link"] = f'<{base}?page={page + 1}&per_page={per_page}>; rel="next", <{base}?page={total_pages}&per_page={per_page}>; rel="last"'
    return JSONResponse(items[(page - 1) * per_page : page * per_page], headers=headers)


def build_gitlab_app(state: GitLabState) -> Starlette:
    mr = f"/api/v4/projects/{state.project_id}/merge_requests/{state.iid}"

    def endpoint(handler):  # noqa: ANN001, ANN202
        async def wrapped(request: Request) -> Response:
            state.requests.append((request.method, request.url.path))
            if request.headers.get("private-token") != TOKEN:
                return JSONResponse({"message": "401 Unauthorized"}, 401)
            for (method, pattern), queue in state.failures.items():
                if method == request.method and re.fullmatch(pattern, request.url.path) and queue:
                    status, headers, body = queue.pop(0)
                    return JSONResponse(body or {"message": f"{status} scripted"}, status, headers=headers)
            return await handler(request)

        return wrapped

    async def user(_request: Request) -> Response:
        return JSONResponse({"id": 1, "username": BOT, "name": "aiplane", "bot": True, "state": "active"})

    async def merge_request(_request: Request) -> Response:
        return JSONResponse({
            "id": 9000, "iid": state.iid, "project_id": state.project_id, "title": state.title, "description": state.description,
            "state": "opened", "source_branch": "feature", "target_branch": "main", "sha": state.head_sha,
            "web_url": f"https://gitlab.example/acme/widgets/-/merge_requests/{state.iid}",
            "diff_refs": {"base_sha": state.base_sha, "head_sha": state.head_sha, "start_sha": state.base_sha},
        })

    async def notes(request: Request) -> Response:
        if request.method == "GET":
            flat = list(state.notes) + [n for d in state.discussions for n in d["notes"]]
            return _page(request, sorted(flat, key=lambda n: n["id"]))
        body = await request.json()
        return JSONResponse(state.add_note(BOT, body["body"]), 201)

    async def edit_note(request: Request) -> Response:
        note = next((n for n in state.notes if n["id"] == int(request.path_params["note_id"])), None)
        if note is None:
            return JSONResponse({"message": "404 Not found"}, 404)
        if note["author"]["username"] != BOT:
            return JSONResponse({"message": "403 Forbidden"}, 403)
        note["body"] = (await request.json())["body"]
        state.edits += 1
        return JSONResponse(note)

    async def discussions(request: Request) -> Response:
        if request.method == "GET":
            individual = [{"id": uuid.uuid5(uuid.NAMESPACE_OID, str(n["id"])).hex, "individual_note": True, "notes": [n]} for n in state.notes]
            return _page(request, individual + state.discussions)
        body = await request.json()
        position = body.get("position") or {}
        if (position.get("head_sha") != state.head_sha or position.get("base_sha") != state.base_sha
                or position.get("new_line") not in state.diff_lines.get(position.get("new_path"), set())):
            return JSONResponse({"message": '400 Bad request - Note {:line_code=>["can\'t be blank", "must be a valid line code"]}'}, 400)
        note = state.note(BOT, body["body"], type="DiffNote", resolvable=True,
                          position={**position, "position_type": "text", "old_line": None})
        discussion = {"id": uuid.uuid4().hex, "individual_note": False, "notes": [note]}
        state.discussions.append(discussion)
        return JSONResponse(discussion, 201)

    def find(discussion_id: str) -> dict[str, Any] | None:
        return next((d for d in state.discussions if d["id"] == discussion_id), None)

    async def discussion(request: Request) -> Response:
        found = find(request.path_params["discussion_id"])
        if found is None:
            return JSONResponse({"message": "404 Not found"}, 404)
        resolved = request.query_params.get("resolved") == "true"
        for note in found["notes"]:
            note["resolved"] = resolved
            note["resolved_by"] = state.author(BOT) if resolved else None
        return JSONResponse(found)

    async def discussion_notes(request: Request) -> Response:
        found = find(request.path_params["discussion_id"])
        if found is None:
            return JSONResponse({"message": "404 Not found"}, 404)
        state.reply(found["id"], BOT, (await request.json())["body"])
        return JSONResponse(found["notes"][-1], 201)

    async def edit_discussion_note(request: Request) -> Response:
        found = find(request.path_params["discussion_id"])
        note = next((n for n in (found or {}).get("notes", []) if n["id"] == int(request.path_params["note_id"])), None)
        if note is None:
            return JSONResponse({"message": "404 Not found"}, 404)
        note["body"] = (await request.json())["body"]
        return JSONResponse(note)

    async def statuses(request: Request) -> Response:
        body = await request.json()
        if body.get("state") not in ("pending", "running", "success", "failed", "canceled", "skipped"):
            return JSONResponse({"message": "state does not have a valid value"}, 400)
        status = {"sha": request.path_params["sha"], **body}
        state.statuses.append(status)
        return JSONResponse(status, 201)

    async def approve(request: Request) -> Response:
        if not state.can_approve:
            return JSONResponse({"message": "401 Unauthorized"}, 401)
        if request.url.path.endswith("/unapprove"):
            if BOT not in state.approved_by:
                return JSONResponse({"message": "404 Not found"}, 404)
            state.approved_by.discard(BOT)
        else:
            state.approved_by.add(BOT)
        return JSONResponse({"approved_by": [{"user": state.author(u)} for u in state.approved_by]}, 201)

    async def other_discussions(request: Request) -> Response:
        return _page(request, state.mr_discussions.get(int(request.path_params["iid"]), []))

    async def merge_requests(request: Request) -> Response:
        # Starlette decodes %2F, so "acme%2Fwidgets" arrives as a path: the project by full path.
        project = request.path_params["project"]
        if request.method == "GET":
            source = request.query_params.get("source_branch")
            wanted = request.query_params.get("state", "all")
            found = [m for m in state.merge_requests if m["project"] == project and (source is None or m["source_branch"] == source)
                     and (wanted == "all" or m["state"] == wanted)]
            return _page(request, found)
        body = await request.json()
        if any(m["project"] == project and m["source_branch"] == body.get("source_branch") and m["state"] == "opened"
               for m in state.merge_requests):
            return JSONResponse({"message": ["Another open merge request already exists for this source branch: !1"]}, 409)
        iid = len(state.merge_requests) + 1
        created = {"iid": iid, "project": project, "state": "opened", "title": body["title"], "description": body.get("description"),
                   "source_branch": body["source_branch"], "target_branch": body["target_branch"],
                   "web_url": f"https://gitlab.example/{project}/-/merge_requests/{iid}"}
        state.merge_requests.append(created)
        return JSONResponse(created, 201)

    async def member(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        username = next((name for name, uid in state.user_ids.items() if str(uid) == user_id), None)
        if username is None or username not in state.access_levels:
            return JSONResponse({"message": "404 Not found"}, 404)
        return JSONResponse({**state.author(username), "access_level": state.access_levels[username],
                             "created_at": "2026-01-01T00:00:00Z", "expires_at": None, "membership_state": "active"})

    routes = [
        Route("/api/v4/user", endpoint(user)),
        Route(f"/api/v4/projects/{state.project_id}/members/all/{{user_id}}", endpoint(member)),
        Route("/api/v4/projects/{project:path}/merge_requests", endpoint(merge_requests), methods=["GET", "POST"]),
        Route(mr, endpoint(merge_request)),
        Route(f"{mr}/notes", endpoint(notes), methods=["GET", "POST"]),
        Route(f"{mr}/notes/{{note_id}}", endpoint(edit_note), methods=["PUT"]),
        Route(f"{mr}/discussions", endpoint(discussions), methods=["GET", "POST"]),
        Route(f"{mr}/discussions/{{discussion_id}}", endpoint(discussion), methods=["PUT"]),
        Route(f"{mr}/discussions/{{discussion_id}}/notes", endpoint(discussion_notes), methods=["POST"]),
        Route(f"{mr}/discussions/{{discussion_id}}/notes/{{note_id}}", endpoint(edit_discussion_note), methods=["PUT"]),
        Route(f"/api/v4/projects/{state.project_id}/statuses/{{sha}}", endpoint(statuses), methods=["POST"]),
        Route(f"{mr}/approve", endpoint(approve), methods=["POST"]),
        Route(f"/api/v4/projects/{state.project_id}/merge_requests/{{iid:int}}/discussions", endpoint(other_discussions)),
        Route(f"{mr}/unapprove", endpoint(approve), methods=["POST"]),
    ]
    return Starlette(routes=routes)
