"""`searcher.sampler: tpe`: the TPE sampler alone and inside the random and ASHA searchers.

Properties: the same seed and events give the same proposals, a snapshot restored mid-run
makes the same future decisions, every hyperparameter type is proposed within its space,
pending trials push proposals apart; and on a smooth objective whose short lengths rank
configurations well, TPE inside ASHA ends closer to the optimum than random sampling.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import textwrap
from typing import Any

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.errors import SpecError
from cade_cli.search.samplers.tpe import TpeSampler
from cade_cli.search.searchers import make_searcher, restore_searcher, searcher_facts
from cade_cli.search.searchers.base import Decision, ExitReason, decision_to_json
from cade_cli.search.simulate import Simulation, result_to_json, simulate
from cade_cli.search.space import Categorical, Const, Double, Int, Log, Nested
from cade_cli.spec.experiment import ExperimentSpec, SearcherSpec, parse_spec

SPACE = Nested((
    ("lr", Log(-5, -1, 10)),
    ("width", Int(8, 512)),
    ("dropout", Double(0.0, 0.6)),
    ("optimizer", Categorical(("adam", "sgd", "rmsprop"))),
    ("model", Nested((("depth", Int(1, 4)), ("kind", Const("resnet"))))),
))


def regret(params: dict[str, Any]) -> float:
    """Distance from the optimum lr=10^-3.2, width=300, dropout=0.1, adam, depth 3."""
    return (((math.log10(params["lr"]) + 3.2) / 4) ** 2
            + ((params["width"] - 300) / 504) ** 2
            + (params["dropout"] - 0.1) ** 2
            + (0.0 if params["optimizer"] == "adam" else 0.05)
            + 0.02 * abs(params["model"]["depth"] - 3))


def bowl(params: dict[str, Any], length: int, trial: int) -> float:
    """A learning curve whose every length ranks configurations like the full length."""
    return regret(params) + 1.0 / math.sqrt(length)


def searcher_spec(name: str, sampler: str = "tpe", **fields: Any) -> SearcherSpec:
    defaults: dict[str, Any] = {"metric": "loss", "max_trials": 60, "max_length": 81,
                                "divisor": 3, "num_rungs": 4, "max_concurrent_trials": 4}
    return SearcherSpec(name=name, sampler=sampler, **{**defaults, **fields})


def experiment(spec: SearcherSpec) -> ExperimentSpec:
    return ExperimentSpec(name="tpe", entrypoint=("true",), hyperparameters=SPACE,
                          searcher=spec)


class Recorder:
    """Wraps a searcher inside a simulation and records the events it receives."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self.events: list[tuple[str, int, Any, Any]] = []

    @property
    def done(self) -> bool:
        return bool(self.searcher.done)

    def start(self) -> list[Decision]:
        return list(self.searcher.start())

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        self.events.append(("validation", trial, length, metric))
        return list(self.searcher.on_validation(trial, length, metric))

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        self.events.append(("exit", trial, reason, None))
        return list(self.searcher.on_exit(trial, reason))

    def snapshot(self) -> dict[str, Any]:
        return dict(self.searcher.snapshot())

    def progress(self) -> float:
        return float(self.searcher.progress())


def recorded_events(spec: SearcherSpec, seed: int) -> list[tuple[str, int, Any, Any]]:
    recorder = Recorder(make_searcher(spec, SPACE, seed))
    Simulation(recorder, bowl, workers=4, validation_period=None, smaller_is_better=True,
               full_length=searcher_facts(spec).final_length or 0).run()
    return recorder.events


def feed(searcher: Any, event: tuple[str, int, Any, Any]) -> list[dict[str, Any]]:
    kind, trial, a, b = event
    decisions = (searcher.on_validation(trial, a, b) if kind == "validation"
                 else searcher.on_exit(trial, a))
    return [decision_to_json(d) for d in decisions]


# -- the sampler alone --------------------------------------------------------------------

def drive(sampler: TpeSampler, rng: random.Random, trials: range) -> list[dict[str, Any]]:
    proposals = []
    for trial in trials:
        params = sampler.propose(trial, rng)
        proposals.append(params)
        sampler.observe(trial, 81, regret(params))
    return proposals


def test_same_seed_and_events_give_the_same_proposals() -> None:
    first = drive(TpeSampler(SPACE, (81,)), random.Random(5), range(1, 41))
    second = drive(TpeSampler(SPACE, (81,)), random.Random(5), range(1, 41))
    other_seed = drive(TpeSampler(SPACE, (81,)), random.Random(6), range(1, 41))
    assert first == second
    assert first != other_seed


