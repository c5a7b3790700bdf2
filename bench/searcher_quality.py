"""Searcher quality: cade's searchers against Optuna's and Ray Tune's, at an equal budget.

Functions (bench/mf_functions.py, on the unit cube, fidelity 1..100 = the trial's length):
mf-prior-bench's multi-fidelity Hartmann 3 and 6 in their good, moderate, bad and terrible
variants and the multi-fidelity Branin with and without noise (bench/mf_branin.py) (held
out: nothing in cade was tuned on them), and the functions the bracket policy and the TPE
constants were developed on (`sphere4`, `crossing4`, `valley3_noisy`, `levy2`); when named,
and when their packages import, the bi-fidelity functions of mf2 (bench/mf_mf2.py) and the
multi-fidelity test functions of BoTorch (bench/mf_botorch.py), both held out and not held by
cade; and, when named, real training (bench/mf_train.py: small networks trained by SGD on
scikit-learn's bundled datasets, the value at length z the validation loss after z epochs;
bench/mf_tasks.py: deeper networks trained with Adam on scikit-learn's regression and
classification tasks; bench/mf_boost.py: gradient-boosted trees, the length boosting rounds;
bench/mf_linear.py: linear models trained by SGD, three of their settings named options;
bench/mf_forest.py: random forests and extra trees, the length the number of trees;
bench/mf_svm.py: kernel SVMs, the length the share of the training data they are fitted on),
held out too. Training a trial from length a to b costs b - a.

Every method runs until it has spent the same total training length (BUDGET units); what it
learns is charged in the order it learns it, and the run is cut when the budget is spent.
- incumbent: the point with the best value among evaluations at the highest length any
  evaluation has reached so far;
- regret: the incumbent's noise-free full-length value minus the function's minimum; where
  the minimum is not known (real training), minus the lowest such value any run of the
  table reached (the --log holds the values themselves, the tables subtract);
- the table: the median over seeds of the final regret.

cade runs through its own simulator (`cade_cli.search.simulate.simulate`, 4 workers): the
searchers decide exactly as in a real run. Peers run 4 trials side by side too (in simulated
time, `run_workers`; `--peer-workers 1`: one at a time, each proposal seeing every earlier
result) and report at every unit of length: Optuna's RandomSampler and TPESampler
(multivariate, constant liar) with its SuccessiveHalvingPruner and HyperbandPruner (reduction
factor 3) through its ask-and-tell interface, and Ray Tune's ASHA scheduler
(AsyncHyperBandScheduler) driven through its scheduler interface with random sampling, when
`ray` imports (no Ray cluster is started: the decisions are the same), and BOHB's model
(TuneBOHB) inside that ASHA when `hpbandster` and `ConfigSpace` import too.

PBT runs too, but by default is not counted as a cade mode: the simulated objective has no
history (the value at length L depends on the params alone), so a PBT child whose params were
just perturbed is scored as if it had trained with them from the start. That flatters PBT.
`--memory L` gives cade's trials a history (`cade simulate --memory`, search/history.py): each
function is evaluated at the params of the simulated model, which a PBT child inherits from
its parent's checkpoint; the incumbent is that model. Then PBT is counted. Nothing else
changes: trials that train only with their own params are scored exactly as without it, and
the peers never resume a trial from another's checkpoint.

Usage: PYTHONPATH=. python bench/searcher_quality.py [--seeds 10] [--budget 1500] [--jobs 2]
       [--functions NAME ... | mf2 | botorch | train | tasks | boost | linear
       | forest | svm]
       [--methods NAME ...] [--memory L] [--peer-workers N] [--log RUNS.jsonl]
       [--tables-only] [--intervals] [--out FILE.md] [--cade-only] [--modes MODE ...]

`--intervals` adds how far each ratio to the best peer moves with the seeds drawn: seeds
resampled with replacement (the same draw for every function and method), every ratio
computed again, its 5th-95th percentile and the share of draws meeting the goal's ratio parts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import mf_boost
import mf_botorch
import mf_branin
import mf_forest
import mf_functions
import mf_linear
import mf_mf2
import mf_svm
import mf_tasks
import mf_train
from mf_functions import MAX_FIDELITY, Function

FUNCTIONS = {**mf_functions.FUNCTIONS, **mf_branin.FUNCTIONS}
# Run only when named with --functions: added after the recorded tables (bench/RESULTS.md),
# which the default list reproduces.
OPT_IN = ("valley3_noisy", "levy2", "drift3")
# Held-out families (bench/mf_mf2.py, mf_botorch.py, mf_train.py, mf_tasks.py, mf_boost.py,
# mf_linear.py, mf_forest.py, mf_svm.py), run only when named, one by one or all at once by
# the family's name; each needs its package.
EXTERNAL = (mf_mf2, mf_botorch, mf_train, mf_tasks, mf_boost, mf_linear, mf_forest, mf_svm)
MAX_LENGTH = MAX_FIDELITY
DIVISOR = 3
WORKERS = 4


class BudgetSpent(BaseException):
    """Raised from inside a method's objective once the budget is spent.

    A BaseException so that no searcher or pruner mistakes it for a failing trial.
    """


@dataclass
class Trace:
    """Charges each evaluation the length trained since the trial's last one; keeps the
    incumbent (the best value at the highest length reached)."""

    function: Function
    budget: int
    spent: int = 0
    trained: dict[Any, int] = field(default_factory=dict)
    incumbent: tuple[int, float, tuple[float, ...]] | None = None   # (-length, value, x)

    def evaluate(self, key: Any, x: tuple[float, ...], length: int, start: int = 0) -> float:
        done = self.trained.get(key, start)
        cost = max(0, length - done)
        if self.spent + cost > self.budget:
            raise BudgetSpent
        self.spent += cost
        self.trained[key] = max(done, length)
        length = min(length, MAX_LENGTH)   # PBT trains on past the top fidelity
        value = self.function(x, length)
        if self.incumbent is None or (-length, value) < self.incumbent[:2]:
            self.incumbent = (-length, value, x)
        return value


# --- cade's searchers through cade's own simulator ---------------------------------------

_ASHA = f"divisor: {DIVISOR}\n  max_length: {MAX_LENGTH}\n  max_trials: 100000"
CADE_SEARCHERS = {
    "random": f"name: random\n  max_trials: 100000\n  max_length: {MAX_LENGTH}",
    "asha": f"name: async_halving\n  num_rungs: 4\n  {_ASHA}",
    "adaptive": f"name: adaptive_asha\n  mode: standard\n  max_rungs: 4\n  {_ASHA}",
    "pbt": ("name: pbt\n  population_size: 16\n  num_rounds: 400\n  length_per_round: 10\n"
            "  replace_function: {truncate_fraction: 0.25}\n"
            "  explore_function: {resample_probability: 0.25, perturb_factor: 0.2}"),
}
CADE_SEARCHERS["asha-tpe"] = CADE_SEARCHERS["asha"] + "\n  sampler: tpe"
CADE_SEARCHERS["adaptive-tpe"] = CADE_SEARCHERS["adaptive"] + "\n  sampler: tpe"
CADE_SEARCHERS["adaptive-learned"] = CADE_SEARCHERS["adaptive"] + "\n  bracket_policy: learned"
CADE_SEARCHERS["adaptive-learned-tpe"] = CADE_SEARCHERS["adaptive-learned"] + "\n  sampler: tpe"
# Five rungs: the shortest at 100 / 81 (about 1) instead of 100 / 27, as short as the
# peers' first report, so a budget buys about three times as many first evaluations.
for _mode in ("asha-tpe", "adaptive-learned-tpe"):
    CADE_SEARCHERS[f"{_mode}-5r"] = (CADE_SEARCHERS[_mode].replace("num_rungs: 4", "num_rungs: 5")
                                     .replace("max_rungs: 4", "max_rungs: 5"))
NOT_COUNTED = ("pbt",)   # see the module docstring
MEMORY: float | None = None   # --memory, set in every worker process


def _set_options(memory: float | None, peer_workers: int, functions: list[str]) -> None:
    """In the main process and in every worker: a worker may be started afresh, not forked."""
    global MEMORY, PEER_WORKERS
    MEMORY, PEER_WORKERS = memory, peer_workers
    for family in EXTERNAL:
        if any(name in family.MAKERS and name not in FUNCTIONS for name in functions):
            FUNCTIONS.update(family.functions())


def function_names(named: list[str]) -> list[str]:
    """--functions with the families' names spelled out, unknown names refused (ValueError)."""
    families = {family.FAMILY: list(family.MAKERS) for family in EXTERNAL}
    names = [expanded for name in named for expanded in families.get(name, [name])]
    external = [name for family in EXTERNAL for name in family.MAKERS]
    unknown = [name for name in names if name not in FUNCTIONS and name not in external]
    if unknown:
        spelled = "; ".join(f"{family}: all {family}_*" for family in families)
        raise ValueError(f"unknown function(s) {', '.join(unknown)}; known: "
                         f"{', '.join([*FUNCTIONS, *external])} ({spelled})")
    for family in EXTERNAL:
        if any(name in family.MAKERS for name in names) and not family.available():
            raise ValueError(f"the {family.FAMILY}_* functions need {family.NEEDS}: "
                             f"{family.INSTALL}")
    return names


