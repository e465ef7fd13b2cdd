"""Where eval cases come from besides a dataset file: the Martian offline benchmark and a team's
own merged pull requests. Both produce plain `Case`s; the harness never knows the difference.

Martian (github.com/withmartian/code-review-benchmark, `offline/golden_comments/*.json`): a list
of `{"pr_title", "url", "comments": [{"comment", "severity", "category"?}]}` per source repository.
The prepare step maps each PR to its base and head commits through the GitHub API and checks
that a clone the user supplies (one per golden file, by its name) has both, fetching them if not.

History: merged PRs (GitHub) or MRs (GitLab) and their human inline review comments, through the
same REST clients the reviewer publishes with. Bots (ours included) and replies are left out; a
golden comment is the first comment of a thread, at its file and line, severity "unknown".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiplane.repository import git as gitrun
from aiplane.review.evaluation.dataset import Case, DatasetError, GoldenFinding
from aiplane.vcs.http import ApiClient
from aiplane.vcs.model import VcsError

MAX_GOLDEN_FILE_BYTES = 16 * 1024 * 1024
_PR_URL = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/pull/([0-9]{1,9})/?$")
_BOT_NAME = re.compile(r"(\[bot\]|-bot|_bot|bot_[0-9a-f]+|^ghost)$", re.IGNORECASE)


class SourceError(DatasetError):
    pass


@dataclass(frozen=True)
class MartianPull:
    source: str  # the golden file's name: sentry, grafana, ...
    owner: str
    repo: str
    number: int
    title: str
    golden: list[GoldenFinding]


def read_martian(golden_dir: Path) -> list[MartianPull]:
    """Every PR of every `*.json` in the folder, in file then list order; bad entries are errors."""
    if not golden_dir.is_dir():
        raise SourceError(f"{golden_dir}: not a folder of golden comment files")
    pulls: list[MartianPull] = []
    files = sorted(p for p in golden_dir.glob("*.json") if p.is_file() and not p.is_symlink())
    if not files:
        raise SourceError(f"{golden_dir}: no *.json golden comment files")
    for path in files:
        with path.open("rb") as handle:
            raw = handle.read(MAX_GOLDEN_FILE_BYTES + 1)
        if len(raw) > MAX_GOLDEN_FILE_BYTES:
            raise SourceError(f"{path}: too large")
        try:
            entries = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise SourceError(f"{path}: not valid JSON") from None
        if not isinstance(entries, list):
            raise SourceError(f"{path}: expected a list of pull requests")
        for index, entry in enumerate(entries, start=1):
            where = f"{path.name}: entry {index}"
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                raise SourceError(f"{where}: needs a 'url'")
            match = _PR_URL.fullmatch(entry["url"].strip())
            if match is None:
                raise SourceError(f"{where}: url is not a GitHub pull request URL")
            comments = entry.get("comments")
            if not isinstance(comments, list):
                raise SourceError(f"{where}: needs a 'comments' list")
            golden = []
            for comment in comments:
                if not isinstance(comment, dict) or not isinstance(comment.get("comment"), str):
                    raise SourceError(f"{where}: every comment needs a 'comment' text")
                category = comment.get("category")
                try:
                    golden.append(GoldenFinding(text=comment["comment"], severity=comment.get("severity") or "unknown",
                                                category=category if isinstance(category, str) else None))
                except ValueError as exc:
                    raise SourceError(f"{where}: {str(exc).splitlines()[0]}") from None
            title = entry.get("pr_title") if isinstance(entry.get("pr_title"), str) else ""
            pulls.append(MartianPull(path.stem, match[1], match[2], int(match[3]), title[:2_000], golden))
    return pulls


def prepare_martian(golden_dir: Path, clones: dict[str, Path], api: ApiClient, fetch: bool = True) -> list[Case]:
    """Cases for every PR whose source has a clone; each PR's base/head from the GitHub API."""
    pulls = read_martian(golden_dir)
    missing = sorted({p.source for p in pulls} - set(clones))
    if missing:
        raise SourceError(f"no clone given for: {', '.join(missing)} (pass --clone NAME=PATH for each golden file)")
    cases = []
    for pull in pulls:
        data = api.json("GET", f"/repos/{pull.owner}/{pull.repo}/pulls/{pull.number}")
        base, head = _sha(data, "base"), _sha(data, "head")
        clone = clones[pull.source]
        remote = f"https://github.com/{pull.owner}/{pull.repo}.git"
        _ensure_commits(clone, remote, [(base, None), (head, f"refs/pull/{pull.number}/head")], fetch)
        cases.append(Case(
            id=f"{pull.source}/{pull.owner}/{pull.repo}#{pull.number}", repo=str(clone), base=base, head=head,
            title=pull.title or str(data.get("title") or "")[:2_000], description=str(data.get("body") or "")[:100_000],
            golden=pull.golden, tags=["martian", pull.source],
        ))
    return cases


def _sha(pull: Any, side: str) -> str:
    sha = (pull.get(side) or {}).get("sha") if isinstance(pull, dict) else None
    if not gitrun.is_object_id(sha):
        raise SourceError(f"the code host gave no commit id for the pull request's {side}")
    return sha


