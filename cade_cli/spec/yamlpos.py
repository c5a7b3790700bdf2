"""YAML text -> a tree of nodes that remember where they came from.

The spec loader reports every problem as `file:line: key.path: ...`, so it cannot work on the
plain dict that `yaml.safe_load` returns. This module composes the node tree with PyYAML's
SafeLoader, rejects what a spec never needs (duplicate keys, custom tags, recursive aliases),
and hands back `Node`s that carry their location. `--config KEY.PATH=VALUE` overrides are
applied to the same tree, located as `--config`.

Two deliberate departures from YAML 1.1 (PyYAML's dialect), both as YAML 1.2 reads them:
`1e-4` is a float (PyYAML needs `1.0e-4`), and `1:30:00` is the string "1:30:00" (PyYAML would
read the base-60 integer 5400, which would silently break walltimes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from cade_cli.errors import SpecError

MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null")}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` (no dot) as a float."""


_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+\Z"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class Loc:
    """Where a value came from: `where` is shown in messages, `line` orders them."""

    where: str
    line: int


CONFIG_LOC = Loc("--config", 0)


@dataclass
class Node:
    """A value (dict[str, Node], list[Node] or a scalar) and its location.

    `key_loc` is the location of the key that holds this value in its parent mapping (a key
    and its value can sit on different lines); it is `loc` for list items and the root.
    """

    value: Any
    loc: Loc
    key_loc: Loc | None = None

    @property
    def key_where(self) -> Loc:
        return self.key_loc or self.loc


class Problems:
    """Every problem found in one pass; raised together as one SpecError."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str]] = []

    def add(self, loc: Loc, path: str, message: str) -> None:
        prefix = f"{loc.where}: {path}: " if path else f"{loc.where}: "
        self._items.append((loc.line, prefix + message))

    def __bool__(self) -> bool:
        return bool(self._items)

    def messages(self) -> list[str]:
        # Stable sort: problems on one line keep the order in which they were found.
        return [text for _, text in sorted(self._items, key=lambda item: item[0])]

    def raise_if_any(self) -> None:
        if self._items:
            raise SpecError("\n".join(self.messages()))


def describe(value: Any) -> str:
    """A value as a message shows it: `'ten' (a string)`, `true (a boolean)`, `a list`."""
    if isinstance(value, Node):
        value = value.value
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return type(value).__name__


def join_path(path: str, key: str) -> str:
    # A key that is not plain printable text is shown as Python writes it (messages go to a
    # terminal, where an ESC sequence would act instead of being read).
    shown = key if key.isprintable() else repr(key)
    return f"{path}.{shown}" if path else shown


def _yaml_error_line(err: yaml.YAMLError, text: str) -> tuple[int, str]:
    """(line, message) of a PyYAML error, without its multi-line source excerpt."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        parts = [getattr(err, "context", None), getattr(err, "problem", None)]
        message = "; ".join(str(part) for part in parts if part) or _first_line(err)
        return mark.line + 1, message
    position = getattr(err, "position", None)  # ReaderError: characters YAML does not allow
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1, _first_line(err)
    return 1, _first_line(err)


class _Converter:
    """Turns PyYAML nodes into `Node`s, recording problems instead of raising."""

    def __init__(self, locate: Callable[[int], Loc], problems: Problems) -> None:
        self._locate = locate
        self._problems = problems
        self._constructor = _Loader("")
        self._count = 0

    def convert(self, node: yaml.Node, path: str, active: frozenset[int] = frozenset()) -> Node:
        self._count += 1
        if self._count > MAX_NODES:
            raise SpecError(f"{self._locate(node.start_mark.line + 1).where}: the document is too "
                            f"large (more than {MAX_NODES} values; runaway aliases?)")
        loc = self._locate(node.start_mark.line + 1)
        if id(node) in active:
            self._problems.add(loc, path, "an alias refers to itself; expected a finite value")
            return Node(None, loc)
        if len(active) >= MAX_DEPTH:
            self._problems.add(loc, path, f"nested more than {MAX_DEPTH} levels deep")
            return Node(None, loc)
        inner = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, loc, inner)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                self._problems.add(loc, path, f"unsupported YAML tag {node.tag!r}; expected a plain list")
            items = [self.convert(item, f"{path}[{i}]", inner) for i, item in enumerate(node.value)]
            return Node(items, loc)
        return Node(self._scalar(node, path, loc), loc)

    def _scalar(self, node: yaml.Node, path: str, loc: Loc) -> Any:
        text = str(node.value)
        if node.tag in (_TAG + "int", _TAG + "float") and ":" in text:
            return text  # YAML 1.1 base-60 number: keep "1:30:00" as written
        if node.tag == _TAG + "timestamp":
            return text  # dates stay strings: a spec never needs a datetime
        if node.tag not in _PLAIN_SCALAR_TAGS:
            self._problems.add(loc, path, f"unsupported YAML tag {node.tag!r}; expected a plain value")
            return None
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, OverflowError) as err:
            self._problems.add(loc, path, f"expected a {node.tag.rsplit(':', 1)[-1]}, found {text!r} ({err})")
            return None

    def _mapping(self, node: yaml.MappingNode, path: str, loc: Loc, active: frozenset[int]) -> Node:
        if node.tag != _TAG + "map":
            self._problems.add(loc, path, f"unsupported YAML tag {node.tag!r}; expected a plain mapping")
        entries: dict[str, Node] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            key_loc = self._locate(key_node.start_mark.line + 1)
            if key_node.tag == _TAG + "merge":
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.add(key_loc, path, "expected a plain key, found a mapping or list used as a key")
                continue
            # Keys are names: keep the text as written (`on:` or `1:` stay "on" and "1").
            key = str(key_node.value)
            key_path = join_path(path, key)
            if key in entries:
                first = entries[key].key_where
                self._problems.add(key_loc, key_path, f"duplicate key (first given at {first.where})")
                continue
            child = self.convert(value_node, key_path, active)
            child.key_loc = key_loc
            entries[key] = child
        for source in merged:  # `<<: *defaults`: explicit keys win, earlier merges win
            self._merge(source, path, loc, active, entries)
        return Node(entries, loc)

    def _merge(self, source: yaml.Node, path: str, loc: Loc, active: frozenset[int],
               entries: dict[str, Node]) -> None:
        if not isinstance(source, yaml.MappingNode):
            self._problems.add(loc, path, "a '<<' merge key expects a mapping or a list of mappings")
            return
        extra = self.convert(source, path, active)
        if isinstance(extra.value, dict):
            for key, child in extra.value.items():
                entries.setdefault(key, child)