def cade_spec(method: str, dims: int) -> Any:
    from cade_cli.spec.experiment import parse_spec

    hps = "\n".join(f"  X_{i}: {{type: double, minval: 0.0, maxval: 1.0}}" for i in range(dims))
    text = (f"name: quality-{method}\nentrypoint: none\nhyperparameters:\n{hps}\n"
            f"searcher:\n  metric: value\n  max_concurrent_trials: {WORKERS}\n"
            f"  {CADE_SEARCHERS[method]}\n")
    return parse_spec(text, source=f"<{method}>")


def run_cade(method: str, dims: int, trace: Trace, seed: int) -> None:
    from cade_cli.search.searchers.base import UNFINISHED
    from cade_cli.search.simulate import simulate

    parents: dict[int, int] = {}

    def objective(params: dict[str, Any], length: int, trial: int) -> float:
        x = tuple(float(params[f"X_{i}"]) for i in range(dims))
        # A PBT child starts at its parent's length: only what it trains itself is spent.
        return trace.evaluate(trial, x, length, parents.get(trial, 0))

    if method == "pbt":
        objective = _pbt_objective(objective, parents, 10)
    try:
        result = simulate(cade_spec(method, dims), objective, workers=WORKERS, seed=seed,
                          memory=MEMORY)
    except BudgetSpent:
        return
    if not result.finished:  # a stalled search's regret would be read as a real one
        raise RuntimeError(f"{method}, seed {seed}: the search stalled before the budget was "
                           f"spent ({UNFINISHED})")


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

