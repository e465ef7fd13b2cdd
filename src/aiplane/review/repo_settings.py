"""Repository-level review settings: `.aiplane/review.toml`, read from a trusted tree.

In CI the trusted tree is the base commit, so a pull request cannot change how it is itself
reviewed; locally it is the working tree (no-follow reads). Only repository-scoped keys exist
here; where models live, tokens, plugins and whose comments count are the operator's settings
(environment, action inputs, the gateway's central config) and cannot be set by a repository.
A broken file is a visible notice, never a skipped review.
"""

from __future__ import annotations

import tomllib

from pydantic import Field, ValidationError

from aiplane.config import Strict
from aiplane.repository.tree import RepoTree, clean_path

PATH = ".aiplane/review.toml"
MAX_BYTES = 64 * 1024


class RepoReviewSettings(Strict):
    # Inline comments per run (at most the operator's review.max_inline_comments).
    max_inline_comments: int | None = Field(default=None, ge=0, le=100)
    # More paths that force the full tier (adds scrutiny; cannot remove the built-in ones).
    sensitive_paths: list[str] = Field(default_factory=list, max_length=200)
    # A codex folder inside the repository, read from the same trusted tree.
    codex: str | None = Field(default=None, max_length=400)


def load_repo_settings(tree: RepoTree | None) -> tuple[RepoReviewSettings, list[str]]:
    """The settings, and problems (sentences for the review's notices)."""
    if tree is None:
        return RepoReviewSettings(), []
    kind = tree.kind(PATH)
    if kind is None:
        return RepoReviewSettings(), []
    if kind != "file":
        return RepoReviewSettings(), [f"{PATH} is not a regular file (a {kind}); repository review settings were ignored."]
    text = tree.read_text(PATH, MAX_BYTES)
    if text is None:
        return RepoReviewSettings(), [f"{PATH} is unreadable, not UTF-8 or larger than 64 KiB; it was ignored."]
    try:
        settings = RepoReviewSettings.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        return RepoReviewSettings(), [f"{PATH} is not valid TOML ({str(exc)[:200]}); it was ignored."]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        return RepoReviewSettings(), [f"{PATH}: {problems[:400]}; it was ignored."]
    if settings.codex is not None and not clean_path(settings.codex):
        return settings.model_copy(update={"codex": None}), [f"{PATH}: codex must be a folder inside the repository; it was ignored."]
    return settings, []
