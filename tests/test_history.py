"""`cade simulate --memory`: the simulated model state, carried through checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_simulate import Scripted, experiment

from cade_cli.cli import cli
from cade_cli.search.history import Memory, ModelState
from cade_cli.search.objectives import power_law
from cade_cli.search.searchers.base import Create, Decision, Train
from cade_cli.search.simulate import Simulation, result_to_json, simulate
from cade_cli.search.space import Categorical, Const, Double, Int, Log, Nested
from cade_cli.spec.experiment import SearcherSpec

X = Nested((("x", Double(0.0, 10.0)),))
MIXED = Nested((("act", Categorical(("relu", "tanh", "gelu"))), ("depth", Int(1, 9)),
                ("lr", Log(-4.0, -1.0, 10.0)), ("opt", Nested((("beta", Double(0.5, 1.0)),
                                                               ("name", Const("adam")))))))


# -- the state update ---------------------------------------------------------------------

def test_training_shrinks_earlier_weights_by_e_per_memory_length() -> None:
    memory = Memory(X, 10.0)
    state = memory.trained(ModelState.fresh({"x": 1.0}), {"x": 5.0}, 10)
    assert [p for p, _ in state.mixture] == [{"x": 1.0}, {"x": 5.0}]
    assert state.mixture[0][1] == pytest.approx(math.exp(-1))
    assert sum(w for _, w in state.mixture) == pytest.approx(1.0)
    assert memory.effective(state)["x"] == pytest.approx(math.exp(-1) + 5 * (1 - math.exp(-1)))


def test_training_in_pieces_equals_training_at_once() -> None:
    memory = Memory(X, 7.0)
    start = memory.trained(ModelState.fresh({"x": 1.0}), {"x": 3.0}, 4)
    at_once = memory.trained(start, {"x": 9.0}, 12)
    pieces = start
    for units in (1, 5, 0, 6):
        pieces = memory.trained(pieces, {"x": 9.0}, units)
    assert len(pieces.mixture) == len(at_once.mixture) == 3     # the same params merge
    for (p, w), (q, v) in zip(pieces.mixture, at_once.mixture):
        assert p == q and w == pytest.approx(v)


def test_a_state_trained_with_its_own_params_stays_exactly_them() -> None:
    memory = Memory(MIXED, 3.0)
    params = {"act": "tanh", "depth": 4, "lr": 0.00123, "opt": {"beta": 0.9, "name": "adam"}}
    state = ModelState.fresh(params)
    for units in (1, 7, 100):
        state = memory.trained(state, params, units)
        assert memory.effective(state) is params


def test_forgotten_params_leave_a_pure_state() -> None:
    memory = Memory(X, 1.0)
    state = memory.trained(ModelState.fresh({"x": 1.0}), {"x": 2.0}, 30)  # e^-30 < 1e-9
    assert state.mixture == (({"x": 2.0}, 1.0),)


def test_effective_params_per_hyperparameter_type() -> None:
    memory = Memory(MIXED, 1.0)
    a = {"act": "relu", "depth": 2, "lr": 1e-4, "opt": {"beta": 0.6, "name": "adam"}}
    b = {"act": "gelu", "depth": 9, "lr": 1e-2, "opt": {"beta": 1.0, "name": "adam"}}
    blended = memory.effective(ModelState(((a, 0.75), (b, 0.25))))
    assert blended["act"] == "relu"                       # the heavier value
    assert blended["depth"] == 4                          # 2 * 0.75 + 9 * 0.25 = 3.75, rounded
    assert blended["lr"] == pytest.approx(10 ** -3.5)     # the weighted mean in log space
    assert blended["opt"] == {"beta": pytest.approx(0.7), "name": "adam"}
    tie = memory.effective(ModelState(((a, 0.5), (b, 0.5))))
    assert tie["act"] == "gelu"                           # a tie goes to the most recent


# -- through the simulator's checkpoints ---------------------------------------------------

def calls_of(objective_calls: list[tuple[int, int, float]], trial: int) -> list[tuple[int, float]]:
    return [(length, x) for t, length, x in objective_calls if t == trial]


def recording() -> tuple[list[tuple[int, int, float]], Any]:
    calls: list[tuple[int, int, float]] = []

    def objective(params: dict[str, Any], length: int, trial: int) -> float:
        calls.append((trial, length, params["x"]))
        return (params["x"] - 3.0) ** 2 + 1.0 / length
    return calls, objective


def run_with_memory(script: dict[Any, list[Decision]], memory: float | None) -> Any:
    calls, objective = recording()
    simulation = Simulation(Scripted(script), objective, workers=None, validation_period=None,
                            smaller_is_better=True, full_length=100,
                            memory=Memory(X, memory) if memory else None)
    return simulation.run(), calls


EXPLOIT: dict[Any, list[Decision]] = {
    ("start",): [Create(1, {"x": 1.0}), Train(1, 10)],
    # the child resumes from the parent's checkpoint at 10 and is reported on at 11, 20, 100
    (1, 10): [Create(2, {"x": 3.0}, parent=1), Train(2, 100, report_at=(11, 20, 100)),
              Create(3, {"x": 3.0}), Train(3, 100, report_at=(11, 20, 100))],
}


def test_a_child_is_scored_on_its_parents_model_until_it_has_trained() -> None:
    result, calls = run_with_memory(EXPLOIT, memory=10.0)
    child, fresh = calls_of(calls, 2), calls_of(calls, 3)
    assert fresh == [(11, 3.0), (20, 3.0), (100, 3.0)]      # no ancestry: its own params
    assert [length for length, _ in child] == [11, 20, 100]
    expected = [3.0 - 2.0 * math.exp(-(length - 10) / 10.0) for length in (11, 20, 100)]
    assert [x for _, x in child] == pytest.approx(expected)
    by_id = {t.trial: t for t in result.trials}
    gaps = [c - f for (_, c), (_, f) in zip(by_id[2].validations, by_id[3].validations)]
    assert gaps[0] > gaps[1] > gaps[2] > 0 and gaps[2] < 1e-6   # converges with training
    assert by_id[2].validations[0][1] > 3.0                      # one unit on: mostly x = 1


def test_without_memory_the_child_is_scored_on_its_params_alone() -> None:
    _, calls = run_with_memory(EXPLOIT, memory=None)
    assert calls_of(calls, 2) == calls_of(calls, 3)


def test_a_resumed_segment_continues_its_own_model() -> None:
    split = {**EXPLOIT, (1, 10): [Create(2, {"x": 3.0}, parent=1), Train(2, 15)],
             (2, 15): [Train(2, 20)]}
    whole = {**EXPLOIT, (1, 10): [Create(2, {"x": 3.0}, parent=1), Train(2, 20)]}
    (_, split_calls), (_, whole_calls) = run_with_memory(split, 10.0), run_with_memory(whole, 10.0)
    assert calls_of(split_calls, 2)[-1] == pytest.approx(calls_of(whole_calls, 2)[-1])
    assert calls_of(whole_calls, 2)[-1][1] < 3.0


def test_a_grandchild_inherits_the_whole_lineage() -> None:
    script = {**EXPLOIT, (1, 10): [Create(2, {"x": 3.0}, parent=1), Train(2, 20)],
              (2, 20): [Create(4, {"x": 3.0}, parent=2), Train(4, 21)]}
    _, calls = run_with_memory(script, 10.0)
    (length, x), = calls_of(calls, 4)
    assert length == 21 and x == pytest.approx(3.0 - 2.0 * math.exp(-11 / 10.0))


# -- whole searches ------------------------------------------------------------------------

def pbt_spec() -> Any:
    return experiment(SearcherSpec("pbt", "loss", population_size=8, num_rounds=6,
                                   length_per_round=5, truncate_fraction=0.25,
                                   max_concurrent_trials=4), MIXED)


def test_pbt_children_are_scored_on_their_history_and_deterministically() -> None:
    seen: dict[int, list[dict[str, Any]]] = {}

    def objective(params: dict[str, Any], length: int, trial: int) -> float:
        seen.setdefault(trial, []).append(params)
        return power_law(params, length, trial)

    result = simulate(pbt_spec(), objective, seed=3, memory=20.0)
    children = [t for t in result.trials if t.parent is not None]
    assert children
    for child in children:
        assert seen[child.trial][0] != child.params          # its parent's model, mostly
    originals = [t for t in result.trials if t.parent is None]
    assert all(all(p is t.params for p in seen[t.trial]) for t in originals)
    first = result_to_json(simulate(pbt_spec(), power_law, seed=3, memory=20.0))
    assert first == result_to_json(simulate(pbt_spec(), power_law, seed=3, memory=20.0))
    assert first != result_to_json(simulate(pbt_spec(), power_law, seed=3))


ONE_SHOT = [
    SearcherSpec("random", "loss", max_trials=12, max_length=30, max_concurrent_trials=3),
    SearcherSpec("random", "loss", max_trials=12, max_length=30, sampler="tpe"),
    SearcherSpec("grid", "loss", max_length=10),
    SearcherSpec("async_halving", "loss", max_trials=30, max_length=27, num_rungs=3,
                 divisor=3, max_concurrent_trials=4),
    SearcherSpec("adaptive_asha", "loss", max_trials=40, max_length=81, max_rungs=4,
                 divisor=3, max_concurrent_trials=4, sampler="tpe"),
]


@pytest.mark.parametrize("searcher", ONE_SHOT, ids=lambda s: f"{s.name}-{s.sampler}")
def test_without_checkpoint_inheritance_memory_changes_nothing(searcher: SearcherSpec) -> None:
    space = MIXED if searcher.name != "grid" else Nested((("x", Int(1, 9, count=5)),))
    objective = power_law if searcher.name != "grid" else _linear
    spec = experiment(searcher, space)
    plain = result_to_json(simulate(spec, objective, seed=5, validation_period=4))
    remembered = result_to_json(simulate(spec, objective, seed=5, validation_period=4,
                                         memory=2.0))
    assert remembered == plain


def _linear(params: dict[str, Any], length: int, trial: int) -> float:
    return float(params["x"] * 10 + 1 / length)



def test_cli_memory_option() -> None:
    example = str(Path(__file__).resolve().parents[1] / "examples" / "pbt.yaml")

    def run(*extra: str) -> Any:
        return CliRunner().invoke(cli, ["simulate", example, "--objective",
                                        "cade_cli.search.objectives:power_law", "--json", *extra])

    plain, remembered = run(), run("--memory", "60")
    assert plain.exit_code == remembered.exit_code == 0, remembered.output
    assert json.loads(plain.stdout)["trials"] != json.loads(remembered.stdout)["trials"]
    refused = run("--memory", "0")
    assert refused.exit_code == 2 and "--memory" in refused.stderr
