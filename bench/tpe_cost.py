"""What `sampler: tpe` costs: milliseconds per proposal and a 1,000-trial `cade simulate`.

Goals: a proposal in at most 10 ms with 1,000 observations; a 1,000-trial simulate under
5 s. The proposal time is the median over PROPOSALS proposals made after 1,000 results (and
a few pending trials) in a four-hyperparameter space, in CPU time (so that other work on a
shared machine does not inflate it), a result arriving before each: once with every result
at one level, once with the trials spread over five rung levels as a search with divisor 2
leaves them (1,000 at the first, half of those at the next, ...), where choosing the model
rung measures each level against the longest (rank correlations, the moved-optimum test).
The simulate is the Adaptive ASHA search of bench/simulate_speed.py with `sampler: tpe`,
with and without `bracket_policy: learned`, timed as a whole `cade simulate --json` process
(wall time) and in process (CPU time), median of several runs, with the random sampler
alongside for comparison.

Usage: python bench/tpe_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulate_speed import SPEC

OBSERVATIONS = 1000
PENDING = 16
PROPOSALS = 50


def proposal_ms(levels: tuple[int, ...]) -> float:
    """Median CPU ms of a proposal after OBSERVATIONS trials; trial t reports at the k-th
    of `levels` when 2^k divides t (all at the first, half at the second, ...)."""
    from cade_cli.search.objectives import power_law
    from cade_cli.search.samplers.tpe import TpeSampler
    from cade_cli.search.space import Categorical, Double, Int, Log, Nested

    space = Nested((("dropout", Double(0.0, 0.5)), ("lr", Log(-5, -1, 10)),
                    ("optimizer", Categorical(("sgd", "adam", "adamw"))),
                    ("width", Int(16, 512))))
    sampler, rng = TpeSampler(space, levels), random.Random(0)
    for trial in range(1, OBSERVATIONS + 1):
        params = sampler.propose(trial, rng)
        for k, level in enumerate(levels):
            if trial % 2 ** k == 0:
                sampler.observe(trial, level, power_law(params, level, trial))
    for trial in range(OBSERVATIONS + 1, OBSERVATIONS + PENDING + 1):
        sampler.propose(trial, rng)
    samples = []
    first = sampler.trials[1].values[levels[0]]
    for trial in range(OBSERVATIONS + PENDING + 1, OBSERVATIONS + PENDING + PROPOSALS + 1):
        # A result arrives before each proposal, as in a search: the model rung is chosen
        # again (the sampler keeps the choice only while no result changes).
        sampler.observe(1, levels[0], first)
        started = time.process_time()
        sampler.propose(trial, rng)
        samples.append((time.process_time() - started) * 1000)
        sampler.exited(trial, "canceled")  # keeps the pending count fixed
    return statistics.median(samples)


def simulate_seconds(spec: Path, repeats: int) -> tuple[float, float, int]:
    from cade_cli.search.objectives import power_law
    from cade_cli.search.simulate import simulate
    from cade_cli.spec.experiment import load_spec

    whole, alone, trials = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "cade_cli", "simulate", str(spec),
                              "--objective", "cade_cli.search.objectives:power_law", "--json"],
                             check=True, capture_output=True, text=True)
        whole.append(time.perf_counter() - started)
        trials = len(json.loads(out.stdout)["trials"])
    loaded = load_spec(spec)
    for _ in range(repeats):
        started = time.process_time()
        simulate(loaded, power_law, seed=0)
        alone.append(time.process_time() - started)
    return statistics.median(whole), statistics.median(alone), trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| what | value | goal |")
    print("|---|---:|---:|")
    ok = True
    for levels, where in (((1000,), "at one level"), ((16, 32, 64, 128, 256), "over five levels")):
        ms = proposal_ms(levels)
        print(f"| TPE proposal, {OBSERVATIONS} trials {where} + {PENDING} pending "
              f"(median CPU ms) | {ms:.2f} | 10 |")
        ok = ok and ms <= 10
    with tempfile.TemporaryDirectory() as tmp:
        for sampler, extra in (("random", ""), ("tpe", ""), ("tpe", "bracket_policy: learned")):
            spec = Path(tmp) / f"{sampler}{bool(extra)}.yaml"
            spec.write_text(SPEC + f"  sampler: {sampler}\n" + (f"  {extra}\n" if extra else ""),
                            encoding="utf-8")
            whole, alone, trials = simulate_seconds(spec, args.repeats)
            label = f"sampler {sampler}" + (f", {extra}" if extra else "")
            print(f"| `cade simulate --json`, {trials} trials, {label} (s) | {whole:.2f} | 5 |")
            print(f"| the simulation alone, {label} (CPU s) | {alone:.2f} | |")
            ok = ok and whole < 5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