def _ensure_commits(clone: Path, remote: str, wanted: list[tuple[str, str | None]], fetch: bool) -> None:
    for sha, ref in wanted:
        try:
            present = gitrun.has_commit(clone, sha)
        except gitrun.GitError as exc:
            raise SourceError(f"{clone}: {exc}") from None
        if present:
            continue
        if not fetch:
            raise SourceError(f"{clone}: commit {sha[:12]} is missing (fetch it, or drop --no-fetch)")
        for source in ([ref] if ref else []) + [sha]:
            gitrun.run(clone, "fetch", "--quiet", "--no-tags", "--end-of-options", remote, source, check=False, timeout=600)
            if gitrun.has_commit(clone, sha):
                break
        else:
            raise SourceError(f"{clone}: commit {sha[:12]} could not be fetched from {remote}")


def _human(user: Any, bot_logins: frozenset[str]) -> str | None:
    """A human author's login, or None for bots, deleted users and ourselves."""
    if not isinstance(user, dict):
        return None
    login = str(user.get("login") or user.get("username") or "")
    if not login or user.get("type") == "Bot" or user.get("bot") is True:
        return None
    if login.lower().removesuffix("[bot]") in bot_logins or _BOT_NAME.search(login):
        return None
    return login


def github_history(api: ApiClient, repository: str, clone: Path, last: int, bot_logins: frozenset[str] = frozenset(),
                   include_uncommented: bool = False) -> list[Case]:
    """The newest `last` merged PRs with human inline review comments, as cases."""
    if repository.count("/") != 1:
        raise SourceError(f"GitHub repository must be 'owner/name', not {repository!r}")
    owner, name = (quote(part, safe="") for part in repository.split("/"))
    cases: list[Case] = []
    for pull in _merged(api.paginate(f"/repos/{owner}/{name}/pulls",
                                     {"state": "closed", "sort": "updated", "direction": "desc", "per_page": 50})):
        golden = []
        for comment in api.paginate(f"/repos/{owner}/{name}/pulls/{pull['number']}/comments", {"per_page": 100}):
            if not isinstance(comment, dict) or comment.get("in_reply_to_id") or _human(comment.get("user"), bot_logins) is None:
                continue
            golden.extend(_golden(comment.get("body"), comment.get("path"), comment.get("start_line") or comment.get("line"),
                                  comment.get("line")))
        if golden or include_uncommented:
            cases.append(_history_case(f"{repository}#{pull['number']}", clone, pull.get("base"), pull.get("head"),
                                       pull.get("title"), pull.get("body"), golden, "github"))
        if len(cases) >= last:
            break
    return cases


def _merged(pulls: Iterator[Any]) -> Iterator[dict]:
    for pull in pulls:
        if isinstance(pull, dict) and pull.get("merged_at") and isinstance(pull.get("number"), int):
            yield pull


def gitlab_history(api: ApiClient, project: str, clone: Path, last: int, bot_logins: frozenset[str] = frozenset(),
                   include_uncommented: bool = False) -> list[Case]:
    """The newest `last` merged MRs with human diff discussions, as cases."""
    base = f"/projects/{quote(str(project), safe='')}"
    cases: list[Case] = []
    for mr in api.paginate(f"{base}/merge_requests", {"state": "merged", "order_by": "updated_at", "sort": "desc", "per_page": 50}):
        if not isinstance(mr, dict) or not isinstance(mr.get("iid"), int):
            continue
        golden = []
        for discussion in api.paginate(f"{base}/merge_requests/{mr['iid']}/discussions", {"per_page": 100}):
            notes = discussion.get("notes") if isinstance(discussion, dict) else None
            first = notes[0] if isinstance(notes, list) and notes and isinstance(notes[0], dict) else None
            if first is None or first.get("system") or _human(first.get("author"), bot_logins) is None:
                continue
            position = first.get("position") if isinstance(first.get("position"), dict) else {}
            line = position.get("new_line") or position.get("old_line")
            golden.extend(_golden(first.get("body"), position.get("new_path") or position.get("old_path"), line, line))
        refs = mr.get("diff_refs") if isinstance(mr.get("diff_refs"), dict) else {}
        if golden or include_uncommented:
            cases.append(_history_case(f"{project}!{mr['iid']}", clone, {"sha": refs.get("base_sha")}, {"sha": refs.get("head_sha")},
                                       mr.get("title"), mr.get("description"), golden, "gitlab"))
        if len(cases) >= last:
            break
    return cases


def _golden(body: Any, path: Any, start: Any, end: Any) -> list[GoldenFinding]:
    if not isinstance(body, str) or not body.strip():
        return []
    start = start if isinstance(start, int) and start > 0 else None
    end = end if isinstance(end, int) and start is not None and end >= start else start
    return [GoldenFinding(text=body.strip()[:20_000], file=path[:1_000] if isinstance(path, str) and path else None,
                          start_line=start, end_line=end)]


def _history_case(case_id: str, clone: Path, base: Any, head: Any, title: Any, body: Any, golden: list[GoldenFinding],
                  host: str) -> Case:
    base_sha, head_sha = (base or {}).get("sha"), (head or {}).get("sha")
    if not (gitrun.is_object_id(base_sha) and gitrun.is_object_id(head_sha)):
        raise SourceError(f"{case_id}: the code host gave no base/head commit ids")
    return Case(id=case_id[:200], repo=str(clone), base=base_sha, head=head_sha, title=str(title or "")[:2_000],
                description=str(body or "")[:100_000], golden=golden, tags=["history", host])


def github_client(token: str | None, api_url: str) -> ApiClient:
    headers = {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return ApiClient(api_url, headers, "GitHub", token or "")


def gitlab_client(token: str, api_url: str) -> ApiClient:
    if not token:
        raise VcsError("no GitLab token: set GITLAB_TOKEN (read_api scope is enough)")
    return ApiClient(api_url, {"private-token": token}, "GitLab", token)
