"""A torch-free trial with a deterministic learning curve, for tests and demos.

    loss(length) = floor + scale * length ** -decay + noise

`floor` grows with the distance of `lr` from 1e-2 and of `width` from 64, so a search has
an optimum to find. The noise is seeded by (seed, length): resuming from a checkpoint
gives exactly the curve of an uninterrupted run.

Hyperparameters (all optional): lr, width, scale, decay, noise, fail_at, fail_exit.
`fail_at` > 0 makes the trial exit with `fail_exit` (default 3) on reaching that length,
for failure tests. Environment: SYNTH_STEP_SECONDS (sleep per length unit, default 0.002).

Runs standalone too: `python examples/synthetic/train.py` trains to 100 and prints reports.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time

from cade_cli import report

DEFAULTS = {
    "lr": 0.01,
    "width": 64,
    "scale": 2.0,
    "decay": 0.5,
    "noise": 0.01,
    "fail_at": 0,
    "fail_exit": 3,
}
STANDALONE_TARGET = 100


def curve_floor(hp: dict) -> float:
    lr_penalty = 0.2 * (math.log10(float(hp["lr"])) + 2.0) ** 2
    width_penalty = 0.05 * abs(math.log2(float(hp["width"]) / 64.0))
    return 0.1 + lr_penalty + width_penalty


def loss_at(hp: dict, seed: int, length: int) -> float:
    noise = random.Random(f"{seed}:{length}").gauss(0.0, float(hp["noise"]))
    return curve_floor(hp) + float(hp["scale"]) * max(length, 1) ** -float(hp["decay"]) + noise


def load_length() -> int:
    checkpoint_dir = report.resume_from()
    if checkpoint_dir is None:
        return report.start_length()
    with open(checkpoint_dir / "state.json", encoding="utf-8") as handle:
        return int(json.load(handle)["length"])


def save(length: int, loss: float) -> None:
    with report.checkpoint(length) as directory, \
            open(directory / "state.json", "w", encoding="utf-8") as handle:
        json.dump({"length": length, "loss": loss}, handle)


def validate_and_save(hp: dict, seed: int, length: int) -> None:
    loss = loss_at(hp, seed, length)
    report.report_validation(length, {"loss": loss})
    print(f"validated at {length}: loss {loss:.6f}", flush=True)
    save(length, loss)


def main() -> int:
    hp = report.params(DEFAULTS)
    seed = report.seed() or 0
    step_seconds = float(os.environ.get("SYNTH_STEP_SECONDS", "0.002"))
    rungs = set(report.report_at())
    length = load_length()
    target = report.target_length(STANDALONE_TARGET) or STANDALONE_TARGET
    origin = f"resuming at {length}" if report.resume_from() else "starting"
    print(f"trial {report.trial_id()}: {origin}, training to {target}", flush=True)
    while True:
        while length < target:
            if report.should_stop():
                validate_and_save(hp, seed, length)
                print(f"stopping at {length}: {report.stop_reason()}", file=sys.stderr)
                return 0
            time.sleep(step_seconds)
            length += 1
            if int(hp["fail_at"]) and length >= int(hp["fail_at"]):
                print(f"failing on purpose at length {length}", file=sys.stderr)
                return int(hp["fail_exit"])
            if length % 10 == 0:
                report.report_training(length, {"loss": loss_at(hp, seed, length) + 0.05})
            if length in rungs and length < target:
                validate_and_save(hp, seed, length)
        validate_and_save(hp, seed, length)
        raised = report.next_target()
        if raised is None:
            print(f"done at {length}", flush=True)
            return 0
        print(f"promoted: training on to {raised}", flush=True)
        target = raised


if __name__ == "__main__":
    sys.exit(main())
