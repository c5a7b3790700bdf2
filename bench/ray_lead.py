"""Where Ray Tune's ASHA leads every method: its ladder and its cutoff, taken apart.

Ray's ASHA (AsyncHyperBandScheduler: grace_period 1, reduction factor 3, max_t 100) and
cade's stopping-type ASHA (`async_halving`, `stop_once: true`, Determined's rules) differ
in two things only, and this runs each of the four combinations side by side, all with
random sampling, 4 workers and the budget of bench/searcher_quality.py:

- the ladder: Ray's is built up from the shortest length (1, 3, 9, 27, 81, then 100), so
  its last choice is made at 81 % of the full length; Determined's is built down from it
  (100 / 3^k: 1, 3, 11, 33, 100 for five rungs), its last choice at 33 %;
- the cutoff: Ray lets a trial go on unless its value is behind the 1/3 quantile
  (interpolated) of the values trials reported at that rung *before* it, so the first
  trial at a rung always goes on and the rungs let more through while few have reported;
  Determined keeps a trial only while it ranks in the top int(n / 3), at least 1, of the
  n values at the rung counting its own.

The two cade variants with Ray's ladder or cutoff patch cade's stopping bracket in their
own process (nothing in cade is changed): a check that the patches are Ray's rules, the
variant with both must make Ray's decisions, and the script says on how many seeds its
final value equals Ray's. Also run: Ray's scheduler on Determined's ladder
(grace_period 100/81: whole lengths 2, 4, 12, 34).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=.:bench:RAY_DIR python bench/ray_lead.py
       [--functions svm_swiss_roll ...] [--seeds 40] [--jobs 2] [--budget 2500]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

import searcher_quality as quality

RAY_GRACE = {"ray": 1, "ray-determined-ladder": quality.MAX_LENGTH / quality.DIVISOR ** 4}
CADE_VARIANTS = {   # name -> (Ray's ladder, Ray's cutoff)
    "cade-stop": (False, False),
    "cade-stop-ray-ladder": (True, False),
    "cade-stop-ray-cutoff": (False, True),
    "cade-stop-ray-both": (True, True),
}
VARIANTS = (*RAY_GRACE, *CADE_VARIANTS)
BUDGET = 2500   # the default: the budget of searcher_quality.py's RESULTS tables


def ray_ladder(num_rungs: int, divisor: float, max_length: int) -> tuple[int, ...]:
    """The top `num_rungs` of 1, d, d^2, ... below max_length, then max_length."""
    ladder, length = [], 1.0
    while length < max_length:
        ladder.append(int(length))
        length *= divisor
    return tuple([*ladder, max_length][-num_rungs:])


def ray_goes_on(self, rung: list, position: int) -> bool:
    """StoppingBracket._goes_on with Ray's cutoff, in Ray's own arithmetic
    (AsyncHyperBandScheduler's _Bracket: rewards are negated values when minimising)."""
    import numpy

    earlier = [-entry.value for index, entry in enumerate(rung) if index != position]
    reward = -rung[position].value
    return not earlier or not reward < numpy.nanpercentile(earlier, (1 - 1 / self.divisor) * 100)


def run(job: tuple[str, str, int, int]) -> tuple[str, str, int, float]:
    function_name, variant, seed, budget = job
    quality._set_options(None, quality.WORKERS, [function_name])
    dims, function, _, _ = quality.FUNCTIONS[function_name]
    trace = quality.Trace(function, budget)
    if variant in RAY_GRACE:
        quality.run_ray(dims, trace, seed, bohb=False, grace_period=RAY_GRACE[variant])
    else:
        from cade_cli.search.searchers import brackets
        ladder, cutoff = CADE_VARIANTS[variant]
        if ladder:
            brackets.rung_lengths = ray_ladder
        if cutoff:
            brackets.StoppingBracket._goes_on = ray_goes_on
        rungs = len(ray_ladder(99, quality.DIVISOR, quality.MAX_LENGTH)) if ladder else 5
        quality.CADE_SEARCHERS[variant] = (quality.CADE_SEARCHERS["asha"]
                                           .replace("num_rungs: 4", f"num_rungs: {rungs}")
                                           + "\n  stop_once: true")
        quality.run_cade(variant, dims, trace, seed)
    return function_name, variant, seed, quality.final_regret(function_name, trace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", nargs="+", default=["svm_swiss_roll"],
                        help="functions or families, as searcher_quality.py takes them "
                             "(default: svm_swiss_roll)")
    parser.add_argument("--seeds", type=quality.at_least_one, default=40,
                        help="seeds 0..N-1 (default 40)")
    parser.add_argument("--jobs", type=quality.at_least_one, default=2,
                        help="runs side by side (default 2)")
    parser.add_argument("--budget", type=quality.at_least_one, default=BUDGET,
                        help=f"length units per run (default {BUDGET}, as in RESULTS.md)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("ray") is None:
        sys.exit("ray_lead.py: needs Ray Tune (pip install 'ray[tune]'), whose scheduler it "
                 "takes apart")
    try:
        names = quality.function_names(args.functions)
    except ValueError as error:
        sys.exit(f"ray_lead.py: {error}")
    quality._set_options(None, quality.WORKERS, names)
    jobs = [(name, variant, seed, args.budget) for name in names for variant in VARIANTS
            for seed in range(args.seeds)]
    # One process a run: the cade variants patch the stopping bracket process-wide.
    with ProcessPoolExecutor(args.jobs, max_tasks_per_child=1) as pool:
        finals = {(n, v, s): value for n, v, s, value in pool.map(run, jobs)}
    regrets = quality.best_seen_regrets({(n, v): [finals[(n, v, s)] for s in range(args.seeds)]
                                         for n in names for v in VARIANTS})
    print(f"| function | statistic | {' | '.join(VARIANTS)} | cade with both = Ray |")
    print("|---|---|" + "---:|" * (len(VARIANTS) + 1))
    for name in names:
        same = sum(finals[(name, "ray", s)] == finals[(name, "cade-stop-ray-both", s)]
                   for s in range(args.seeds))
        # Both: where the runs end in one of two basins, the median jumps with the share
        # that ends in the better one, and the mean says how far apart they are.
        for label, statistic in (("median regret", statistics.median),
                                 ("mean regret", statistics.mean)):
            cells = " | ".join(f"{statistic(regrets[(name, v)]):.4f}" for v in VARIANTS)
            print(f"| {name} | {label} | {cells} | {same} of {args.seeds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
