"""The eval dataset: cases with a repository, base and head commits, and golden findings.

A dataset file is JSONL (one case per line), a JSON list of cases, or `{"cases": [...]}`. It is
data from wherever the user got it: read with a size bound, every field typed and bounded, and
a bad case is an error that names its line (or index), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_DATASET_BYTES = 64 * 1024 * 1024
MAX_CASES = 10_000
# Severities as the golden sets spell them (Martian: Low/Medium/High/Critical) plus our own.
SEVERITIES = ("critical", "high", "medium", "low", "warning", "suggestion", "nit", "unknown")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class DatasetError(Exception):
    """A dataset that cannot be used; the message names the file and the case."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoldenFinding(_Strict):
    text: str = Field(min_length=1, max_length=20_000)
    severity: str = "unknown"
    file: str | None = Field(default=None, max_length=1_000)
    start_line: int | None = Field(default=None, ge=1, le=10_000_000)
    end_line: int | None = Field(default=None, ge=1, le=10_000_000)
    category: str | None = Field(default=None, max_length=100)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: object) -> str:
        text = str(value or "unknown").strip().lower()
        if text not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        return text

    @field_validator("end_line")
    @classmethod
    def _end(cls, value: int | None, info) -> int | None:  # noqa: ANN001
        start = info.data.get("start_line")
        if value is not None and start is not None and value < start:
            raise ValueError("end_line is before start_line")
        return value

    def lines(self) -> tuple[int, int] | None:
        if self.start_line is None:
            return None
        return self.start_line, self.end_line or self.start_line


class Case(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:#!/-]{0,199}$")]
    # A local path, or a clone URL (https/ssh/git) for the user's own runs.
    repo: str = Field(min_length=1, max_length=2_000)
    base: str
    head: str
    title: str = Field(default="", max_length=2_000)
    description: str = Field(default="", max_length=100_000)
    golden: list[GoldenFinding] = Field(default_factory=list, max_length=1_000)
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)

    @field_validator("base", "head")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not _REVISION.fullmatch(value) or ".." in value:
            raise ValueError("must be a commit id or a plain ref name")
        return value


@dataclass(frozen=True)
class Dataset:
    path: str
    cases: list[Case]
    sha256: str


def parse(raw: bytes, label: str) -> Dataset:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{label}: not UTF-8") from None
    items: list[tuple[str, object]] = []
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")) and not _looks_like_jsonl(stripped):
        try:
            document = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DatasetError(f"{label}: not valid JSON ({exc.__class__.__name__})") from None
        if isinstance(document, dict) and "cases" in document:
            document = document["cases"]
            if not isinstance(document, list):
                raise DatasetError(f'{label}: "cases" must be a list')
        elif isinstance(document, dict):
            document = [document]  # JSONL with one case
        if not isinstance(document, list):
            raise DatasetError(f'{label}: expected JSONL, a list of cases or {{"cases": [...]}}')
        items = [("line 1" if len(document) == 1 and stripped.startswith("{") else f"case {n + 1}", item)
                 for n, item in enumerate(document)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"line {number}", json.loads(line)))
            except (json.JSONDecodeError, RecursionError):
                raise DatasetError(f"{label}: line {number} is not valid JSON") from None
    if len(items) > MAX_CASES:
        raise DatasetError(f"{label}: more than {MAX_CASES} cases")
    cases: list[Case] = []
    seen: set[str] = set()
    for where, item in items:
        try:
            case = Case.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "case"
            raise DatasetError(f"{label}: {where}: {field}: {first['msg']}") from None
        if case.id in seen:
            raise DatasetError(f"{label}: {where}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise DatasetError(f"{label}: no cases")
    return Dataset(label, cases, hashlib.sha256(raw).hexdigest())


def _looks_like_jsonl(text: str) -> bool:
    first_line = text.split("\n", 1)[0].strip()
    if not first_line.startswith("{"):
        return False
    try:
        json.loads(first_line)
    except json.JSONDecodeError:
        return False
    return "\n" in text.strip()


def load(path: Path) -> Dataset:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_DATASET_BYTES + 1)
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.__class__.__name__})") from None
    if len(raw) > MAX_DATASET_BYTES:
        raise DatasetError(f"{path}: larger than {MAX_DATASET_BYTES // (1024 * 1024)} MiB")
    return parse(raw, str(path))


def dump(cases: list[Case]) -> str:
    """JSONL, one case per line, in the order given."""
    return "".join(json.dumps(c.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for c in cases)