PEER_WORKERS = WORKERS   # --peer-workers, set in every worker process


def run_workers(start: Callable[[], Any], step: Callable[[Any, int], bool], workers: int) -> None:
    """`workers` trials trained side by side in simulated time, one length unit a step, until
    the budget is spent: the worker that has trained least goes next (ties: the first).
    `start()` begins a trial; `step(trial, length)` trains it to `length` and says whether it
    goes on (False once it is pruned, stopped or at full length); then its worker starts the
    next. A peer with 4 workers proposes a trial before the 3 running ones have reported, as
    cade's searchers do; with 1 it sees every earlier result first."""
    try:
        running = [(start(), 0) for _ in range(workers)]
        clocks = [0] * workers
        while True:
            worker = min(range(workers), key=lambda w: (clocks[w], w))
            clocks[worker] += 1
            trial, length = running[worker]
            running[worker] = (trial, length + 1) if step(trial, length + 1) else (start(), 0)
    except BudgetSpent:
        pass


def run_optuna(sampler_name: str, pruner_name: str, dims: int, trace: Trace, seed: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner: Any
    if pruner_name == "sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=DIVISOR)
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_LENGTH,
                                                reduction_factor=DIVISOR)
    sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    # A fixed study name: Hyperband assigns brackets by hashing it with the trial number.
    study = optuna.create_study(study_name=f"quality-{seed}", pruner=pruner, sampler=sampler)

    def start() -> tuple[Any, tuple[float, ...]]:
        trial = study.ask()
        return trial, tuple(trial.suggest_float(f"X_{i}", 0.0, 1.0) for i in range(dims))

    def step(running: tuple[Any, tuple[float, ...]], length: int) -> bool:
        trial, x = running
        value = trace.evaluate(trial.number, x, length)
        trial.report(value, length)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return False
        if length == MAX_LENGTH:
            study.tell(trial, value)
            return False
        return True

    run_workers(start, step, PEER_WORKERS)


@dataclass
class _RayTrial:
    trial_id: str


BOHB_BUDGETS = {DIVISOR ** k for k in range(5)} | {MAX_LENGTH}   # ASHA's rungs and the end


