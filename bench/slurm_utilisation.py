"""Slot utilisation on the test Slurm cluster: ASHA through cade against synchronous halving.

    python bench/slurm_utilisation.py [--slots 4] [--trials 16] [--unit-seconds 0.2]
                                      [--poll 1.0] [--skip-sync]

Runs the synthetic trainer (examples/synthetic/train.py) on real sbatch jobs, one CPU each:

* ASHA (promotion type, rungs 10/30/90, divisor 3) driven by cade's engine in this process,
  at most `--slots` trials at a time: once as cade runs it (a trial that reached its rung
  keeps its allocation for the engine's decision wait, CADE_DECISION_WAIT), and once with
  that wait set to 0 (every promotion queues a new job) to show what keeping buys;
* synchronous successive halving over the same hyperparameters: every rung is a batch of
  jobs run `--slots` at a time, and nothing is promoted before the whole rung has finished
  (the rung barrier). Its jobs are rendered and submitted through cade's own run directory
  and Slurm backend, so job overheads are alike.

Utilisation = busy slot-seconds / (slots x makespan). A job is busy from its `started`
marker to its `exit_code` marker (the job script writes both), counted up to `slots` jobs
at a time; the makespan runs from the first submission to the last job's end. "Training"
counts only the time the trials trained (lengths trained x seconds per unit), which leaves
out start-up and the decision wait. Scheduler commands are counted by the Slurm backend.
Prints a markdown table and the command line that made it. Needs scripts/slurm-up.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cade_cli.backends.base import JobRequest
from cade_cli.backends.slurm import SlurmScheduler
from cade_cli.engine import apply as engine_apply
from cade_cli.engine import lifecycle as engine
from cade_cli.engine.context import trial_seed
from cade_cli.engine.drive import (
    driver_lock,
    sync_pass,
    wait_for_activity,
)
from cade_cli.jobs.ingest import read_exit_code
from cade_cli.jobs.rundir import prepare_segment
from cade_cli.spec.experiment import ExperimentSpec, load_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import TERMINAL_EXPERIMENT_STATES, SegmentRecord

GOAL = 0.90
SPEC_TEXT = """\
name: bench-slurm-utilisation
entrypoint: {python} {train}
hyperparameters:
  lr: {{type: log, base: 10, minval: -4, maxval: -1}}
  width: {{type: int, minval: 16, maxval: 256}}
searcher:
  name: async_halving
  metric: loss
  num_rungs: 3
  divisor: 3
  max_trials: {trials}
  max_length: {{batches: 90}}
  stop_once: false
  max_concurrent_trials: {slots}
resources: {{slots_per_trial: 1, slot_type: cpu, launcher: none, time: "00:30:00"}}
max_restarts: 0
reproducibility: {{experiment_seed: 5}}
environment:
  environment_variables:
    - SYNTH_STEP_SECONDS={unit}
"""


@dataclass
class Result:
    name: str
    slots: int
    jobs: int
    makespan: float
    busy: float
    commands: Counter[str]
    training: float        # slot-seconds spent training
    peak: int              # most jobs running at once
    latency: dict[str, float] = field(default_factory=dict)   # mean seconds per job
    steady: float = 0.0    # utilisation until the last trial started (before the drain)

    @property
    def training_share(self) -> float:
        return self.training / (self.slots * self.makespan) if self.makespan > 0 else 0.0

    @property
    def utilisation(self) -> float:
        return self.busy / (self.slots * self.makespan) if self.makespan > 0 else 0.0

    @property
    def per_minute(self) -> float:
        return sum(self.commands.values()) / (self.makespan / 60) if self.makespan else 0.0


def job_interval(run_dir: str | Path) -> tuple[float, float] | None:
    """(start, end) of a job from the markers its script wrote, if both exist."""
    started, ended = Path(run_dir) / "started", Path(run_dir) / "exit_code"
    if not started.exists() or not ended.exists():
        return None
    return started.stat().st_mtime, ended.stat().st_mtime


def busy_slot_seconds(intervals: list[tuple[float, float]], slots: int) -> float:
    """Integral of min(jobs running, slots) over time: overlap beyond the slots is not use."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    busy, running, last = 0.0, 0, None
    for when, step in events:
        if last is not None:
            busy += min(running, slots) * (when - last)
        running, last = running + step, when
    return busy


def steady_utilisation(intervals: list[tuple[float, float]], first: float,
                       last_new_trial: float, slots: int) -> float:
    """Utilisation from the first submission until the last new trial started.

    After that the search drains: fewer trials are left than slots (ASHA's top rung, the
    barrier's last rung), whatever the driver does.
    """
    window = last_new_trial - first
    if window <= 0:
        return 0.0
    clipped = [(max(s, first), min(e, last_new_trial)) for s, e in intervals
               if s < last_new_trial]
    return busy_slot_seconds(clipped, slots) / (slots * window)


