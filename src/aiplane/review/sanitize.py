"""Prompt-injection defence: user text must not be able to close or open our prompt sections."""

from __future__ import annotations

import re

BOUNDARY_TAGS = ("mr_input", "mr_body", "mr_details", "mr_comments", "changed_files", "previous_review")

# Opening or closing, any attributes, any case, optional spaces and self-closing slash; also the
# same tags written with HTML entities or zero-width characters in between.
_TAG = re.compile(
    r"<\s*/?\s*(?:" + "|".join(BOUNDARY_TAGS) + r")\b[^>]*>",
    re.IGNORECASE,
)
_ENTITY_TAG = re.compile(
    r"&lt;\s*/?\s*(?:" + "|".join(BOUNDARY_TAGS) + r")\b.*?&gt;",
    re.IGNORECASE,
)
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def strip_boundary_tags(text: str) -> str:
    """Remove every boundary tag from user-controlled text, until none is left."""
    previous = None
    cleaned = _INVISIBLE.sub("", text)
    # Repeat: removing one tag can join the halves of another ("<mr_<mr_body>body>").
    while previous != cleaned:
        previous = cleaned
        cleaned = _TAG.sub("", cleaned)
        cleaned = _ENTITY_TAG.sub("", cleaned)
    return cleaned


def safe_path(path: str) -> str:
    """A file path as shown in a prompt: no boundary tags, and no control character that starts a new line."""
    cleaned = strip_boundary_tags(path)
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in cleaned)
