"""Literal secrets in an org config: the gateway serves it to anyone who can reach it.

The rule, kept small on purpose (a warning, not a gate):

1. A string under a key whose name contains ``key``, ``token``, ``secret``, ``password``,
   ``passwd``, ``authorization``, ``credential`` or ``cookie`` (any case) is a literal secret when
   something is left after removing ``{env:NAME}`` and ``{file:PATH}`` references and a leading
   ``Bearer``/``Basic``/``Token`` scheme word. ``"Bearer {env:AIPLANE_TOKEN}"`` and ``""`` pass.
2. Any string, under any key (prompts and templates included), that contains a well-known token
   format: OpenAI/Anthropic ``sk-…``, Google ``AIza…``, GitHub ``ghp_…``/``github_pat_…``, GitLab
   ``glpat-…``, Slack ``xox?-…``, AWS ``AKIA…``/``ASIA…``, a JWT, a PEM private key, or
   ``Bearer``/``Basic`` followed by a long credential.

Findings name the file, line and key, never the value.
"""

from __future__ import annotations

import re
from typing import Any

from aiplane.orgconfig.source import Origin, Problem, SourceTree

SECRET_KEY_NAME = re.compile(r"key|token|secret|password|passwd|authorization|credential|cookie", re.IGNORECASE)
_REFERENCE = re.compile(r"\{(?:env|file):[^}]*\}")
_SCHEME = re.compile(r"^\s*(?:bearer|basic|token)\b", re.IGNORECASE)
TOKEN_FORMATS: dict[str, re.Pattern[str]] = {
    "an OpenAI/Anthropic-style key (sk-...)": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "a Google API key (AIza...)": re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    "a GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
    "a GitLab token (glpat-...)": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"),
    "a Slack token (xox?-...)": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a literal Bearer/Basic credential": re.compile(r"\b(?:Bearer|Basic)\s+(?!\{)[A-Za-z0-9._~+/-]{16,}=*"),
}
ADVICE = "the gateway serves this config to anyone who can reach it; use {env:NAME} so each machine fills it in"


def _literal(value: str) -> bool:
    rest = _SCHEME.sub("", _REFERENCE.sub("", value), count=1)
    return bool(rest.strip())


def _why(key: str, value: str) -> str | None:
    for what, pattern in TOKEN_FORMATS.items():
        if pattern.search(value):
            return f"looks like {what}"
    if SECRET_KEY_NAME.search(key) and _literal(value):
        return f"'{key}' holds a literal value"
    return None


def literal_secrets(document: dict[str, Any], tree: SourceTree | None = None) -> list[Problem]:
    """Warnings for literal secret-looking values in `document` (the compiled org config)."""
    found: list[Problem] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*path, str(key)))
        elif isinstance(value, list):
            for i, child in enumerate(value):
                walk(child, (*path, str(i)))
        elif isinstance(value, str) and path:
            # A list item is judged by the key that holds the list.
            key = next((p for p in reversed(path) if not p.isdigit()), "")
            why = _why(key, value)
            if why is not None:
                origin = tree.origin_of(path) if tree is not None else Origin(".")
                found.append(Problem(origin, ".".join(path), f"{why}: {ADVICE}"))

    walk(document, ())
    return found