def compose(text: str, source: str, problems: Problems) -> Node | None:
    """Parse `text` (named `source` in messages) into a Node tree; None for an empty document.

    YAML syntax errors raise SpecError at once (nothing after them can be trusted); structural
    problems (duplicate keys, tags) go to `problems`.
    """

    def locate(line: int) -> Loc:
        return Loc(f"{source}:{line}", line)

    try:
        root = yaml.compose(text, Loader=_Loader)
        if root is None:
            return None
        return _Converter(locate, problems).convert(root, "")
    except yaml.YAMLError as err:
        line, problem = _yaml_error_line(err, text)
        raise SpecError(f"{source}:{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: invalid YAML: nested too deeply") from None


def from_plain(value: Any, loc: Loc, problems: Problems, path: str = "") -> Node:
    """A plain (JSON-like) value -> Node tree, every node located at `loc`."""
    if isinstance(value, dict):
        entries: dict[str, Node] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(loc, path, f"expected string keys, found {describe(key)}")
                continue
            entries[key] = from_plain(item, loc, problems, join_path(path, key))
        return Node(entries, loc)
    if isinstance(value, (list, tuple)):
        return Node([from_plain(item, loc, problems, f"{path}[{i}]") for i, item in enumerate(value)], loc)
    if value is None or isinstance(value, (str, int, float, bool)):
        return Node(value, loc)
    problems.add(loc, path, f"expected a plain value, found {describe(value)}")
    return Node(None, loc)


def to_plain(node: Node) -> Any:
    """Node tree -> plain dicts/lists/scalars (JSON-serialisable)."""
    if isinstance(node.value, dict):
        return {key: to_plain(child) for key, child in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(child) for child in node.value]
    return node.value


def apply_overrides(root: Node, overrides: tuple[str, ...], problems: Problems) -> None:
    """Apply `KEY.PATH=VALUE` strings to the tree in place, creating missing mappings."""
    for item in overrides:
        key_path, sep, text = item.partition("=")
        parts = key_path.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            problems.add(CONFIG_LOC, "", f"expected KEY.PATH=VALUE (e.g. searcher.max_trials=8), found {item!r}")
            continue
        parts = [part.strip() for part in parts]
        value = _override_value(text, ".".join(parts), problems)
        if value is not None:
            _set_path(root, parts, value, problems)


def _override_value(text: str, path: str, problems: Problems) -> Node | None:
    try:
        composed = yaml.compose(text, Loader=_Loader)
    except (yaml.YAMLError, RecursionError) as err:
        problems.add(CONFIG_LOC, path, f"expected a YAML value, found {text!r} ({_first_line(err)})")
        return None
    if composed is None:
        return Node(None, CONFIG_LOC, CONFIG_LOC)
    try:
        node = _Converter(lambda _line: CONFIG_LOC, problems).convert(composed, path)
    except RecursionError:
        problems.add(CONFIG_LOC, path, "the value is nested too deeply")
        return None
    node.key_loc = CONFIG_LOC
    return node


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or ["invalid"])[0]


def _set_path(root: Node, parts: list[str], value: Node, problems: Problems) -> None:
    current = root
    for depth, part in enumerate(parts[:-1]):
        entries = current.value
        assert isinstance(entries, dict)
        child = entries.get(part)
        if child is None or child.value is None:
            child = Node({}, CONFIG_LOC, CONFIG_LOC)
            entries[part] = child
        elif not isinstance(child.value, dict):
            path = ".".join(parts[: depth + 1])
            problems.add(CONFIG_LOC, path, f"expected a mapping to set {'.'.join(parts)} in, "
                                           f"found {describe(child.value)}")
            return
        current = child
    assert isinstance(current.value, dict)
    current.value[parts[-1]] = value


def dump_yaml(value: Any) -> str:
    """`value` as YAML text, keys in their given order (how the views show a stored spec)."""
    return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
