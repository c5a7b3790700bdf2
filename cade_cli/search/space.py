"""Hyperparameter types (Determined's names), sampling with a passed RNG, grid axes, JSON codec.

Pure: no I/O, no global RNG. Every traversal goes in sorted-name order (nested included) so
the same seed gives the same trials on every machine and Python version.

The dataclasses are the shared interface (spec.py builds them, searchers use them); the
functions below them sample, enumerate, perturb and encode spaces.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from cade_cli.errors import SpecError


@dataclass(frozen=True)
class Const:
    val: Any


@dataclass(frozen=True)
class Int:
    minval: int
    maxval: int
    count: int | None = None


@dataclass(frozen=True)
class Double:
    minval: float
    maxval: float
    count: int | None = None


@dataclass(frozen=True)
class Log:
    """Values base**x for x in [minval, maxval] (minval/maxval are exponents)."""

    minval: float
    maxval: float
    base: float
    count: int | None = None


@dataclass(frozen=True)
class Categorical:
    vals: tuple[Any, ...]


@dataclass(frozen=True)
class Nested:
    """A map of names to hyperparameters; items are kept sorted by name."""

    items: tuple[tuple[str, Hyperparameter], ...]


Hyperparameter = Const | Int | Double | Log | Categorical | Nested

# The whole search space of an experiment is a Nested.
Space = Nested


# --------------------------------------------------------------------------------------
# Functions. Every traversal goes through `_sorted_items` so that nested spaces are
# visited in the same order everywhere.


def _sorted_items(space: Nested) -> list[tuple[str, Hyperparameter]]:
    return sorted(space.items, key=lambda item: item[0])


def _copy_value(value: Any) -> Any:
    # Categorical and const values may be YAML lists/maps: hand out copies so that a trial's
    # params can never alias (and mutate) the space.
    return copy.deepcopy(value)


def sample_one(hp: Hyperparameter, rng: random.Random) -> Any:
    """Draw one value of `hp` (a dict for a nested hyperparameter)."""
    if isinstance(hp, Const):
        return _copy_value(hp.val)
    if isinstance(hp, Int):
        return rng.randint(hp.minval, hp.maxval)
    if isinstance(hp, Double):
        return rng.uniform(hp.minval, hp.maxval)
    if isinstance(hp, Log):
        return hp.base ** rng.uniform(hp.minval, hp.maxval)
    if isinstance(hp, Categorical):
        return _copy_value(rng.choice(hp.vals))
    return sample(hp, rng)


def sample(space: Nested, rng: random.Random) -> dict[str, Any]:
    """Draw a full set of params; nested hyperparameters become nested dicts."""
    return {name: sample_one(hp, rng) for name, hp in _sorted_items(space)}


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero (Go's math.Round)."""
    magnitude = math.floor(abs(x) + 0.5)
    return int(magnitude if x >= 0 else -magnitude)


def _linspace(minval: float, maxval: float, count: int) -> list[float]:
    if count == 1:
        return [(minval + maxval) / 2.0]
    return [minval + i * (maxval - minval) / (count - 1) for i in range(count)]


def _require_count(hp: Int | Double | Log) -> int:
    if hp.count is None:
        raise SpecError("`count` is required for int, double and log hyperparameters "
                        "under the grid searcher",
                        hint="add e.g. `count: 3` to each numeric hyperparameter")
    if hp.count < 1:
        raise SpecError(f"`count` must be at least 1, got {hp.count}")
    return hp.count


def grid_axis(hp: Hyperparameter) -> list[Any]:
    """The values the grid searcher tries for one hyperparameter, in order."""
    if isinstance(hp, Const):
        return [_copy_value(hp.val)]
    if isinstance(hp, Categorical):
        return [_copy_value(v) for v in hp.vals]
    if isinstance(hp, Int):
        count = min(_require_count(hp), hp.maxval - hp.minval + 1)
        if count == 1:
            return [round_half_away((hp.minval + hp.maxval) / 2.0)]
        span = hp.maxval - hp.minval
        # Same arithmetic as Determined: min + i*(max-min)/(count-1), in floats.
        return [round_half_away(float(hp.minval) + float(i * span) / float(count - 1))
                for i in range(count)]
    if isinstance(hp, Double):
        return _linspace(hp.minval, hp.maxval, _require_count(hp))
    if isinstance(hp, Log):
        return [hp.base ** x for x in _linspace(hp.minval, hp.maxval, _require_count(hp))]
    return grid(hp)


def grid(space: Nested) -> list[dict[str, Any]]:
    """Cartesian product over hyperparameters sorted by name; the first varies slowest."""
    names = [name for name, _ in _sorted_items(space)]
    axes = [grid_axis(hp) for _, hp in _sorted_items(space)]
    return [{name: _copy_value(value) for name, value in zip(names, point)}
            for point in itertools.product(*axes)]


def grid_size(space: Nested) -> int:
    """The number of grid points, without building them."""
    size = 1
    for _, hp in _sorted_items(space):
        if isinstance(hp, Nested):
            size *= grid_size(hp)
        elif isinstance(hp, Int):
            size *= min(_require_count(hp), hp.maxval - hp.minval + 1)
        elif isinstance(hp, (Double, Log)):
            size *= _require_count(hp)
        elif isinstance(hp, Categorical):
            size *= len(hp.vals)
    return size


def _perturb(hp: Int | Double | Log, value: Any, decrease: bool, factor: float) -> Any:
    multiplier = 1 - factor if decrease else 1 + factor
    if isinstance(hp, Int):
        moved = math.floor(value * multiplier) if decrease else math.ceil(value * multiplier)
        return min(max(int(moved), hp.minval), hp.maxval)
    if isinstance(hp, Double):
        return min(max(value * multiplier, hp.minval), hp.maxval)
    low, high = hp.base ** hp.minval, hp.base ** hp.maxval
    return min(max(value * multiplier, low), high)


def explore(space: Nested, params: dict[str, Any], rng: random.Random,
            resample_probability: float, perturb_factor: float) -> dict[str, Any]:
    """PBT's explore step: a nearby set of params.

    Per hyperparameter (sorted names, nested included): with probability
    `resample_probability` a fresh value; otherwise numeric values are multiplied by
    1 - perturb_factor or 1 + perturb_factor (equal chance) and clamped to their bounds;
    categorical and const values are kept.
    """
    explored: dict[str, Any] = {}
    for name, hp in _sorted_items(space):
        if isinstance(hp, Nested):
            explored[name] = explore(hp, params[name], rng, resample_probability,
                                     perturb_factor)
        elif rng.random() < resample_probability:
            explored[name] = sample_one(hp, rng)
        else:
            decrease = rng.random() < 0.5
            if isinstance(hp, (Int, Double, Log)):
                explored[name] = _perturb(hp, params[name], decrease, perturb_factor)
            else:
                explored[name] = _copy_value(params[name])
    return explored


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params -> {"a.b": value}, keys in sorted order (for tables and exports)."""
    flat: dict[str, Any] = {}
    for name in sorted(params):
        value = params[name]
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat
