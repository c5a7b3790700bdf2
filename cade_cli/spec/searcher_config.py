"""Each searcher's own config type, built from the stored `SearcherSpec`. Pure.

`SearcherSpec` (spec/experiment.py) is the flat record the ledger keeps; `config_for` turns
it into the frozen config of the named searcher, holding only that searcher's fields, its
required ones checked. A config type also states the facts about its searcher that code
outside `search/` needs before a searcher exists (whether it walks the grid, whether it
samples new params), so nobody has to switch on a searcher's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from cade_cli.errors import SpecError


@dataclass(frozen=True)
class SearcherConfig:
    """What every searcher reads."""

    name: ClassVar[str] = ""
    walks_grid: ClassVar[bool] = False    # one trial per point of the hyperparameter grid
    samples: ClassVar[bool] = False       # new trials take params from `sampler`
    required: ClassVar[tuple[str, ...]] = ()   # counts the spec must give (each >= 1)

    metric: str
    smaller_is_better: bool = True
    max_concurrent_trials: int = 16       # 0 = as many as possible
    sampler: str = "random"
    length_unit: str = "batches"


@dataclass(frozen=True)
class FixedLengthConfig(SearcherConfig):
    """Every trial trains to `max_length` in one segment; without it (optional since
    Determined 0.38) each trial's own code decides its length."""

    max_length: int | None = None


@dataclass(frozen=True)
class SingleConfig(FixedLengthConfig):
    name: ClassVar[str] = "single"


@dataclass(frozen=True)
class GridConfig(FixedLengthConfig):
    name: ClassVar[str] = "grid"
    walks_grid: ClassVar[bool] = True


@dataclass(frozen=True)
class RandomConfig(FixedLengthConfig):
    name: ClassVar[str] = "random"
    samples: ClassVar[bool] = True
    required: ClassVar[tuple[str, ...]] = ("max_trials",)

    max_trials: int = 0


@dataclass(frozen=True)
class HalvingConfig(SearcherConfig):
    """Successive halving over rung ladders; `stop_once` picks the stopping type (True) or
    the promotion type (False)."""

    samples: ClassVar[bool] = True
    required: ClassVar[tuple[str, ...]] = ("max_length", "max_trials")

    max_length: int = 0                   # or max_time, with time_metric
    max_trials: int = 0
    divisor: int = 4
    stop_once: bool = False
    bracket_policy: str = "fixed"         # learned: Adaptive ASHA only (the spec refuses it elsewhere)


@dataclass(frozen=True)
class AshaConfig(HalvingConfig):
    name: ClassVar[str] = "async_halving"
    required: ClassVar[tuple[str, ...]] = ("max_length", "max_trials", "num_rungs")

    num_rungs: int = 0


@dataclass(frozen=True)
class AdaptiveAshaConfig(HalvingConfig):
    name: ClassVar[str] = "adaptive_asha"

    mode: str = "standard"                # aggressive | standard | conservative
    max_rungs: int = 5
    bracket_rungs: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PbtConfig(SearcherConfig):
    name: ClassVar[str] = "pbt"
    required: ClassVar[tuple[str, ...]] = ("population_size", "num_rounds", "length_per_round")

    population_size: int = 0
    num_rounds: int = 0
    length_per_round: int = 0
    truncate_fraction: float = 0.2
    resample_probability: float = 0.2
    perturb_factor: float = 0.2


CONFIG_TYPES: dict[str, type[SearcherConfig]] = {
    kind.name: kind for kind in (SingleConfig, GridConfig, RandomConfig, AshaConfig,
                                 AdaptiveAshaConfig, PbtConfig)
}


def config_type(name: str) -> type[SearcherConfig]:
    if name not in CONFIG_TYPES:
        raise SpecError(f"unknown searcher {name!r}", hint=f"choose one of: {', '.join(CONFIG_TYPES)}")
    return CONFIG_TYPES[name]


def config_for(searcher_spec: Any) -> SearcherConfig:
    """The config of `searcher_spec.name`'s searcher, from the spec's fields of that name."""
    kind = config_type(searcher_spec.name)
    for key in kind.required:
        required_count(searcher_spec, key)
    return kind(**{field.name: getattr(searcher_spec, field.name) for field in dataclasses.fields(kind)})


def required_count(searcher_spec: Any, key: str) -> int:
    """`searcher_spec.<key>`, a count it must give. The spec loader reports a missing one with
    file:line; this guards specs and configs built in code."""
    value = getattr(searcher_spec, key)
    if value is None:
        raise SpecError(f"searcher.{key} is required for the {searcher_spec.name} searcher")
    if value < 1:
        raise SpecError(f"searcher.{key} must be at least 1, got {value}")
    return int(value)
