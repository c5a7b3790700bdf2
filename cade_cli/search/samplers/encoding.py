"""Search spaces as points of the unit cube, for the density models of the samplers. Pure.

Every non-const hyperparameter (nested ones included, in sorted-name order like space.py)
becomes one coordinate: numbers map to [0, 1] on the scale they are sampled on (a log
hyperparameter by its exponent), categorical values to their index. Const values carry no
information and get no coordinate; decoding puts them back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cade_cli.search.space import (
    Categorical,
    Const,
    Double,
    Hyperparameter,
    Int,
    Log,
    Nested,
)

Coordinate = float | int   # a float in [0, 1], or a categorical index
Point = list[Coordinate]


@dataclass(frozen=True)
class Dimension:
    """One coordinate: the hyperparameter at `path` (names from the space's root)."""

    path: tuple[str, ...]
    hp: Int | Double | Log | Categorical

    @property
    def choices(self) -> int:
        """How many categories (0 for a numeric coordinate)."""
        return len(self.hp.vals) if isinstance(self.hp, Categorical) else 0

    @property
    def is_categorical(self) -> bool:
        return isinstance(self.hp, Categorical)


def _sorted_items(space: Nested) -> list[tuple[str, Hyperparameter]]:
    return sorted(space.items, key=lambda item: item[0])


def dimensions(space: Nested, prefix: tuple[str, ...] = ()) -> list[Dimension]:
    """The coordinates of `space`, in the order encode and decode use."""
    dims: list[Dimension] = []
    for name, hp in _sorted_items(space):
        if isinstance(hp, Nested):
            dims += dimensions(hp, prefix + (name,))
        elif not isinstance(hp, Const):
            dims.append(Dimension(prefix + (name,), hp))
    return dims


def _unit(value: float, low: float, high: float) -> float:
    if high <= low:
        return 0.5
    return min(max((value - low) / (high - low), 0.0), 1.0)


def encode_value(hp: Int | Double | Log | Categorical, value: Any) -> Coordinate:
    if isinstance(hp, Categorical):
        return hp.vals.index(value) if value in hp.vals else 0
    if isinstance(hp, Int):
        # Each integer owns an equal cell of [0, 1]: a uniform coordinate is a uniform int.
        return _unit(value - hp.minval + 0.5, 0.0, hp.maxval - hp.minval + 1.0)
    if isinstance(hp, Double):
        return _unit(value, hp.minval, hp.maxval)
    exponent = math.log(value) / math.log(hp.base) if value > 0 else hp.minval
    return _unit(exponent, hp.minval, hp.maxval)


def decode_value(hp: Int | Double | Log | Categorical, x: Coordinate) -> Any:
    if isinstance(hp, Categorical):
        return copy.deepcopy(hp.vals[int(x)])
    if isinstance(hp, Int):
        span = hp.maxval - hp.minval
        return hp.minval + min(math.floor(x * (span + 1)), span)
    if isinstance(hp, Double):
        return hp.minval + x * (hp.maxval - hp.minval)
    return hp.base ** (hp.minval + x * (hp.maxval - hp.minval))


def _lookup(params: dict[str, Any], path: Sequence[str]) -> Any:
    value: Any = params
    for name in path:
        value = value[name]
    return value


def encode(dims: Sequence[Dimension], params: dict[str, Any]) -> Point:
    """The point of `params` (as the searchers create them)."""
    return [encode_value(dim.hp, _lookup(params, dim.path)) for dim in dims]


def decode(space: Nested, point: Sequence[Coordinate]) -> dict[str, Any]:
    """Params for `point`; its coordinates follow `dimensions(space)`."""
    coordinates = iter(point)
    return _decode_nested(space, coordinates)


def _decode_nested(space: Nested, coordinates: Iterator[Coordinate]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, hp in _sorted_items(space):
        if isinstance(hp, Nested):
            params[name] = _decode_nested(hp, coordinates)
        elif isinstance(hp, Const):
            params[name] = copy.deepcopy(hp.val)
        else:
            params[name] = decode_value(hp, next(coordinates))
    return params
