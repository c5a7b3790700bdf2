"""Hyperparameter types (Determined's names), sampling with a passed RNG, grid axes, JSON codec.

Pure: no I/O, no global RNG. Every traversal goes in sorted-name order (nested included) so
the same seed gives the same trials on every machine and Python version.

The dataclasses are the shared interface (spec.py builds them, searchers use them); the
functions below them sample, enumerate, perturb and encode spaces.
"""

from __future__ import annotations

import copy
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

# The most trials a grid may ask for (README, "What cade promises"): each is a ledger row
# and a job, so a larger grid is a mistake in a count, refused before anything is built.
MAX_GRID_POINTS = 1_000_000


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


def _linspace_at(minval: float, maxval: float, count: int, index: int) -> float:
    """The `index`-th of `count` evenly spaced values from minval to maxval."""
    if count == 1:
        return (minval + maxval) / 2.0
    return minval + index * (maxval - minval) / (count - 1)


def _require_count(hp: Int | Double | Log) -> int:
    if hp.count is None:
        raise SpecError("`count` is required for int, double and log hyperparameters "
                        "under the grid searcher",
                        hint="add e.g. `count: 3` to each numeric hyperparameter")
    if hp.count < 1:
        raise SpecError(f"`count` must be at least 1, got {hp.count}")
    return hp.count


def axis_length(hp: Hyperparameter) -> int:
    """How many values the grid searcher tries for `hp` (a nested one: its whole grid)."""
    if isinstance(hp, Const):
        return 1
    if isinstance(hp, Categorical):
        return len(hp.vals)
    if isinstance(hp, Int):
        return min(_require_count(hp), hp.maxval - hp.minval + 1)
    if isinstance(hp, (Double, Log)):
        return _require_count(hp)
    return grid_size(hp)


def axis_value(hp: Hyperparameter, index: int) -> Any:
    """The `index`-th value the grid searcher tries for `hp`, without building the others."""
    if isinstance(hp, Const):
        return _copy_value(hp.val)
    if isinstance(hp, Categorical):
        return _copy_value(hp.vals[index])
    if isinstance(hp, Int):
        count = axis_length(hp)
        if count == 1:
            return round_half_away((hp.minval + hp.maxval) / 2.0)
        # Same arithmetic as Determined: min + i*(max-min)/(count-1), in floats.
        span = hp.maxval - hp.minval
        return round_half_away(float(hp.minval) + float(index * span) / float(count - 1))
    if isinstance(hp, Double):
        return _linspace_at(hp.minval, hp.maxval, _require_count(hp), index)
    if isinstance(hp, Log):
        return hp.base ** _linspace_at(hp.minval, hp.maxval, _require_count(hp), index)
    return grid_point(hp, index)


def grid_axis(hp: Hyperparameter) -> list[Any]:
    """The values the grid searcher tries for one hyperparameter, in order."""
    return [axis_value(hp, index) for index in range(axis_length(hp))]


def grid_size(space: Nested) -> int:
    """The number of grid points, without building them."""
    return math.prod(axis_length(hp) for _, hp in _sorted_items(space))


def grid_point(space: Nested, index: int) -> dict[str, Any]:
    """The `index`-th grid point (0-based) without building the grid: the index in mixed
    radix, hyperparameters sorted by name, the first varying slowest."""
    items = _sorted_items(space)
    digits: list[int] = []
    for _, hp in reversed(items):
        index, digit = divmod(index, axis_length(hp))
        digits.append(digit)
    return {name: axis_value(hp, digit) for (name, hp), digit in zip(items, reversed(digits))}


def grid(space: Nested) -> list[dict[str, Any]]:
    """Every grid point in order (for small grids; the grid searcher uses grid_point)."""
    return [grid_point(space, index) for index in range(grid_size(space))]


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
