"""Parsing hostile YAML (and JSON) with bounded nesting and bounded alias expansion.

PyYAML's safe loader builds only plain data, but it expands aliases without limit (a few hundred
bytes of `&a [*b, *b, ...]` become gigabytes once serialised) and recurses once per nesting
level (a deep document raises RecursionError, which is not a YAMLError). This loader keeps
libyaml's C parser and puts PyYAML's own composer on top of it, extended to:

- refuse nesting deeper than `max_depth`, counting what an alias brings along at the place it
  is used;
- charge every alias use with the size of what it points at (nodes plus scalar characters) and
  refuse a document once those charges pass `max_alias_expansion`, so ordinary reuse of an
  anchor (shared tags, defaults) works and an expansion bomb does not;
- refuse an alias that points into the node still being built (a self-referencing structure).

A refused document is reported with its index and the stream moves on to the next document; a
syntax error ends the stream (libyaml cannot resynchronise), keeping the documents before it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:  # libyaml parses about 5x faster than the pure-Python parser; same events.
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PyParser.__init__(self)

        def dispose(self) -> None:
            pass


@dataclass(frozen=True, slots=True)
class YamlLimits:
    max_depth: int = 64
    # Nodes plus scalar characters that alias uses may add to one document.
    max_alias_expansion: int = 1_000_000
    # Wall time for one text (all its documents): libyaml plus the safe constructors take tens of
    # seconds on 8 MiB of tiny nodes on a busy machine.
    max_seconds: float = 30.0


class DocumentRefused(Exception):
    """One document breaks a limit; the stream itself is still readable."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


SKIP_WORK = 20_000_000


class SkipAbandoned(Exception):
    """A refused document is too deeply nested to skip cheaply; the stream ends there."""


class OutOfTime(Exception):
    """The text took longer than `max_seconds` to parse; the stream ends there."""


@dataclass(frozen=True, slots=True)
class BadDocument:
    """What `iter_documents` yields in place of a document it refused."""

    rule: str
    message: str
    fatal: bool = False  # the stream ends here (a syntax error)


