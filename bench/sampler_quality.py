"""Sampler quality: `sampler: tpe` against the default random sampling, inside cade's ASHA
and Adaptive ASHA, on objectives whose optimum is known. Pure cade (no peers to install).

Objectives (FUNC(params, length, trial) -> loss, in a four-hyperparameter space: log, int,
double, categorical):
- power_law: cade's `cade_cli.search.objectives:power_law` (noisy; short lengths rank
  configurations imperfectly);
- unstable: cade's `unstable_power_law` (20% of configurations diverge and exit early);
- bowl: a smooth bowl whose every length ranks configurations as the full length does;
- crossing: learning curves that cross: configurations that are good at the full length
  start slowly, so short lengths rank them badly (misleading low fidelities).

Equal budget: every method runs until it has trained BUDGET length units in all (BUDGET / 81
full trainings; max_trials is set high enough never to end a search first). The incumbent
is the configuration with the best report at the highest length reached so far; its regret
is its noise-free full-length loss minus the best noise-free loss over REFERENCE random
configurations (the same reference for every method, so ratios are exact even if the true
optimum is a little lower). The table gives the median over seeds of the final regret.

Methods: cade's promotion-type ASHA (4 rungs) and Adaptive ASHA (standard), divisor 3,
4 simulated workers, each with `sampler: random` and `sampler: tpe`; and, when Optuna is
installed, Optuna's TPE (multivariate, constant liar) with its SuccessiveHalvingPruner
(reduction factor 3, a report at every length unit, trials run one at a time).

Usage: python bench/sampler_quality.py [--seeds 7] [--budget 2500]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from cade_cli.search import objectives
from cade_cli.search.simulate import simulate
from cade_cli.search.space import Categorical, Double, Int, Log, Nested, sample
from cade_cli.spec.experiment import ExperimentSpec, SearcherSpec

SPACE = Nested((("dropout", Double(0.0, 0.6)), ("lr", Log(-5, -1, 10)),
                ("optimizer", Categorical(("adam", "sgd", "rmsprop"))),
                ("width", Int(8, 512))))
MAX_LENGTH = 81
# Regrets are measured against the best of many random configurations, which a search can
# beat (a negative regret): below this floor a regret counts as at the optimum in a ratio.
REGRET_FLOOR = 1e-4
MANY_TRIALS = 10000   # a budget always runs out first
REFERENCE = 20000
WORKERS = 4


def _distance(params: dict[str, Any]) -> float:
    return (((math.log10(params["lr"]) + 3.2) / 4) ** 2 + ((params["width"] - 300) / 504) ** 2
            + (params["dropout"] - 0.1) ** 2 + (0.0 if params["optimizer"] == "adam" else 0.05))


def bowl(params: dict[str, Any], length: int, trial: int) -> float:
    return _distance(params) + 1.0 / math.sqrt(length)


def crossing(params: dict[str, Any], length: int, trial: int) -> float:
    # The closer to the optimum, the slower the start: at short lengths the ranking inverts.
    distance = _distance(params)
    slowness = 1.0 / (0.05 + distance)
    return distance + min(slowness, 20.0) / (1.0 + length)


def _noise_free_power_law(params: dict[str, Any], length: int) -> float:
    badness = objectives.quality(params)
    speed = 0.25 + 0.4 * (1.0 - objectives._unit_hash("speed", params) * 0.5 - badness * 0.5)
    return 0.05 + 0.8 * badness + 2.0 * float((1.0 + length) ** -speed)


def _unstable_truth(params: dict[str, Any], length: int) -> float:
    if objectives._unit_hash("unstable", params) < objectives.UNSTABLE_SHARE:
        return math.inf
    return _noise_free_power_law(params, length)


# name -> (objective the search sees, noise-free full-length loss)
OBJECTIVES: dict[str, tuple[Callable[..., float], Callable[[dict[str, Any]], float]]] = {
    "power_law": (objectives.power_law, lambda p: _noise_free_power_law(p, MAX_LENGTH)),
    "unstable": (objectives.unstable_power_law, lambda p: _unstable_truth(p, MAX_LENGTH)),
    "bowl": (bowl, lambda p: bowl(p, MAX_LENGTH, 0)),
    "crossing": (crossing, lambda p: crossing(p, MAX_LENGTH, 0)),
}
SEARCHERS = {
    "asha": {"name": "async_halving", "num_rungs": 4},
    "adaptive": {"name": "adaptive_asha", "mode": "standard"},
}


def reference_best(truth: Callable[[dict[str, Any]], float]) -> float:
    rng = random.Random(12345)
    return min(truth(sample(SPACE, rng)) for _ in range(REFERENCE))


class BudgetSpent(BaseException):
    """Raised inside the objective once the budget is spent (no searcher mistakes it for an
    error of the trial)."""


class Budget:
    """Charges each evaluation the length trained since the trial's last one; keeps the
    incumbent (best report at the highest length so far)."""

    def __init__(self, objective: Callable[..., float], budget: int) -> None:
        self.objective = objective
        self.budget = budget
        self.spent = 0
        self.trained: dict[Any, int] = {}
        self.incumbent: tuple[int, float, dict[str, Any]] | None = None  # (-length, value, p)

    def __call__(self, params: dict[str, Any], length: int, trial: Any) -> float:
        cost = max(0, length - self.trained.get(trial, 0))
        if self.spent + cost > self.budget:
            raise BudgetSpent
        self.spent += cost
        self.trained[trial] = max(length, self.trained.get(trial, 0))
        value = self.objective(params, length, trial)
        key = (-length, value, params)
        if self.incumbent is None or key[:2] < self.incumbent[:2]:
            self.incumbent = key
        return value


def run_cade(method: str, name: str, seed: int, budget: int) -> dict[str, Any] | None:
    searcher, sampler = method.split("-")
    spec = SearcherSpec(metric="loss", max_trials=MANY_TRIALS, max_length=MAX_LENGTH,
                        divisor=3, max_concurrent_trials=WORKERS, sampler=sampler,
                        **SEARCHERS[searcher])  # type: ignore[arg-type]
    experiment = ExperimentSpec(name="quality", entrypoint=("true",), hyperparameters=SPACE,
                                searcher=spec)
    charged = Budget(OBJECTIVES[name][0], budget)
    try:
        simulate(experiment, charged, workers=WORKERS, seed=seed)
    except BudgetSpent:
        pass
    return None if charged.incumbent is None else charged.incumbent[2]


def run_optuna(name: str, seed: int, budget: int) -> dict[str, Any] | None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    charged = Budget(OBJECTIVES[name][0], budget)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))

    def objective(trial: Any) -> float:
        params = {"dropout": trial.suggest_float("dropout", 0.0, 0.6),
                  "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
                  "optimizer": trial.suggest_categorical("optimizer",
                                                         ["adam", "sgd", "rmsprop"]),
                  "width": trial.suggest_int("width", 8, 512)}
        value = math.inf
        for length in range(1, MAX_LENGTH + 1):
            try:
                value = charged(params, length, trial.number)
            except FloatingPointError:
                raise optuna.TrialPruned() from None   # diverged: the trial ends
            trial.report(value, length)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    try:
        study.optimize(objective, n_trials=MANY_TRIALS)
    except BudgetSpent:
        pass
    return None if charged.incumbent is None else charged.incumbent[2]


def run(method: str, name: str, seed: int, budget: int) -> dict[str, Any] | None:
    if method == "optuna-tpe-sha":
        return run_optuna(name, seed, budget)
    return run_cade(method, name, seed, budget)


def optuna_installed() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--budget", type=int, default=2500)
    args = parser.parse_args()
    started = time.perf_counter()
    methods = [f"{searcher}-{sampler}" for searcher in SEARCHERS
               for sampler in ("random", "tpe")]
    if optuna_installed():
        methods.append("optuna-tpe-sha")
    print(f"budget {args.budget} length units ({args.budget / MAX_LENGTH:.0f} full trainings), "
          f"{args.seeds} seeds: median final regret; ratio = tpe / random\n")
    print("| objective | " + " | ".join(methods) + " | asha ratio | adaptive ratio |")
    print("|---|" + "---:|" * (len(methods) + 2))
    ratios: dict[str, list[float]] = {searcher: [] for searcher in SEARCHERS}
    for name, (_, truth) in OBJECTIVES.items():
        best = reference_best(truth)
        medians = {}
        for method in methods:
            finals = [run(method, name, seed, args.budget) for seed in range(args.seeds)]
            medians[method] = statistics.median(
                math.inf if params is None else truth(params) - best for params in finals)
        for searcher in SEARCHERS:
            ratios[searcher].append(max(medians[f"{searcher}-tpe"], REGRET_FLOOR)
                                    / max(medians[f"{searcher}-random"], REGRET_FLOOR))
        print(f"| {name} | " + " | ".join(f"{medians[m]:.4f}" for m in methods)
              + f" | {ratios['asha'][-1]:.2f} | {ratios['adaptive'][-1]:.2f} |")
    for searcher, values in ratios.items():
        geomean = math.exp(sum(math.log(r) for r in values) / len(values))
        print(f"\n{searcher}: geometric mean of tpe / random {geomean:.2f}", end="")
    print(f"\n\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
