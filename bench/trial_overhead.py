"""Per-step cost of cade's PyTorchTrial harness against a hand-written loop, same trial class.

    python bench/trial_overhead.py [--batches 300] [--rounds 7] [--width 16] [--batch-size 32]
                                   [--device cpu|cuda]

Both sides train the example's DigitsTrial (examples/determined-trial/model_def.py) for the
same batches from the same seed: the hand-written loop iterates the trial's data loader and
calls train_batch; the harness runs det.pytorch.Trainer.fit inside a fake cade job (metrics,
control polling, scheduling-unit reports, the final validation and checkpoint all real).
A step is timed from the first train_batch call to the last one's return, on both sides
alike, so the harness's work between batches is in it and the end-of-segment validation is
not. Rounds alternate the two so machine noise hits both; the medians and the ratio are
printed as a markdown table (which side goes first alternates). Goal: the harness adds at most 2 % to a step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "determined-trial"
GOAL_PERCENT = 2.0


def fake_job(root: Path, batches: int) -> None:
    """A cade segment's variables and files, so the harness reports as it does in a job."""
    trial_dir = root / "trials" / "1"
    run_dir = trial_dir / "segments" / "1"
    run_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text('{"params": {}}')
    (run_dir / "control.json").write_text(f'{{"stop": false, "reason": "", "target_length": {batches}}}')
    os.environ.update(CADE_RUN_DIR=str(run_dir), CADE_TRIAL_DIR=str(trial_dir), CADE_TRIAL_ID="1",
                      CADE_EXPERIMENT_ID="1", CADE_PARAMS_FILE=str(trial_dir / "params.json"),
                      CADE_TARGET_LENGTH=str(batches), CADE_START_LENGTH="0", CADE_SEED="7",
                      CADE_LENGTH_UNIT="batches", CADE_REPORT_AT=str(batches))


class StepClock:
    """Wraps train_batch: the time from the first call's start to the last call's end."""

    def __init__(self, trial: Any) -> None:
        self.first = self.last = 0.0
        self.calls = 0
        self.inner = trial.train_batch
        self.synchronize = _synchronizer(trial.context.device)
        trial.train_batch = self

    def __call__(self, *arguments: Any) -> Any:
        if self.calls == 0:
            self.first = time.perf_counter()
        result = self.inner(*arguments)
        self.synchronize()
        self.last = time.perf_counter()
        self.calls += 1
        return result

    def per_step_us(self) -> float:
        return (self.last - self.first) / max(1, self.calls - 1) * 1e6


def _synchronizer(device: Any) -> Any:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def build_trial(hparams: dict[str, Any]) -> tuple[Any, Any, Any]:
    from cade_cli.det.pytorch import _loading

    _loading.use_shim()
    import determined.pytorch as det_pytorch

    trial_class = _loading.load_trial_class("model_def:DigitsTrial", EXAMPLE)
    manager = det_pytorch.init(hparams=hparams)
    context = manager.__enter__()
    return trial_class(context), context, manager


def hand_written(hparams: dict[str, Any], batches: int) -> float:
    trial, context, manager = build_trial(hparams)
    clock = StepClock(trial)
    loader = trial.build_training_data_loader().get_data_loader(seed=7)
    done, epoch = 0, 0
    while done < batches:
        for batch in loader:
            trial.train_batch(context.to_device(batch), epoch, done)
            done += 1
            if done == batches:
                break
        epoch += 1
    manager.__exit__(None, None, None)
    return clock.per_step_us()


def harness(hparams: dict[str, Any], batches: int) -> float:
    from cade_cli import report

    report._reset_for_tests()
    with tempfile.TemporaryDirectory(prefix="cade-bench-") as root:
        fake_job(Path(root), batches)
        trial, context, manager = build_trial(hparams)
        clock = StepClock(trial)
        import determined.pytorch as det_pytorch

        det_pytorch.Trainer(trial, context).fit()
        manager.__exit__(None, None, None)
        report.finish()
    report._reset_for_tests()
    return clock.per_step_us()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ["CADE_DET_DEVICE"] = args.device
    sys.path.insert(0, str(ROOT))
    hparams = {"global_batch_size": args.batch_size, "width": args.width, "dropout": 0.1, "lr": 0.05,
               "momentum": 0.9, "gamma": 0.9}
    loop_us: list[float] = []
    harness_us: list[float] = []
    for round_number in range(args.rounds):
        # Which side goes first alternates: a warm cache or allocator favours neither.
        if round_number % 2:
            harness_us.append(harness(hparams, args.batches))
            loop_us.append(hand_written(hparams, args.batches))
        else:
            loop_us.append(hand_written(hparams, args.batches))
            harness_us.append(harness(hparams, args.batches))
    loop, wrapped = statistics.median(loop_us), statistics.median(harness_us)
    added = (wrapped / loop - 1) * 100
    print(f"{args.rounds} rounds of {args.batches} batches, width {args.width}, batch {args.batch_size}, "
          f"{args.device}, torch {torch.__version__}, {args.threads} thread(s)\n")
    print("| driver | median µs/step | ratio |")
    print("|---|---:|---:|")
    print(f"| hand-written loop | {loop:.1f} | 1.000 |")
    print(f"| cade harness (Trainer.fit) | {wrapped:.1f} | {wrapped / loop:.3f} |")
    print(f"\nharness adds {added:+.2f} % per step (goal: at most {GOAL_PERCENT:g} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
