"""Adaptive ASHA: several ASHA brackets with different rung counts, Determined-compatible.

The brackets share trial ids (1-based, global) and the RNG; each event goes to the bracket
that created the trial, and Create decisions carry the bracket index.
"""

from __future__ import annotations

from dataclasses import replace

from cade_cli.errors import SpecError
from cade_cli.search.searchers.asha import BracketSearch, validate_ladder
from cade_cli.search.searchers.brackets import BracketConfig
from cade_cli.search.searchers.golog import log_ratio_floor
from cade_cli.search.searchers.simple import require
from cade_cli.spec.searcher_config import AdaptiveAshaConfig

MODES = ("aggressive", "standard", "conservative")


def max_rung_count(max_rungs: int, max_length: int, max_trials: int, divisor: int) -> int:
    """R = min(max_rungs, int(ln L / ln d) + 1, int(ln max_trials / ln d) + 1).

    The logs are Go's (see golog.py): ln(243)/ln(3) is exactly 5.0 there, and
    ln(1000)/ln(10) is 2.9999999999999996, which truncates to 2. Determined's plans depend
    on both, so they are kept.
    """
    by_length = log_ratio_floor(max_length, divisor) + 1
    by_trials = log_ratio_floor(max_trials, divisor) + 1
    return min(max_rungs, by_length, by_trials)


def mode_rungs(mode: str, max_rungs: int) -> list[int]:
    """Rung counts of the brackets a mode asks for, before ordering."""
    if mode == "aggressive":
        return [max_rungs]
    if mode == "standard":
        return list(range((max_rungs - 1) // 2 + 1, max_rungs + 1))
    if mode == "conservative":
        return list(range(1, max_rungs + 1))
    raise SpecError(f"searcher.mode must be one of {', '.join(MODES)} (got {mode!r})")


def bracket_max_trials(max_trials: int, divisor: int, brackets: list[int]) -> list[int]:
    """Split max_trials so that each bracket gets roughly the same total training budget."""
    weights = [divisor ** (rungs - 1) / rungs for rungs in brackets]
    total = 0.0
    for weight in weights:  # summed left to right, like Determined (no compensated sum)
        total += weight
    trials = [max(int(weight / total * max_trials), 1) for weight in weights]
    trials[0] += max(max_trials - sum(trials), 0)
    return trials


def bracket_max_concurrent_trials(max_concurrent_trials: int, divisor: int,
                                  trials: list[int]) -> list[int]:
    """Split max_concurrent_trials over the brackets, remainder to the first ones."""
    count = len(trials)
    if max_concurrent_trials == 0:
        return [max(trials[-1], divisor)] * count
    total = max(max_concurrent_trials, count)  # every bracket runs at least one trial
    split = [total // count] * count
    for i in range(total % count):
        split[i] += 1
    return split


def bracket_rung_counts(spec: AdaptiveAshaConfig) -> list[int]:
    """Rung count of each bracket, most early stopping first."""
    max_length, divisor = validate_ladder(spec)
    max_trials = require(spec, "max_trials")
    if spec.bracket_rungs:
        counts = list(spec.bracket_rungs)
        if any(count < 1 for count in counts):
            raise SpecError(f"searcher.bracket_rungs must list positive rung counts "
                            f"(got {counts})")
    else:
        if spec.max_rungs < 1:
            raise SpecError(f"searcher.max_rungs must be at least 1 (got {spec.max_rungs})")
        counts = mode_rungs(spec.mode, max_rung_count(spec.max_rungs, max_length, max_trials,
                                                      divisor))
    if spec.bracket_policy == "learned" and 1 not in counts:
        counts.append(1)  # the bracket that stops nothing: where misleading rungs send trials
    return sorted(counts, reverse=True)


def plan_brackets(spec: AdaptiveAshaConfig) -> list[BracketConfig]:
    """The brackets Adaptive ASHA runs for this spec (the same as Determined's)."""
    max_length, divisor = validate_ladder(spec)
    max_trials = require(spec, "max_trials")
    if spec.max_concurrent_trials < 0:
        raise SpecError("searcher.max_concurrent_trials must be 0 (as many as useful) or more")
    counts = bracket_rung_counts(spec)
    trials = bracket_max_trials(max_trials, divisor, counts)
    concurrency = bracket_max_concurrent_trials(spec.max_concurrent_trials, divisor, trials)
    configs = [
        BracketConfig(num_rungs=rungs, max_trials=n, max_concurrent_trials=m, divisor=divisor,
                      max_length=max_length, stop_once=spec.stop_once)
        for rungs, n, m in zip(counts, trials, concurrency)
    ]
    if spec.bracket_policy == "learned":  # every trial also reports at the shorter rungs
        probes = tuple(sorted({length for c in configs for length in c.rungs[:-1]}))
        configs = [replace(c, probe_lengths=probes) for c in configs]
    return configs


class AdaptiveAsha(BracketSearch):
    """`adaptive_asha`: the brackets of `plan_brackets`, run side by side."""

    searcher_name = "adaptive_asha"

    @classmethod
    def bracket_configs(cls, spec: AdaptiveAshaConfig) -> list[BracketConfig]:  # type: ignore[override]
        return plan_brackets(spec)
