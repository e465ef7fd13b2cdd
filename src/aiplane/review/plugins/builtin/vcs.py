"""VCS plugins: each builds its host from the pipeline's own variables when `--vcs` names it, and
proves the host answers before the review starts (an unreachable VCS stops the run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiplane.review.plugins.context import PluginContext
from aiplane.review.plugins.spec import hookimpl
from aiplane.vcs.model import VcsError

_PULL_REF = re.compile(r"^refs/pull/(\d+)/")


class LocalVcs:
    name = "local"

    @hookimpl
    def aiplane_review_configure(self, ctx: PluginContext) -> None:
        if ctx.options.vcs != self.name:
            return
        from aiplane.vcs.local import LocalHost

        ctx.use_vcs(LocalHost(ctx.options.repo))
        ctx.grant_permission("vcs:comment")
        ctx.grant_permission("vcs:inline")


class GitHubVcs:
    name = "github"

    @hookimpl
    def aiplane_review_configure(self, ctx: PluginContext) -> None:
        if ctx.options.vcs != self.name:
            return
        from aiplane.vcs.github import GitHubHost

        env = ctx.environ
        token = env.get("GITHUB_TOKEN") or ""
        host = GitHubHost(
            repository=env.get("GITHUB_REPOSITORY", ""),
            number=ctx.options.change or _pull_number(env) or "",
            token=token,
            api_url=env.get("GITHUB_API_URL", "https://api.github.com"),
            graphql_url=env.get("GITHUB_GRAPHQL_URL") or None,
            bot_login=ctx.settings.review.bot_login,
            associations=ctx.settings.review.authority.github_associations,
            min_permission=ctx.settings.review.authority.github_min_permission,
        )
        host.change_request()  # fails here, clearly, when GitHub or the PR is out of reach
        ctx.use_vcs(host)
        for permission in ("vcs:comment", "vcs:inline", "vcs:status", "vcs:approve"):
            ctx.grant_permission(permission)


def _pull_number(env) -> str | None:  # noqa: ANN001 - a read-only mapping
    match = _PULL_REF.match(env.get("GITHUB_REF", ""))
    if match:
        return match.group(1)
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path:
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise VcsError(f"GITHUB_EVENT_PATH {event_path} is not a readable JSON event") from None
        number = (event.get("pull_request") or {}).get("number") or (event.get("issue") or {}).get("number")
        return str(number) if number else None
    return None


class GitLabVcs:
    name = "gitlab"

    @hookimpl
    def aiplane_review_configure(self, ctx: PluginContext) -> None:
        if ctx.options.vcs != self.name:
            return
        from aiplane.vcs.gitlab import GitLabHost

        env = ctx.environ
        host = GitLabHost(
            project=env.get("CI_PROJECT_ID") or env.get("CI_PROJECT_PATH", ""),
            iid=ctx.options.change or env.get("CI_MERGE_REQUEST_IID", ""),
            token=env.get("GITLAB_TOKEN") or "",
            api_url=env.get("CI_API_V4_URL", "https://gitlab.com/api/v4"),
            min_access_level=ctx.settings.review.authority.gitlab_min_access_level,
        )
        host.change_request()
        ctx.use_vcs(host)
        for permission in ("vcs:comment", "vcs:inline", "vcs:status"):
            ctx.grant_permission(permission)
        if ctx.settings.review.approve:
            ctx.grant_permission("vcs:approve")


local = LocalVcs()
github = GitHubVcs()
gitlab = GitLabVcs()
