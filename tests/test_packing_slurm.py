"""Packing on the test Slurm: 1-slot trials, four to an exclusive node, each in its own step.

An ASHA search runs through `cade submit` with `packing.slots_per_job: 4`: every segment is
claimed by exactly one pack job, runs in its own `srun --exact` step with its own CPUs, side
by side with the pack's other segments, and the packs leave the queue once the search is done.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from slurm_fixtures import (
    EXAMPLES,
    cade,
    cade_env,
    cancel_jobs,
    ledger_of,
    require_slurm,
    wait_for,
)

pytestmark = pytest.mark.slurm

PROBE = ('echo "$SLURM_JOB_ID $SLURM_STEP_ID $SLURM_CPUS_PER_TASK" > "$CADE_RUN_DIR/step"; '
         f'exec {sys.executable} {EXAMPLES / "synthetic" / "train.py"}')

SPEC = f"""
name: packed-slurm
entrypoint: ["sh", "-c", {PROBE!r}]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64, 128]}}
searcher:
  name: async_halving
  metric: loss
  max_trials: 8
  num_rungs: 2
  divisor: 2
  max_length: 8
  max_concurrent_trials: 8
resources:
  launcher: none
  cpus_per_slot: 2
  time: 10
packing: {{slots_per_job: 4, idle_timeout: 15}}
slurm:
  sbatch_args: ["--exclusive"]
reproducibility:
  experiment_seed: 5
