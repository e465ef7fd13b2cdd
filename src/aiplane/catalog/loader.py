"""Reading catalog descriptors from files, directory trees, URLs and Location entities.

Catalog files are hostile input (docs/catalog.md has the threat model):

- local reads stay inside the tree of the target they came from (`confine.py`);
- remote reads happen only for allowed hosts and public addresses (`fetch.py`);
- YAML is parsed with bounded nesting and alias expansion (`yamlsafe.py`);
- the run as a whole is bounded in files, bytes, Location targets and placeholders.

Every bad document is reported with its source and document index and skipped; the valid
documents around it are kept. An entity belongs to the location (file or URL) that defined it
first, as in Backstage: another location defining the same reference, compared
case-insensitively, gets a conflict instead of taking it over.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from aiplane.catalog.confine import YAML_SUFFIXES, Refused, Tree
from aiplane.catalog.fetch import Fetcher, FetchRefused, RemotePolicy, redact
from aiplane.catalog.model import PLACEHOLDERS, EntityError, check_values, entity_ref, validate
from aiplane.catalog.yamlsafe import BadDocument, DocumentRefused, YamlLimits, iter_documents, load_json, load_one

if TYPE_CHECKING:
    from aiplane.config import CatalogLoaderSettings

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MAX_TARGETS_PER_LOCATION = 1000
MAX_PLACEHOLDERS_PER_DOCUMENT = 100
MAX_PROBLEMS_PER_SOURCE = 100
# The column that stores an entity's source is this long; ownership compares what is stored.
SOURCE_CHARS = 2000

__all__ = ["YAML_SUFFIXES", "CatalogProblem", "LoadResult", "Loader", "LoaderLimits", "load_all"]


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
        return f"{printable(where)}: {level}: {printable(self.message)} (rule: {self.rule})"


# Control, bidi and lone-surrogate characters (a file name that is not UTF-8 decodes to the latter).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
MAX_MESSAGE_CHARS = 1000


def printable(text: str) -> str:
    """Text from a catalog file made safe for a terminal or a log line: no control or bidi characters, bounded."""
    text = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


@dataclass
class LoadResult:
    entities: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # key -> (entity, source)
    problems: list[CatalogProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[CatalogProblem]:
        return [p for p in self.problems if not p.warning]

    @property
    def conflicts(self) -> list[CatalogProblem]:
        return [p for p in self.problems if p.rule == "conflict"]


@dataclass(frozen=True, slots=True)
class LoaderLimits:
    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_total_bytes: int = 256 * 1024 * 1024
    max_files: int = 10_000
    max_remote_seconds: float = 300.0
    yaml: YamlLimits = YamlLimits()

    @classmethod
    def from_settings(cls, settings: CatalogLoaderSettings) -> LoaderLimits:
        return cls(
            max_document_bytes=settings.max_document_bytes,
            max_total_bytes=settings.max_total_bytes,
            max_files=settings.max_files,
            max_remote_seconds=settings.max_remote_seconds,
            yaml=YamlLimits(max_depth=settings.max_depth, max_alias_expansion=settings.max_alias_expansion, max_seconds=settings.max_parse_seconds),
        )


@dataclass(frozen=True, slots=True)
class _Local:
    tree: Tree
    relative: str  # the document's real path inside the tree

    @property
    def directory(self) -> Path:
        return self.tree.absolute(self.relative).parent


@dataclass(frozen=True, slots=True)
class _Remote:
    url: str


_Origin = _Local | _Remote


class _Unresolved(Exception):
    def __init__(self, message: str, served: str, warning: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.served = served  # the short reason a served definition carries (never a local path)
        self.warning = warning


def _join(base: str, target: str) -> str | None:
    """`target` resolved against the URL `base`, or None when either is malformed (`//[bad`)."""
    try:
        joined = urljoin(base, target)
        urlsplit(joined).port  # noqa: B018 - raises on a malformed authority or port
    except ValueError:
        return None
    return joined


def _scheme(target: str) -> str:
    try:
        scheme = urlsplit(target).scheme
    except ValueError:
        return "?"
    # A one-letter scheme is a Windows drive, i.e. a path.
    return scheme.lower() if len(scheme) > 1 else ""


def _is_location_key(source: str) -> bool:
    """Whether a stored source names a location (an absolute path or a URL-like key).

    Rows ingested before sources were made absolute hold relative paths: like Backstage's
    entities without a location key, those are taken over by whoever defines them next.
    """
    return bool(source) and (os.path.isabs(source) or bool(_scheme(source)))


class Loader:
    def __init__(
        self,
        follow_remote: bool = True,
        timeout: float | None = None,
        *,
        remote: RemotePolicy | None = None,
        limits: LoaderLimits | None = None,
        owners: Mapping[str, str] | None = None,
    ) -> None:
        self.follow_remote = follow_remote
        policy = remote or RemotePolicy()
        if timeout is not None:
            policy = RemotePolicy(policy.allowed_hosts, policy.allowed_networks, timeout, policy.max_bytes, policy.max_redirects)
        self.limits = limits or LoaderLimits()
        self.fetcher = Fetcher(policy)
        self.result = LoadResult()
        self._stored_owners = dict(owners or {})
        self._seen: set[str] = set()
        self._files = 0
        self._bytes = 0
        self._cache: dict[str, str] = {}
        self._trees: list[Tree] = []
        self._read_sources: set[str] = set()
        self._defined: dict[str, set[str]] = {}  # source -> keys it defined in this run
        self._pending: list[tuple[str, dict[str, Any], str, int, str, _Origin]] = []
        self._problem_counts: dict[str, int] = {}
        self._hidden_errors: set[str] = set()
        self._substituted = 0
        self._incomplete: set[str] = set()  # sources with a document that could not be read or validated
        self._remote_seconds = 0.0
        self._over_budget = 0
        self._walked: set[str] = set()
        self._listed = 0
        self._targets = 0

    # ------------------------------------------------------------------ entry points

    def load(self, target: str) -> LoadResult:
        scheme = _scheme(target)
        if scheme in ("http", "https"):
            self._load_url(target, target, None)
        elif scheme:
            self._problem(target, None, "location", f"scheme '{scheme}:' is not supported; give a path or an http(s) URL")
        else:
            self._load_path(target)
        return self.result

    def finish(self) -> LoadResult:
        """Settle deferred ownership conflicts and release the connection pool."""
        self._settle_conflicts()
        self.fetcher.close()
        for source, count in self._problem_counts.items():
            if count > MAX_PROBLEMS_PER_SOURCE:
                message = f"{count - MAX_PROBLEMS_PER_SOURCE} more problems are not listed"
                # An unlisted error still fails the run.
                self.result.problems.append(CatalogProblem(source, None, "limit", message, warning=source not in self._hidden_errors))
        if self._over_budget > 1:
            self.result.problems.append(CatalogProblem("(run)", None, "limit", f"{self._over_budget} files or URLs were not read (over budget)"))
        return self.result

    def _load_path(self, target: str) -> None:
        absolute = Path(os.path.abspath(target))
        if not os.path.lexists(absolute):
            self._problem(target, None, "location", f"no such file or directory: {target}")
            return
        # A target named by the user may be a symlink, but not one that leaves its own directory:
        # in CI the checkout's `catalog-info.yaml` could otherwise lead anywhere on the machine.
        outer = Tree(absolute.parent)
        try:
            relative = outer.locate(absolute)
        except Refused as exc:
            self._problem(target, None, "confinement", f"{target} {exc}")
            return
        if outer.kind(relative) == "dir":
            tree = Tree(outer.absolute(relative))
            self._trees.append(tree)
            self._walk(tree, "")
        else:
            self._trees.append(outer)
            self._load_file(outer, relative, explicit=True)

    # ------------------------------------------------------------------ reading

    def _problem(self, source: str, index: int | None, rule: str, message: str, warning: bool = False) -> None:
        # A file of a million bad documents reports the first hundred problems, then one line.
        count = self._problem_counts.get(source, 0) + 1
        self._problem_counts[source] = count
        if count <= MAX_PROBLEMS_PER_SOURCE:
            self.result.problems.append(CatalogProblem(source, index, rule, message, warning))
        elif not warning:
            self._hidden_errors.add(source)

    def _budget(self, source: str, size: int) -> bool:
        over = None
        if self._files >= self.limits.max_files:
            over = f"more than {self.limits.max_files} files or URLs in one run"
        elif self._bytes + size > self.limits.max_total_bytes:
            over = f"more than {self.limits.max_total_bytes} bytes read in one run"
        if over is not None:
            self._over_budget += 1
            if self._over_budget == 1:  # said once, not once per file left out
                self._problem(source, None, "limit", f"{over}; this and later files are not read")
            return False
        self._files += 1
        self._bytes += size
        return True

    def _walk(self, tree: Tree, relative: str) -> None:
        # A directory is walked once per run however many targets name it, and every entry a
        # walk lists is charged to the run (a Location naming a big directory a thousand times,
        # or each of its subdirectories, must not list it a thousand times).
        walked = str(tree.absolute(relative))
        if walked in self._walked:
            return
        self._walked.add(walked)
        left = self.limits.max_files * 4 - self._listed
        if left <= 0:
            self._over_budget += 1
            if self._over_budget == 1:
                self._problem(walked, None, "limit", f"more than {self.limits.max_files * 4} directory entries listed in one run; this and later directories are not read")
            return
        items = list(tree.walk(relative, min(left, self.limits.max_files)))
        self._listed += len(items)
        for item in items:
            if item.relative is None:
                self._problem(item.shown, None, item.rule, item.problem or "not read")
            else:
                self._load_file(tree, item.relative, explicit=False)

    def _load_file(self, tree: Tree, relative: str, explicit: bool = True) -> None:
        path = tree.absolute(relative)
        source = str(path)
        if source in self._seen:
            return
        self._seen.add(source)
        if _SURROGATE.search(source):
            # Stored sources are UTF-8 text; this name cannot be one (shown escaped).
            self._problem(source, None, "read", "file name is not valid UTF-8; not read")
            return
        try:
            raw = tree.read(relative, self.limits.max_document_bytes)
        except Refused as exc:
            self._problem(source, None, "size" if "larger" in str(exc) else "read", f"file {exc}")
            return
        if not self._budget(source, len(raw)):
            return
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self._problem(source, None, "read", "file is not UTF-8 text")
            return
        self._read_sources.add(source)
        self._load_text(text, source, _Local(tree, relative), explicit=explicit)

    def _load_url(self, url: str, shown: str, parent: tuple[str, int] | None) -> None:
        where, index = parent or (redact(shown), None)
        if not self.follow_remote:
            self._problem(where, index, "location", f"remote location not followed (--no-remote): {redact(url)}", warning=True)
            return
        why = self.fetcher.check(url)
        if why is not None:
            warning = "allowed_hosts" in why and parent is not None  # a URL named on the command line must be read
            self._problem(where, index, "remote", f"{redact(url)} not fetched: {why}", warning=warning)
            return
        source = redact(url)  # what is shown and stored: no user-info or query string
        if url in self._seen:
            return
        self._seen.add(url)
        try:
            raw = self._timed_fetch(url)
        except FetchRefused as exc:
            self._problem(where, index, "remote", f"{source} not fetched: {exc}")
            return
        if not self._budget(source, len(raw)):
            return
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self._problem(source, None, "read", "document is not UTF-8 text")
            return
        self._read_sources.add(source)
        self._load_text(text, source, _Remote(url), explicit=True)

    def _load_text(self, text: str, source: str, origin: _Origin, explicit: bool = True) -> None:
        for index, document in iter_documents(text, self.limits.yaml):
            if isinstance(document, BadDocument):
                self._problem(source, None if document.fatal else index, document.rule, document.message)
                self._incomplete.add(source)
                continue
            if document is None:
                continue
            if not explicit and not (isinstance(document, dict) and ("apiVersion" in document or "kind" in document)):
                # A directory tree holds other YAML too (OpenAPI specs, CI files): not descriptors.
                self._problem(source, index, "envelope", "not a catalog descriptor; skipped", warning=True)
                continue
            try:
                # Plain JSON data of bounded size first (the same walk finds placeholders, which
                # are recognised by their parsed key, however the YAML spelled it, as in Backstage).
                placeholders = check_values(document, self.limits.max_document_bytes)
                entity = validate(document, max_chars=None)
            except EntityError as exc:
                self._problem(source, index, exc.rule, exc.message)
                self._incomplete.add(source)
                continue
            except (TypeError, ValueError, AttributeError, RecursionError) as exc:
                # A shape the rules did not foresee (an unhashable or odd key deep inside): this
                # document only, never a traceback that ends the run.
                self._problem(source, index, "envelope", f"the document cannot be checked ({exc.__class__.__name__})")
                self._incomplete.add(source)
                continue
            if placeholders:
                entity = self._resolve_placeholders(entity, origin, source, index)
                try:
                    # What placeholders brought ($json numbers, text shared through aliases,
                    # which is serialised once per use) meets the same rules and size bound.
                    check_values(entity, self.limits.max_document_bytes)
                except EntityError as exc:
                    self._problem(source, index, exc.rule, f"after placeholders: {exc.message}")
                    self._incomplete.add(source)
                    continue
            self._claim(entity, source, index, origin)

    # ------------------------------------------------------------------ ownership

    def _owner(self, key: str) -> str | None:
        found = self.result.entities.get(key)
        if found is not None:
            return found[1]
        stored = self._stored_owners.get(key)
        return stored if stored and _is_location_key(stored) else None

    def _claim(self, entity: dict[str, Any], source: str, index: int, origin: _Origin) -> None:
        ref = entity_ref(entity)
        key = ref.key
        self._defined.setdefault(source, set()).add(key)
        owner = self._owner(key)
        if owner is not None and owner[:SOURCE_CHARS] != source[:SOURCE_CHARS]:
            self._pending.append((key, entity, source, index, owner, origin))
            return
        self.result.entities[key] = (entity, source)
        if ref.kind == "location":
            self._follow(entity, origin, source, index)

    def _released(self, owner: str, key: str) -> bool:
        """Whether a stored owner gave the entity up: this run read it (or its tree) and it no longer defines it."""
        if owner in self._read_sources:
            # Only a clean read counts: a broken owner file has not given anything up.
            return owner not in self._incomplete and key not in self._defined.get(owner, set())
        if os.path.isabs(owner) and not os.path.lexists(owner):
            return any(_within(owner, tree.root) for tree in self._trees)
        return False

    def _settle_conflicts(self) -> None:
        pending, self._pending = self._pending, []
        for key, entity, source, index, owner, origin in pending:
            current = self.result.entities.get(key)
            stored = self._stored_owners.get(key)
            if current is None and stored and self._released(stored, key):
                self._problem(source, index, "conflict", f"{entity_ref(entity)} moves here from {stored}, which no longer defines it", warning=True)
                self.result.entities[key] = (entity, source)
                if entity_ref(entity).kind == "location":
                    self._follow(entity, origin, source, index)
                    self._settle_conflicts()
                continue
            holder = current[1] if current is not None else owner
            self._problem(
                source,
                index,
                "conflict",
                f"{entity_ref(entity)} is already defined by {holder}; it keeps the entity (an entity belongs to the "
                "location that defined it first; remove it there to move it)",
            )

    # ------------------------------------------------------------------ locations

    def _follow(self, entity: dict[str, Any], origin: _Origin, source: str, index: int) -> None:
        spec = entity.get("spec") or {}
        targets: list[Any] = []
        if spec.get("targets") is not None:
            if not isinstance(spec["targets"], list):
                self._problem(source, index, "location", "spec.targets must be a list")
                return
            targets += spec["targets"]
        if spec.get("target") is not None:
            targets.append(spec["target"])
        # The same target twice is followed once (compared as written, after trimming).
        written: set[str] = set()
        unique: list[Any] = []
        for target in targets:
            if isinstance(target, str):
                if target.strip() in written:
                    continue
                written.add(target.strip())
            unique.append(target)
        targets = unique
        if len(targets) > MAX_TARGETS_PER_LOCATION:
            self._problem(source, index, "limit", f"more than {MAX_TARGETS_PER_LOCATION} targets; only the first are followed")
            targets = targets[:MAX_TARGETS_PER_LOCATION]
        for target in targets:
            # Each target costs path resolution or a URL check even when it leads nowhere; a
            # run follows at most `4 × max_files` of them.
            self._targets += 1
            if self._targets > self.limits.max_files * 4:
                if self._targets == self.limits.max_files * 4 + 1:
                    self._problem(source, index, "limit", f"more than {self.limits.max_files * 4} Location targets in one run; the rest are not followed")
                return
            if not isinstance(target, str) or not target.strip():
                self._problem(source, index, "location", "location targets must be non-empty strings")
                continue
            self._follow_one(target.strip(), origin, source, index)

    def _follow_one(self, target: str, origin: _Origin, source: str, index: int) -> None:
        scheme = _scheme(target)
        if isinstance(origin, _Remote):
            absolute = _join(origin.url, target)
            if absolute is None:
                self._problem(source, index, "location", f"target {redact_target(target)} is not a valid URL")
                return
            if _scheme(absolute) not in ("http", "https"):
                self._problem(source, index, "confinement", f"target {redact_target(target)} refused: a remote document cannot point at local files")
                return
            self._load_url(absolute, absolute, (source, index))
            return
        if scheme in ("http", "https"):
            self._load_url(target, target, (source, index))
            return
        if scheme:
            self._problem(source, index, "location", f"target {redact_target(target)}: scheme '{scheme}:' is not supported")
            return
        try:
            relative = origin.tree.locate(origin.directory / target)
        except Refused as exc:
            self._problem(source, index, "confinement", f"target {target} refused: it {exc}")
            return
        kind = origin.tree.kind(relative)
        if kind == "file":
            self._load_file(origin.tree, relative)
        elif kind == "dir":
            self._walk(origin.tree, relative)
        elif kind is None:
            self._problem(source, index, "location", f"target {target} does not exist", warning=True)
        else:
            self._problem(source, index, "read", f"target {target} is not a regular file")

    # ------------------------------------------------------------------ placeholders

    def _resolve_placeholders(self, entity: dict[str, Any], origin: _Origin, source: str, index: int) -> dict[str, Any]:
        """Replace Backstage's `{"$text"|"$json"|"$yaml": target}` objects with what they point at.

        `$text` gives the text, `$json`/`$yaml` the parsed value, except in an API's
        `spec.definition`, which Backstage's model requires to be a string: there all three give
        the text. A definition that cannot be read becomes a short string saying so (never a
        local path), so served entities still validate; the problem is reported.
        """
        budget = [MAX_PLACEHOLDERS_PER_DOCUMENT, self.limits.max_document_bytes]
        stack: list[tuple[Any, tuple[str | int, ...]]] = [(entity, ())]
        while stack:
            container, path = stack.pop()
            items = container.items() if isinstance(container, dict) else enumerate(container)
            for key, value in list(items):
                if isinstance(value, dict) and len(value) == 1:
                    (kind, target), = value.items()
                    if kind in PLACEHOLDERS:
                        container[key] = self._substitute(kind, target, path + (key,), origin, source, index, budget)
                        continue
                if isinstance(value, dict | list):
                    stack.append((value, path + (key,)))
        return entity

    def _substitute(self, kind: str, target: Any, path: tuple[str | int, ...], origin: _Origin, source: str, index: int, budget: list[int]) -> Any:
        definition = path == ("spec", "definition")
        where = ".".join(str(p) for p in path)
        try:
            if not isinstance(target, str) or not target.strip():
                raise _Unresolved(f"{kind} needs a non-empty string", "malformed placeholder")
            budget[0] -= 1
            if budget[0] < 0:
                raise _Unresolved(f"more than {MAX_PLACEHOLDERS_PER_DOCUMENT} placeholders in one document", "too many placeholders")
            text = self._read_placeholder(target.strip(), origin)
            # Charged on every use, not only on the first read: a hundred placeholders naming one
            # large cached file must not multiply it into the stored entity.
            budget[1] -= len(text)
            if budget[1] < 0:
                raise _Unresolved(f"placeholders add more than {self.limits.max_document_bytes} characters to one document", "too large")
            if self._substituted + len(text) > self.limits.max_total_bytes:
                raise _Unresolved(f"placeholders add more than {self.limits.max_total_bytes} characters in one run", "too large")
            self._substituted += len(text)
            if definition or kind == "$text":
                return text
            return load_json(text, self.limits.yaml) if kind == "$json" else load_one(text, self.limits.yaml)
        except DocumentRefused as exc:
            self._problem(source, index, "substitution", f"{where}: {kind} {redact_target(target)}: {exc.message}")
            served = "unreadable content"
        except _Unresolved as exc:
            self._problem(source, index, "substitution", f"{where}: {kind} {redact_target(target)}: {exc.message}", warning=exc.warning)
            served = exc.served
        if definition:
            return f"(definition not loaded: {served}) {redact_target(target)}"
        return {kind: target}

    def _read_placeholder(self, target: str, origin: _Origin) -> str:
        if isinstance(origin, _Remote):
            absolute = _join(origin.url, target)
            if absolute is None:
                raise _Unresolved("not a valid URL", "malformed URL")
            if _scheme(absolute) not in ("http", "https"):
                raise _Unresolved("refused: a remote document cannot read local files", "refused")
            return self._read_remote(absolute)
        scheme = _scheme(target)
        if scheme in ("http", "https"):
            return self._read_remote(target)
        if scheme:
            raise _Unresolved(f"scheme '{scheme}:' is not supported", "unsupported scheme")
        try:
            relative = origin.tree.locate(origin.directory / target)
        except Refused as exc:
            raise _Unresolved(f"refused: it {exc}", "outside the location's tree") from None
        key = str(origin.tree.absolute(relative))
        if key not in self._cache:
            try:
                raw = origin.tree.read(relative, self.limits.max_document_bytes)
            except Refused as exc:
                raise _Unresolved(f"file {exc}", "unreadable file") from None
            self._cache[key] = self._decode(raw, key)
        return self._cache[key]

    def _read_remote(self, url: str) -> str:
        if not self.follow_remote:
            raise _Unresolved("not fetched (--no-remote)", "remote fetching is off", warning=True)
        why = self.fetcher.check(url)
        if why is not None:
            raise _Unresolved(f"not fetched: {why}", "host not allowed" if "allowed_hosts" in why else "refused", warning="allowed_hosts" in why)
        key = url
        if key not in self._cache:
            try:
                raw = self._timed_fetch(url)
            except FetchRefused as exc:
                raise _Unresolved(f"not fetched: {exc}", "fetch failed") from None
            self._cache[key] = self._decode(raw, redact(url))
        return self._cache[key]

    def _timed_fetch(self, url: str) -> bytes:
        """A fetch charged to the run's remote time budget (hostile Locations can list many slow URLs)."""
        if self._remote_seconds >= self.limits.max_remote_seconds:
            raise FetchRefused(f"the run spent its {self.limits.max_remote_seconds:g} s of remote fetching")
        started = time.monotonic()
        try:
            return self.fetcher.fetch(url)
        finally:
            self._remote_seconds += time.monotonic() - started

    def _decode(self, raw: bytes, key: str) -> str:
        if self._bytes + len(raw) > self.limits.max_total_bytes or self._files >= self.limits.max_files:
            raise _Unresolved("over the run's file or byte budget", "over budget")
        self._files += 1
        self._bytes += len(raw)
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _Unresolved("not UTF-8 text", "not text") from None


def redact_target(target: Any) -> str:
    if not isinstance(target, str):
        return "(not a string)"
    text = target.strip()
    return redact(text) if _scheme(text) else text[:300]  # any URL loses its user-info and query


def _within(path: str, root: Path) -> bool:
    relative = os.path.relpath(os.path.abspath(path), root)
    return not (relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative))


def load_all(
    targets: list[str],
    follow_remote: bool = True,
    settings: CatalogLoaderSettings | None = None,
    owners: Mapping[str, str] | None = None,
) -> LoadResult:
    """Load every target; `owners` maps stored entity keys to the source that defined them."""
    if settings is None:
        from aiplane.config import CatalogLoaderSettings

        settings = CatalogLoaderSettings()
    policy = RemotePolicy(
        allowed_hosts=tuple(settings.allowed_hosts),
        allowed_networks=tuple(settings.allowed_networks),
        timeout_seconds=settings.timeout_seconds,
        max_bytes=settings.max_document_bytes,
        max_redirects=settings.max_redirects,
    )
    loader = Loader(follow_remote=follow_remote, remote=policy, limits=LoaderLimits.from_settings(settings), owners=owners)
    try:
        for target in targets:
            loader.load(target)
    finally:
        loader.finish()
    return loader.result
