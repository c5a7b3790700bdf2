"""Searcher quality: cade's searchers against Optuna's and Ray Tune's pruners, same budget.

Benchmarks: mf-prior-bench's multi-fidelity Hartmann functions (mfh3, mfh6 and their `_bad`
and `_terrible` variants, whose low fidelities are biased and noisy). A trial's "length" is
the benchmark's fidelity (1..100); training a trial from length a to b costs b - a.

Every method samples configurations at random (the pruner/scheduler is what is compared),
except the cade `-tpe` methods (`sampler: tpe`, see bench/sampler_quality.py), and
runs until it has spent the same total training length (BUDGET full trainings' worth). What
each method knows is traced in the order it learns it; the trace is cut at the budget.

- incumbent: the configuration with the best value among evaluations at the highest length
  any evaluation has reached so far (full length once one trial got there);
- regret: the incumbent's full-length value minus the benchmark's optimum;
- final regret: the regret when the budget is spent (median over seeds);
- length-to-target: training length spent until the regret first drops to the target, the
  median final regret of cade's random search on that benchmark ("how fast does a method
  get where random search ends"); runs that never reach it count as infinite.

Peers: Optuna's SuccessiveHalvingPruner and HyperbandPruner (RandomSampler, a report at
every unit of length), and Ray Tune's ASHA scheduler (AsyncHyperBandScheduler) driven
directly through its scheduler interface (no Ray cluster is started: the scheduler's
decisions are the same, and a cluster would only add start-up time).

Usage (bench extra: pip install -e '.[bench]'):
    python bench/searcher_quality.py [--seeds 20] [--budget 30] [--jobs 2] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

BENCHMARKS = ("mfh3", "mfh3_bad", "mfh3_terrible", "mfh6", "mfh6_bad", "mfh6_terrible")
MAX_LENGTH = 100
DIVISOR = 3


class BudgetSpent(BaseException):
    """Raised from inside a method's objective once the budget is spent.

    A BaseException so that no searcher or pruner mistakes it for a failing trial.
    """


@dataclass
class Trace:
    """Evaluations in the order the method saw them, with the length spent so far."""

    budget: int
    spent: int = 0
    trained: dict[Any, int] = field(default_factory=dict)
    events: list[tuple[int, tuple[float, ...], int, float]] = field(default_factory=list)

    def evaluate(self, bench: Any, key: Any, config: tuple[float, ...], length: int,
                 start: int = 0) -> float:
        done = self.trained.get(key, start)
        cost = max(0, length - done)
        if self.spent + cost > self.budget:
            raise BudgetSpent
        self.spent += cost
        self.trained[key] = max(done, length)
        value = query(bench, config, length)
        # Lengths past the top fidelity (PBT keeps training) evaluate at the top fidelity.
        self.events.append((self.spent, config, min(length, MAX_LENGTH), value))
        return value


def query(bench: Any, config: tuple[float, ...], length: int) -> float:
    values = {f"X_{i}": x for i, x in enumerate(config)}
    result = bench.query(bench.Config.from_dict(values), at=min(max(length, 1), MAX_LENGTH))
    return float(result.value.value)


def regret_curve(bench: Any, trace: Trace, optimum: float) -> list[tuple[int, float]]:
    """(length spent, incumbent regret) after each evaluation."""
    curve: list[tuple[int, float]] = []
    top_length, best_value, best_config = 0, math.inf, None
    full_cache: dict[tuple[float, ...], float] = {}
    for spent, config, length, value in trace.events:
        if length > top_length:
            top_length, best_value, best_config = length, value, config
        elif length == top_length and value < best_value:
            best_value, best_config = value, config
        assert best_config is not None
        if best_config not in full_cache:
            full_cache[best_config] = query(bench, best_config, MAX_LENGTH)
        curve.append((spent, full_cache[best_config] - optimum))
    return curve


# --- cade's searchers through cade's own simulator ---------------------------------------

def cade_spec(method: str, dims: int, budget_trials: int) -> Any:
    from cade_cli.spec.experiment import parse_spec

    hps = "\n".join(f"  X_{i}: {{type: double, minval: 0.0, maxval: 1.0}}" for i in range(dims))
    many = budget_trials * 40  # more than the budget can ever use: the budget ends the run
    searchers = {
        "random": f"name: random\n  max_trials: {many}\n  max_length: {MAX_LENGTH}",
        "asha-promotion": (f"name: async_halving\n  num_rungs: 4\n  divisor: {DIVISOR}\n"
                           f"  max_trials: {many}\n  max_length: {MAX_LENGTH}\n  stop_once: false"),
        "asha-stopping": (f"name: async_halving\n  num_rungs: 4\n  divisor: {DIVISOR}\n"
                          f"  max_trials: {many}\n  max_length: {MAX_LENGTH}\n  stop_once: true"),
        "pbt": ("name: pbt\n  population_size: 16\n  num_rounds: 400\n  length_per_round: 10\n"
                "  replace_function: {truncate_fraction: 0.25}\n"
                "  explore_function: {resample_probability: 0.25, perturb_factor: 0.2}"),
    }
    for mode in ("aggressive", "standard", "conservative"):
        searchers[f"adaptive-{mode}"] = (
            f"name: adaptive_asha\n  mode: {mode}\n  max_rungs: 4\n  divisor: {DIVISOR}\n"
            f"  max_trials: {many}\n  max_length: {MAX_LENGTH}")
    # `-tpe` methods: the same searcher with `sampler: tpe` (model-based proposals).
    for base in ("asha-promotion", "adaptive-standard"):
        searchers[f"{base}-tpe"] = searchers[base] + "\n  sampler: tpe"
    text = (f"name: quality-{method}\nentrypoint: none\nhyperparameters:\n{hps}\n"
            f"searcher:\n  metric: value\n  max_concurrent_trials: 4\n  {searchers[method]}\n")
    return parse_spec(text, source=f"<{method}>")


def run_cade(method: str, bench: Any, dims: int, trace: Trace, seed: int) -> None:
    from cade_cli.search.simulate import simulate

    spec = cade_spec(method, dims, trace.budget // MAX_LENGTH)
    parents: dict[int, int] = {}

    def objective(params: dict[str, Any], length: int, trial: int) -> float:
        config = tuple(float(params[f"X_{i}"]) for i in range(dims))
        # A PBT child starts at its parent's length: only what it trains itself is spent.
        start = parents.get(trial, 0)
        return trace.evaluate(bench, trial, config, length, start)

    if method == "pbt":
        objective = _pbt_objective(objective, parents, 10)
    try:
        simulate(spec, objective, workers=4, seed=seed)
    except BudgetSpent:
        pass


def _pbt_objective(inner: Callable[..., float], starts: dict[int, int],
                   per_round: int) -> Callable[..., float]:
    """PBT children resume at their parent's length: their first report is one round on."""
    seen: set[int] = set()

    def objective(params: dict[str, Any], length: int, trial: int) -> float:
        if trial not in seen:
            seen.add(trial)
            starts[trial] = max(0, length - per_round)
        return inner(params, length, trial)

    return objective


