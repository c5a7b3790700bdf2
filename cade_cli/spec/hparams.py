"""The `hyperparameters` section -> a `cade_cli.search.space.Nested` (Determined's forms).

A scalar or a list is a constant; a mapping whose `type` is a string is a typed
hyperparameter (const, int, double, log, categorical); any other mapping is a nested group.
"""

from __future__ import annotations

import math

from cade_cli.errors import SpecError
from cade_cli.search.space import (
    MAX_GRID_POINTS,
    Categorical,
    Const,
    Double,
    Hyperparameter,
    Int,
    Log,
    Nested,
    grid_size,
)
from cade_cli.spec.reader import ONE_LINE, MapReader, has_control, show_number
from cade_cli.spec.yamlpos import Loc, Node, Problems, describe, join_path, to_plain

HP_TYPES = ("const", "int", "double", "log", "categorical")

_KEYS = {
    "const": ("type", "val"),
    "int": ("type", "minval", "maxval", "count"),
    "double": ("type", "minval", "maxval", "count"),
    "log": ("type", "minval", "maxval", "base", "count"),
    "categorical": ("type", "vals"),
}


def read_space(node: Node | None, problems: Problems, parent_loc: Loc, *, grid: bool) -> Nested:
    """Read `hyperparameters` (absent or null: no hyperparameters).

    `grid` is True under the grid searcher, which needs `count` on every int/double/log.
    """
    if node is None or node.value is None:
        return Nested(())
    if not isinstance(node.value, dict):
        problems.add(node.loc, "hyperparameters", f"expected a mapping of names to hyperparameters, "
                                                  f"found {describe(node.value)}")
        return Nested(())
    space = _nested(node, "hyperparameters", problems, grid)
    if grid:
        _check_grid_size(space, node, problems)
    return space


def _check_grid_size(space: Nested, node: Node, problems: Problems) -> None:
    """Counted, not built: a grid past MAX_GRID_POINTS is refused with its size."""
    try:
        size = grid_size(space)
    except SpecError:
        return  # a missing count, reported at its own key
    if size > MAX_GRID_POINTS:
        shown = f"{size:,}" if size < 10**30 else f"about 10^{len(str(size)) - 1}"
        problems.add(node.key_where, "hyperparameters",
                     f"expected a grid of at most {MAX_GRID_POINTS:,} points (one trial each), found "
                     f"{shown} points (the product of the counts and categories)")


def _nested(node: Node, path: str, problems: Problems, grid: bool) -> Nested:
    assert isinstance(node.value, dict)
    items: list[tuple[str, Hyperparameter]] = []
    for name, child in node.value.items():
        child_path = join_path(path, name)
        if not name.strip() or has_control(name):
            problems.add(child.key_where, child_path, f"expected a non-empty hyperparameter name {ONE_LINE}, "
                                                      f"found {name!r}")
            continue
        items.append((name, _hyperparameter(child, child_path, problems, grid)))
    # Sorted by name: every traversal (sampling, grid order) is then deterministic.
    return Nested(tuple(sorted(items, key=lambda item: item[0])))


def _hyperparameter(node: Node, path: str, problems: Problems, grid: bool) -> Hyperparameter:
    value = node.value
    if not isinstance(value, dict):
        return Const(_plain_value(node, path, problems))
    type_node = value.get("type")
    if type_node is None or not isinstance(type_node.value, str):
        return _nested(node, path, problems, grid)
    reader = MapReader(node, path, problems, node.loc)
    kind = reader.choice("type", HP_TYPES, default="")
    if not kind:
        return Const(None)  # the bad type is reported; its other keys cannot be judged
    reader.reject_unknown(_KEYS[kind])
    if kind == "const":
        val = reader.entries.get("val")
        if val is None:
            reader.missing("val", "the constant's value")
        return Const(_plain_value(val, reader.key_path("val"), problems) if val is not None else None)
    if kind == "categorical":
        return _categorical(reader, problems)
    return _ranged(reader, kind, grid)