def test_restored_sampler_makes_the_same_proposals() -> None:
    original, rng = TpeSampler(SPACE, (81,)), random.Random(3)
    drive(original, rng, range(1, 31))
    restored = TpeSampler(SPACE, (81,))
    restored.load_json(json.loads(json.dumps(original.to_json())))
    restored_rng = random.Random()
    restored_rng.setstate(rng.getstate())
    assert drive(original, rng, range(31, 51)) == drive(restored, restored_rng, range(31, 51))


def test_every_hyperparameter_type_is_proposed_inside_its_space() -> None:
    sampler, rng = TpeSampler(SPACE, (81,)), random.Random(11)
    proposals = drive(sampler, rng, range(1, 81))
    assert sampler.model_level() == 81  # the later proposals came from the model
    for params in proposals:
        assert 1e-5 <= params["lr"] <= 1e-1
        assert isinstance(params["width"], int) and 8 <= params["width"] <= 512
        assert 0.0 <= params["dropout"] <= 0.6
        assert params["optimizer"] in ("adam", "sgd", "rmsprop")
        assert params["model"]["kind"] == "resnet"
        assert isinstance(params["model"]["depth"], int) and 1 <= params["model"]["depth"] <= 4
    late = proposals[40:]
    # The model learned every type: adam, depth near 3, lr near 10^-3.2.
    assert sum(p["optimizer"] == "adam" for p in late) > len(late) / 2
    assert statistics.median(abs(p["model"]["depth"] - 3) for p in late) <= 1
    assert statistics.median(regret(p) for p in late) < statistics.median(
        regret(p) for p in proposals[:10])


def levelled(short_values: Any, short_count: int, long_count: int) -> TpeSampler:
    """A sampler with `short_count` results at level 3 and the first `long_count` of those
    trials also at level 27: the long value is the trial number, the short one is
    `short_values(trial)`."""
    sampler, rng = TpeSampler(SPACE, (3, 27)), random.Random(1)
    for trial in range(1, short_count + 1):
        sampler.propose(trial, rng)
        sampler.observe(trial, 3, short_values(trial))
        if trial <= long_count:
            sampler.observe(trial, 27, float(trial))
    return sampler


def test_the_model_rung_is_the_one_that_says_most_about_the_longest() -> None:
    """Count x squared rank correlation with the longest level: 60 short results that rank
    as the long ones do outweigh 12 long ones; ranked in reverse, or too few, they do not."""
    assert levelled(lambda t: t / 10, 60, 12).model_level() == 3          # 60 x 1 > 12
    assert levelled(lambda t: -t / 10, 60, 12).model_level() == 27        # 60 x 0
    assert levelled(lambda t: t / 10, 10, 10).model_level() == 27         # a tie: the longer
    assert levelled(lambda t: (t * 7) % 11, 60, 12).model_level() == 27   # weak: 60 x 0.0x
    assert levelled(lambda t: t / 10, 60, 5).model_level() == 3           # 27 lacks results
    assert levelled(lambda t: t / 10, 9, 0).model_level() is None


def test_pending_trials_spread_concurrent_proposals() -> None:
    """Proposals made while earlier ones are pending land further apart than when they
    are not (each pending trial counts as a bad result at its point)."""
    def spread(with_pending: bool) -> float:
        sampler, rng = TpeSampler(SPACE, (81,)), random.Random(7)
        drive(sampler, rng, range(1, 31))
        widths = []
        for trial in range(31, 39):
            widths.append(sampler.propose(trial, rng)["width"])
            if not with_pending:
                sampler.exited(trial, ExitReason.CANCELED)  # no longer pending
        return statistics.pstdev(widths)
    assert spread(with_pending=True) > spread(with_pending=False)


def test_invalid_hyperparameters_are_forgotten_and_errors_count_as_bad() -> None:
    sampler, rng = TpeSampler(SPACE, (81,)), random.Random(1)
    drive(sampler, rng, range(1, 21))
    sampler.propose(21, rng)
    sampler.propose(22, rng)
    sampler.exited(21, ExitReason.INVALID_HP)
    sampler.exited(22, ExitReason.ERRORED)
    state = sampler.to_json()
    assert [row[0] for row in state["trials"]] == list(range(1, 21)) + [22]
    good, bad = sampler._split(81)
    assert sampler.trials[22].point in bad and sampler.trials[22].point not in good


# -- inside the searchers -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["random", "async_halving", "adaptive_asha"])
def test_searcher_runs_are_deterministic(name: str) -> None:
    spec = experiment(searcher_spec(name, max_trials=30))
    first = result_to_json(simulate(spec, bowl, workers=4, seed=2))
    assert first == result_to_json(simulate(spec, bowl, workers=4, seed=2))
    assert first != result_to_json(simulate(spec, bowl, workers=4, seed=3))


