"""ASHA (stopping and promotion types): the worked examples of the searcher semantics."""

from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import replace

import pytest

from cade_cli.errors import SpecError
from cade_cli.search.searchers.asha import AsyncHalving
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.searchers.brackets import initial_trial_count, rung_lengths
from cade_cli.search.space import Int, Nested
from cade_cli.spec.experiment import SearcherSpec
from cade_cli.spec.searcher_config import AshaConfig

SPACE = Nested((("x", Int(0, 1000)),))
WORST = sys.float_info.max


def asha_spec(**overrides: object) -> AshaConfig:
    base = SearcherSpec(name="async_halving", metric="loss", num_rungs=3, divisor=3,
                        max_length=9, max_trials=6, max_concurrent_trials=2)
    return replace(base, **overrides).config()  # type: ignore[arg-type,return-value]


def shape(decisions: list[Decision]) -> list[object]:
    """Decisions without the sampled params, for comparison with hand-worked lists."""
    return [("create", d.trial, d.bracket) if isinstance(d, Create) else d for d in decisions]


def rung_entries(searcher: AsyncHalving, rung: int) -> list[tuple[int, float]]:
    return [(t, v) for t, v, _ in searcher.snapshot()["brackets"][0]["rungs"][rung]]


# -- rungs and concurrency -----------------------------------------------------------------

@pytest.mark.parametrize(("num_rungs", "divisor", "max_length", "expected"), [
    (3, 3, 9, (1, 3, 9)),
    (4, 2, 10, (1, 2, 5, 10)),
    (3, 3, 900, (100, 300, 900)),
    (3, 4, 2, (1, 1, 2)),          # never below 1
    (1, 4, 50, (50,)),
])
def test_rung_lengths(num_rungs: int, divisor: int, max_length: int,
                      expected: tuple[int, ...]) -> None:
    assert rung_lengths(num_rungs, divisor, max_length) == expected


@pytest.mark.parametrize(("mct", "max_trials", "divisor", "num_rungs", "expected"), [
    (16, 100, 4, 3, 16),
    (16, 5, 4, 3, 5),
    (0, 100, 4, 3, 16),   # divisor ** (num_rungs - 1)
    (0, 10, 4, 3, 10),    # clamped to max_trials
    (0, 10, 4, 1, 1),
])
def test_initial_trial_count(mct: int, max_trials: int, divisor: int, num_rungs: int,
                             expected: int) -> None:
    assert initial_trial_count(mct, max_trials, divisor, num_rungs) == expected


def test_start_creates_the_initial_trials_with_one_based_ids() -> None:
    promotion = AsyncHalving(asha_spec(max_concurrent_trials=0, max_trials=20),
                             SPACE, random.Random(1))
    decisions = promotion.start()
    assert shape(decisions)[::2] == [("create", t, 0) for t in range(1, 10)]
    assert decisions[1::2] == [Train(t, 1, (1,)) for t in range(1, 10)]
    stopping = AsyncHalving(asha_spec(stop_once=True), SPACE, random.Random(1))
    assert stopping.start()[1::2] == [Train(1, 9, (1, 3, 9)), Train(2, 9, (1, 3, 9))]


def test_missing_settings_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="num_rungs"):
        AsyncHalving(asha_spec(num_rungs=None), SPACE, random.Random(1))
    with pytest.raises(SpecError, match="max_trials"):
        AsyncHalving(asha_spec(max_trials=None), SPACE, random.Random(1))


# -- stopping type -------------------------------------------------------------------------

def stopping(**overrides: object) -> AsyncHalving:
    searcher = AsyncHalving(asha_spec(stop_once=True, max_trials=10, **overrides),
                            SPACE, random.Random(7))
    searcher.start()
    return searcher


def test_stopping_worked_case_first_report_moves_up() -> None:
    s = stopping()
    assert s.on_validation(1, 1, 0.5) == []                       # (i)
    assert rung_entries(s, 0) == [(1, 0.5)]
    assert s.snapshot()["brackets"][0]["trial_rung"] == [[1, 1], [2, 0]]


def test_stopping_worked_case_better_newcomer_continues() -> None:
    s = stopping()
    s.on_validation(1, 1, 0.5)
    assert s.on_validation(2, 1, 0.4) == []                       # (ii)
    assert rung_entries(s, 0) == [(2, 0.4), (1, 0.5)]
    assert s.snapshot()["brackets"][0]["trial_rung"] == [[1, 1], [2, 1]]


def test_stopping_worked_case_worse_newcomer_stops_and_is_replaced() -> None:
    s = stopping()
    s.on_validation(1, 1, 0.5)
    assert shape(s.on_validation(2, 1, 0.6)) == [Stop(2), ("create", 3, 0),  # (iii)
                                                 Train(3, 9, (1, 3, 9))]


