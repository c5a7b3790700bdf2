"""bench/searcher_quality.py at CI size: cade's searchers only (the peers need Optuna and Ray,
which the test environment does not install), two functions, two seeds, a small budget.

No quality is asserted (two seeds say nothing); the tables' shape is, and that every run
ends with a finite regret, the same in the log and in the table of medians.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "searcher_quality.py"
CADE_MODES = ["random", "asha", "adaptive", "pbt", "asha-tpe", "adaptive-tpe", "adaptive-learned",
              "adaptive-learned-tpe", "asha-tpe-5r", "adaptive-learned-tpe-5r"]
COUNTED = [mode for mode in CADE_MODES if mode not in ("random", "pbt")]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_cade_only_at_ci_size(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    result = _run("--cade-only", "--seeds", "2", "--functions", "branin2", "sphere4",
                  "--budget", "300", "--jobs", "1", "--log", str(log), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((f, m, s) for f, m, s, _, _ in runs) == sorted(
        (f, m, s) for f in ("branin2", "sphere4") for m in CADE_MODES for s in (0, 1))
    assert all(budget == 300 and math.isfinite(regret) and regret >= 0
               for _, _, _, budget, regret in runs)

    lines = result.stdout.splitlines()
    assert lines[0] == ("Budget 300 length units (3 full trainings) per run, 2 seeds (0 1), "
                        "median final regret; (dev): not held out.")
    assert _cells(lines[2]) == ["function", *CADE_MODES]
    medians = {name: [float(cell) for cell in _cells(line)[1:]]
               for name, line in (("branin2", lines[4]), ("sphere4", lines[5]))}
    assert _cells(lines[4])[0] == "branin2" and _cells(lines[5])[0] == "sphere4 (dev)"
    for name, row in medians.items():
        expected = [statistics.median(r for f, m, _, _, r in runs if (f, m) == (name, mode))
                    for mode in CADE_MODES]
        assert row == [float(f"{value:.4f}") for value in expected]
    # No peers: no table against them, only the one against cade's random search.
    assert "best peer" not in result.stdout
    assert lines[7] == "Each cade mode's median regret / cade's random search's (`random`):"
    assert _cells(lines[9]) == ["function", *COUNTED]
    assert [_cells(line)[0] for line in lines[11:13]] == ["branin2", "sphere4"]
    assert all(math.isfinite(float(cell)) for line in lines[11:13] for cell in _cells(line)[1:])
    assert lines[13] == "" and re.fullmatch(rf"{len(runs)} runs in \d+ s\.", lines[14])


@pytest.mark.skipif(importlib.util.find_spec("optuna") is not None, reason="Optuna is installed")
def test_without_optuna_the_peers_are_refused_with_the_way_out(tmp_path: Path) -> None:
    result = _run("--seeds", "1", "--functions", "branin2", "--budget", "100", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", (
        "searcher_quality.py: the peers need Optuna (pip install 'cade[bench]'); "
        "--cade-only compares cade's searchers alone\n"))


def _bench_module(name: str = "searcher_quality") -> Any:
    """A module of bench/, imported as its scripts import each other (bench/ on the path)."""
    sys.path[:0] = [str(ROOT / "bench")]
    try:
        return importlib.import_module(name)
    finally:
        del sys.path[:1]


def _family_rows(module: Any) -> dict[str, tuple[int, float | None, bool]]:
    """A held-out family's functions: name -> (dimensions, minimum, held out)."""
    return {name: (dims, lowest, held_out)
            for name, (dims, _, lowest, held_out) in module.functions().items()}


def test_peers_workers_take_turns_in_simulated_time() -> None:
    """Two workers: each trains its trial a unit at a time, in turn; a worker whose trial
    ends starts the next one; the budget ends the run. With 1 worker, trials run one after
    another."""
    quality = _bench_module()
    lasting = {0: 2, 1: 3, 2: 1, 3: 2}   # trial -> the length at which it ends

    def trace(workers: int) -> list[tuple[int, int]]:
        steps: list[tuple[int, int]] = []
        started = iter(range(100))

        def step(trial: int, length: int) -> bool:
            if len(steps) == 7:
                raise quality.BudgetSpent
            steps.append((trial, length))
            return length < lasting.get(trial, 99)

        quality.run_workers(lambda: next(started), step, workers)
        return steps

    assert trace(2) == [(0, 1), (1, 1), (0, 2), (1, 2), (2, 1), (1, 3), (3, 1)]
    assert trace(1) == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]


