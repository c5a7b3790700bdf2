"""`cade_cli.search.simulate`: the simulated clock, slots, reports, stops, errors, the JSON result."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cade_cli.errors import ObjectiveError
from cade_cli.search.objectives import power_law, unstable_power_law
from cade_cli.search.searchers import searcher_facts
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.search.simulate import Simulation, result_to_json, simulate
from cade_cli.search.space import Categorical, Const, Int, Log, Nested
from cade_cli.spec.experiment import ExperimentSpec, SearcherSpec
from cade_cli.views.search_text import print_simulation


def experiment(searcher: SearcherSpec, space: Nested | None = None) -> ExperimentSpec:
    space = space or Nested((("x", Int(1, 9)),))
    return ExperimentSpec(name="sim", entrypoint=("true",), hyperparameters=space,
                          searcher=searcher)


def linear(params: dict[str, Any], length: int, trial: int) -> float:
    return float(params["x"] * 10 + 1 / length)


class Scripted:
    """A searcher that answers from a script: {("start",) | (trial, length) | (trial, "exit")}."""

    def __init__(self, script: dict[Any, list[Decision]]) -> None:
        self.script = script
        self.seen: list[tuple[Any, ...]] = []
        self.done = False

    def start(self) -> list[Decision]:
        return self.script.get(("start",), [])

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        self.seen.append((trial, length))
        return self.script.get((trial, length), [])

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        self.seen.append((trial, reason.value))
        return self.script.get((trial, "exit"), [])

    def snapshot(self) -> dict[str, Any]:
        return {}

    def progress(self) -> float:
        return 0.0


def run_scripted(script: dict[Any, list[Decision]], objective: Any = linear, workers: int | None = None,
                 period: int | None = None, full: int = 10) -> tuple[Any, Scripted]:
    searcher = Scripted(script)
    sim = Simulation(searcher, objective, workers=workers, validation_period=period,
                     smaller_is_better=True, full_length=full)
    return sim.run(), searcher


def test_random_search_exact_json() -> None:
    spec = experiment(SearcherSpec("random", "loss", max_trials=3, max_length=4,
                                   max_concurrent_trials=2))
    result = result_to_json(simulate(spec, linear, seed=5))
    params = [t["params"] for t in result["trials"]]
    assert result == {
        "trials": [
            {"trial": n, "params": params[n - 1],
             "validations": [[4, params[n - 1]["x"] * 10 + 0.25]],
             "final_length": 4, "state": "completed"} for n in (1, 2, 3)],
        "best": min(({"trial": n, "metric": params[n - 1]["x"] * 10 + 0.25, "length": 4}
                     for n in (1, 2, 3)), key=lambda b: (b["metric"], b["trial"])),
        "total_length": 12,
        "makespan": 8,          # two slots: trials 1 and 2, then trial 3
        "finished": True,
    }


def test_workers_zero_means_unlimited_and_override() -> None:
    spec = experiment(SearcherSpec("random", "loss", max_trials=4, max_length=10,
                                   max_concurrent_trials=0))
    assert simulate(spec, linear).makespan == 10
    assert simulate(spec, linear, workers=1).makespan == 40
    assert simulate(spec, linear, workers=3).makespan == 20


def test_validation_period_adds_reports() -> None:
    spec = experiment(SearcherSpec("single", "loss", max_length=10))
    trial = simulate(spec, linear, validation_period=4).trials[0]
    assert [length for length, _ in trial.validations] == [4, 8, 10]


def test_reports_at_report_at_lengths() -> None:
    result, searcher = run_scripted({("start",): [Create(1, {"x": 1}),
                                                  Train(1, 10, (2, 5, 10))]})
    assert searcher.seen == [(1, 2), (1, 5), (1, 10)]
    assert result.trials[0].state == "completed"


def test_a_search_that_stalls_is_not_finished_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing running, nothing to create, no Shutdown: a searcher bug. The engine ends such
    an experiment ERRORED; the simulation reports it instead of passing it off as done."""
    start = [Create(1, {"x": 1}), Train(1, 10, (10,))]
    stalled, _ = run_scripted({("start",): start, (1, 10): [Stop(1)]})
    ended, _ = run_scripted({("start",): start, (1, 10): [Stop(1), Shutdown()]})
    assert (stalled.finished, ended.finished) == (False, True)
    assert result_to_json(stalled)["finished"] is False
    spec = experiment(SearcherSpec("random", "loss", max_trials=1, max_length=10))
    shown = []
    for result in (stalled, ended):
        print_simulation(spec, result, 0)
        shown.append(" ".join(capsys.readouterr().out.split()))
    assert ("Not finished: the searcher has nothing left to run but did not finish the search; "
            "a real experiment ends ERRORED here.") in shown[0]
    assert "Not finished" not in shown[1]


def test_stop_takes_effect_at_once_and_frees_the_slot() -> None:
    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Train(1, 10, (3, 10)),
                     Create(2, {"x": 2}), Train(2, 10, (3, 10))],
        (1, 3): [Stop(1)],
    }
    result, searcher = run_scripted(script, workers=1)
    assert (1, 10) not in searcher.seen
    first, second = result.trials
    assert (first.length, first.state) == (3, "stopped")
    assert (second.length, second.state) == (10, "completed")
    assert result.makespan == 13 and result.total_length == 13


def test_a_continued_trial_keeps_its_slot() -> None:
    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Train(1, 3), Create(2, {"x": 2}), Train(2, 3)],
        (1, 3): [Train(1, 9)],
    }
    result, searcher = run_scripted(script, workers=1)
    assert searcher.seen == [(1, 3), (1, 9), (2, 3)]
    assert result.makespan == 12


