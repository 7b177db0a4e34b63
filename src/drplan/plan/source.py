"""Reading plan YAML into plain data while remembering where every key and value was written.

PyYAML composes the document into nodes that carry their line and column; we
build the Python values from those nodes ourselves so that:

* every mapping key and value has a source position (for errors like
  ``plan.yaml:42:7: jobs.db-incremental.schedule: ...``);
* duplicate keys are errors instead of the last one silently winning;
* keys stay the strings the author typed (``on:`` is not ``True``) and only
  ``true``/``false`` are booleans (``no``, ``yes`` and ``off`` stay strings, which
  avoids YAML 1.1's surprises);
* anchors, aliases and ``<<`` merge keys work, so plans can share blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:  # the C composer is several times faster; PyYAML without libyaml still works
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from drplan.errors import PlanInvalidError, Problem

PathKey = tuple[str | int, ...]
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STANDARD_TAGS = tuple(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge")
)
# Far more values than any plan has; a document that expands (through aliases) beyond
# this is refused before it can exhaust memory ("billion laughs").
MAX_VALUES = 200_000


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass
class SourceMap:
    """Positions of the keys and values of one parsed file, by path."""

    filename: str
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)
    containers: set[PathKey] = field(default_factory=set)

    def locate(self, path: PathKey, *, key: bool = False) -> Position:
        """Where ``path`` was written; falls back to its nearest written ancestor.

        A mapping or list is located at its key (``jobs:``), not at its first entry.
        """
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            at_key = prefix in self.containers or (key and depth == len(path))
            table = self.keys if at_key and prefix in self.keys else self.values
            if prefix in table:
                return table[prefix]
        return Position(1, 1)

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> Problem:
        pos = self.locate(path, key=key)
        return Problem(self.filename, pos.line, pos.column, dotted(path), message)


def dotted(path: PathKey) -> str:
    """``('jobs', 'db', 'locations', 1)`` as ``jobs.db.locations[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mark(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _TooLarge(Exception):
    """The document expands (through aliases) to more values than any plan needs."""


class _Builder:
    def __init__(self, smap: SourceMap) -> None:
        self.smap = smap
        self.problems: list[Problem] = []
        self._scalars = SafeConstructor()
        self._active: set[int] = set()  # nodes being built: an alias to one is a cycle
        self._count = 0

    def build(self, node: Node, path: PathKey) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise _TooLarge
        self.smap.values.setdefault(path, _mark(node))
        if node.tag not in _STANDARD_TAGS:
            self.problems.append(self._at(node, path, f"unsupported YAML tag '{node.tag}'"))
            return None
        if isinstance(node, MappingNode | SequenceNode):
            if id(node) in self._active:
                self.problems.append(
                    self._at(node, path, "an alias refers to a block that contains it")
                )
                return None
            self.smap.containers.add(path)
            self._active.add(id(node))
            try:
                if isinstance(node, MappingNode):
                    return self._mapping(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self._active.discard(id(node))
        assert isinstance(node, ScalarNode)
        if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
            return node.value
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            what = "date" if kind == "timestamp" else kind
            self.problems.append(self._at(node, path, f"'{node.value}' is not a valid {what}"))
            return None

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, Position] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge_sources(value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.append(self._at(key_node, path, "keys must be plain strings"))
                continue
            key = str(key_node.value)
            if key in seen:
                first = seen[key]
                self.problems.append(
                    self._at(
                        key_node,
                        (*path, key),
                        f"duplicate key '{key}' (first at line {first.line})",
                    )
                )
                continue
            seen[key] = _mark(key_node)
            self.smap.keys[(*path, key)] = seen[key]
            result[key] = self.build(value_node, (*path, key))
        return {**merged, **result}

    def _merge_sources(self, node: Node, path: PathKey) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):  # earlier sources win, as YAML specifies
            if not isinstance(source, MappingNode):
                self.problems.append(self._at(source, path, "'<<' merges only mappings"))
                continue
            merged.update(self._mapping(source, path))
        return merged

    def _at(self, node: Node, path: PathKey, message: str) -> Problem:
        pos = _mark(node)
        return Problem(self.smap.filename, pos.line, pos.column, dotted(path), message)


def parse(text: str, filename: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse one YAML document: its data, positions, and problems found while building it.

    Raises PlanInvalidError when nothing usable can be built (syntax errors).
    """
    smap = SourceMap(filename)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        # A scanner error's context (an unclosed quote, a key without ':') starts where the
        # author went wrong; the problem mark is merely where the scanner gave up.
        scanning = bool(exc.context and exc.context.startswith("while scanning"))
        mark = (exc.context_mark if scanning else None) or exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = (exc.problem or "cannot be parsed").replace("\n", " ")
        if exc.context:
            reason += f" ({exc.context})"
        line_text = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "tab" in reason or "\t" in line_text[: max(column, 1)]:
            reason += "; YAML does not allow tabs for indentation: use spaces"
        raise PlanInvalidError(
            [Problem(filename, line, column, "", f"YAML syntax error: {reason}")]
        ) from None
    except yaml.YAMLError as exc:
        raise PlanInvalidError([Problem(filename, 1, 1, "", f"YAML error: {exc}")]) from None
    if root is None:
        raise PlanInvalidError([Problem(filename, 1, 1, "", "the plan file is empty")])
    builder = _Builder(smap)
    try:
        data = builder.build(root, ())
    except _TooLarge:
        raise PlanInvalidError(
            [
                Problem(
                    filename,
                    1,
                    1,
                    "",
                    f"the document expands to more than {MAX_VALUES} values through aliases",
                )
            ]
        ) from None
    return data, smap, unique_problems(builder.problems)


def unique_problems(problems: list[Problem]) -> list[Problem]:
    """Problems in a block shared by several aliases are reported once."""
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for p in problems:
        if (p.line, p.column, p.message) not in seen:
            seen.add((p.line, p.column, p.message))
            unique.append(p)
    return unique