def test_peer_workers_below_one_are_refused(tmp_path: Path) -> None:
    result = _run("--cade-only", "--peer-workers", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.endswith(
        "searcher_quality.py: error: --peer-workers must be at least 1 (got 0)\n")


def test_unknown_functions_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    result = _run("--cade-only", "--functions", "branin2", "brannin2", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "searcher_quality.py: error: unknown function(s) brannin2; known: mfh3_good," \
        in result.stderr
    assert "mf2_borehole" in result.stderr and "botorch_augmented_branin" in result.stderr
    assert ("(mf2: all mf2_*; botorch: all botorch_*; train: all train_*; tasks: all tasks_*; "
            "boost: all boost_*; linear: all linear_*; forest: all forest_*; "
            "svm: all svm_*)") in result.stderr


def _missing(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(package) is not None,
                              reason=f"{package} is installed")


@pytest.mark.parametrize("family, message", [
    pytest.param("mf2", "the mf2_* functions need the mf2 package: pip install --no-deps "
                 "--target DIR mf2 'setuptools<81', DIR on PYTHONPATH", marks=_missing("mf2")),
    pytest.param("botorch", "the botorch_* functions need BoTorch: pip install --no-deps "
                 "--target DIR botorch gpytorch linear_operator pyre_extensions "
                 "multipledispatch typing_inspect mypy_extensions jaxtyping wadler_lindig, DIR "
                 "on PYTHONPATH", marks=_missing("botorch")),
])
def test_without_its_package_a_family_is_refused_with_the_way_out(tmp_path: Path, family: str,
                                                                   message: str) -> None:
    result = _run("--cade-only", "--functions", family, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.endswith(f"searcher_quality.py: error: {message}\n")


class _Pair:
    """An mf2-like bi-fidelity function on [-2, 2] x [0, 4]: high (x1 - 1)^2 + (x2 - 3)^2,
    low its negative, so that only the top fidelity finds the minimum."""

    ndim = 2
    x_opt = None

    def __init__(self) -> None:
        import numpy as np

        self.l_bound, self.u_bound = np.array([-2.0, 0.0]), np.array([2.0, 4.0])

    @staticmethod
    def high(points):
        return (points[:, 0] - 1.0) ** 2 + (points[:, 1] - 3.0) ** 2

    def low(self, points):
        return -self.high(points)


def test_the_mf2_family_maps_the_box_and_moves_from_low_to_high(monkeypatch) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("scipy")
    import types

    monkeypatch.setitem(sys.modules, "mf2", types.SimpleNamespace(booth=_Pair()))
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import mf_mf2

    mf_mf2._function.cache_clear()
    mf_mf2.minimum.cache_clear()
    try:
        value = mf_mf2.function("mf2_booth")
        at_optimum = [0.75, 0.75]              # (1, 3) on the box
        assert value(at_optimum, 100) == 0.0
        assert value([0.0, 0.0], 100) == 9.0 + 9.0
        assert value([0.0, 0.0], 1) == -18.0   # the low fidelity alone
        assert value([0.0, 0.0], 10) == pytest.approx(0.0)   # half-way on the log scale
        assert mf_mf2.minimum("mf2_booth") == pytest.approx(0.0, abs=1e-9)
    finally:
        mf_mf2._function.cache_clear()
        mf_mf2.minimum.cache_clear()


class _Augmented:
    """A BoTorch-like multi-fidelity function: design inputs on [-5, 10], then fidelity
    inputs; its value is the sum of the input row, and the rows are kept to be read back."""

    def __init__(self, dim: int, fidelities: int = 2) -> None:
        import torch

        self.dim, self.optimal_value = dim, 0.0
        box = [(-5.0, 10.0)] * (dim - fidelities) + [(0.0, 1.0)] * fidelities
        self.bounds = torch.tensor(box).T   # as BoTorch's: 2 x dim
        self.rows: list[list[float]] = []

    def evaluate_true(self, rows):
        self.rows.append(rows[0].tolist())
        return rows.sum(dim=-1)


def test_the_botorch_family_maps_the_box_and_sets_every_fidelity_input(monkeypatch) -> None:
    pytest.importorskip("torch")
    import types

    augmented = _Augmented(4)
    multi_fidelity = types.SimpleNamespace(
        AugmentedBranin=lambda: _Augmented(3, 1), AugmentedHartmann=lambda: _Augmented(7, 1),
        AugmentedRosenbrock=lambda dim: augmented if dim == 4 else _Augmented(dim))
    monkeypatch.setitem(sys.modules, "botorch", types.ModuleType("botorch"))
    monkeypatch.setitem(sys.modules, "botorch.test_functions",
                        types.SimpleNamespace(multi_fidelity=multi_fidelity))
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import mf_botorch

    mf_botorch._function.cache_clear()
    try:
        family = mf_botorch.functions()
        assert {name: dims for name, (dims, *_) in family.items()} == {
            "botorch_augmented_branin": 2, "botorch_augmented_hartmann": 6,
            "botorch_augmented_rosenbrock2": 2, "botorch_augmented_rosenbrock4": 4}
        _, value, lowest, held_out = family["botorch_augmented_rosenbrock2"]
        assert (lowest, held_out) == (0.0, True)
        assert value([0.4, 1.0], 100) == pytest.approx(1.0 + 10.0 + 1.0 + 1.0)
        assert value([0.0, 0.0], 10) == pytest.approx(-10.0 + 0.5 + 0.5)  # half-way: s = 0.5
        assert augmented.rows[-2:] == [[1.0, 10.0, 1.0, 1.0], [-5.0, -5.0, 0.5, 0.5]]
        assert value([0.0, 0.0], 1) == -10.0   # the lowest fidelity: s = 0
    finally:
        mf_botorch._function.cache_clear()


def test_ratio_intervals_resample_the_seeds_for_every_method_at_once() -> None:
    quality = _bench_module()
    seeds = 9
    finals = {("f", "peer"): [1.0 + s for s in range(seeds)],
              ("f", "half"): [(1.0 + s) / 2 for s in range(seeds)],
              ("f", "same"): [1.0 + s for s in range(seeds)],
              ("f", "noisy"): [(1.0 + s) * (3.0 if s % 2 else 0.5) for s in range(seeds)]}
    intervals, met = quality.ratio_intervals(finals, ["half", "same", "noisy"], ("peer",), ["f"],
                                             resamples=400)
    # The same draw of seeds for every method: a mode that is a fixed multiple of the peer on
    # every seed keeps exactly that ratio in every resample.
    assert intervals[("f", "half")] == (0.5, 0.5) and intervals[("f", "same")] == (1.0, 1.0)
    assert met["half"] == 1.0 and met["same"] == 1.0
    low, high = intervals[("f", "noisy")]
    point = statistics.median(finals[("f", "noisy")]) / statistics.median(finals[("f", "peer")])
    assert low < point < high and 0.0 < met["noisy"] < 1.0
    # Seeded: the same call gives the same answer.
    assert quality.ratio_intervals(finals, ["noisy"], ("peer",), ["f"], resamples=400) == (
        {("f", "noisy"): (low, high)}, {"noisy": met["noisy"]})


def test_interval_table_shows_each_interval_and_the_share_meeting_the_goal() -> None:
    quality = _bench_module()
    finals = {(f, m): [float(s + 1) * factor for s in range(5)]
              for f in ("f", "g") for m, factor in (("peer", 1.0), ("half", 0.5))}
    assert quality.interval_table(finals, ["half"], ("peer",), ["f", "g"]).splitlines()[2:] == [
        "| function | half |", "|---|---:|", "| f | 0.50-0.50 |", "| g | 0.50-0.50 |",
        "| resamples meeting the goal | 100% |"]


def test_levy2_moves_its_optimum_at_low_fidelities_and_is_opt_in() -> None:
    quality = _bench_module()
    dims, levy2, minimum, held_out = quality.FUNCTIONS["levy2"]
    assert (dims, minimum, held_out) == (2, pytest.approx(0.1), False)
    assert "levy2" in quality.OPT_IN   # not in the default list the recorded tables used
    # Levy's minimum 0 is at 1 on [-10, 10], x = 0.55 on the unit cube; at fidelity 1 it
    # sits 0.5 lower on [-10, 10] (0.025 on the cube), and 1 / sqrt(z) is added.
    assert levy2([0.55, 0.55], 100) == pytest.approx(minimum)
    assert levy2([0.525, 0.525], 1) == pytest.approx(1.0)
    assert levy2([0.55, 0.55], 1) > 1.0 + 0.01
    assert levy2([0.525, 0.525], 100) > minimum + 0.01


def test_drift3_points_off_its_optimum_at_low_fidelities_and_is_opt_in() -> None:
    quality = _bench_module()
    dims, drift3, minimum, held_out = quality.FUNCTIONS["drift3"]
    assert (dims, minimum, held_out) == (3, pytest.approx(0.1), False)
    assert "drift3" in quality.OPT_IN
    optimum = [0.35, 0.6, 0.5]
    moved = [c + 0.3 * d / math.sqrt(3.0) for c, d in zip(optimum, (1, -1, 1))]
    assert drift3(optimum, 100) == pytest.approx(minimum)
    assert drift3(moved, 1) == pytest.approx(1.0)            # fidelity 1: its optimum moved
    assert drift3(optimum, 1) == pytest.approx(1.0 + 0.09)    # 0.3 away, squared
    assert drift3(moved, 100) == pytest.approx(minimum + 0.09)


def _training_family(module_name: str, rows: dict[str, tuple[int, float | None, bool]]
                     ) -> tuple[Any, dict[str, Any]]:
    """A held-out training family's module and functions, once its rows (name -> dimensions,
    minimum, held out) are as given and searcher_quality lists it. Skips without its packages."""
    pytest.importorskip("sklearn")
    module = _bench_module(module_name)
    if not module.available():
        pytest.skip(f"needs {module.NEEDS}")
    assert _family_rows(module) == rows
    assert module.FAMILY in {f.FAMILY for f in _bench_module().EXTERNAL}
    return module, module.functions()


def test_the_training_family_gives_each_point_one_learning_curve() -> None:
    mf_train, family = _training_family("mf_train", {"train_digits_mlp": (5, None, True),
                                                     "train_digits_softmax": (4, None, True),
                                                     "train_cancer_mlp": (5, None, True),
                                                     "train_wine_mlp": (5, None, True)})
    point = (0.5, 0.5, 0.2, 0.5, 0.5)
    assert mf_train.settings(point, hidden=True) == {
        "learning_rate": pytest.approx(10 ** -1.5), "momentum": 0.475, "l2": pytest.approx(1e-5),
        "batch": 64, "width": 32}
    wine = family["train_wine_mlp"][1]
    curve = [wine(point, z) for z in (1, 5, 30)]
    assert curve[0] > curve[1] > curve[2] > 0.0   # a sensible point learns
    # A fresh function trains the point again from scratch: the same curve, asked in any order.
    again = mf_train.function("train_wine_mlp")
    assert [again(point, z) for z in (30, 5, 1)] == curve[::-1]
    assert wine((0.51,) + point[1:], 30) != curve[2]   # another point, another curve
    # The largest rate and momentum diverge: DIVERGED from then on, not inf or nan.
    assert wine((1.0, 1.0, 0.0, 0.0, 1.0), 20) == mf_train.DIVERGED


def test_the_tasks_family_trains_with_adam_on_regression_and_classification() -> None:
    mf_tasks, family = _training_family("mf_tasks", {"tasks_diabetes": (5, None, True),
                                                     "tasks_friedman1": (5, None, True),
                                                     "tasks_classify4": (5, None, True),
                                                     "tasks_hastie": (5, None, True)})
    point = (0.5, 0.5, 0.2, 0.5, 0.5)
    assert mf_tasks.settings(point) == {
        "learning_rate": pytest.approx(10 ** -2.5), "beta1": pytest.approx(0.745),
        "l2": pytest.approx(1e-5), "batch": 64, "width": 23}
    # Regression: a standardised target, so predicting the mean scores about 1; a sensible
    # point learns well below that, and the curve is the point's own, asked in any order.
    friedman = family["tasks_friedman1"][1]
    curve = [friedman(point, z) for z in (1, 5, 30)]
    assert curve[0] > curve[1] > curve[2] and curve[2] < 0.5
    again = mf_tasks.function("tasks_friedman1")
    assert [again(point, z) for z in (30, 5, 1)] == curve[::-1]
    assert friedman((0.51,) + point[1:], 30) != curve[2]
    # Classification (hastie's -1/1 labels as two classes): cross-entropy below chance's log 2.
    hastie = family["tasks_hastie"][1]
    assert 0.0 < hastie(point, 30) < math.log(2)
    # Adam at the largest rate overfits the small diabetes data rather than diverging.
    diabetes = family["tasks_diabetes"][1]
    late = [diabetes((1.0, 0.0, 0.0, 0.0, 1.0), z) for z in (5, 100)]
    assert all(0.0 < value < mf_tasks.mf_train.DIVERGED for value in late)
    assert late[1] > late[0]
    with pytest.raises(KeyError):
        mf_tasks.function("tasks_iris")


def test_the_boost_family_grows_each_point_one_curve_of_boosting_rounds() -> None:
    mf_boost, family = _training_family("mf_boost", {"boost_cancer": (5, None, True),
                                                     "boost_moons": (5, None, True),
                                                     "boost_diabetes": (5, None, True),
                                                     "boost_friedman3": (5, None, True)})
    point = (0.5, 0.5, 0.2, 0.5, 0.5)
    assert mf_boost.settings(point) == {
        "learning_rate": pytest.approx(0.1), "max_leaf_nodes": 16, "min_samples_leaf": 3,
        "l2_regularization": pytest.approx(10 ** -1.5), "max_features": pytest.approx(0.55)}
    # Regression on a standardised target: the mean scores about 1, a sensible point far less;
    # its curve is its own whatever order the lengths are asked in (one sequence of growth).
    friedman = family["boost_friedman3"][1]
    curve = [friedman(point, z) for z in (1, 5, 30, 100)]
    assert curve[0] > curve[1] > curve[2] and curve[2] < 0.5
    again = mf_boost.function("boost_friedman3")
    assert [again(point, z) for z in (100, 30, 5, 1)] == curve[::-1]
    assert friedman((0.51,) + point[1:], 30) != curve[2]
    # Few rounds mislead: the largest rate with big trees leads after one round and then
    # overfits; the smallest rate starts far behind and ends ahead.
    cancer = family["boost_cancer"][1]
    fast, slow = (1.0, 1.0, 0.0, 0.0, 1.0), (0.0, 0.5, 0.2, 0.5, 0.5)
    assert cancer(fast, 1) < cancer(slow, 1) and cancer(fast, 100) > cancer(slow, 100)
    assert 0.0 < cancer(point, 100) < math.log(2)   # log loss below chance's
    with pytest.raises(KeyError):
        mf_boost.function("boost_iris")


def test_the_linear_family_trains_sgd_with_named_options_an_epoch_at_a_time() -> None:
    mf_linear, family = _training_family("mf_linear", {"linear_redundant": (5, None, True),
                                                       "linear_sparse": (5, None, True),
                                                       "linear_clusters": (5, None, True),
                                                       "linear_wide": (5, None, True)})
    point = (0.5, 0.3, 0.5, 0.1, 1.0)
    assert mf_linear.settings(point) == {
        "eta0": pytest.approx(0.01), "alpha": pytest.approx(10 ** -5.2),
        "learning_rate": "invscaling", "penalty": "l2", "average": True}
    # The named options: each third of a coordinate is one, the top edge the last.
    assert [mf_linear.settings((0.5, 0.5, x, x, x))["learning_rate"]
            for x in (0.0, 0.34, 0.67, 1.0)] == ["constant", "invscaling", "optimal", "optimal"]
    assert [mf_linear.settings((0.5, 0.5, x, x, x))["penalty"]
            for x in (0.0, 0.34, 0.67, 1.0)] == ["l2", "l1", "elasticnet", "elasticnet"]
    # Regression on a standardised target, more features than samples: a sensible point
    # learns well below the mean's 1, and its curve is its own, asked in any order.
    wide = family["linear_wide"][1]
    curve = [wide(point, z) for z in (1, 5, 30, 100)]
    assert curve[0] > curve[1] > curve[2] > curve[3] and curve[3] < 0.2
    again = mf_linear.function("linear_wide")
    assert [again(point, z) for z in (100, 30, 5, 1)] == curve[::-1]
    assert wide((0.51,) + point[1:], 30) != curve[2]   # another point, another order
    # The largest constant step overflows: DIVERGED from the first epoch on, never inf or nan.
    assert {wide((1.0, 0.0, 0.0, 0.0, 0.0), z) for z in (1, 50)} == {mf_linear.DIVERGED}
    # Few epochs mislead: the `optimal` schedule with a weak penalty starts far behind a
    # large decaying step and ends ahead of it.
    redundant = family["linear_redundant"][1]
    optimal, decaying = (0.5, 0.7, 0.9, 0.1, 0.0), (0.75, 0.3, 0.5, 0.1, 0.0)
    assert redundant(optimal, 1) > 1.0 > redundant(decaying, 1)
    assert redundant(optimal, 100) < redundant(decaying, 100) < math.log(2)
    with pytest.raises(KeyError):
        mf_linear.function("linear_iris")


def test_the_forest_family_grows_each_point_one_curve_a_tree_at_a_time() -> None:
    mf_forest, family = _training_family("mf_forest", {"forest_quantiles": (5, None, True),
                                                       "forest_circles": (5, None, True),
                                                       "forest_friedman2": (5, None, True),
                                                       "forest_sparse": (5, None, True)})
    point = (0.5, 0.3, 0.5, 0.7, 1.0)
    assert mf_forest.settings(point) == {
        "max_depth": 8, "min_samples_leaf": 3, "max_features": pytest.approx(0.525),
        "kind": "extra", "bootstrap": True}
    # The named options: each half of a coordinate is one.
    assert [mf_forest.settings((0.5, 0.5, 0.5, x, x))["kind"]
            for x in (0.0, 0.49, 0.5, 1.0)] == ["random", "random", "extra", "extra"]
    assert [mf_forest.settings((0.5, 0.5, 0.5, x, x))["bootstrap"]
            for x in (0.0, 0.49, 0.5, 1.0)] == [False, False, True, True]
    # Regression on a standardised target: more trees, a lower loss, well below the mean's 1;
    # the curve is the point's own, asked in any order.
    friedman = family["forest_friedman2"][1]
    curve = [friedman(point, z) for z in (1, 5, 30, 100)]
    assert curve[0] > curve[1] > curve[2] > curve[3] and curve[3] < 0.2
    again = mf_forest.function("forest_friedman2")
    assert [again(point, z) for z in (100, 30, 5, 1)] == curve[::-1]
    assert friedman((0.51,) + point[1:], 30) != curve[2]   # another point, another forest
    # Few trees mislead: one deep tree's pure leaves count every confident mistake in full,
    # so deep trees start far behind shallow ones and end ahead.
    circles = family["forest_circles"][1]
    deep, shallow = (1.0, 0.0, 0.5, 0.0, 1.0), (0.0, 0.5, 0.5, 0.0, 1.0)
    assert circles(deep, 1) > 2.0 > circles(shallow, 1)
    assert circles(deep, 100) < circles(shallow, 100) < math.log(2)
    assert family["forest_quantiles"][1](deep, 1) == mf_forest.DIVERGED
    with pytest.raises(KeyError):
        mf_forest.function("forest_iris")


def test_the_svm_family_fits_each_point_afresh_on_longer_prefixes_of_the_data(monkeypatch
                                                                              ) -> None:
    mf_svm, family = _training_family("mf_svm", {"svm_swiss_roll": (5, None, True),
                                                 "svm_s_curve": (5, None, True),
                                                 "svm_blobs": (5, None, True),
                                                 "svm_xor": (5, None, True)})
    import numpy as np
    from sklearn.svm import SVC

    point = (0.6, 0.75, 0.1, 0.2, 0.5)
    # gamma is 1 / features at x1 = 0.75: 3 features on the S curve, 6 in the blobs.
    assert mf_svm.settings(point, "svm_s_curve") == {
        "C": pytest.approx(10.0), "gamma": pytest.approx(1 / 3), "kernel": "rbf",
        "epsilon": pytest.approx(10 ** -2.5), "tol": pytest.approx(10 ** -2.5)}
    assert mf_svm.settings(point, "svm_blobs") == {
        "C": pytest.approx(10.0), "gamma": pytest.approx(1 / 6), "kernel": "rbf",
        "class_weight": None, "tol": pytest.approx(10 ** -2.5)}
    # The named options: each third of a coordinate is a kernel, the top edge the last; for
    # classes each half of the next is a weighting.
    assert [mf_svm.settings((0.5, 0.5, x, x, 0.5), "svm_xor")["kernel"]
            for x in (0.0, 0.34, 0.67, 1.0)] == ["rbf", "poly", "sigmoid", "sigmoid"]
    assert [mf_svm.settings((0.5, 0.5, 0.5, x, 0.5), "svm_xor")["class_weight"]
            for x in (0.0, 0.49, 0.5, 1.0)] == [None, None, "balanced", "balanced"]
    # Regression on a standardised target: more data, a lower loss, well below the mean's 1;
    # the curve is the point's own, asked in any order.
    s_curve = family["svm_s_curve"][1]
    curve = [s_curve(point, z) for z in (1, 5, 30, 100)]
    assert curve[0] > curve[1] > curve[2] > curve[3] and curve[3] < 0.1
    again = mf_svm.function("svm_s_curve")
    assert [again(point, z) for z in (100, 30, 5, 1)] == curve[::-1]
    assert s_curve((0.61,) + point[1:], 30) != curve[2]   # another point, another curve
    # The value at length z is the hinge loss of an SVM fitted on the first z % of the
    # training part, whose first two samples are of both classes.
    train_x, train_y, valid_x, valid_y = mf_svm._dataset("svm_blobs")
    assert len(set(train_y[:2])) == 2 == len(set(mf_svm._dataset("svm_xor")[1][:2]))
    size = math.ceil(len(train_y) * 30 / 100)
    model = SVC(**mf_svm.settings(point, "svm_blobs"), coef0=1.0, max_iter=mf_svm.MAX_ITER)
    model.fit(train_x[:size], train_y[:size])
    margins = np.where(valid_y == model.classes_[1], 1.0, -1.0) * model.decision_function(valid_x)
    assert family["svm_blobs"][1](point, 30) == pytest.approx(np.maximum(0.0, 1.0 - margins).mean())
    assert 0.0 < family["svm_xor"][1](point, 1) < mf_svm.DIVERGED   # 3 samples, 2 classes
    # Little data misleads: the sigmoid kernel with large C scores better on 5 % of the roll
    # than on all of it, where its loss passes DIVERGED and counts as DIVERGED.
    roll = family["svm_swiss_roll"][1]
    sigmoid = (1.0, 0.5, 1.0, 0.0, 0.0)
    assert roll(sigmoid, 5) < 2.0 and roll(sigmoid, 100) == mf_svm.DIVERGED
    # A loss that is no number counts as DIVERGED too.
    train_x, train_y, valid_x, valid_y = mf_svm._dataset("svm_s_curve")
    monkeypatch.setattr(mf_svm, "_dataset",
                        lambda name: (train_x, train_y, valid_x, valid_y * np.nan))
    assert mf_svm.function("svm_s_curve")(point, 1) == mf_svm.DIVERGED
    with pytest.raises(KeyError):
        mf_svm.function("svm_iris")


def test_without_a_known_minimum_regret_is_measured_from_the_best_value_seen() -> None:
    quality = _bench_module()
    quality.FUNCTIONS["unknown"] = (2, lambda x, z: 0.0, None, True)
    try:
        finals = {("unknown", "a"): [0.5, 0.7], ("unknown", "b"): [0.4, 0.9],
                  ("branin2", "a"): [0.1, 0.2]}
        assert quality.best_seen_regrets(finals) == {
            ("unknown", "a"): [pytest.approx(0.1), pytest.approx(0.3)],
            ("unknown", "b"): [0.0, pytest.approx(0.5)], ("branin2", "a"): [0.1, 0.2]}
    finally:
        del quality.FUNCTIONS["unknown"]


@pytest.mark.parametrize(("script", "names"), [
    ("mf_train.py", ["train_digits_mlp", "train_digits_softmax", "train_cancer_mlp",
                     "train_wine_mlp"]),
    ("mf_tasks.py", ["tasks_diabetes", "tasks_friedman1", "tasks_classify4", "tasks_hastie"]),
    ("mf_boost.py", ["boost_cancer", "boost_moons", "boost_diabetes", "boost_friedman3"]),
    ("mf_linear.py", ["linear_redundant", "linear_sparse", "linear_clusters", "linear_wide"]),
    ("mf_forest.py", ["forest_quantiles", "forest_circles", "forest_friedman2", "forest_sparse"]),
    ("mf_svm.py", ["svm_swiss_roll", "svm_s_curve", "svm_blobs", "svm_xor"])])
def test_the_training_families_say_how_well_short_trainings_rank(script: str,
                                                                 names: list[str]) -> None:
    pytest.importorskip("sklearn")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--points", "8"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == names
    for line in lines:
        rhos = [float(r) for r in re.findall(r"(?<=: )-?\d\.\d\d|(?<=\()-?\d\.\d\d(?=\))", line)]
        assert len(rhos) == 8 and all(-1.0 <= rho <= 1.0 for rho in rhos), line


def test_modes_choose_cade_s_modes_and_random_search_is_always_one(tmp_path: Path) -> None:
    result = _run("--cade-only", "--seeds", "1", "--functions", "branin2", "--budget", "200",
                  "--jobs", "1", "--modes", "asha-tpe", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Only held-out functions in the table: the header has no "(dev)" to explain.
    assert lines[0] == ("Budget 200 length units (2 full trainings) per run, 1 seeds (0), "
                        "median final regret.")
    assert _cells(lines[2]) == ["function", "random", "asha-tpe"]
    assert _cells(lines[8]) == ["function", "asha-tpe"]
    refused = _run("--cade-only", "--modes", "asha-tpee", cwd=tmp_path)
    assert refused.returncode == 2 and "invalid choice: 'asha-tpee'" in refused.stderr


def test_ray_lead_builds_ray_s_ladder_and_cutoff() -> None:
    lead = _bench_module("ray_lead")
    # Ray's ladder is built up from 1: its last choice at 81, not at Determined's 33.
    assert lead.ray_ladder(6, 3, 100) == (1, 3, 9, 27, 81, 100)
    assert lead.ray_ladder(2, 3, 100) == (81, 100)
    assert lead.ray_ladder(4, 2, 10) == (2, 4, 8, 10)


def test_ray_s_cutoff_passes_the_first_at_a_rung_and_then_the_earlier_third() -> None:
    import bisect
    from types import SimpleNamespace

    from cade_cli.search.searchers.brackets import RungEntry, StoppingBracket

    pytest.importorskip("numpy")
    lead = _bench_module("ray_lead")
    bracket = SimpleNamespace(divisor=3)
    rung: list[RungEntry] = []
    ray, determined = [], []
    for trial, value in enumerate((5.0, 6.0, 4.0, 5.2, 4.5)):
        position = bisect.bisect_left(rung, value, key=lambda entry: entry.value)
        rung.insert(position, RungEntry(trial, value))
        ray.append(lead.ray_goes_on(bracket, rung, position))
        determined.append(StoppingBracket._goes_on(bracket, rung, position))
    # 5.0: nothing earlier; 6.0 > 5.0; 4.0 <= 5.33 (a third from 5 to 6); 5.2 > 4.67;
    # 4.5 <= 5.0 (a third of the way through 4, 5, 5.2, 6), where Determined keeps only
    # the best one of five.
    assert ray == [True, False, True, False, True]
    assert determined == [True, False, True, False, False]


def test_each_peer_is_measured_against_the_best_other_peer() -> None:
    quality = _bench_module()
    peers = ("p", "q", "r")
    medians = {("f", "p"): 1.0, ("f", "q"): 2.0, ("f", "r"): 4.0,
               ("g", "p"): 3.0, ("g", "q"): 1.0, ("g", "r"): 1.2}
    lines = quality.peers_against_each_other(medians, peers, ["f", "g"])
    # p: 1/2 on f, 3/1 on g; q: 2/1, 1/1.2; r: 4/1, 1.2/1.
    assert lines[3:] == ["| statistic | p | q | r |", "|---|---:|---:|---:|",
                         "| geometric mean | 1.22 | 1.29 | 2.19 |",
                         "| worst | 3.00 | 2.00 | 4.00 |",
                         "| functions above 1.25 | 1 | 1 | 1 |"]
    assert quality.peers_against_each_other(medians, ("p",), ["f", "g"]) == []


def test_tables_only_without_a_complete_seed_says_so(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    log.write_text(json.dumps(["branin2", "random", 0, 300, 1.5]) + "\n")
    result = _run("--cade-only", "--tables-only", "--seeds", "1", "--functions", "branin2",
                  "--budget", "300", "--log", str(log), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("searcher_quality.py: no seed has every run of these functions "
                             f"and methods at budget 300 in {log}\n")


@pytest.mark.parametrize("script", ["searcher_quality", "ray_lead"])
@pytest.mark.parametrize(("option", "value", "why"), [
    ("--budget", "0", "must be at least 1 (got 0)"),
    ("--seeds", "-2", "must be at least 1 (got -2)"),
    ("--jobs", "two", "expected a whole number, got 'two'"),
])
def test_counts_below_one_are_refused_before_anything_runs(script: str, option: str, value: str,
                                                           why: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), option, value],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"{script}.py: error: argument {option}: {why}"