def test_a_trial_promoted_later_waits_for_a_slot_fifo() -> None:
    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Train(1, 2), Create(2, {"x": 2}), Train(2, 2),
                     Create(3, {"x": 3}), Train(3, 2)],
        (2, 2): [Train(1, 4)],          # trial 1 resumes after trial 3 (queued earlier)
    }
    result, searcher = run_scripted(script, workers=1)
    assert searcher.seen == [(1, 2), (2, 2), (3, 2), (1, 4)]
    assert result.trials[0].validations[-1][0] == 4 and result.makespan == 8


def test_same_time_events_in_creation_order() -> None:
    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Create(2, {"x": 2}), Train(2, 5), Train(1, 5)],
    }
    _, searcher = run_scripted(script)
    assert searcher.seen == [(1, 5), (2, 5)]


def test_child_resumes_from_the_parents_length() -> None:
    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Train(1, 4)],
        (1, 4): [Create(2, {"x": 2}, parent=1), Train(2, 6), Stop(1), Shutdown()],
    }
    result, searcher = run_scripted(script)
    child = result.trials[1]
    assert (child.start_length, child.length) == (4, 4)    # shutdown came before it ran
    result, searcher = run_scripted({**script, (1, 4): script[(1, 4)][:3]})
    child = result.trials[1]
    assert searcher.seen[-1] == (2, 6)
    assert child.validations[0][0] == 6 and result.total_length == 4 + 2


def test_objective_exception_is_an_early_exit() -> None:
    def fails_late(params: dict[str, Any], length: int, trial: int) -> float:
        if length > 2:
            raise RuntimeError("boom")
        return 1.0

    script: dict[Any, list[Decision]] = {
        ("start",): [Create(1, {"x": 1}), Train(1, 10, (2, 5, 10))],
        (1, "exit"): [Shutdown()],
    }
    result, searcher = run_scripted(script, objective=fails_late)
    assert searcher.seen == [(1, 2), (1, "errored")]
    trial = result.trials[0]
    assert (trial.state, trial.length, trial.validations) == ("errored", 5, [(2, 1.0)])


def test_non_number_objective_is_an_objective_error() -> None:
    spec = experiment(SearcherSpec("single", "loss", max_length=3))
    with pytest.raises(ObjectiveError, match="must return a number"):
        simulate(spec, lambda params, length, trial: "low")  # type: ignore[arg-type, return-value]


def test_nan_metric_fails_the_trial() -> None:
    spec = experiment(SearcherSpec("single", "loss", max_length=3))
    result = simulate(spec, lambda params, length, trial: float("nan"))
    assert result.trials[0].state == "errored" and result.best is None


def test_larger_is_better_best() -> None:
    spec = experiment(SearcherSpec("random", "acc", smaller_is_better=False, max_trials=4,
                                   max_length=2))
    result = simulate(spec, linear, seed=3)
    assert result.best is not None
    assert result.best.metric == max(v for t in result.trials for _, v in t.validations)


def test_pbt_children_train_from_their_parents() -> None:
    spec = experiment(SearcherSpec("pbt", "loss", population_size=4, num_rounds=3,
                                   length_per_round=5, truncate_fraction=0.25),
                      Nested((("lr", Log(-3.0, -1.0, 10.0)), ("width", Int(8, 64)))))
    result = simulate(spec, power_law, seed=2)
    assert len(result.trials) == 4 + 1 + 1
    by_id = {t.trial: t for t in result.trials}
    assert [by_id[n].start_length for n in (5, 6)] == [5, 10]
    assert [by_id[n].validations[0][0] for n in (5, 6)] == [10, 15]
    assert sum(t.state == "completed" for t in result.trials) == 4
    assert searcher_facts(spec.searcher).final_length == 15
    assert result.total_length == 4 * 15          # every round trains 4 members by 5


def test_unstable_objective_errors_some_trials() -> None:
    spec = experiment(SearcherSpec("random", "loss", max_trials=40, max_length=20,
                                   max_concurrent_trials=0),
                      Nested((("lr", Log(-4.0, -1.0, 10.0)), ("opt", Categorical(("a", "b"))))))
    states = {t.state for t in simulate(spec, unstable_power_law, seed=1).trials}
    assert states == {"completed", "errored"}


def test_objectives_are_deterministic() -> None:
    params = {"lr": 0.01, "nested": {"opt": "adam", "k": Const(1).val}}
    assert power_law(params, 10, 3) == power_law(params, 10, 3)
    assert power_law(params, 10, 3) != power_law(params, 10, 4)
    assert power_law(params, 1000, 3) < power_law(params, 1, 3)


def test_thousand_trial_adaptive_asha_is_fast() -> None:
    space = Nested((("lr", Log(-4.0, -1.0, 10.0)), ("width", Int(16, 256))))
    for stop_once in (False, True):
        spec = experiment(SearcherSpec("adaptive_asha", "loss", max_trials=1000, max_length=900,
                                       divisor=3, max_concurrent_trials=16,
                                       stop_once=stop_once), space)
        began = time.perf_counter()
        result = simulate(spec, unstable_power_law, seed=1)
        assert time.perf_counter() - began < 2.5
        assert len(result.trials) == 1000
        assert {t.state for t in result.trials} == {"completed", "stopped", "errored"}


def test_progress_callback_is_called() -> None:
    spec = experiment(SearcherSpec("random", "loss", max_trials=600, max_length=2,
                                   max_concurrent_trials=0))
    seen: list[float] = []
    simulate(spec, linear, on_progress=seen.append)
    assert seen and seen == sorted(seen) and all(0.0 <= f <= 1.0 for f in seen)
