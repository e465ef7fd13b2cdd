"""Compile a config source folder into one OpenCode config, validated against OpenCode's schema."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from aiplane.orgconfig.secretscan import literal_secrets
from aiplane.orgconfig.source import Origin, Problem, SourceTree, read_source

SCHEMA_URL = "https://opencode.ai/config.json"


@cache
def _validator() -> Draft202012Validator:
    text = resources.files("aiplane.orgconfig.data").joinpath("opencode-config.schema.json").read_text("utf-8")
    return Draft202012Validator(json.loads(text))


def schema_version() -> str:
    return str(_validator().schema.get("x-opencode-version", "unknown"))


@dataclass
class CompileResult:
    config: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    # Not errors: literal secret-looking values (orgconfig.secretscan), reported with the file and key only.
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.problems


def _specific(error: ValidationError) -> ValidationError:
    """For anyOf/oneOf, the error from the branch the author evidently meant."""
    if not error.context:
        return error
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def off_target(errors: list[ValidationError]) -> bool:
        # A branch of another type, or one whose discriminator (a const or one-value enum) did not match.
        return any(
            (e.validator == "type" and not e.relative_path)
            or e.validator == "const"
            or (e.validator == "enum" and len(e.validator_value) == 1)
            for e in errors
        )

    meant = [errors for errors in branches.values() if not off_target(errors)]
    if meant:
        return _specific(best_match(min(meant, key=len)))
    return best_match(error.context)


def _schema_problems(document: dict[str, Any], tree: SourceTree | None) -> list[Problem]:
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        error = _specific(error)
        path = tuple(str(p) for p in error.absolute_path)
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(k for k in error.instance if k not in allowed):
                key = (*path, extra)
                origin = tree.origin_of(key) if tree else Origin(".")
                problems.append(Problem(origin, ".".join(key), f"unknown key (rule: additionalProperties; allowed: {', '.join(sorted(allowed))})"))
            continue
        origin = tree.origin_of(path) if tree else Origin(".")
        problems.append(Problem(origin, ".".join(path), f"{message} (rule: {error.validator})"))
    return problems


def validate_config(document: dict[str, Any], tree: SourceTree | None = None) -> list[Problem]:
    return _schema_problems(document, tree)


def compile_source(root: Path) -> CompileResult:
    tree = read_source(root)
    document = {"$schema": SCHEMA_URL, **tree.document}
    # Schema problems are reported alongside source problems, so one run shows everything.
    problems = tree.problems + validate_config(document, tree)
    return CompileResult(None if problems else document, problems, literal_secrets(tree.document, tree))


def write_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write the whole file or nothing: a failed build never leaves a partial config behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