def _plain_value(node: Node, path: str, problems: Problems) -> object:
    """A constant or categorical value; NaN and infinity are refused (params.json is JSON)."""
    for inner, inner_path in _walk(node, path):
        if isinstance(inner.value, float) and not math.isfinite(inner.value):
            problems.add(inner.loc, inner_path, f"expected a finite value, found {describe(inner)}")
    return to_plain(node)


def _walk(node: Node, path: str) -> list[tuple[Node, str]]:
    found = [(node, path)]
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            found.extend(_walk(child, join_path(path, key)))
    elif isinstance(node.value, list):
        for index, child in enumerate(node.value):
            found.extend(_walk(child, f"{path}[{index}]"))
    return found


def _categorical(reader: MapReader, problems: Problems) -> Categorical:
    expected = "a non-empty list of values"
    node = reader.node("vals", expected, required=True)
    if node is None:
        return Categorical(())
    if not isinstance(node.value, list) or not node.value:
        reader.bad(node, "vals", expected)
        return Categorical(())
    path = reader.key_path("vals")
    return Categorical(tuple(_plain_value(item, f"{path}[{i}]", problems) for i, item in enumerate(node.value)))


def _ranged(reader: MapReader, kind: str, grid: bool) -> Hyperparameter:
    """int, double and log: minval < maxval, and `count` (required under grid).

    Every value a trial can get (and every step between) must be a finite number: params
    travel as JSON, and an overflow found at sampling time would stop the driver mid-run.
    """
    why_count = " (the grid searcher needs it)" if grid else ""
    count = reader.optional_integer("count", minimum=1, required=grid, why=why_count)
    if kind == "int":
        # 64-bit: what a training script in any language can read, and what floats (grid
        # steps, PBT's perturbation) can hold without overflowing.
        low_int = reader.optional_integer("minval", minimum=-(2**63), maximum=2**63 - 1, required=True)
        high_int = reader.optional_integer("maxval", minimum=-(2**63), maximum=2**63 - 1, required=True)
        _check_order(reader, low_int, high_int)
        return Int(low_int or 0, high_int or 0, count)
    low, high = _finite_bound(reader, "minval"), _finite_bound(reader, "maxval")
    _check_order(reader, low, high)
    if kind == "double":
        if low is not None and high is not None and low < high and not math.isfinite(high - low):
            reader.bad(reader.entries["maxval"], "maxval", f"a value with maxval - minval finite "
                                                           f"(minval is {show_number(low)})")
        return Double(low or 0.0, high or 0.0, count)
    base = _log_base(reader)
    if base is not None:
        for key, exponent in (("minval", low), ("maxval", high)):
            if exponent is not None and _power(base, exponent) is None:
                reader.bad(reader.entries[key], key, f"an exponent with {show_number(base)} ** {key} "
                                                     f"a positive finite number")
    return Log(low or 0.0, high or 0.0, base or 10.0, count)


def _finite_bound(reader: MapReader, key: str) -> float | None:
    value = reader.optional_number(key, required=True)
    if value is not None and not math.isfinite(value):
        reader.bad(reader.entries[key], key, "a finite number")
        return None
    return value


def _log_base(reader: MapReader) -> float | None:
    base = reader.optional_number("base", required=True, why=" (log values are base ** x)")
    if base is not None and not (math.isfinite(base) and base > 0 and base != 1):
        reader.bad(reader.entries["base"], "base", "a finite number > 0 other than 1")
        return None
    return base


def _power(base: float, exponent: float) -> float | None:
    """base ** exponent when it is a positive finite float, else None (overflow, underflow)."""
    try:
        value = base ** exponent
    except OverflowError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _check_order(reader: MapReader, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low < high:
        reader.bad(reader.entries["minval"], "minval", f"a value below maxval ({show_number(high)})")
