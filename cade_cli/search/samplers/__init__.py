"""Samplers: where a searcher's new trials get their params (`searcher.sampler`).

`random` (the default) draws them as Determined does; `tpe` proposes them from a density
model of the reported results (tpe.py). A sampler is pure: the searcher passes its RNG to
`propose`, reports results (`observe`, minimised) and exits to it, and keeps its
`to_json()` state in the searcher's snapshot.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from cade_cli.errors import SpecError
from cade_cli.search.searchers.base import ExitReason
from cade_cli.search.space import Space
from cade_cli.spec.sampler import DEFAULT_SAMPLER, SAMPLER_NAMES, SAMPLING_SEARCHERS

__all__ = [
    "DEFAULT_SAMPLER",
    "SAMPLER_NAMES",
    "SAMPLING_SEARCHERS",
    "Sampler",
    "describe_sampler",
    "load_sampler_state",
    "make_sampler",
    "sampler_state",
]



class Sampler(Protocol):
    name: str
    builds_model: bool   # whether proposals come from a model of the results

    def propose(self, trial: int, rng: random.Random) -> dict[str, Any]: ...

    def observe(self, trial: int, length: float, value: float) -> None: ...

    def exited(self, trial: int, reason: ExitReason) -> None: ...

    def model_on_long_levels(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...

    def load_json(self, state: dict[str, Any]) -> None: ...


def make_sampler(name: str, space: Space, levels: tuple[int, ...]) -> Sampler:
    """A fresh sampler; `levels` are the lengths results are grouped by (rung lengths)."""
    if name == "random":
        from cade_cli.search.samplers.random import RandomSampler
        return RandomSampler(space, levels)
    if name == "tpe":
        from cade_cli.search.samplers.tpe import TpeSampler
        return TpeSampler(space, levels)
    raise SpecError(f"unknown sampler {name!r}", hint=f"choose one of: {', '.join(SAMPLER_NAMES)}")


def sampler_state(sampler: Sampler) -> dict[str, Any]:
    """The snapshot entries for `sampler`: none for the default, so that a searcher with
    the default sampler writes exactly the snapshots it wrote before samplers existed."""
    if sampler.name == DEFAULT_SAMPLER:
        return {}
    return {"sampler": sampler.to_json()}


def load_sampler_state(sampler: Sampler, snapshot: dict[str, Any]) -> None:
    """Restore what `sampler_state` put into a searcher snapshot."""
    if sampler.name == DEFAULT_SAMPLER:
        return
    if "sampler" not in snapshot:
        raise ValueError(f"the snapshot holds no state of the {sampler.name!r} sampler")
    sampler.load_json(snapshot["sampler"])


def describe_sampler(name: str) -> str:
    """One line for `cade preview`: what the sampler does, and the other choice."""
    if name == "tpe":
        from cade_cli.search.samplers.tpe import describe
        return describe()
    return ("random: new trials' params are drawn at random (Determined's behaviour); "
            "`sampler: tpe` proposes them from a model of the reported results")