class _CatalogResolver(Resolver):
    """PyYAML's YAML 1.1 implicit types minus timestamps and base-60 numbers.

    Backstage reads YAML 1.2, where `2020-01-01` and `1:30:00` are strings; YAML 1.1 would build
    a date (not JSON data) and a base-60 integer (whose conversion is quadratic in its length:
    a 960 KB scalar took a minute).
    """

    yaml_implicit_resolvers: dict[Any, list[tuple[str, Any]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


_CatalogResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_CatalogResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
# Merge keys in one mapping: PyYAML flattens them in quadratic time (400k took 41 s).
MAX_MERGE_KEYS = 64
_MERGE = "tag:yaml.org,2002:merge"


class _BoundedLoader(Composer, _Parser, SafeConstructor, _CatalogResolver):
    def __init__(self, text: str, limits: YamlLimits) -> None:
        _Parser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _CatalogResolver.__init__(self)
        self.limits = limits
        self._built = 0
        self._depth = 0
        self._expanded = 0
        self._open: set[str] = set()
        self._measures: dict[str, tuple[int, int]] = {}  # anchor -> (weight, height)
        self._memo: dict[int, tuple[int, int]] = {}  # id(node) -> (weight, height), this document
        self._deadline = time.monotonic() + limits.max_seconds
        self._nodes = 0

    def compose_document(self) -> Node:
        self._depth = 0
        self._expanded = 0
        self._open = set()
        self._measures = {}
        self._memo = {}
        try:
            return super().compose_document()
        finally:
            self._memo = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """One node and its children, built directly from parser events.

        Written out rather than layered on Composer.compose_node: the limits need every step,
        and one pass per event is what keeps this within about 1.5x of libyaml's C composer.
        No path resolvers are registered on this loader, so Composer's resolver hooks are moot.
        """
        self._nodes += 1
        if not self._nodes & 1023 and time.monotonic() > self._deadline:
            raise OutOfTime
        event = self.get_event()
        cls = event.__class__
        if cls is AliasEvent:
            return self._alias(event)
        anchor = event.anchor
        if anchor is not None:
            if anchor in self.anchors:
                raise ComposerError(None, None, f"found duplicate anchor {anchor!r}", event.start_mark)
            self._open.add(anchor)
        if cls is ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            node: Node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if anchor is not None:
                self.anchors[anchor] = node
        else:
            self._depth += 1
            if self._depth > self.limits.max_depth:
                raise DocumentRefused("yaml", f"nesting deeper than {self.limits.max_depth} levels")
            node = self._collection(event, cls is MappingStartEvent, anchor)
            self._depth -= 1
        if anchor is not None:
            self._open.discard(anchor)
            self._measures[anchor] = _measure(node, self._memo)
        return node

    def _collection(self, start: Any, mapping: bool, anchor: str | None) -> Node:
        tag = start.tag
        kind = MappingNode if mapping else SequenceNode
        if tag is None or tag == "!":
            tag = self.resolve(kind, None, start.implicit)
        node = kind(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        items = node.value
        if mapping:
            merges = 0
            while self.peek_event().__class__ is not MappingEndEvent:
                key = self.compose_node(node, None)
                if key.tag == _MERGE:
                    merges += 1
                    if merges > MAX_MERGE_KEYS:
                        raise DocumentRefused("yaml", f"more than {MAX_MERGE_KEYS} merge keys (<<) in one mapping")
                items.append((key, self.compose_node(node, key)))
        else:
            position = 0
            while self.peek_event().__class__ is not SequenceEndEvent:
                items.append(self.compose_node(node, position))
                position += 1
        node.end_mark = self.get_event().end_mark
        return node

    def _alias(self, event: AliasEvent) -> Node:
        anchor = event.anchor
        if anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {anchor!r}", event.start_mark)
        if anchor in self._open:
            raise DocumentRefused("yaml", f"alias *{anchor} refers to the node that contains it")
        weight, height = self._measures[anchor]
        self._expanded += weight
        if self._expanded > self.limits.max_alias_expansion:
            raise DocumentRefused("yaml", f"aliases expand to more than {self.limits.max_alias_expansion} nodes and characters")
        if self._depth + height > self.limits.max_depth:
            raise DocumentRefused("yaml", f"nesting deeper than {self.limits.max_depth} levels (through alias *{anchor})")
        return self.anchors[anchor]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # Construction is bounded by the same wall clock as parsing.
        self._built += 1
        if not self._built & 1023 and time.monotonic() > self._deadline:
            raise OutOfTime
        return super().construct_object(node, deep)

    def flatten_mapping(self, node: MappingNode) -> None:
        # `<<: [*a, *b, ...]` lists as many mappings as it likes in one merge key.
        for key, value in node.value:
            if key.tag == _MERGE and isinstance(value, SequenceNode) and len(value.value) > MAX_MERGE_KEYS:
                raise ConstructorError(None, None, f"more than {MAX_MERGE_KEYS} mappings merged into one", key.start_mark)
        super().flatten_mapping(node)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if ":" in str(node.value):  # an explicit !!int in base 60
            raise ConstructorError(None, None, "base-60 integers are not read", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        if ":" in str(node.value):
            raise ConstructorError(None, None, "base-60 numbers are not read", node.start_mark)
        return super().construct_yaml_float(node)

    def skip_document(self) -> None:
        """After a refusal mid-document: drop its remaining events and any half-built state.

        libyaml spends time proportional to the flow nesting depth on every token, so draining
        a document nested a million levels deep would take hours. Skipping is charged the depth
        of every event it drops; past SKIP_WORK the rest of the stream is given up instead
        (SkipAbandoned). A 990-deep document costs about a million, a deep 8 MiB one would
        cost billions.
        """
        depth = self._depth
        work = 0
        while not self.check_event(DocumentEndEvent):
            event = self.get_event()
            if isinstance(event, SequenceStartEvent | MappingStartEvent):
                depth += 1
            elif isinstance(event, SequenceEndEvent | MappingEndEvent):
                depth -= 1
            work += max(depth, 1)
            if work > SKIP_WORK:
                raise SkipAbandoned
        self.get_event()
        self.anchors = {}
        self.constructed_objects = {}
        self.recursive_objects = {}
        self.state_generators = []


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def _measure(node: Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Expanded size (nodes plus scalar characters) and height (collection levels) of a node.

    Iterative and memoised per node object across the document, so every node is visited once.
    """
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        if key in memo:
            continue
        if isinstance(current, ScalarNode):
            memo[key] = (1 + len(current.value), 0)
            continue
        children: list[Node] = []
        if isinstance(current, SequenceNode):
            children = list(current.value)
        elif isinstance(current, MappingNode):
            for k, v in current.value:
                children += [k, v]
        if done:
            weight, height = 1, 0
            for child in children:
                w, h = memo.get(id(child), (1, 0))  # a child still open is a cycle, refused elsewhere
                weight += w
                height = max(height, h)
            memo[key] = (weight, height + 1)
            continue
        stack.append((current, True))
        stack.extend((child, False) for child in children if id(child) not in memo)
    return memo[id(node)]


def iter_documents(text: str, limits: YamlLimits = YamlLimits()) -> Iterator[tuple[int, Any]]:
    """(index, document or BadDocument) for each document of a YAML stream."""
    loader = _BoundedLoader(text, limits)
    index = 0
    try:
        while True:
            try:
                if not loader.check_node():
                    return
            except yaml.YAMLError as exc:
                yield index, BadDocument("yaml", _describe(exc), fatal=True)
                return
            try:
                node = loader.get_node()
            except (DocumentRefused, ComposerError) as exc:
                # The composer refused (a limit, an undefined alias): the parser is still in
                # step, so drop the rest of this document and go on.
                refused = exc if isinstance(exc, DocumentRefused) else DocumentRefused("yaml", _describe(exc))
                try:
                    loader.skip_document()
                except SkipAbandoned:
                    yield index, BadDocument(refused.rule, refused.message + "; the rest of this file is not read", fatal=True)
                    return
                except yaml.YAMLError as inner:
                    yield index, BadDocument(refused.rule, refused.message)
                    yield index + 1, BadDocument("yaml", _describe(inner), fatal=True)
                    return
                yield index, BadDocument(refused.rule, refused.message)
                index += 1
                continue
            except yaml.YAMLError as exc:  # the scanner or parser: the stream cannot go on
                yield index, BadDocument("yaml", _describe(exc), fatal=True)
                return
            except OutOfTime:
                yield index, BadDocument("yaml", f"parsing took longer than {limits.max_seconds:g} s; the rest of this file is not read", fatal=True)
                return
            try:
                document = loader.construct_document(node)
            except OutOfTime:
                yield index, BadDocument("yaml", f"reading took longer than {limits.max_seconds:g} s; the rest of this file is not read", fatal=True)
                return
            except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
                # A value the constructor cannot build (an int past Python's digit limit, a bad
                # timestamp, an unhashable key): this document only; its events are all read.
                loader.constructed_objects = {}
                loader.recursive_objects = {}
                loader.state_generators = []
                message = _describe(exc) if isinstance(exc, yaml.YAMLError) else f"a value cannot be read ({exc.__class__.__name__})"
                yield index, BadDocument("yaml", message)
            else:
                yield index, document
            index += 1
    finally:
        loader.dispose()


def load_one(text: str, limits: YamlLimits = YamlLimits()) -> Any:
    """The first document of a YAML text, under the same limits; raises DocumentRefused."""
    for _index, document in iter_documents(text, limits):
        if isinstance(document, BadDocument):
            raise DocumentRefused(document.rule, document.message)
        return document
    return None


def load_json(text: str, limits: YamlLimits = YamlLimits()) -> Any:
    """JSON with the same nesting bound; raises DocumentRefused."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise DocumentRefused("json", f"nesting deeper than {limits.max_depth} levels") from None
    except ValueError as exc:
        raise DocumentRefused("json", f"invalid JSON ({exc.__class__.__name__})") from None
    if depth(value) > limits.max_depth:
        raise DocumentRefused("json", f"nesting deeper than {limits.max_depth} levels")
    return value


def depth(value: Any) -> int:
    """Collection levels of plain data, iteratively (never recursion-limited)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in current.values())
        elif isinstance(current, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in current)
    return deepest


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or exc.__class__.__name__
    return f"invalid YAML{where}: {problem}"


__all__ = ["BadDocument", "DocumentRefused", "YamlLimits", "depth", "iter_documents", "load_json", "load_one"]