@pytest.mark.parametrize("name,stop_once", [("random", False), ("async_halving", False),
                                            ("async_halving", True), ("adaptive_asha", False)])
def test_snapshot_restore_mid_run_gives_identical_decisions(name: str, stop_once: bool) -> None:
    spec = searcher_spec(name, max_trials=40, stop_once=stop_once)
    events = recorded_events(spec, seed=4)
    assert len(events) >= 40
    for cut in (len(events) // 3, 2 * len(events) // 3):
        original = make_searcher(spec, SPACE, 4)
        original.start()
        for event in events[:cut]:
            feed(original, event)
        snapshot = json.loads(json.dumps(original.snapshot()))
        assert snapshot["sampler"]["sampler"] == "tpe"
        restored = restore_searcher(spec, SPACE, snapshot)
        for event in events[cut:]:
            assert feed(restored, event) == feed(original, event)


def test_the_default_sampler_leaves_snapshots_as_they_were() -> None:
    searcher = make_searcher(searcher_spec("async_halving", sampler="random"), SPACE, 1)
    searcher.start()
    assert "sampler" not in searcher.snapshot()


@pytest.mark.parametrize("name", ["async_halving", "adaptive_asha"])
def test_tpe_beats_random_sampling_on_a_correlated_objective(name: str) -> None:
    def median_regret(sampler: str) -> float:
        spec = experiment(searcher_spec(name, sampler=sampler, max_trials=100))
        regrets = []
        # Nine seeds: a median over five swung by 2-3x from one seed to the next.
        for seed in range(9):
            result = simulate(spec, bowl, workers=4, seed=seed)
            assert result.best is not None
            regrets.append(regret(result.trials[result.best.trial - 1].params))
        return statistics.median(regrets)
    assert median_regret("tpe") < 0.5 * median_regret("random")


# -- refusals ---------------------------------------------------------------------------

def spec_text(searcher: str, extra: str) -> str:
    return ("name: exp\nentrypoint: python3 train.py\nhyperparameters:\n"
            "  x: {type: int, minval: 1, maxval: 4, count: 4}\n"
            f"searcher:\n  name: {searcher}\n  metric: loss\n"
            + textwrap.indent(extra + "\n", "  ") + "  sampler: tpe\n")


@pytest.mark.parametrize("searcher,extra,line", [("grid", "max_length: 10", 9),
                                                 ("single", "max_length: 10", 9),
                                                 ("pbt", ("population_size: 4\nnum_rounds: 2\n"
                                                         "length_per_round: 5"), 11)])
def test_grid_single_and_pbt_refuse_tpe_at_the_key(searcher: str, extra: str,
                                                   line: int) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_text(searcher, extra), "spec.yaml")
    assert str(caught.value) == (
        f"spec.yaml:{line}: searcher.sampler: the {searcher!r} searcher does not sample new "
        f"params, so sampler 'tpe' has nothing to do; it works with random, async_halving, "
        f"adaptive_asha (or remove the key)")


def test_the_sampler_key_reads_and_defaults() -> None:
    spec = parse_spec(spec_text("random", "max_trials: 3\nmax_length: 10"), "spec.yaml")
    assert spec.searcher.sampler == "tpe"
    default = parse_spec(spec_text("random", "max_trials: 3\nmax_length: 10")
                         .replace("  sampler: tpe\n", ""), "spec.yaml")
    assert default.searcher.sampler == "random"


def test_a_searcher_built_directly_refuses_tpe_for_grid() -> None:
    with pytest.raises(SpecError, match="does not sample new params"):
        make_searcher(searcher_spec("grid", max_trials=None), Nested((("x", Int(1, 3, 3)),)), 0)


def test_preview_names_the_sampler(tmp_path: Any) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text("random", "max_trials: 3\nmax_length: 10"), encoding="utf-8")
    shown = CliRunner().invoke(cli, ["preview", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "Sampler: tpe: new trials' params are proposed from a density model" in shown.stdout
    as_json = CliRunner().invoke(cli, ["preview", str(path), "--json"])
    assert json.loads(as_json.stdout)["sampler"] == "tpe"
    path.write_text(spec_text("random", "max_trials: 3\nmax_length: 10")
                    .replace("  sampler: tpe\n", ""), encoding="utf-8")
    default = CliRunner().invoke(cli, ["preview", str(path)])
    assert "Sampler: random: new trials' params are drawn at random" in default.stdout