"""


def test_packed_trials_run_side_by_side_in_their_own_steps(tmp_path: Path) -> None:
    require_slurm()
    root = tmp_path / "experiments" / "1" / "packs" / "jobs"
    try:
        segments = _completed_search(tmp_path, SPEC)
        claims = Counter(c.name[:-5] for c in root.glob("*/claimed/*.json"))
        assert sorted(claims) == sorted(s.job_name for s in segments)
        assert set(claims.values()) == {1}            # none run twice
        pack_ids = {p.read_text().strip() for p in root.glob("*/job_id")}
        steps = [Path(s.run_dir, "step").read_text().split() for s in segments]
        assert {job for job, _, _ in steps} <= pack_ids   # every segment ran inside a pack
        assert len({(job, step) for job, step, _ in steps}) == len(steps)  # its own step
        assert {cpus for _, _, cpus in steps} == {"2"}
        assert len(pack_ids) < len(segments)
        assert _overlapping(segments)                  # side by side, not one after another
        wait_for("the packs to leave the queue", lambda: not _queued(pack_ids), timeout=60)
    finally:
        cancel_jobs([p.read_text().strip() for p in root.glob("*/job_id")])


def _completed_search(tmp_path: Path, spec: str) -> list[Any]:
    """`cade submit` of `spec` in `tmp_path` until the search ends; its segments, each checked
    completed (the caller cancels the packs, whatever happens)."""
    (tmp_path / "spec.yaml").write_text(spec)
    cade(tmp_path, "submit", "spec.yaml", env=cade_env(tmp_path, SYNTH_STEP_SECONDS="0.3"), timeout=300)
    ledger = ledger_of(tmp_path)
    segments = ledger.segments(1)
    assert ledger.experiment(1).state == "completed"
    ledger.close()
    assert {s.state for s in segments} == {"completed"}, [(s.state, s.reason) for s in segments]
    return segments


def _overlapping(segments: list) -> bool:
    spans = sorted(_span(s) for s in segments)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def _queued(job_ids: set[str]) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(sorted(job_ids))],
                          capture_output=True, text=True, check=False)
    return done.stdout.split()


def test_a_notice_to_a_pack_job_preempts_its_trials_and_they_resume(tmp_path: Path) -> None:
    require_slurm()
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = cade_env(tmp_path, SYNTH_STEP_SECONDS="2")  # the notice lands mid-rung
    root = tmp_path / "experiments" / "1" / "packs" / "jobs"
    driver = subprocess.Popen([sys.executable, "-m", "cade_cli", "submit", "spec.yaml"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        trials = tmp_path / "experiments" / "1" / "trials"
        wait_for("a trial to start", lambda: list(trials.glob("*/segments/*/step")), 120)
        time.sleep(3)  # the trainers are past their start-up and take the notice as such
        first = (root / "1" / "job_id").read_text().strip()
        # what Slurm's --signal=B:USR1@notice does before the time limit, sent now
        subprocess.run(["scancel", "--signal=USR1", "--batch", first], check=True, timeout=30)
        assert driver.wait(timeout=300) == 0
        ledger = ledger_of(tmp_path)
        segments = ledger.segments(1)
        assert ledger.experiment(1).state == "completed"
        ledger.close()
        preempted = [s for s in segments if s.state == "preempted"]
        outcomes = [(s.trial, s.index, s.state, s.reason, s.stop_reason, s.exit_code, s.end_length)
                    for s in segments]
        assert preempted and {s.state for s in segments} <= {"completed", "preempted"}, outcomes
        first_claims = {c.name[:-5] for c in (root / "1" / "claimed").glob("*.json")}
        assert {s.job_name for s in preempted} <= first_claims
        claims = Counter(c.name[:-5] for c in root.glob("*/claimed/*.json"))
        assert set(claims.values()) == {1} and sorted(claims) == sorted(s.job_name for s in segments)
    finally:
        if driver.poll() is None:
            driver.kill()
        cancel_jobs([p.read_text().strip() for p in root.glob("*/job_id")])


def test_a_driver_killed_again_and_again_loses_and_repeats_nothing(tmp_path: Path) -> None:
    require_slurm()
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = cade_env(tmp_path, SYNTH_STEP_SECONDS="1.5")
    root = tmp_path / "experiments" / "1" / "packs" / "jobs"
    commands = [["submit", "spec.yaml"], ["watch", "1"], ["watch", "1"]]
    try:
        for command, kill_after in zip(commands, (2.5, 3.0, 2.0)):
            driver = subprocess.Popen([sys.executable, "-m", "cade_cli", *command],
                                      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(kill_after)
            driver.kill()       # SIGKILL, at whatever it was doing
            driver.wait()
        ledger = ledger_of(tmp_path)
        assert ledger.experiment(1).state not in ("completed",)   # the kills came mid-search
        ledger.close()
        cade(tmp_path, "watch", "1", env=env, timeout=300)
        ledger = ledger_of(tmp_path)
        segments = ledger.segments(1)
        assert ledger.experiment(1).state == "completed"
        ledger.close()
        assert {s.state for s in segments} == {"completed"}, [(s.state, s.reason) for s in segments]
        claims = Counter(c.name[:-5] for c in root.glob("*/claimed/*.json"))
        assert set(claims.values()) == {1} and sorted(claims) == sorted(s.job_name for s in segments)
    finally:
        cancel_jobs([p.read_text().strip() for p in root.glob("*/job_id")])


# The step's job, its GPU, and when it trained (clock times taken while the step holds the
# GPU: the run dir's `started` has whole seconds, so a segment that began in the second
# another ended looked as if the two had run side by side).
GPU_PROBE = ('echo "$SLURM_JOB_ID ${CUDA_VISIBLE_DEVICES:-none} $(date +%s.%N)" '
             '> "$CADE_RUN_DIR/gpu"; '
             f'{sys.executable} {EXAMPLES / "synthetic" / "train.py"}; rc=$?; '
             'echo "$(date +%s.%N)" >> "$CADE_RUN_DIR/gpu"; exit $rc')


def test_packed_gpu_trials_each_get_their_own_gpu(tmp_path: Path) -> None:
    """Two 1-GPU trials to a pack of a node's 2 (fake) GPUs: each step is given one, never the
    one a segment beside it in the same pack holds."""
    require_slurm()
    spec = SPEC.replace(PROBE, GPU_PROBE).replace("  launcher: none", "  launcher: none\n  slot_type: gpu")
    spec = spec.replace("slots_per_job: 4", "slots_per_job: 2").replace("max_trials: 8", "max_trials: 4")
    root = tmp_path / "experiments" / "1" / "packs" / "jobs"
    try:
        segments = _completed_search(tmp_path, spec)
        probes = [Path(s.run_dir, "gpu").read_text().split() for s in segments]
        placed = [(words[:2], (float(words[2]), float(words[3]))) for words in probes]
        assert {gpu for (_, gpu), _ in placed} <= {"0", "1"}, placed     # one GPU each, always
        side_by_side = [(a, b) for i, a in enumerate(placed) for b in placed[i + 1:]
                        if a[0][0] == b[0][0] and a[1][0] < b[1][1] and b[1][0] < a[1][1]]
        assert side_by_side, placed                       # the pack ran two at once
        assert all(a[0][1] != b[0][1] for a, b in side_by_side), side_by_side
    finally:
        cancel_jobs([p.read_text().strip() for p in root.glob("*/job_id")])


def _span(segment: Any) -> tuple[float, float]:
    return (float(Path(segment.run_dir, "started").read_text().split()[0]),
            Path(segment.run_dir, "exit_code").stat().st_mtime)
