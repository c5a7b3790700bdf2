"""Asynchronous successive halving (ASHA), Determined-compatible. Pure.

Two types, chosen by `stop_once`:
- stopping type (Determined 0.38): every trial trains to max_length in one segment and
  reports at each rung length; a trial that does not rank in the top 1/divisor of a rung
  when it arrives there is stopped.
- promotion type (Determined <= 0.37, the ASHA paper): a trial trains to its rung's length
  and waits; the best 1/divisor of each rung are promoted and resume from their checkpoint.

A bracket holds one ASHA run over one rung ladder. `AsyncHalving` drives one bracket;
Adaptive ASHA (adaptive.py) drives several that share trial ids and the RNG.
Every metric is minimised internally (`m` or `-m`).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, TypeVar

from cade_cli.errors import SpecError
from cade_cli.search.plan import Plan, asha_plan
from cade_cli.search.samplers import load_sampler_state, make_sampler, sampler_state
from cade_cli.search.searchers.base import (
    Decision,
    ExitReason,
    SearcherFacts,
    Shutdown,
    check_snapshot,
    snapshot_header,
)
from cade_cli.search.searchers.bracket_policy import LearnedPolicy
from cade_cli.search.searchers.brackets import (
    Bracket,
    BracketConfig,
    TrialFactory,
    make_bracket,
    minimised,
)
from cade_cli.search.searchers.simple import require, rng_from_json, rng_state_to_json
from cade_cli.search.space import Space
from cade_cli.spec.searcher_config import AshaConfig, HalvingConfig

# The class a classmethod is called on (typing.Self needs Python 3.11).
_Search = TypeVar("_Search", bound="BracketSearch")


class BracketSearch:
    """Drives one or more brackets: routes events, shares ids, emits Shutdown once."""

    searcher_name: ClassVar[str] = ""

    def __init__(self, searcher_spec: HalvingConfig, space: Space, rng: random.Random) -> None:
        self.searcher_spec = searcher_spec
        configs = self.bracket_configs(searcher_spec)
        # The sampler groups results by rung length, over all brackets.
        levels = tuple(sorted({length for config in configs for length in config.rungs}))
        self.factory = TrialFactory(space, rng, make_sampler(searcher_spec.sampler, space, levels))
        self.brackets = [make_bracket(i, config, self.factory)
                         for i, config in enumerate(configs)]
        if searcher_spec.bracket_policy == "learned":
            self.factory.policy = LearnedPolicy(self.brackets, self.factory.sampler)
        self.started = False
        self.done = False

    @classmethod
    def bracket_configs(cls, spec: HalvingConfig) -> list[BracketConfig]:
        raise NotImplementedError

    @classmethod
    def facts(cls, spec: HalvingConfig) -> SearcherFacts:
        # A promotion-type bracket raises a promoted trial's target; its job trains on.
        return SearcherFacts(ladders=tuple(c.rungs for c in cls.bracket_configs(spec)),
                             final_length=spec.max_length, continues_in_place=not spec.stop_once,
                             max_trials=require(spec, "max_trials"))

    @classmethod
    def preview(cls, spec: HalvingConfig, space: Space) -> Plan:
        return asha_plan(spec, cls.bracket_configs(spec))

    def start(self) -> list[Decision]:
        if self.started:
            return []
        self.started = True
        return self._settle([d for bracket in self.brackets for d in bracket.start()])

    def on_validation(self, trial: int, length: float, metric: float) -> list[Decision]:
        bracket = self._owner(trial)
        if self.done:
            return []
        value = minimised(metric, self.searcher_spec.smaller_is_better)
        self.factory.sampler.observe(trial, length, value)  # before it proposes again
        if self.factory.policy:
            self.factory.policy.observe(trial, length, value)
        return self._settle(bracket.on_validation(trial, length, value))

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        bracket = self._owner(trial)
        if self.done:
            return []
        self.factory.sampler.exited(trial, ExitReason(reason))
        return self._settle(bracket.on_exit(trial, ExitReason(reason)))

    def progress(self) -> float:
        if self.done:
            return 1.0
        return sum(b.progress() for b in self.brackets) / len(self.brackets)

    def _owner(self, trial: int) -> Bracket:
        for bracket in self.brackets:
            if bracket.owns(trial):
                return bracket
        raise ValueError(f"trial {trial} was not created by this searcher")

    def _settle(self, decisions: list[Decision]) -> list[Decision]:
        if self.started and not self.done and all(b.finished for b in self.brackets):
            self.done = True
            decisions.append(Shutdown())
        return decisions

    def snapshot(self) -> dict[str, Any]:
        return {
            **snapshot_header(self.searcher_name),
            "started": self.started,
            "done": self.done,
            "next_trial": self.factory.next_trial,
            "rng": rng_state_to_json(self.factory.rng),
            "brackets": [bracket.to_json() for bracket in self.brackets],
            **sampler_state(self.factory.sampler),
            # Only the learned bracket policy moves trials between brackets.
            **({"bracket_policy": self.factory.policy.to_json()} if self.factory.policy else {}),
        }

    @classmethod
    def restore(cls: type[_Search], searcher_spec: HalvingConfig, space: Space,
                snapshot: dict[str, Any]) -> _Search:
        check_snapshot(snapshot, cls.searcher_name)
        searcher = cls(searcher_spec, space, rng_from_json(snapshot["rng"]))
        if len(snapshot["brackets"]) != len(searcher.brackets):
            raise ValueError("snapshot does not match the searcher's brackets")
        searcher.factory.next_trial = int(snapshot["next_trial"])
        searcher.started = bool(snapshot["started"])
        searcher.done = bool(snapshot["done"])
        for bracket, state in zip(searcher.brackets, snapshot["brackets"]):
            bracket.load_json(state)
        load_sampler_state(searcher.factory.sampler, snapshot)
        if searcher.factory.policy:
            searcher.factory.policy.load_json(snapshot["bracket_policy"])
        return searcher


class AsyncHalving(BracketSearch):
    """`async_halving`: one bracket of `num_rungs` rungs."""

    searcher_name = "async_halving"

    @classmethod
    def bracket_configs(cls, spec: AshaConfig) -> list[BracketConfig]:  # type: ignore[override]
        return [asha_bracket_config(spec)]


def validate_ladder(spec: HalvingConfig) -> tuple[int, int]:
    """(max_length, divisor) after checking them."""
    max_length = require(spec, "max_length")
    if spec.divisor < 2:
        raise SpecError(f"searcher.divisor must be at least 2 (got {spec.divisor!r})",
                        hint="Determined's default is 4")
    return max_length, spec.divisor


def asha_bracket_config(spec: AshaConfig) -> BracketConfig:
    max_length, divisor = validate_ladder(spec)
    if spec.max_concurrent_trials < 0:
        raise SpecError("searcher.max_concurrent_trials must be 0 (as many as useful) or more")
    return BracketConfig(
        num_rungs=require(spec, "num_rungs"),
        max_trials=require(spec, "max_trials"),
        max_concurrent_trials=spec.max_concurrent_trials,
        divisor=divisor,
        max_length=max_length,
        stop_once=spec.stop_once,
    )