def run_ray(dims: int, trace: Trace, seed: int, bohb: bool, grace_period: float = 1) -> None:
    """Ray Tune's ASHA scheduler, through its scheduler interface, stopping trials proposed
    at random or (`bohb`) by BOHB's model (TuneBOHB over hpbandster's KDE). Ray pairs
    TuneBOHB with HyperBandForBOHB, which needs Tune's trial controller; here the model
    hears each trial's value at ASHA's rung lengths, as HyperBandForBOHB reports budgets.
    `grace_period`: the first rung (bench/ray_lead.py moves it)."""
    import random

    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    scheduler = AsyncHyperBandScheduler(time_attr="training_iteration", metric="value",
                                        mode="min", max_t=MAX_LENGTH, grace_period=grace_period,
                                        reduction_factor=DIVISOR, brackets=1)
    searcher = _bohb_searcher(dims, seed) if bohb else None
    rng = random.Random(seed)
    numbers = iter(range(1, 10 ** 9))

    def start() -> tuple[int, _RayTrial, tuple[float, ...]]:
        number = next(numbers)
        trial = _RayTrial(f"t{number}")
        if searcher is None:
            x = tuple(rng.random() for _ in range(dims))
        else:
            config = searcher.suggest(trial.trial_id)
            x = tuple(float(config[f"X_{i}"]) for i in range(dims))
        scheduler.on_trial_add(None, trial)
        return number, trial, x

    def step(running: tuple[int, _RayTrial, tuple[float, ...]], length: int) -> bool:
        number, trial, x = running
        result = {"training_iteration": length, "value": trace.evaluate(number, x, length)}
        if searcher is not None and length in BOHB_BUDGETS:
            searcher.on_trial_result(trial.trial_id, {**result, "hyperband_info": {"budget": length}})
        if (scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP
                or length == MAX_LENGTH):
            scheduler.on_trial_complete(None, trial, result)
            if searcher is not None:
                searcher.on_trial_complete(trial.trial_id, result)
            return False
        return True

    run_workers(start, step, PEER_WORKERS)


def _bohb_searcher(dims: int, seed: int) -> Any:
    import ConfigSpace
    import numpy
    from ray.tune.search.bohb import TuneBOHB

    numpy.random.seed(seed)   # hpbandster draws from numpy's global generator

    space = ConfigSpace.ConfigurationSpace(seed=seed)
    space.add([ConfigSpace.Float(f"X_{i}", (0.0, 1.0)) for i in range(dims)])
    return TuneBOHB(space=space, metric="value", mode="min", seed=seed)


OPTUNA_METHODS = ("optuna-random-sha", "optuna-random-hb", "optuna-tpe-sha", "optuna-tpe-hb")


def peer_methods() -> tuple[str, ...]:
    if importlib.util.find_spec("optuna") is None:
        sys.exit("searcher_quality.py: the peers need Optuna (pip install 'cade[bench]'); "
                 "--cade-only compares cade's searchers alone")
    if importlib.util.find_spec("ray") is None:
        return OPTUNA_METHODS
    if importlib.util.find_spec("hpbandster") is None:
        return OPTUNA_METHODS + ("ray-asha",)
    return OPTUNA_METHODS + ("ray-asha", "ray-bohb")


def run_one(job: tuple[str, str, int, int]) -> tuple[str, str, int, float]:
    function_name, method, seed, budget = job
    dims, function, _minimum, _held_out = FUNCTIONS[function_name]
    trace = Trace(function, budget)
    if method in CADE_SEARCHERS:
        run_cade(method, dims, trace, seed)
    elif method.startswith("ray-"):
        run_ray(dims, trace, seed, bohb=method == "ray-bohb")
    else:
        _, sampler_name, pruner_name = method.split("-")
        run_optuna(sampler_name, pruner_name, dims, trace, seed)
    return function_name, method, seed, final_regret(function_name, trace)


def final_regret(function_name: str, trace: Trace) -> float:
    """The incumbent's full-length value minus the function's minimum (inf before any
    evaluation); where the minimum is not known, the value itself: the tables subtract the
    best seen (best_seen_regrets)."""
    if trace.incumbent is None:
        return math.inf
    minimum = FUNCTIONS[function_name][2]
    offset = 0.0 if minimum is None else minimum
    return trace.function(trace.incumbent[2], MAX_LENGTH) - offset