def peak_jobs(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def exported_decision_wait(run_dir: str) -> float:
    """The CADE_DECISION_WAIT the engine wrote into a job script."""
    found = re.search(r"^export CADE_DECISION_WAIT=(\S+)$",
                      (Path(run_dir) / "job.sh").read_text(), re.MULTILINE)
    return float(found.group(1).strip("'")) if found else 0.0


def write_spec(root: Path, args: argparse.Namespace) -> ExperimentSpec:
    path = root / "asha.yaml"
    path.write_text(SPEC_TEXT.format(python=sys.executable, train=ROOT / "examples/synthetic/train.py",
                                     trials=args.trials, slots=args.slots, unit=args.unit_seconds))
    return load_spec(str(path))


def run_asha(root: Path, args: argparse.Namespace, keep: bool) -> tuple[Result, Ledger, int]:
    """Drive one ASHA experiment to its end in this process (the `cade watch` loop)."""
    root.mkdir(parents=True, exist_ok=True)
    if keep is False:
        # The engine's wait for a promotion decision, switched off for the comparison.
        engine_apply.decision_wait = lambda ctx: 0.0
    ledger = Ledger(root / f"ledger-{'keep' if keep else 'requeue'}.db")
    settings = Settings(scheduler="slurm", poll_interval=args.poll)
    exp_id = engine.submit(ledger, write_spec(root, args), "slurm")
    schedulers = engine.Schedulers(ledger, settings)
    lock = driver_lock(ledger)
    first = time.time()
    while True:
        sync_pass(ledger, settings, schedulers, lock, force=exp_id)
        exp = ledger.experiment(exp_id)
        if exp.state in TERMINAL_EXPERIMENT_STATES and not ledger.live_segments(exp_id):
            break
        wait_for_activity(ledger, exp_id, args.poll)   # exactly drive()'s wait
    if exp.state != "completed":
        raise SystemExit(f"ASHA experiment ended {exp.state}: {exp.message}")
    segs = ledger.segments(exp_id)
    intervals = [i for i in (job_interval(s.run_dir) for s in segs) if i]
    first = min([s.submitted for s in segs if s.submitted] + [first])
    scheduler = schedulers.get("slurm")
    assert isinstance(scheduler, SlurmScheduler)
    wait = exported_decision_wait(segs[0].run_dir)
    trained = sum(((s.end_length or s.start_length) - s.start_length) for s in segs)
    latency = job_latencies(segs, args.unit_seconds)
    result = Result(f"ASHA via cade, decision wait {wait:g} s", args.slots, len(segs),
                    max(e for _, e in intervals) - first,
                    busy_slot_seconds(intervals, args.slots), Counter(scheduler.calls),
                    trained * args.unit_seconds, peak_jobs(intervals), latency)
    starts = [job_interval(s.run_dir) for s in segs if s.index == 1]
    result.steady = steady_utilisation(intervals, first, max(i[0] for i in starts if i),
                                       args.slots)
    return result, ledger, exp_id


def job_latencies(segs: list[SegmentRecord], unit_seconds: float) -> dict[str, float]:
    """Where a job's time goes besides training, from the ledger and the run directories.

    queue: sbatch returned -> the job script started; start-up: script start -> the trial's
    first report, less the training before it; tail: the last validation -> exit (the decision wait is spent here);
    noticed: exit -> the driver recorded the end (poll cadence).
    """
    parts: dict[str, list[float]] = {"queue": [], "start-up": [], "tail": [], "noticed": []}
    for seg in segs:
        interval = job_interval(seg.run_dir)
        lines = [json.loads(x) for x in (Path(seg.run_dir) / "metrics.jsonl").read_text()
                 .splitlines() if x.strip()]
        if interval is None or not lines or seg.submitted is None or seg.ended is None:
            continue
        start, end = interval
        validations = [x["time"] for x in lines if x["kind"] == "validation"]
        parts["queue"].append(start - seg.submitted)
        trained_first = (lines[0]["length"] - seg.start_length) * unit_seconds
        parts["start-up"].append(lines[0]["time"] - start - trained_first)
        parts["tail"].append(end - max(validations or [end]))
        parts["noticed"].append(seg.ended - end)
    return {k: sum(v) / len(v) for k, v in parts.items() if v}


class SyncHalving:
    """Synchronous successive halving over given hyperparameters, driven through sbatch."""

    def __init__(self, root: Path, spec: ExperimentSpec, slots: int, poll: float,
                 unit_seconds: float) -> None:
        self.root, self.spec, self.slots, self.poll = root, spec, slots, poll
        self.unit_seconds = unit_seconds
        self.scheduler = SlurmScheduler(settings=Settings(poll_interval=poll))
        self.tag = f"sh{os.getpid()}"
        self.intervals: list[tuple[float, float]] = []
        self.jobs = 0
        self.trained = 0
        self.checkpoint: dict[int, tuple[int, str]] = {}   # trial -> (length, directory)

    def run(self, params: dict[int, dict[str, Any]], lengths: list[int], divisor: int
            ) -> Result:
        start = time.time()
        alive = sorted(params)
        rung0_starts: list[float] = []
        for rung, length in enumerate(lengths):
            losses = self._rung(alive, params, rung, length)       # the barrier
            if rung == 0:
                rung0_starts = [s for s, _ in self.intervals]
            keep = max(1, len(alive) // divisor)
            alive = sorted(alive, key=lambda t: losses[t])[:keep]
        result = Result("synchronous halving (rung barriers)", self.slots, self.jobs,
                        max(e for _, e in self.intervals) - start,
                        busy_slot_seconds(self.intervals, self.slots),
                        Counter(self.scheduler.calls), self.trained * self.unit_seconds,
                        peak_jobs(self.intervals))
        result.steady = steady_utilisation(self.intervals, start, max(rung0_starts),
                                           self.slots)
        return result

    def _rung(self, trials: list[int], params: dict[int, dict[str, Any]], rung: int,
              length: int) -> dict[int, float]:
        waiting = list(trials)
        running: dict[str, int] = {}
        losses: dict[int, float] = {}
        while waiting or running:
            while waiting and len(running) < self.slots:
                trial = waiting.pop(0)
                running[self._submit(trial, params[trial], rung, length)] = trial
            time.sleep(self.poll)
            statuses = self.scheduler.poll(list(running))
            for job_id, trial in list(running.items()):
                run_dir = self._run_dir(trial, rung)
                if read_exit_code(str(run_dir)) is None and not statuses[job_id].state.finished:
                    continue
                del running[job_id]
                losses[trial] = self._collect(trial, run_dir, length)
        return losses

    def _run_dir(self, trial: int, rung: int) -> Path:
        return self.root / "sh" / "trials" / str(trial) / "segments" / str(rung + 1)

    def _submit(self, trial: int, hp: dict[str, Any], rung: int, length: int) -> str:
        start, resume = self.checkpoint.get(trial, (0, None))
        paths = prepare_segment(
            spec=self.spec, experiment_id=self.tag, trial_id=trial, segment=rung + 1,
            params=hp, start_length=start, target_length=length, report_at=[length],
            resume_from=resume, trial_seed=trial_seed(5, trial), backend="slurm",
            exp_root=self.root / "sh")
        self.jobs += 1
        return self.scheduler.submit(JobRequest(paths.job_name, paths.script, paths.run_dir))

    def _collect(self, trial: int, run_dir: Path, length: int) -> float:
        interval = job_interval(run_dir)
        if interval:
            self.intervals.append(interval)
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        loss = next(x["metrics"]["loss"] for x in lines
                    if x["kind"] == "validation" and x["length"] == length)
        ckpt = next(x["path"] for x in lines if x["kind"] == "checkpoint" and x["length"] == length)
        self.trained += length - self.checkpoint.get(trial, (0, ""))[0]
        self.checkpoint[trial] = (length, ckpt)
        return float(loss)


def table(results: list[Result]) -> str:
    kinds = sorted({k for r in results for k in r.commands})
    head = ["run", "slots", "jobs", "peak jobs", "makespan s", "busy slot-s", "utilisation",
            "steady-state utilisation", "training share", "commands/min", "commands"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        counts = ", ".join(f"{k} {r.commands[k]}" for k in kinds if r.commands[k])
        rows.append(f"| {r.name} | {r.slots} | {r.jobs} | {r.peak} | {r.makespan:.1f} | "
                    f"{r.busy:.1f} | {r.utilisation:.1%} | {r.steady:.1%} | "
                    f"{r.training_share:.1%} | "
                    f"{r.per_minute:.1f} | {counts} |")
    parts = sorted({k for r in results for k in r.latency})
    if parts:
        rows += ["", "| run (mean seconds per job) | " + " | ".join(parts) + " |",
                 "|" + "---|" * (len(parts) + 1)]
        rows += [f"| {r.name} | " + " | ".join(f"{r.latency.get(k, float('nan')):.2f}"
                                               for k in parts) + " |"
                 for r in results if r.latency]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--unit-seconds", type=float, default=0.2,
                        help="seconds per length unit (rungs are 10, 30 and 90 units)")
    parser.add_argument("--poll", type=float, default=1.0, help="driver poll interval, s")
    parser.add_argument("--skip-sync", action="store_true")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cade-bench-util-") as tmp:
        root = Path(tmp)
        for keep in (True, False):
            result, ledger, exp_id = run_asha(root / ("keep" if keep else "requeue"), args,
                                              keep)
            results.append(result)
            print(f"{result.name}: {result.utilisation:.1%}", file=sys.stderr)
        if not args.skip_sync:
            params = {t.id: t.params for t in ledger.trials(exp_id)}
            spec = write_spec(root, args)
            lengths = [10, 30, 90]
            sync = SyncHalving(root, spec, args.slots, args.poll,
                               args.unit_seconds).run(params, lengths, 3)
            results.append(sync)
            print(f"{sync.name}: {sync.utilisation:.1%}", file=sys.stderr)
    print(table(results))
    print(f"\nGoal for ASHA: >= {GOAL:.0%}. Made with: "
          f"{shlex.join(['python', 'bench/slurm_utilisation.py', *sys.argv[1:]])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
