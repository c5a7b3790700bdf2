"""Objective functions for `cade simulate`: synthetic learning curves to try a search on.

An objective is `FUNC(params: dict, length: int, trial: int) -> float`, the validation
metric (here a loss: smaller is better) a trial reports after training to `length`.
These work with any search space: every hyperparameter moves the curve smoothly (numbers)
or by a fixed amount (other values), through a hidden optimum derived from its name.
Results depend only on the arguments (a local RNG is seeded from them), so simulations are
reproducible. Copy one into your own module as a starting point:

    cade simulate examples/asha.yaml --objective cade_cli.search.objectives:power_law
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

from cade_cli.search.space import flatten

NOISE = 0.01            # standard deviation of the per-report noise
UNSTABLE_SHARE = 0.2    # share of the params for which `unstable_power_law` fails


def _unit_hash(*parts: Any) -> float:
    """A stable number in [0, 1) for the given values (independent of PYTHONHASHSEED)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _badness(name: str, value: Any) -> float:
    """How far one hyperparameter value is from its hidden optimum, in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _unit_hash(name, value)
    # On a log-like scale, so that 1e-4 vs 1e-2 matters as much as 10 vs 1000.
    scaled = math.copysign(math.log10(1.0 + abs(value) * 1e4), value)
    phase = 2 * math.pi * _unit_hash(name)
    return (1.0 + math.sin(scaled * 0.9 + phase)) / 2.0


def quality(params: dict[str, Any]) -> float:
    """Mean badness of the params, in [0, 1]; 0 is the best possible configuration."""
    flat = flatten(params)
    if not flat:
        return 0.5
    return sum(_badness(name, value) for name, value in flat.items()) / len(flat)


def power_law(params: dict[str, Any], length: int, trial: int) -> float:
    """A noisy power-law loss curve: asymptote and speed depend on the params.

    loss = floor + 2 * (1 + length)^-speed + noise, with floor in [0.05, 0.85] and speed in
    [0.25, 0.65]; better params give a lower floor and a faster descent, so early lengths
    already rank configurations (imperfectly, as real curves do).
    """
    badness = quality(params)
    floor = 0.05 + 0.8 * badness
    speed = 0.25 + 0.4 * (1.0 - _unit_hash("speed", params) * 0.5 - badness * 0.5)
    rng = random.Random(f"{_unit_hash(params, length, trial)}")
    return floor + 2.0 * float((1.0 + length) ** -speed) + rng.gauss(0.0, NOISE)


def unstable_power_law(params: dict[str, Any], length: int, trial: int) -> float:
    """`power_law`, except that about 20% of the params diverge: the trial raises.

    Shows how a search treats trials that exit early (they count as the worst result).
    """
    if _unit_hash("unstable", params) < UNSTABLE_SHARE and length > 1:
        raise FloatingPointError(f"loss diverged at length {length}")
    return power_law(params, length, trial)