def best_seen_regrets(finals: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], list[float]]:
    """`finals` with each function whose minimum is not known (its runs gave values, not
    regrets) measured from the lowest value any of its runs reached."""
    lowest: dict[str, float] = {}
    for (name, _), values in finals.items():
        if FUNCTIONS[name][2] is None:
            lowest[name] = min(lowest.get(name, math.inf), *values)
    return {(name, method): [value - lowest.get(name, 0.0) for value in values]
            for (name, method), values in finals.items()}


# --- the tables ---------------------------------------------------------------------------

REGRET_FLOOR = 1e-6   # below this two regrets are both "at the optimum" for a ratio
GOAL_GEOMEAN, GOAL_WORST = 1.0, 1.25   # the goal's ratio parts (bench/RESULTS.md)


def ratio(a: float, b: float) -> float:
    return max(a, REGRET_FLOOR) / max(b, REGRET_FLOOR)


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def counted_modes(cade: list[str]) -> list[str]:
    """cade's modes the ratio tables show: not random search, and PBT only with --memory."""
    return [m for m in cade if (m not in NOT_COUNTED or MEMORY) and m != "random"]


def tables(medians: dict[tuple[str, str], float], cade: list[str], peers: tuple[str, ...],
           functions: list[str]) -> str:
    methods = cade + list(peers)
    lines = ["| function | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for name in functions:
        held = "" if FUNCTIONS[name][3] else " (dev)"
        lines.append(f"| {name}{held} | "
                     + " | ".join(f"{medians[(name, m)]:.4f}" for m in methods) + " |")
    counted = counted_modes(cade)
    if peers:
        lines += peer_ratios(medians, counted, peers, functions)
    lines += ["", "Each cade mode's median regret / cade's random search's (`random`):", "",
              "| function | " + " | ".join(counted) + " |", "|---|" + "---:|" * len(counted)]
    for name in functions:
        lines.append(f"| {name} | " + " | ".join(
            f"{ratio(medians[(name, m)], medians[(name, 'random')]):.2f}" for m in counted) + " |")
    return "\n".join(lines)


def peer_ratios(medians: dict[tuple[str, str], float], counted: list[str], peers: tuple[str, ...],
                functions: list[str]) -> list[str]:
    lines = ["", "Each cade mode's median regret / the best peer's on that function:", "",
              "| function | best peer | " + " | ".join(counted) + " |",
              "|---|---|" + "---:|" * len(counted)]
    per_mode: dict[str, dict[str, float]] = {m: {} for m in counted}
    for name in functions:
        best = min(peers, key=lambda p: medians[(name, p)])
        for mode in counted:
            per_mode[mode][name] = ratio(medians[(name, mode)], medians[(name, best)])
        lines.append(f"| {name} | {best} ({medians[(name, best)]:.4f}) | "
                     + " | ".join(f"{per_mode[m][name]:.2f}" for m in counted) + " |")
    held_out = [n for n in functions if FUNCTIONS[n][3]]
    for label, subset in (("all functions", functions), ("held out only", held_out)):
        if subset:
            lines.append(f"| geometric mean, {label} | | " + " | ".join(
                f"{geomean([per_mode[m][n] for n in subset]):.2f}" for m in counted) + " |")
            lines.append(f"| worst, {label} | | " + " | ".join(
                f"{max(per_mode[m][n] for n in subset):.2f}" for m in counted) + " |")
    return lines + peers_against_each_other(medians, peers, functions)


def peers_against_each_other(medians: dict[tuple[str, str], float], peers: tuple[str, ...],
                             functions: list[str]) -> list[str]:
    """The goal's ratio parts applied to each peer: its median regret / the best of the
    other peers' on each function, so how far each peer is from what the goal asks of a
    cade mode (a peer faces the four others, a cade mode all five)."""
    if len(peers) < 2:
        return []
    per_peer = {peer: [ratio(medians[(name, peer)],
                             min(medians[(name, other)] for other in peers if other != peer))
                       for name in functions]
                for peer in peers}
    title = ("Each peer's median regret / the best other peer's (the goal's measure applied "
             "to the peers):")
    return ["", title, "",
            "| statistic | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers),
            "| geometric mean | " + " | ".join(f"{geomean(per_peer[p]):.2f}" for p in peers)
            + " |",
            "| worst | " + " | ".join(f"{max(per_peer[p]):.2f}" for p in peers) + " |",
            f"| functions above {GOAL_WORST} | "
            + " | ".join(str(sum(r > GOAL_WORST for r in per_peer[p])) for p in peers) + " |"]


RESAMPLES = 2000   # bootstrap draws for --intervals


def ratio_intervals(finals: dict[tuple[str, str], list[float]], counted: list[str],
                    peers: tuple[str, ...], functions: list[str], resamples: int = RESAMPLES,
                    seed: int = 0) -> tuple[dict[tuple[str, str], tuple[float, float]],
                                            dict[str, float]]:
    """How far the ratios to the best peer move with the seeds drawn.

    The seeds are resampled with replacement, the same draw for every function and method
    (they ran on the same seeds), and every ratio is computed again, the best peer included.
    Returns (function, mode) -> the 5th and 95th percentiles of its ratio, and mode -> the
    share of draws in which it meets the goal's ratio parts (geometric mean <= GOAL_GEOMEAN
    over the functions, every ratio <= GOAL_WORST).
    """
    rng = random.Random(seed)
    count = len(finals[(functions[0], counted[0])])
    drawn: dict[tuple[str, str], list[float]] = {(f, m): [] for f in functions for m in counted}
    met = dict.fromkeys(counted, 0)
    for _ in range(resamples):
        pick = [rng.randrange(count) for _ in range(count)]
        median = {key: statistics.median(values[i] for i in pick)
                  for key, values in finals.items() if key[0] in functions}
        best = {f: min(median[(f, p)] for p in peers) for f in functions}
        for mode in counted:
            ratios = [ratio(median[(f, mode)], best[f]) for f in functions]
            for f, value in zip(functions, ratios):
                drawn[(f, mode)].append(value)
            met[mode] += geomean(ratios) <= GOAL_GEOMEAN and max(ratios) <= GOAL_WORST
    low, high = int(0.05 * resamples), int(0.95 * resamples) - 1
    intervals = {key: (sorted(values)[low], sorted(values)[high]) for key, values in drawn.items()}
    return intervals, {mode: met[mode] / resamples for mode in counted}


def interval_table(finals: dict[tuple[str, str], list[float]], counted: list[str],
                   peers: tuple[str, ...], functions: list[str]) -> str:
    intervals, met = ratio_intervals(finals, counted, peers, functions)
    lines = [(f"The ratio to the best peer over {RESAMPLES} bootstrap resamples of the seeds: "
              "5th-95th percentile, and the share of resamples meeting the goal's ratio parts "
              f"(geometric mean <= {GOAL_GEOMEAN}, every function <= {GOAL_WORST}):"), "",
             "| function | " + " | ".join(counted) + " |", "|---|" + "---:|" * len(counted)]
    for name in functions:
        lines.append(f"| {name} | " + " | ".join(
            "{:.2f}-{:.2f}".format(*intervals[(name, m)]) for m in counted) + " |")
    lines.append("| resamples meeting the goal | "
                 + " | ".join(f"{met[m]:.0%}" for m in counted) + " |")
    return "\n".join(lines)


def log_line(name: str, method: str, seed: int, budget: int, regret: float) -> list[Any]:
    """A peer's line also says how many workers it ran with (cade's always run WORKERS)."""
    line: list[Any] = [name, method, seed, budget, regret]
    return line if method in CADE_SEARCHERS else line + [PEER_WORKERS]


def logged(path: str | None, budget: int) -> dict[tuple[str, str, int], float]:
    """Results a previous run appended to the --log file, at this budget (a peer's: at this
    --peer-workers; a line without the count is from before it, when peers ran with 1)."""
    done: dict[tuple[str, str, int], float] = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name, method, seed, at_budget, regret, *workers = json.loads(line)
                peer_workers = workers[0] if workers else 1
                if at_budget == budget and (method in CADE_SEARCHERS
                                            or peer_workers == PEER_WORKERS):
                    done[(name, method, seed)] = regret
    return done


def at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1 (a budget, a count of seeds or jobs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=at_least_one, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run only seeds from this one (to split a run over processes)")
    parser.add_argument("--budget", type=at_least_one, default=1500, help="length units per run")
    parser.add_argument("--jobs", type=at_least_one, default=2)
    parser.add_argument("--functions", nargs="*",
                        default=[name for name in FUNCTIONS if name not in OPT_IN],
                        help=f"default: all but {', '.join(OPT_IN)}; also the held-out "
                             f"families' functions, or a family's name for all of it: "
                             f"{', '.join(f'{f.FAMILY} (bench/{f.__name__}.py)' for f in EXTERNAL)}")
    parser.add_argument("--methods", nargs="*",
                        help="run only these methods (the tables still need all of them)")
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: the tables of the seeds complete in --log")
    parser.add_argument("--out", help="also write the tables to this file")
    parser.add_argument("--memory", type=float, default=None, metavar="L",
                        help="path-dependent objective for cade's trials (and PBT counted); "
                             "use a --log of its own")
    parser.add_argument("--peer-workers", type=int, default=WORKERS, metavar="N",
                        help=f"trials each peer trains side by side (default {WORKERS}, as "
                             "cade's; 1: each proposal sees every earlier result)")
    parser.add_argument("--log", help="append each run's result to this JSON-lines file; "
                                      "runs already there are not run again")
    parser.add_argument("--intervals", action="store_true",
                        help="also how far each ratio to the best peer moves with the seeds "
                             f"drawn ({RESAMPLES} bootstrap resamples)")
    parser.add_argument("--cade-only", action="store_true",
                        help="no peers (Optuna, Ray not needed): cade's modes against its random search")
    parser.add_argument("--modes", nargs="*", choices=list(CADE_SEARCHERS), metavar="MODE",
                        help="cade's modes in this run and its tables (default: all; random "
                             "search is always one)")
    args = parser.parse_args(argv)
    if args.peer_workers < 1:
        parser.error(f"--peer-workers must be at least 1 (got {args.peer_workers})")
    try:
        args.functions = function_names(args.functions)
    except ValueError as error:
        parser.error(str(error))
    cade = [mode for mode in CADE_SEARCHERS if not args.modes or mode in args.modes
            or mode == "random"]
    peers = () if args.cade_only else peer_methods()
    # Seed by seed: a run cut short still covers every function and method.
    jobs = [(f, m, s, args.budget) for s in range(args.seeds) for f in args.functions
            for m in cade + list(peers)]
    _set_options(args.memory, args.peer_workers, args.functions)
    done = logged(args.log, args.budget)
    todo = [job for job in jobs if job[:3] not in done and job[2] >= args.first_seed
            and (not args.methods or job[1] in args.methods)]
    if args.tables_only:
        todo = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_set_options,
                             initargs=(args.memory, args.peer_workers, args.functions)) as pool:
        for name, method, seed, regret in pool.map(run_one, todo, chunksize=2):
            done[(name, method, seed)] = regret
            if args.log:
                with open(args.log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(log_line(name, method, seed, args.budget, regret)) + "\n")
    if args.first_seed or args.methods:
        return 0   # a part of a split run: the tables come from the whole --log
    seeds = [seed for seed in range(args.seeds)
             if all(job[:3] in done for job in jobs if job[2] == seed)]
    if not seeds:
        sys.exit(f"searcher_quality.py: no seed has every run of these functions and methods "
                 f"at budget {args.budget}" + (f" in {args.log}" if args.log else ""))
    finals: dict[tuple[str, str], list[float]] = {}
    for name, method, seed, _budget in jobs:
        if seed in seeds:
            finals.setdefault((name, method), []).append(done[(name, method, seed)])
    finals = best_seen_regrets(finals)
    medians = {key: statistics.median(values) for key, values in finals.items()}
    text = (f"Budget {args.budget} length units ({args.budget // MAX_LENGTH} full trainings) "
            f"per run, {len(seeds)} seeds ({' '.join(map(str, seeds))}), median final regret"
            + ("; (dev): not held out" if not all(FUNCTIONS[name][3] for name in args.functions)
               else "")
            + (f"; peers with {args.peer_workers} worker{'s' * (args.peer_workers > 1)}"
               if peers else "")
            + (f"; objective with memory {args.memory:g}" if args.memory else "")
            + ("; where the minimum is not known, regret from the lowest value any run reached"
               if any(FUNCTIONS[name][2] is None for name in args.functions) else "") + ".\n\n"
            + tables(medians, cade, peers, args.functions)
            + (f"\n\n{interval_table(finals, counted_modes(cade), peers, args.functions)}"
               if args.intervals and peers else "")
            + f"\n\n{len(todo)} runs in {time.perf_counter() - started:.0f} s.\n")
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
