"""`cade preview`: what a spec's search will train, without running anything. Pure.

Like Determined's preview-search: the brackets (rung lengths, trials, concurrency) and, for
each length, how many trials end their training there. ASHA is planned as synchronous
successive halving: of the n trials entering a rung, the top int(n / divisor) go on and the
rest end there (stopping type: at least one goes on, since the first trial to reach a rung
always continues); every trial that enters the top rung ends there. Asynchronous promotion
follows the same rule over the results seen so far, so a better result arriving after the
rung has promoted can be promoted too: a run may end a few more trials at longer rungs
(async_note; `cade simulate` shows one run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from cade_cli.search.searchers import searcher_class
from cade_cli.search.searchers.brackets import BracketConfig
from cade_cli.spec.experiment import ExperimentSpec, handed_target
from cade_cli.spec.searcher_config import (
    AdaptiveAshaConfig,
    HalvingConfig,
    PbtConfig,
    SearcherConfig,
)


@dataclass(frozen=True)
class BracketPlan:
    rungs: tuple[int, ...]          # lengths trained to, one per rung
    max_trials: int
    max_concurrent_trials: int      # trials of this bracket running at once


@dataclass(frozen=True)
class Plan:
    searcher: str
    length_unit: str
    brackets: tuple[BracketPlan, ...]
    ends: tuple[tuple[int, int], ...]   # (length, trials whose training ends there), ascending
    total_length: int | None            # the length trained, all trials together (None: the
                                        # trials decide: no max_length)
    note: str = ""                      # how max_concurrent_trials was applied
    ends_note: str = ""                 # how `ends` was worked out, where it is not exact
    sampler: str = "random"             # searcher.sampler: where new trials' params come from
    bracket_policy: str = ""            # searcher.bracket_policy (adaptive_asha only)

    @property
    def total_trials(self) -> int:
        return sum(trials for _, trials in self.ends)


def preview(spec: ExperimentSpec) -> Plan:
    """The plan of `spec`'s search (any searcher): the searcher plans itself."""
    config = spec.searcher.config()
    plan: Plan = searcher_class(config.name).preview(config, spec.hyperparameters)
    # Only Adaptive ASHA has brackets to choose among (the spec refuses the key elsewhere).
    policy = config.bracket_policy if isinstance(config, AdaptiveAshaConfig) else ""
    return replace(plan, sampler=spec.searcher.sampler, bracket_policy=policy)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "searcher": plan.searcher,
        "length_unit": plan.length_unit,
        "brackets": [{"rungs": [handed_target(r) for r in b.rungs], "max_trials": b.max_trials,
                      "max_concurrent_trials": b.max_concurrent_trials} for b in plan.brackets],
        "plan": [{"length": handed_target(length), "trials": trials} for length, trials in plan.ends],
        "total_length": plan.total_length,
        "total_trials": plan.total_trials,
        "note": plan.note,
        "sampler": plan.sampler,
        **({"bracket_policy": plan.bracket_policy} if plan.bracket_policy else {}),
    }


def async_note(divisor: float) -> str:
    return (f"the top 1/{divisor:g} of each rung go on, as in synchronous successive halving; "
            f"asynchronous ASHA can promote a few more when better results arrive late")


def asha_bracket_ends(config: BracketConfig) -> Counter[int]:
    """Trials ending at each rung length of one bracket (the module docstring's rule)."""
    ends: Counter[int] = Counter()
    entering = config.max_trials
    top = config.num_rungs - 1
    for index, length in enumerate(config.rungs):
        least = 1 if config.stop_once and entering else 0
        continuing = 0 if index == top else max(int(entering / config.divisor), least)
        ends[length] += entering - continuing
        entering = continuing
    return ends


def _sorted_ends(ends: Counter[int]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((length, n) for length, n in ends.items() if n > 0))


def fixed_length_plan(spec: SearcherConfig, length: int, trials: int) -> Plan:
    """Every trial trains to `length` in one segment."""
    concurrency = min(spec.max_concurrent_trials or trials, trials)
    note = (f"max_concurrent_trials {spec.max_concurrent_trials}: {concurrency} "
            f"trial{'s' if concurrency != 1 else ''} at once")
    total = None if handed_target(length) is None else length * trials
    return Plan(spec.name, spec.length_unit, (BracketPlan((length,), trials, concurrency),),
                _sorted_ends(Counter({length: trials})), total, note)


def asha_plan(spec: HalvingConfig, configs: list[BracketConfig]) -> Plan:
    """Every rung of every bracket fills up."""
    ends: Counter[int] = Counter()
    for config in configs:
        ends.update(asha_bracket_ends(config))
    brackets = tuple(BracketPlan(c.rungs, c.max_trials, c.initial_trials) for c in configs)
    total = sum(length * n for length, n in ends.items())
    return Plan(spec.name, spec.length_unit, brackets, _sorted_ends(ends), total,
                _asha_concurrency_note(spec, configs),
                ends_note=async_note(configs[0].divisor))


def _asha_concurrency_note(spec: HalvingConfig, configs: list[BracketConfig]) -> str:
    running = [c.initial_trials for c in configs]
    mct = spec.max_concurrent_trials
    if len(configs) == 1:
        c = configs[0]
        if mct == 0:
            return (f"max_concurrent_trials 0: divisor**(num_rungs-1) = "
                    f"{c.divisor ** (c.num_rungs - 1)}, clamped to [1, max_trials]: "
                    f"{running[0]} at once")
        return f"max_concurrent_trials {mct} (at most max_trials): {running[0]} at once"
    split = [c.max_concurrent_trials for c in configs]
    if mct == 0:
        how = (f"max_concurrent_trials 0: each bracket may run max(trials of the last bracket, "
               f"divisor) = {split[0]}")
    else:
        how = (f"max_concurrent_trials {mct} split over {len(configs)} brackets as "
               f"{' + '.join(map(str, split))} (remainder to the first)")
    return (f"{how}; running at once (at most each bracket's max_trials): "
            f"{' + '.join(map(str, running))}")


def pbt_plan(spec: PbtConfig, population: int, rounds: int, per_round: int) -> Plan:
    """`rounds` rounds of `per_round` each for a population of `population`."""
    # Each round the worst `truncated` close and as many children of the best start from
    # their parents' checkpoints; a child's length counts its parent's training too.
    truncated = min(int(spec.truncate_fraction * population), population // 2)
    ends: Counter[int] = Counter()
    for k in range(1, rounds):
        ends[per_round * k] += truncated
    ends[per_round * rounds] += population
    lengths = tuple(per_round * k for k in range(1, rounds + 1))
    trials = population + truncated * (rounds - 1)
    note = (f"{population} trials train {per_round} per round, all at once; after each of "
            f"the first {rounds - 1} rounds the worst {truncated} close and as many children "
            f"of the best start from their parents' checkpoints")
    return Plan(spec.name, spec.length_unit, (BracketPlan(lengths, trials, population),),
                _sorted_ends(ends), population * rounds * per_round, note)