def test_stopping_newcomer_ranks_ahead_of_ties() -> None:
    s = stopping()
    s.on_validation(1, 1, 0.5)
    assert s.on_validation(2, 1, 0.5) == []
    assert rung_entries(s, 0) == [(2, 0.5), (1, 0.5)]


def test_stopping_one_report_can_pass_several_rungs_and_reach_the_top() -> None:
    s = stopping()
    assert shape(s.on_validation(1, 9, 0.1)) == [Stop(1), ("create", 3, 0),
                                                 Train(3, 9, (1, 3, 9))]
    assert [rung_entries(s, r) for r in range(3)] == [[(1, 0.1)]] * 3


def test_stopping_larger_is_better_flips_the_ranking() -> None:
    s = stopping(smaller_is_better=False)
    s.on_validation(1, 1, 0.5)
    assert Stop(2) in s.on_validation(2, 1, 0.4)   # would continue were smaller better
    assert rung_entries(s, 0) == [(1, -0.5), (2, -0.4)]


def test_stopping_reports_after_a_stop_are_ignored() -> None:
    s = stopping()
    s.on_validation(1, 1, 0.5)
    s.on_validation(2, 1, 0.6)
    assert s.on_validation(2, 3, 0.1) == []
    assert s.on_exit(2, ExitReason.CANCELED) == []


def test_stopping_early_exit_counts_as_worst_at_its_rung() -> None:
    s = stopping()
    s.on_validation(1, 1, 0.5)             # t1 now works towards rung 1
    assert shape(s.on_exit(1, ExitReason.ERRORED)) == [("create", 3, 0),
                                                       Train(3, 9, (1, 3, 9))]
    assert rung_entries(s, 1) == [(1, WORST)]


def test_stopping_invalid_hp_is_forgotten_and_always_replaced() -> None:
    s = AsyncHalving(asha_spec(stop_once=True, max_trials=2), SPACE, random.Random(3))
    s.start()
    s.on_validation(1, 1, 0.5)
    assert shape(s.on_exit(1, ExitReason.INVALID_HP)) == [("create", 3, 0),
                                                          Train(3, 9, (1, 3, 9))]
    assert rung_entries(s, 0) == []
    assert s.on_validation(2, 1, 0.7) == []          # alone on rung 0 again: continues
    # trials 2 and 3 use up max_trials 2 (the invalid one does not count): no new trial
    assert s.on_validation(3, 1, 0.9) == [Stop(3)]
    assert not s.done


def test_stopping_shuts_down_once_when_every_trial_is_closed() -> None:
    s = AsyncHalving(asha_spec(stop_once=True, max_trials=2, max_concurrent_trials=2),
                     SPACE, random.Random(3))
    s.start()
    assert s.on_validation(1, 1, 0.5) == []
    assert s.on_validation(2, 1, 0.6) == [Stop(2)]
    assert s.on_validation(1, 9, 0.2) == [Stop(1), Shutdown()]
    assert s.done and s.progress() == 1.0
    assert s.on_validation(1, 9, 0.2) == []


# -- promotion type ------------------------------------------------------------------------

def test_promotion_sequence_worked_by_hand() -> None:
    """rungs [1, 3, 9], divisor 3, max_trials 6, two at a time."""
    s = AsyncHalving(asha_spec(), SPACE, random.Random(5))
    assert shape(s.start()) == [("create", 1, 0), Train(1, 1, (1,)),
                                ("create", 2, 0), Train(2, 1, (1,))]
    # n=1, n=2: nothing is promotable yet; each report makes room for a new trial
    assert shape(s.on_validation(1, 1, 0.5)) == [("create", 3, 0), Train(3, 1, (1,))]
    assert shape(s.on_validation(2, 1, 0.4)) == [("create", 4, 0), Train(4, 1, (1,))]
    # n=3: one promotable, and the newcomer is the best: promoted at once (no new trial)
    assert s.on_validation(3, 1, 0.3) == [Train(3, 3, (3,))]
    assert shape(s.on_validation(4, 1, 0.45)) == [("create", 5, 0), Train(5, 1, (1,))]
    assert shape(s.on_validation(5, 1, 0.6)) == [("create", 6, 0), Train(6, 1, (1,))]
    # n=6: two promotable; t6 ties t2 and goes after it, so the entry at position
    # old=1 (t2) is promoted. Rung 0 is full and has no outstanding work: close the rest.
    assert s.on_validation(6, 1, 0.4) == [Train(2, 3, (3,)), Stop(6), Stop(4), Stop(1),
                                          Stop(5)]
    assert rung_entries(s, 0) == [(3, 0.3), (2, 0.4), (6, 0.4), (4, 0.45), (1, 0.5),
                                  (5, 0.6)]
    # rung 1 holds two results: int(2/3) = 0 promotable; closed once nothing is outstanding
    assert s.on_validation(3, 3, 0.2) == []
    assert s.on_validation(2, 3, 0.35) == [Stop(3), Stop(2), Shutdown()]
    assert s.done


