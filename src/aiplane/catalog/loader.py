"""Reading catalog descriptors from files, directory trees, URLs and Location entities.

Every bad document is reported with its file and document index and skipped; the valid
documents around it are kept.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import yaml

from aiplane.catalog.model import EntityError, entity_ref, validate

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
# libyaml's safe loader parses about 5x faster than the pure-Python one; same safety.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class CatalogProblem:
    source: str
    index: int | None
    rule: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.source}[{self.index}]" if self.index is not None else self.source
        level = "warning" if self.warning else "error"
        return f"{where}: {level}: {self.message} (rule: {self.rule})"


@dataclass
class LoadResult:
    entities: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # key -> (entity, source)
    problems: list[CatalogProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[CatalogProblem]:
        return [p for p in self.problems if not p.warning]


def _is_url(target: str) -> bool:
    return urlsplit(target).scheme in ("http", "https")


def _raw_github(url: str) -> str:
    # Backstage examples point at github.com/.../blob/...; the raw file lives elsewhere.
    parts = urlsplit(url)
    if parts.netloc == "github.com" and "/blob/" in parts.path:
        owner_repo, _, rest = parts.path.partition("/blob/")
        return f"https://raw.githubusercontent.com{owner_repo}/{rest}"
    return url


class Loader:
    def __init__(self, follow_remote: bool = True, timeout: float = 20.0) -> None:
        self.follow_remote = follow_remote
        self.timeout = timeout
        self.result = LoadResult()
        self._seen: set[str] = set()

    def load(self, target: str) -> LoadResult:
        if _is_url(target):
            self._load_url(target)
        else:
            path = Path(target)
            if path.is_dir():
                for file in sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()):
                    self._load_file(file, explicit=False)
            elif path.is_file():
                self._load_file(path)
            else:
                self._problem(target, None, "location", f"no such file or directory: {target}")
        return self.result

    def _problem(self, source: str, index: int | None, rule: str, message: str, warning: bool = False) -> None:
        self.result.problems.append(CatalogProblem(source, index, rule, message, warning))

    def _load_file(self, path: Path, explicit: bool = True) -> None:
        key = str(path.resolve())
        if key in self._seen:
            return
        self._seen.add(key)
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                self._problem(str(path), None, "size", "file is larger than 8 MiB")
                return
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._problem(str(path), None, "read", f"cannot read file ({exc.__class__.__name__})")
            return
        self._load_text(text, str(path), base=path.parent, explicit=explicit)

    def _load_url(self, url: str) -> None:
        if url in self._seen:
            return
        self._seen.add(url)
        if not self.follow_remote:
            self._problem(url, None, "location", "remote location not followed (--no-remote)", warning=True)
            return
        try:
            request = urllib.request.Request(_raw_github(url), headers={"User-Agent": "aiplane-catalog"})
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                raw = response.read(MAX_DOCUMENT_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self._problem(url, None, "location", f"cannot fetch ({exc.__class__.__name__})")
            return
        if len(raw) > MAX_DOCUMENT_BYTES:
            self._problem(url, None, "size", "document is larger than 8 MiB")
            return
        self._load_text(raw.decode("utf-8", "replace"), url, base=url)

    def _load_text(self, text: str, source: str, base: Path | str, explicit: bool = True) -> None:
        try:
            documents = list(yaml.load_all(text, Loader=_SAFE_LOADER))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            self._problem(source, None, "yaml", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}")
            return
        for index, document in enumerate(documents):
            if document is None:
                continue
            if not explicit and not (isinstance(document, dict) and ("apiVersion" in document or "kind" in document)):
                # A directory tree holds other YAML too (OpenAPI specs, CI files): not descriptors.
                self._problem(source, index, "envelope", "not a catalog descriptor; skipped", warning=True)
                continue
            try:
                entity = validate(document)
            except EntityError as exc:
                self._problem(source, index, exc.rule, exc.message)
                continue
            entity = self._resolve_substitutions(entity, base, source, index)
            ref = entity_ref(entity)
            existing = self.result.entities.get(ref.key)
            if existing is not None and existing[1] != source:
                self._problem(source, index, "conflict", f"{ref} is already defined in {existing[1]}; keeping that one", warning=True)
                continue
            self.result.entities[ref.key] = (entity, source)
            if ref.kind == "location":
                self._follow(entity, base, source, index)

    def _follow(self, entity: dict[str, Any], base: Path | str, source: str, index: int) -> None:
        spec = entity.get("spec") or {}
        targets = list(spec.get("targets") or []) + ([spec["target"]] if spec.get("target") else [])
        for target in targets:
            if not isinstance(target, str):
                self._problem(source, index, "location", "location targets must be strings")
                continue
            if _is_url(target):
                self._load_url(target)
            elif isinstance(base, str):
                self._load_url(urljoin(base, target))
            else:
                resolved = (base / target).resolve()
                if resolved.is_file():
                    self._load_file(resolved)
                elif resolved.is_dir():
                    self.load(str(resolved))
                else:
                    self._problem(source, index, "location", f"target {target} does not exist", warning=True)

    def _resolve_substitutions(self, entity: dict[str, Any], base: Path | str, source: str, index: int) -> dict[str, Any]:
        """Resolve `$text` placeholders that point at local files; leave remote ones as references."""
        spec = entity.get("spec") or {}
        definition = spec.get("definition")
        if isinstance(definition, dict) and set(definition) == {"$text"} and isinstance(definition["$text"], str):
            target = definition["$text"]
            if not _is_url(target) and isinstance(base, Path):
                try:
                    spec["definition"] = (base / target).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    self._problem(source, index, "substitution", f"$text target {target} cannot be read", warning=True)
        return entity


def load_all(targets: list[str], follow_remote: bool = True) -> LoadResult:
    loader = Loader(follow_remote=follow_remote)
    for target in targets:
        loader.load(target)
    return loader.result
