"""Typed reads of one YAML mapping, recording problems instead of raising.

Each read names the key path, what was expected and what was found, and returns a fallback
so the loader can go on and report every other problem in the same pass.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cade_cli.spec.yamlpos import Loc, Node, Problems, describe, join_path

# C0 controls (newline, tab, ESC ...), DEL and C1 controls: none belongs in a value that
# becomes a line of a job script (a scheduler directive) or a name shown on terminals.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ONE_LINE = "on one line, without control characters"
DIRECTIVE = " (a scheduler directive)"


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    """`an integer >= 1`, `a number from 0 to 0.5`, ..."""
    if minimum is not None and maximum is not None:
        return f"{kind} from {show_number(minimum)} to {show_number(maximum)}"
    if minimum is not None:
        return f"{kind} >= {show_number(minimum)}"
    if maximum is not None:
        return f"{kind} <= {show_number(maximum)}"
    return kind


def show_number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def suggest(word: str, choices: Iterable[str], *, listing: bool = True) -> str:
    """`; did you mean 'x'?` for a near miss, else (with `listing`) the valid choices."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(options)}" if options and listing else ""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MapReader:
    """One mapping of the spec (`path` is its key path, "" for the top level)."""

    def __init__(self, node: Node | None, path: str, problems: Problems, parent_loc: Loc) -> None:
        self.path = path
        self.problems = problems
        # Missing keys are reported at the line of the key that opens this mapping.
        self.loc = node.key_where if node is not None else parent_loc
        self.entries: dict[str, Node] = {}
        # A section that is not a mapping is reported once; its missing keys are not.
        self.broken = False
        if node is None or node.value is None:
            return
        if isinstance(node.value, dict):
            self.entries = node.value
        else:
            self.broken = True
            problems.add(node.loc, path, f"expected a mapping, found {describe(node.value)}")

    def key_path(self, key: str) -> str:
        return join_path(self.path, key)

    def bad(self, node: Node, key: str, expected: str, why: str = "") -> None:
        self.problems.add(node.loc, self.key_path(key), f"expected {expected}{why}, found {describe(node.value)}")

    def missing(self, key: str, expected: str, why: str = "") -> None:
        if self.broken:
            return
        self.problems.add(self.loc, self.key_path(key), f"missing; expected {expected}{why}")

    def given(self, key: str) -> bool:
        node = self.entries.get(key)
        return node is not None and node.value is not None

    def node(self, key: str, expected: str = "a value", *, required: bool = False, why: str = "") -> Node | None:
        """The value node of `key`; a null value counts as not given."""
        node = self.entries.get(key)
        if node is None or node.value is None:
            if required and node is None:
                self.missing(key, expected, why)
            elif required and node is not None:
                self.bad(node, key, expected, why)
            return None
        return node

    def reject_unknown(self, allowed: Iterable[str], explained: Mapping[str, str] | None = None) -> None:
        """Every key not in `allowed` is an error; `explained` gives a specific reason for some."""
        allowed = set(allowed)
        for key, node in self.entries.items():
            if key in allowed:
                continue
            if explained and key in explained:
                message = f"unknown key: {explained[key]}"
            else:
                message = "unknown key" + suggest(key, allowed)
            self.problems.add(node.key_where, self.key_path(key), message)

    def section(self, key: str, *, required: bool = False, expected: str = "a mapping") -> MapReader:
        node = self.node(key, expected, required=required)
        reader = MapReader(node, self.key_path(key), self.problems, self.loc)
        reader.broken = reader.broken or (required and node is None)
        return reader

    # -- typed reads ------------------------------------------------------------------------

    def optional_integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None,
                         required: bool = False, why: str = "") -> int | None:
        value = self._bounded(key, range_text("an integer", minimum, maximum), is_int,
                              minimum, maximum, required, why)
        return None if value is None else int(value)

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None,
                required: bool = False, why: str = "") -> int:
        value = self.optional_integer(key, minimum=minimum, maximum=maximum, required=required, why=why)
        return default if value is None else value

    def optional_number(self, key: str, *, minimum: float | None = None, maximum: float | None = None,
                        required: bool = False, why: str = "") -> float | None:
        value = self._bounded(key, range_text("a number", minimum, maximum),
                              lambda v: is_number(v) and not math.isnan(v), minimum, maximum,
                              required, why)
        return None if value is None else float(value)

    def _bounded(self, key: str, expected: str, kind: Callable[[Any], bool],
                 minimum: float | None, maximum: float | None, required: bool, why: str) -> Any:
        """The value at `key` if it is of `kind` and within the bounds; else None (reported)."""
        node = self.node(key, expected, required=required, why=why)
        if node is None:
            return None
        value = node.value
        if not kind(value) or (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            self.bad(node, key, expected, why)
            return None
        return value

    def number(self, key: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self.optional_number(key, minimum=minimum, maximum=maximum)
        return default if value is None else value

    def boolean(self, key: str, default: bool) -> bool:
        node = self.node(key, "true or false")
        if node is None:
            return default
        if not isinstance(node.value, bool):
            self.bad(node, key, "true or false")
            return default
        return node.value

    def optional_string(self, key: str, *, required: bool = False, why: str = "",
                        expected: str = "a non-empty string", one_line: bool = False) -> str | None:
        """`one_line`: control characters are refused (the value becomes a line of a job
        script, where a newline would start a line of its own, or a name on terminals)."""
        node = self.node(key, expected, required=required, why=why)
        if node is None:
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.bad(node, key, expected, why)
            return None
        if one_line and has_control(node.value):
            self.bad(node, key, f"{expected} {ONE_LINE}", why)
            return None
        return node.value

    def string(self, key: str, default: str = "", *, required: bool = False, why: str = "",
               one_line: bool = False) -> str:
        value = self.optional_string(key, required=required, why=why, one_line=one_line)
        return default if value is None else value

    def choice(self, key: str, choices: Iterable[str], default: str, *, required: bool = False) -> str:
        options = tuple(choices)
        expected = "one of " + ", ".join(options)
        node = self.node(key, expected, required=required)
        if node is None:
            return default
        if not isinstance(node.value, str):
            self.bad(node, key, expected)
            return default
        if node.value not in options:
            self.problems.add(node.loc, self.key_path(key),
                              f"expected {expected}, found {describe(node.value)}"
                              f"{suggest(node.value, options, listing=False)}")
            return default
        return node.value

    def string_list(self, key: str, *, one_line: bool = False, why: str = "") -> tuple[str, ...]:
        """`one_line`: as for optional_string, for each item."""
        expected = "a list of strings"
        node = self.node(key, expected)
        if node is None:
            return ()
        if not isinstance(node.value, list):
            self.bad(node, key, expected)
            return ()
        items: list[str] = []
        for index, item in enumerate(node.value):
            if isinstance(item.value, str) and not (one_line and has_control(item.value)):
                items.append(item.value)
            else:
                wanted = f"a string {ONE_LINE}{why}" if isinstance(item.value, str) else "a string"
                self.problems.add(item.loc, f"{self.key_path(key)}[{index}]",
                                  f"expected {wanted}, found {describe(item.value)}")
        return tuple(items)
