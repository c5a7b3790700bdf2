"""How long `cade simulate` takes on a 1,000-trial Adaptive ASHA search (goal: under 5 s).

Times the whole command as a user runs it (a fresh `cade simulate ... --json` process,
interpreter start-up included) and the simulation alone in this process, median of
several runs each, side by side.

Usage: python bench/simulate_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: simulate-speed
entrypoint: python3 train.py
hyperparameters:
  lr: {type: log, minval: -5, maxval: -1, base: 10}
  width: {type: int, minval: 16, maxval: 512}
  dropout: {type: double, minval: 0.0, maxval: 0.5}
  optimizer: {type: categorical, vals: [sgd, adam, adamw]}
searcher:
  name: adaptive_asha
  metric: loss
  mode: standard
  max_trials: 1000
  max_length: 1000
  divisor: 4
  max_concurrent_trials: 64
"""


def time_cli(spec: Path, repeats: int) -> tuple[float, int]:
    samples, trials = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "cade_cli", "simulate", str(spec),
                              "--objective", "cade_cli.search.objectives:power_law", "--json"],
                             check=True, capture_output=True, text=True)
        samples.append(time.perf_counter() - started)
        trials = len(json.loads(out.stdout)["trials"])
    return statistics.median(samples), trials


def time_in_process(spec: Path, repeats: int) -> float:
    from cade_cli.search.objectives import power_law
    from cade_cli.search.simulate import simulate
    from cade_cli.spec.experiment import load_spec

    loaded = load_spec(spec)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        simulate(loaded, power_law, seed=0)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "speed.yaml"
        spec.write_text(SPEC, encoding="utf-8")
        cli_seconds, trials = time_cli(spec, args.repeats)
        sim_seconds = time_in_process(spec, args.repeats)
    print("| what | trials | median seconds | goal | ratio to goal |")
    print("|---|---:|---:|---:|---:|")
    print(f"| `cade simulate --json` (whole process) | {trials} | {cli_seconds:.2f} | 5 | "
          f"{cli_seconds / 5:.2f} |")
    print(f"| simulation alone (in process) | {trials} | {sim_seconds:.3f} | 5 | "
          f"{sim_seconds / 5:.3f} |")
    return 0 if cli_seconds < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
