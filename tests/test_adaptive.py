"""Adaptive ASHA: Go-compatible logs, bracket plans worked by hand, routing between brackets."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest

from cade_cli.errors import SpecError
from cade_cli.search.searchers.adaptive import (
    AdaptiveAsha,
    bracket_max_concurrent_trials,
    bracket_max_trials,
    bracket_rung_counts,
    max_rung_count,
    plan_brackets,
)
from cade_cli.search.searchers.base import Create, Shutdown, Stop, Train
from cade_cli.search.searchers.golog import go_log, log_ratio_floor
from cade_cli.search.space import Int, Nested
from cade_cli.spec.experiment import SearcherSpec
from cade_cli.spec.searcher_config import AdaptiveAshaConfig

SPACE = Nested((("x", Int(0, 1000)),))


def adaptive_spec(**overrides: object) -> AdaptiveAshaConfig:
    base = SearcherSpec(name="adaptive_asha", metric="loss", max_trials=100, max_length=1000,
                        divisor=4, mode="standard", max_rungs=5, max_concurrent_trials=16)
    return replace(base, **overrides).config()  # type: ignore[arg-type,return-value]


# -- Go's math.Log ------------------------------------------------------------------------

def test_go_log_ratios_that_differ_from_c() -> None:
    assert go_log(243) / go_log(3) == 5.0
    assert math.log(243) / math.log(3) == 4.999999999999999   # why the port exists
    assert go_log(1000) / go_log(10) == 2.9999999999999996
    assert log_ratio_floor(243, 3) == 5
    assert log_ratio_floor(1000, 10) == 2


@pytest.mark.parametrize("x", [1.0, 2.0, 0.5, 10.0, 1e-300, 1e300, 5e-324, 0.7071, 1.4142])
def test_go_log_is_within_one_ulp_of_c(x: float) -> None:
    assert go_log(x) == pytest.approx(math.log(x), rel=3e-16, abs=0.0)


def test_go_log_special_values() -> None:
    assert go_log(0.0) == -math.inf
    assert go_log(math.inf) == math.inf
    assert math.isnan(go_log(-1.0))
    assert math.isnan(go_log(math.nan))
    assert go_log(1.0) == 0.0


# -- bracket plans --------------------------------------------------------------------------

def test_standard_plan_worked_by_hand() -> None:
    """L 1000, d 4, 100 trials: R = min(5, int(4.98)+1, int(3.32)+1) = 4; standard [2..4].

    weights 4^3/4 = 16, 4^2/3 = 5.33, 4/2 = 2 (total 23.33): int(68.57), int(22.86),
    int(8.57) = 68, 22, 8; the 2 left over go to bracket 0. 16 slots: 6, 5, 5.
    """
    assert max_rung_count(5, 1000, 100, 4) == 4
    brackets = plan_brackets(adaptive_spec())
    assert [b.num_rungs for b in brackets] == [4, 3, 2]
    assert [b.rungs for b in brackets] == [(15, 62, 250, 1000), (62, 250, 1000), (250, 1000)]
    assert [b.max_trials for b in brackets] == [70, 22, 8]
    assert [b.max_concurrent_trials for b in brackets] == [6, 5, 5]


def test_go_log_gives_divisor_3_length_243_six_rungs() -> None:
    spec = adaptive_spec(divisor=3, max_length=243, max_trials=1000, max_rungs=10,
                         mode="aggressive")
    (bracket,) = plan_brackets(spec)
    assert bracket.num_rungs == 6                         # C's log would give 5
    assert bracket.rungs == (1, 3, 9, 27, 81, 243)
    assert bracket_rung_counts(replace(spec, mode="standard")) == [6, 5, 4, 3]


def test_ln1000_over_ln10_truncates_to_two() -> None:
    """R = min(5, int(2.9999999999999996)+1, int(2.9999999999999996)+1) = 3, standard [2, 3].

    weights 10^2/3 = 33.33 and 10/2 = 5 (total 38.33): int(869.57), int(130.43) = 869, 130;
    one left over goes to bracket 0.
    """
    brackets = plan_brackets(adaptive_spec(divisor=10, max_length=1000, max_trials=1000))
    assert [b.num_rungs for b in brackets] == [3, 2]
    assert [b.rungs for b in brackets] == [(10, 100, 1000), (100, 1000)]
    assert [b.max_trials for b in brackets] == [870, 130]
    assert [b.max_concurrent_trials for b in brackets] == [8, 8]


def test_conservative_plan_with_default_concurrency() -> None:
    """d 10, L 1000, 5000 trials: R = 3; conservative [3, 2, 1].

    weights 33.33, 5, 1 (total 39.33): 4237, 635, 127, plus 1 left over to bracket 0.
    max_concurrent_trials 0: every bracket gets max(127, 10).
    """
    spec = adaptive_spec(divisor=10, max_trials=5000, mode="conservative",
                         max_concurrent_trials=0)
    brackets = plan_brackets(spec)
    assert [b.rungs for b in brackets] == [(10, 100, 1000), (100, 1000), (1000,)]
    assert [b.max_trials for b in brackets] == [4238, 635, 127]
    assert [b.max_concurrent_trials for b in brackets] == [127, 127, 127]
    assert [b.initial_trials for b in brackets] == [127, 127, 127]


def test_bracket_rungs_override_is_sorted_descending() -> None:
    """[4, 2], d 4, 20 trials: weights 16 and 2: int(17.78), int(2.22) = 17, 2 (+1 to 0)."""
    brackets = plan_brackets(adaptive_spec(bracket_rungs=(2, 4), max_trials=20,
                                           max_concurrent_trials=3))
    assert [b.num_rungs for b in brackets] == [4, 2]
    assert [b.max_trials for b in brackets] == [18, 2]
    assert [b.max_concurrent_trials for b in brackets] == [2, 1]


def test_single_trial_gives_one_one_rung_bracket() -> None:
    (bracket,) = plan_brackets(adaptive_spec(max_trials=1))
    assert (bracket.num_rungs, bracket.max_trials, bracket.rungs) == (1, 1, (1000,))


@pytest.mark.parametrize(("mct", "trials", "expected"), [
    (16, [70, 22, 8], [6, 5, 5]),
    (1, [70, 22, 8], [1, 1, 1]),      # at least one per bracket
    (7, [5, 5, 5], [3, 2, 2]),
    (0, [70, 22, 8], [8, 8, 8]),      # max(trials of the last bracket, divisor)
    (0, [70, 22, 2], [4, 4, 4]),
])
def test_concurrency_split(mct: int, trials: list[int], expected: list[int]) -> None:
    assert bracket_max_concurrent_trials(mct, 4, trials) == expected


def test_max_trials_split_never_leaves_a_bracket_empty() -> None:
    # weights 51.2, 16, 5.33 (total 72.53): int(2.12) = 2, then at least 1 each. Like
    # Determined, the brackets then hold more trials than max_trials.
    assert bracket_max_trials(3, 4, [5, 4, 3]) == [2, 1, 1]
    assert bracket_max_trials(2, 4, [5, 4, 3]) == [1, 1, 1]


def test_unknown_mode_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="mode"):
        plan_brackets(adaptive_spec(mode="reckless"))


# -- the searcher -----------------------------------------------------------------------------

def small_spec(**overrides: object) -> AdaptiveAshaConfig:
    """Brackets [3 rungs: 2/4/8, 6 trials] and [1 rung: 8, 4 trials], two slots each."""
    return adaptive_spec(bracket_rungs=(1, 3), divisor=2, max_length=8, max_trials=10,
                         max_concurrent_trials=4, **overrides)


def test_brackets_and_initial_trials() -> None:
    brackets = plan_brackets(small_spec())
    assert [(b.rungs, b.max_trials, b.initial_trials) for b in brackets] == [
        ((2, 4, 8), 6, 2), ((8,), 4, 2)]


def test_initial_trials_in_bracket_order_with_global_ids() -> None:
    s = AdaptiveAsha(small_spec(), SPACE, random.Random(2))
    decisions = s.start()
    assert [(d.trial, d.bracket) for d in decisions if isinstance(d, Create)] == [
        (1, 0), (2, 0), (3, 1), (4, 1)]
    assert [d for d in decisions if isinstance(d, Train)] == [
        Train(1, 2, (2,)), Train(2, 2, (2,)), Train(3, 8, (8,)), Train(4, 8, (8,))]


def test_events_go_to_the_owning_bracket() -> None:
    s = AdaptiveAsha(small_spec(), SPACE, random.Random(2))
    s.start()
    stop3 = s.on_validation(3, 8, 0.1)               # bracket 1: one rung, closes at once
    assert stop3[0] == Stop(3)
    assert isinstance(stop3[1], Create) and (stop3[1].trial, stop3[1].bracket) == (5, 1)
    assert stop3[2] == Train(5, 8, (8,))
    grow = s.on_validation(1, 2, 0.5)                # bracket 0, rung 0: nothing promotable
    assert isinstance(grow[0], Create) and (grow[0].trial, grow[0].bracket) == (6, 0)
    assert grow[1] == Train(6, 2, (2,))
    assert s.on_validation(2, 2, 0.4) == [Train(2, 4, (4,))]   # int(2/2) = 1: t2 is best


def test_adaptive_stopping_type_trains_to_max_length() -> None:
    s = AdaptiveAsha(small_spec(stop_once=True), SPACE, random.Random(2))
    trains = [d for d in s.start() if isinstance(d, Train)]
    assert trains == [Train(1, 8, (2, 4, 8)), Train(2, 8, (2, 4, 8)),
                      Train(3, 8, (8,)), Train(4, 8, (8,))]


def test_adaptive_shuts_down_after_the_last_bracket_finishes() -> None:
    spec = adaptive_spec(bracket_rungs=(1, 1), max_length=5, max_trials=2,
                         max_concurrent_trials=2)
    s = AdaptiveAsha(spec, SPACE, random.Random(2))
    s.start()
    assert s.on_validation(1, 5, 0.3) == [Stop(1)]
    assert s.on_validation(2, 5, 0.3) == [Stop(2), Shutdown()]
    assert s.done


def test_adaptive_snapshot_restore() -> None:
    spec = small_spec()
    original = AdaptiveAsha(spec, SPACE, random.Random(9))
    original.start()
    original.on_validation(3, 8, 0.2)
    restored = AdaptiveAsha.restore(spec, SPACE, json.loads(json.dumps(original.snapshot())))
    for trial, metric in [(1, 0.4), (5, 0.1), (2, 0.3)]:
        assert restored.on_validation(trial, 8 if trial == 5 else 2, metric) == \
            original.on_validation(trial, 8 if trial == 5 else 2, metric)
    assert restored.snapshot() == original.snapshot()
