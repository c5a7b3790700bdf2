"""`cade preview` plans, computed by hand for each searcher."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from cade_cli.errors import SpecError
from cade_cli.search.plan import BracketPlan, plan_to_json, preview
from cade_cli.search.searchers.base import rung_reached
from cade_cli.search.simulate import simulate
from cade_cli.search.space import Categorical, Int, Nested
from cade_cli.spec.experiment import ExperimentSpec, SearcherSpec

SPACE = Nested((("layers", Int(0, 4, count=5)), ("opt", Categorical(("adam", "sgd")))))


def experiment(name: str, **searcher: object) -> ExperimentSpec:
    spec = SearcherSpec(name=name, metric="loss")
    return ExperimentSpec(name="plan", entrypoint=("python", "train.py"),
                          hyperparameters=SPACE,
                          searcher=replace(spec, **searcher))  # type: ignore[arg-type]


def ends(spec: ExperimentSpec) -> dict[int, int]:
    return dict(preview(spec).ends)


def test_async_halving_one_bracket() -> None:
    """9 trials on rungs 1/3/9, d 3: 9 -> 3 go on (6 end at 1) -> 1 (2 end at 3) -> 1 at 9."""
    plan = preview(experiment("async_halving", num_rungs=3, divisor=3, max_length=9,
                              max_trials=9, max_concurrent_trials=0))
    assert plan.brackets == (BracketPlan((1, 3, 9), 9, 9),)   # 3**2 clamped to max_trials
    assert plan.ends == ((1, 6), (3, 2), (9, 1))
    assert plan.total_length == 6 * 1 + 2 * 3 + 1 * 9
    assert plan.total_trials == 9


def test_async_halving_repeated_rung_lengths_merge() -> None:
    """Rungs 1/1/2 (d 4, L 2), 16 trials: 12 end at rung 0, 3 at rung 1 (both length 1)."""
    plan = preview(experiment("async_halving", num_rungs=3, divisor=4, max_length=2,
                              max_trials=16, max_concurrent_trials=4))
    assert plan.ends == ((1, 15), (2, 1))
    assert plan.total_length == 17


def test_adaptive_asha_brackets() -> None:
    """Brackets 15/62/250/1000 x70, 62/250/1000 x22, 250/1000 x8 (see test_adaptive).

    70 -> 17 -> 4 -> 1: 53 end at 15, 13 at 62, 3 at 250, 1 at 1000;
    22 -> 5 -> 1: 17 at 62, 4 at 250, 1 at 1000;  8 -> 2: 6 at 250, 2 at 1000.
    """
    plan = preview(experiment("adaptive_asha", max_trials=100, max_length=1000, divisor=4,
                              max_concurrent_trials=16))
    assert [b.rungs for b in plan.brackets] == [(15, 62, 250, 1000), (62, 250, 1000),
                                                (250, 1000)]
    assert [(b.max_trials, b.max_concurrent_trials) for b in plan.brackets] == [
        (70, 6), (22, 5), (8, 5)]
    assert plan.ends == ((15, 53), (62, 30), (250, 13), (1000, 4))
    assert plan.total_length == 15 * 53 + 62 * 30 + 250 * 13 + 1000 * 4 == 9905
    assert "6 + 5 + 5" in plan.note


def test_adaptive_asha_concurrency_is_capped_by_bracket_trials() -> None:
    plan = preview(experiment("adaptive_asha", max_trials=10, max_length=8, divisor=2,
                              bracket_rungs=(1, 3), max_concurrent_trials=40))
    assert [(b.max_trials, b.max_concurrent_trials) for b in plan.brackets] == [(6, 6), (4, 4)]


def test_single() -> None:
    plan = preview(experiment("single", max_length=100))
    assert plan.brackets == (BracketPlan((100,), 1, 1),)
    assert (plan.ends, plan.total_length) == (((100, 1),), 100)


def test_random() -> None:
    plan = preview(experiment("random", max_trials=5, max_length=10, max_concurrent_trials=2))
    assert plan.brackets == (BracketPlan((10,), 5, 2),)
    assert (plan.ends, plan.total_length) == (((10, 5),), 50)


def test_grid_uses_the_grid_size() -> None:
    plan = preview(experiment("grid", max_length=7, max_concurrent_trials=0))
    assert plan.brackets == (BracketPlan((7,), 10, 10),)      # 5 layers x 2 optimisers
    assert (plan.ends, plan.total_length) == (((7, 10),), 70)


def test_pbt_rounds() -> None:
    """10 members, 3 rounds of 5, truncate 0.2: 2 close after rounds 1 and 2 (lengths 5 and
    10), 2 children start in their place; the 10 members left end at 15. Trained: 10*3*5."""
    plan = preview(experiment("pbt", population_size=10, num_rounds=3, length_per_round=5,
                              truncate_fraction=0.2))
    assert plan.brackets == (BracketPlan((5, 10, 15), 14, 10),)
    assert plan.ends == ((5, 2), (10, 2), (15, 10))
    assert plan.total_length == 150


def test_plan_to_json_shape() -> None:
    plan = preview(experiment("async_halving", num_rungs=2, divisor=2, max_length=4,
                              max_trials=4, max_concurrent_trials=2, length_unit="epochs"))
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert data["brackets"] == [{"rungs": [2, 4], "max_trials": 4, "max_concurrent_trials": 2}]
    assert data["plan"] == [{"length": 2, "trials": 2}, {"length": 4, "trials": 2}]
    assert data["total_length"] == 12
    assert (data["searcher"], data["length_unit"]) == ("async_halving", "epochs")
    assert isinstance(data["note"], str) and data["note"]


def test_missing_setting_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="max_trials"):
        preview(experiment("async_halving", num_rungs=3, max_length=9))
    with pytest.raises(SpecError, match="population_size"):
        preview(experiment("pbt", num_rounds=3, length_per_round=5))


def test_unknown_searcher_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="bayes"):
        preview(experiment("bayes", max_length=3))


def test_rung_reached_reads_the_bracket_ladder() -> None:
    ladders = [(100, 300, 900), (300, 900)]
    assert [rung_reached(ladders, 0, n) for n in (0, 99, 100, 299, 900, 2000)] == [
        None, None, 0, 0, 2, 2]
    assert rung_reached(ladders, 1, 300) == 0 and rung_reached(ladders, 5, 900) == 1
    assert rung_reached([], 0, 10) is None


def test_promotion_type_promotes_int_n_over_divisor() -> None:
    """Determined's tutorial adaptive search: 16 trials, d 4, brackets 58/234/937 x12 and
    234/937 x4. Promotion type: 12 -> 3 -> int(3/4) = 0, so bracket 0 never reaches 937;
    4 -> 1. Stopping type lets the first trial at each rung go on: 12 -> 3 -> 1."""
    spec = experiment("adaptive_asha", max_trials=16, max_length=937, divisor=4,
                      max_concurrent_trials=16)
    assert [b.rungs for b in preview(spec).brackets] == [(58, 234, 937), (234, 937)]
    assert ends(spec) == {58: 9, 234: 6, 937: 1}
    assert ends(replace(spec, searcher=replace(spec.searcher, stop_once=True))) == {
        58: 9, 234: 5, 937: 2}


@pytest.mark.parametrize("searcher", [
    {"name": "adaptive_asha", "max_trials": 16, "max_length": 937, "divisor": 4},
    {"name": "adaptive_asha", "max_trials": 100, "max_length": 1000, "divisor": 4},
    {"name": "async_halving", "num_rungs": 4, "max_trials": 50, "max_length": 27, "divisor": 3},
])
def test_promotion_plan_is_what_the_searcher_does_with_results_in_rank_order(
        searcher: dict[str, Any]) -> None:
    """One slot and a metric that grows with the trial id: every result reaches its rung
    after the better ones, so each rung promotes exactly its top int(n / divisor)."""
    spec = experiment(max_concurrent_trials=1, **searcher)
    plan = preview(spec)
    run = simulate(spec, lambda params, length, trial: float(trial), workers=1)
    assert sorted(Counter(t.length for t in run.trials).items()) == list(plan.ends)
    assert run.total_length == plan.total_length
