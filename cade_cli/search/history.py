"""A path-dependent objective for `cade simulate --memory L`: the simulated model remembers.

A real trial that resumes from a checkpoint carries the weights trained so far, so a PBT
child whose params were just perturbed is, at first, mostly its parent's model. Without a
memory the simulator scores every report on the trial's current params alone, as if the
child had trained with them from the start. With one, each trial holds a simulated model
state: a mixture of the params sets it (and the ancestors whose checkpoint it resumed from)
trained with, with weights that sum to 1. Training `d` units with params `p` multiplies every
earlier weight by exp(-d / L) and gives `p` the rest, so after L units of training the earlier
params keep a share of 1/e. The objective is called with the state's effective params, per
hyperparameter: the weighted mean of numbers (`log` ones in log space, `int` ones rounded),
the value with the largest weight for anything else.

A trial that only ever trained with its own params (every trial of a search without
checkpoint inheritance) holds a pure state, whose effective params are its params unchanged:
for such searches the objective is exactly the one without a memory.
Pure and deterministic: no clock, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cade_cli.search.space import (
    Categorical,
    Const,
    Hyperparameter,
    Int,
    Log,
    Nested,
    round_half_away,
)

NEGLIGIBLE = 1e-9   # a weight below this is forgotten (keeps a long PBT lineage's state small)


@dataclass(frozen=True)
class ModelState:
    """(params, weight) pairs, oldest first; the weights sum to 1."""

    mixture: tuple[tuple[dict[str, Any], float], ...]

    @classmethod
    def fresh(cls, params: dict[str, Any]) -> ModelState:
        return cls(((params, 1.0),))


@dataclass(frozen=True)
class Memory:
    """How a simulated model absorbs the params it trains with, for one search space."""

    space: Nested
    length: float   # L: training that shrinks the weight of earlier params by a factor e

    def trained(self, state: ModelState, params: dict[str, Any], units: int) -> ModelState:
        """The state after training `units` more with `params`."""
        if units <= 0:
            return state
        kept = math.exp(-units / self.length)
        earlier = [(p, w * kept) for p, w in state.mixture if w * kept >= NEGLIGIBLE]
        newest = 1.0 - sum(w for _, w in earlier)   # what the forgotten weights leave
        if earlier and earlier[-1][0] == params:
            newest += earlier.pop()[1]
        return ModelState(tuple(earlier) + ((params, newest),))

    def effective(self, state: ModelState) -> dict[str, Any]:
        """The params the objective is evaluated at."""
        if len(state.mixture) == 1:
            return state.mixture[0][0]
        return _blend(self.space, list(state.mixture))


def _blend(space: Nested, mixture: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    blended: dict[str, Any] = {}
    for name, hp in space.items:
        values = [(params[name], weight) for params, weight in mixture]
        if isinstance(hp, Nested):
            blended[name] = _blend(hp, values)
        else:
            blended[name] = _blend_value(hp, values)
    return blended


def _blend_value(hp: Hyperparameter, values: list[tuple[Any, float]]) -> Any:
    total = sum(weight for _, weight in values)
    if isinstance(hp, Log):
        logs = sum(math.log(value) * weight for value, weight in values)
        return math.exp(logs / total)
    if isinstance(hp, (Categorical, Const)) or not _all_numbers(values):
        return _heaviest(values)
    mean = sum(value * weight for value, weight in values) / total
    return round_half_away(mean) if isinstance(hp, Int) else mean


def _all_numbers(values: list[tuple[Any, float]]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in values)


def _heaviest(values: list[tuple[Any, float]]) -> Any:
    """The value with the largest total weight; on a tie the most recent one."""
    totals: list[list[Any]] = []   # [value, weight, last index]; values may be unhashable
    for index, (value, weight) in enumerate(values):
        for entry in totals:
            if entry[0] == value:
                entry[1] += weight
                entry[2] = index
                break
        else:
            totals.append([value, weight, index])
    return max(totals, key=lambda entry: (entry[1], entry[2]))[0]
