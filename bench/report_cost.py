"""Cost of the trial-side API per call, against a bare json.dumps + write + flush.

    python bench/report_cost.py [--reps 20000] [--rounds 15]

Runs inside a fake cade job (a temp run directory), alternates the measured calls round by
round so machine noise hits all of them alike, and prints a markdown table of the median
microseconds per call and the ratio to the baseline. Goal: <= 50 µs a call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOAL_US = 50.0


def fake_job(root: Path) -> None:
    run_dir = root / "trials" / "1" / "segments" / "1"
    run_dir.mkdir(parents=True)
    (root / "trials" / "1" / "params.json").write_text('{"params": {"lr": 0.1}}')
    (run_dir / "control.json").write_text('{"stop": false, "reason": "", "target_length": 100}')
    os.environ.update(
        CADE_RUN_DIR=str(run_dir),
        CADE_TRIAL_DIR=str(run_dir.parent.parent),
        CADE_PARAMS_FILE=str(root / "trials" / "1" / "params.json"),
        CADE_TARGET_LENGTH="100",
        CADE_TRIAL_ID="1",
        CADE_EXPERIMENT_ID="1",
    )


def per_call_us(fn: Callable[[int], None], reps: int) -> float:
    start = time.perf_counter()
    for i in range(reps):
        fn(i)
    return (time.perf_counter() - start) / reps * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fake_job(Path(tmp))
        from cade_cli import report

        metrics = {"loss": 0.123456, "accuracy": 0.9876}
        baseline_file = open(Path(tmp) / "baseline.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (kept open, like report.py)

        def baseline(i: int) -> None:
            record = {"kind": "validation", "length": i, "time": time.time(), "metrics": metrics}
            baseline_file.write(json.dumps(record) + "\n")
            baseline_file.flush()

        def validation(i: int) -> None:
            report.report_validation(i, metrics)

        def stop_check(i: int) -> None:
            report.should_stop()

        cases: dict[str, Callable[[int], None]] = {
            "json.dumps + write + flush (baseline)": baseline,
            "report_validation": validation,
            "should_stop": stop_check,
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for round_index in range(args.rounds):
            order = list(cases) if round_index % 2 == 0 else list(reversed(cases))
            for name in order:
                samples[name].append(per_call_us(cases[name], args.reps))
        baseline_file.close()
        report.finish()

    base = statistics.median(samples["json.dumps + write + flush (baseline)"])
    print(f"{args.rounds} rounds x {args.reps} calls, Python {sys.version.split()[0]}\n")
    print("| call | median µs/call | ratio to baseline | goal <= 50 µs |")
    print("|---|---:|---:|---|")
    worst = 0.0
    for name, values in samples.items():
        median = statistics.median(values)
        worst = max(worst, median)
        verdict = "ok" if median <= GOAL_US else "over"
        print(f"| {name} | {median:.2f} | {median / base:.2f} | {verdict} |")
    return 0 if worst <= GOAL_US else 1


if __name__ == "__main__":
    sys.exit(main())
