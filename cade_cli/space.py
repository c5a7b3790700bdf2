"""Hyperparameter types (Determined's names), sampling with a passed RNG, grid axes, JSON codec.

Pure: no I/O, no global RNG. Every traversal goes in sorted-name order (nested included) so
the same seed gives the same trials on every machine and Python version.

OWNER NOTE: the dataclasses below are the shared interface (spec.py builds them, searchers
use them). The functions at the bottom are to be implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


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

    items: tuple[tuple[str, "Hyperparameter"], ...]


Hyperparameter = Union[Const, Int, Double, Log, Categorical, Nested]

# The whole search space of an experiment is a Nested.
Space = Nested