# --- peers --------------------------------------------------------------------------------

def run_optuna(pruner_name: str, bench: Any, dims: int, trace: Trace, seed: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner: Any
    if pruner_name == "sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=DIVISOR)
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_LENGTH,
                                                reduction_factor=DIVISOR)
    # A fixed study name: Hyperband assigns brackets by hashing it with the trial number.
    study = optuna.create_study(study_name=f"quality-{seed}", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(trial: Any) -> float:
        config = tuple(trial.suggest_float(f"X_{i}", 0.0, 1.0) for i in range(dims))
        value = math.inf
        for step in range(1, MAX_LENGTH + 1):
            value = trace.evaluate(bench, trial.number, config, step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    try:
        study.optimize(objective, n_trials=trace.budget * 10)
    except BudgetSpent:
        pass


@dataclass
class _RayTrial:
    trial_id: str


def run_ray_asha(bench: Any, dims: int, trace: Trace, seed: int) -> None:
    import random

    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    scheduler = AsyncHyperBandScheduler(time_attr="training_iteration", metric="value",
                                        mode="min", max_t=MAX_LENGTH, grace_period=1,
                                        reduction_factor=DIVISOR, brackets=1)
    rng = random.Random(seed)
    number = 0
    try:
        while True:
            number += 1
            trial = _RayTrial(f"t{number}")
            config = tuple(rng.random() for _ in range(dims))
            scheduler.on_trial_add(None, trial)
            for step in range(1, MAX_LENGTH + 1):
                value = trace.evaluate(bench, number, config, step)
                result = {"training_iteration": step, "value": value}
                if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                    break
            scheduler.on_trial_complete(None, trial, result)
    except BudgetSpent:
        pass


CADE_METHODS = ("random", "asha-promotion", "asha-stopping", "adaptive-aggressive",
                "adaptive-standard", "adaptive-conservative", "pbt", "asha-promotion-tpe",
                "adaptive-standard-tpe")
PEER_METHODS = ("optuna-sha", "optuna-hyperband", "ray-asha")


def run_one(job: tuple[str, str, int, int]) -> tuple[str, str, int, list[tuple[int, float]]]:
    import mfpbench

    benchmark, method, seed, budget = job
    bench = mfpbench.get(benchmark, seed=seed)
    dims = len(list(bench.space.values()))
    optimum = float(bench.metric_optimums["value"].value)
    trace = Trace(budget=budget)
    if method in CADE_METHODS:
        run_cade(method, bench, dims, trace, seed)
    elif method == "ray-asha":
        run_ray_asha(bench, dims, trace, seed)
    else:
        run_optuna(method.split("-", 1)[1], bench, dims, trace, seed)
    return benchmark, method, seed, regret_curve(bench, trace, optimum)


# --- the table ----------------------------------------------------------------------------

def length_to(curve: list[tuple[int, float]], target: float) -> float:
    for spent, regret in curve:
        if regret <= target:
            return float(spent)
    return math.inf


def summarise(results: list[tuple[str, str, int, list[tuple[int, float]]]],
              methods: tuple[str, ...]) -> dict[str, dict[str, tuple[float, float]]]:
    curves: dict[tuple[str, str], list[list[tuple[int, float]]]] = {}
    for benchmark, method, _seed, curve in results:
        curves.setdefault((benchmark, method), []).append(curve)

    def final(curve: list[tuple[int, float]]) -> float:
        return curve[-1][1] if curve else math.inf

    table: dict[str, dict[str, tuple[float, float]]] = {}
    for benchmark in BENCHMARKS:
        target = statistics.median(final(c) for c in curves[(benchmark, "random")])
        for method in methods:
            runs = curves[(benchmark, method)]
            regret = statistics.median(final(c) for c in runs)
            # median_low: an even number of seeds must not average a finite length with "never".
            to_target = statistics.median_low(length_to(c, target) for c in runs)
            table.setdefault(method, {})[benchmark] = (regret, to_target)
    return table


def markdown(table: dict[str, dict[str, tuple[float, float]]], budget: int, seeds: int) -> str:
    head = "| method | " + " | ".join(f"{b} regret | {b} to-target" for b in BENCHMARKS) + " |"
    rule = "|---|" + "---:|---:|" * len(BENCHMARKS)
    lines = [head, rule]
    for method, row in table.items():
        cells = []
        for benchmark in BENCHMARKS:
            regret, to_target = row[benchmark]
            cells.append(f"{regret:.4f} | " + ("never" if math.isinf(to_target) else f"{to_target:.0f}"))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Budget {budget} units of length ({budget // MAX_LENGTH} full trainings) per run, "
                 f"{seeds} seeds, medians. Ratio rows: cade's best method / best peer "
                 "(< 1 means cade's best is better).")
    lines.append("")
    lines.append("| benchmark | cade's best (regret) | best peer (regret) | regret ratio | "
                 "to-target ratio |")
    lines.append("|---|---|---|---:|---:|")
    for benchmark in BENCHMARKS:
        best_cade = min((m for m in table if not _is_peer(m)), key=lambda m: table[m][benchmark][0])
        best_peer = min((m for m in table if _is_peer(m)), key=lambda m: table[m][benchmark][0])
        cade_r, cade_t = table[best_cade][benchmark]
        peer_r, peer_t = table[best_peer][benchmark]
        lines.append(f"| {benchmark} | {best_cade} ({cade_r:.4f}) | {best_peer} ({peer_r:.4f}) | "
                     f"{_ratio(cade_r, peer_r)} | {_ratio(cade_t, peer_t)} |")
    return "\n".join(lines)


def _is_peer(method: str) -> bool:
    return method in PEER_METHODS


def _ratio(a: float, b: float) -> str:
    if math.isinf(a) and math.isinf(b):
        return "both never"
    if math.isinf(b):
        return "cade only (peer never)"
    if math.isinf(a) or b == 0:
        return "inf (cade never)"
    return f"{a / b:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=30, help="in full trainings (x100 length)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    budget = args.budget * MAX_LENGTH
    methods = CADE_METHODS + PEER_METHODS
    jobs = [(b, m, s, budget) for b in BENCHMARKS for m in methods for s in range(args.seeds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, jobs, chunksize=4))
    text = markdown(summarise(results, methods), budget, args.seeds)
    text += f"\n\n{len(jobs)} runs in {time.perf_counter() - started:.0f} s.\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