def test_promotion_ignores_intermediate_and_repeated_reports() -> None:
    s = AsyncHalving(asha_spec(max_length=90), SPACE, random.Random(5))   # rungs 10/30/90
    s.start()
    assert s.on_validation(1, 5, 0.1) == []          # before the rung length
    assert shape(s.on_validation(1, 10, 0.5)) == [("create", 3, 0), Train(3, 10, (10,))]
    assert s.on_validation(1, 10, 0.1) == []         # waiting: no segment in flight


def test_promotion_early_exits_rank_worst_and_promoted_exits_fall_through() -> None:
    s = AsyncHalving(asha_spec(max_trials=3, max_concurrent_trials=3), SPACE,
                     random.Random(5))
    s.start()
    assert s.on_exit(1, ExitReason.ERRORED) == []
    assert s.on_exit(2, ExitReason.CANCELED) == []
    # n=3: position old=0 holds exited t1: it is "promoted" and at once ranks worst on
    # rung 1; then everything is closed (no Stop for exited trials) and the search ends.
    assert s.on_exit(3, ExitReason.ERRORED) == [Shutdown()]
    assert rung_entries(s, 0) == [(1, WORST), (2, WORST), (3, WORST)]
    assert rung_entries(s, 1) == [(1, WORST)]


def test_promotion_top_rung_report_closes_the_trial() -> None:
    s = AsyncHalving(asha_spec(num_rungs=2, divisor=2, max_length=4, max_trials=2,
                               max_concurrent_trials=1), SPACE, random.Random(5))
    assert s.start()[1:] == [Train(1, 2, (2,))]
    assert shape(s.on_validation(1, 2, 0.3)) == [("create", 2, 0), Train(2, 2, (2,))]
    # n=2: int(2/2) = 1 promotable; t2 is worse, so t1 (position old=0) goes up.
    # Rung 0 is full with nothing outstanding: t2 is closed.
    assert s.on_validation(2, 2, 0.4) == [Train(1, 4, (4,)), Stop(2)]
    assert s.on_validation(1, 4, 0.1) == [Stop(1), Shutdown()]


def test_promotion_invalid_hp_does_not_count_and_is_replaced() -> None:
    s = AsyncHalving(asha_spec(max_trials=2), SPACE, random.Random(5))
    s.start()
    assert shape(s.on_exit(1, ExitReason.INVALID_HP)) == [("create", 3, 0), Train(3, 1, (1,))]
    assert s.on_validation(2, 1, 0.5) == []          # trials 2 and 3 use up max_trials 2
    assert s.on_validation(3, 1, 0.6) == [Stop(2), Stop(3), Shutdown()]
    assert s.snapshot()["brackets"][0]["invalid"] == 1


def test_nan_and_infinite_metrics_rank_worst() -> None:
    s = stopping()
    s.on_validation(1, 1, math.nan)
    assert s.on_validation(2, 1, math.inf) == []      # ties with NaN: ahead of it
    assert rung_entries(s, 0) == [(2, WORST), (1, WORST)]
    json.dumps(s.snapshot(), allow_nan=False)


def test_unknown_trial_is_a_programming_error() -> None:
    s = stopping()
    with pytest.raises(ValueError, match="trial 99"):
        s.on_validation(99, 1, 0.5)


# -- snapshot / restore ----------------------------------------------------------------------

@pytest.mark.parametrize("stop_once", [False, True])
def test_snapshot_restore_continues_identically(stop_once: bool) -> None:
    spec = asha_spec(stop_once=stop_once, max_trials=8)
    original = AsyncHalving(spec, SPACE, random.Random(11))
    original.start()
    original.on_validation(1, 1, 0.3)
    snap = json.loads(json.dumps(original.snapshot(), allow_nan=False))
    restored = AsyncHalving.restore(spec, SPACE, snap)
    assert restored.snapshot() == original.snapshot()
    for searcher in (original, restored):
        searcher.on_validation(2, 1, 0.9)
    assert restored.on_validation(3, 1, 0.1) == original.on_validation(3, 1, 0.1)
    assert restored.snapshot() == original.snapshot()


def test_restore_refuses_another_searchers_snapshot() -> None:
    with pytest.raises(ValueError, match="adaptive_asha"):
        AsyncHalving.restore(asha_spec(), SPACE, {"searcher": "adaptive_asha"})


def test_progress_grows_to_one() -> None:
    s = AsyncHalving(asha_spec(stop_once=True, max_trials=2), SPACE, random.Random(3))
    s.start()
    assert s.progress() == 0.0
    s.on_validation(1, 1, 0.5)
    assert 0.0 < s.progress() < 1.0
    s.on_validation(2, 1, 0.6)
    s.on_validation(1, 9, 0.2)
    assert s.progress() == 1.0
