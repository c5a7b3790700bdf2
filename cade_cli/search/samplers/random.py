"""The default sampler: params drawn at random, exactly as Determined's searchers draw them.

It takes from the RNG exactly what `space.sample` takes and keeps no state, so a searcher
using it makes the same decisions, and writes the same snapshots, as one without samplers.
"""

from __future__ import annotations

import random
from typing import Any

from cade_cli.search.searchers.base import ExitReason
from cade_cli.search.space import Space, sample


class RandomSampler:
    name = "random"
    builds_model = False

    def __init__(self, space: Space, levels: tuple[int, ...]) -> None:
        self.space = space

    def propose(self, trial: int, rng: random.Random) -> dict[str, Any]:
        return sample(self.space, rng)

    def observe(self, trial: int, length: float, value: float) -> None:
        """Random sampling learns nothing from results."""

    def exited(self, trial: int, reason: ExitReason) -> None:
        """Random sampling learns nothing from exits."""

    def model_on_long_levels(self) -> bool:
        """No model, so none built on the longest levels."""
        return False

    def to_json(self) -> dict[str, Any]:
        return {"sampler": self.name}

    def load_json(self, state: dict[str, Any]) -> None:
        """No state to load."""
