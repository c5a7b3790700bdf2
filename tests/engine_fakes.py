"""Small fakes for the engine's unit tests: a scripted scheduler and a scripted searcher.

The fake scheduler "runs" a job the moment it is submitted: a behaviour function decides
what the job wrote into its run directory and how the scheduler reports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli.backends.base import JobRequest, JobState, JobStatus, Scheduler
from cade_cli.search.searchers.base import (
    Create,
    Decision,
    ExitReason,
    Shutdown,
    Stop,
    Train,
)
from cade_cli.spec.experiment import parse_spec


@dataclass
class Outcome:
    """What a fake job does: lines into metrics.jsonl, an exit code, the scheduler state."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = 0
    state: JobState = JobState.COMPLETED
    preempted: bool = False
    never_starts: str = ""


def run_to_target(metric: Callable[[int, int], float] = lambda trial, length: 1.0 / length,
                  name: str = "loss") -> Callable[[JobRequest, dict[str, Any]], Outcome]:
    """A well-behaved trial: validates and checkpoints at its target, then ends."""
    def behave(request: JobRequest, control: dict[str, Any]) -> Outcome:
        trial = int(request.name.split("-")[2])
        target = int(control["target_length"])
        ckpt = str(request.run_dir.parents[1] / "checkpoints" / str(target))
        return Outcome([
            {"kind": "validation", "length": target, "time": 1.0,
             "metrics": {name: metric(trial, target)}},
            {"kind": "checkpoint", "length": target, "time": 1.0, "path": ckpt},
            {"kind": "segment_end", "length": target, "time": 1.0},
        ])
    return behave


class FakeScheduler(Scheduler):
    name = "fake"

    def __init__(self, behave: Callable[[JobRequest, dict[str, Any]], Outcome] | None = None,
                 run_now: bool = True) -> None:
        self.behave = behave or run_to_target()
        self.run_now = run_now
        self.jobs: dict[str, tuple[JobRequest, Outcome | None]] = {}
        self.submitted: list[str] = []
        self.canceled: list[str] = []
        self.fail_after_submit = False

    def submit(self, request: JobRequest) -> str:
        job_id = f"fake-{len(self.jobs) + 1}"
        self.submitted.append(request.name)
        self.jobs[job_id] = (request, None)
        if self.run_now:
            self.run(job_id)
        if self.fail_after_submit:
            self.fail_after_submit = False
            raise RuntimeError("driver killed right after submitting")
        return job_id

    def run(self, job_id: str) -> None:
        request, _ = self.jobs[job_id]
        control = json.loads((request.run_dir / "control.json").read_text())
        outcome = self.behave(request, control)
        self.jobs[job_id] = (request, outcome)
        if outcome.never_starts:
            return
        with open(request.run_dir / "metrics.jsonl", "a") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in outcome.lines)
        if outcome.preempted:
            (request.run_dir / "preempted").write_text("USR1\n")
        if outcome.exit_code is not None:
            (request.run_dir / "exit_code").write_text(f"{outcome.exit_code}\n")

    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        out = {}
        for job_id in job_ids:
            _request, outcome = self.jobs[job_id]
            if job_id in self.canceled:
                out[job_id] = JobStatus(job_id, JobState.CANCELLED)
            elif outcome is None:
                out[job_id] = JobStatus(job_id, JobState.RUNNING, nodes="n1")
            elif outcome.never_starts:
                out[job_id] = JobStatus(job_id, JobState.PENDING, reason=outcome.never_starts,
                                        never_starts=True)
            else:
                out[job_id] = JobStatus(job_id, outcome.state, outcome.exit_code)
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.canceled.extend(job_ids)

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        return {req.name: jid for jid, (req, _) in self.jobs.items()
                if req.name.startswith(name_prefix)}


class FakeSearcher:
    """Trains `count` trials one after another to `length`; Stop on each report."""

    def __init__(self, count: int = 2, length: int = 10, created: int = 0,
                 closed: int = 0, seen: list[Any] | None = None) -> None:
        self.count, self.length = count, length
        self.created, self.closed = created, closed
        self.seen = seen if seen is not None else []
        self.done = False

    def _next(self) -> list[Decision]:
        if self.created < self.count:
            self.created += 1
            return [Create(self.created, {"x": self.created}), Train(self.created, self.length,
                                                                     (self.length,))]
        if self.closed >= self.count:
            self.done = True
            return [Shutdown()]
        return []

    def start(self) -> list[Decision]:
        return self._next()

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        self.seen.append(["validation", trial, length, metric])
        self.closed += 1
        return [Stop(trial), *self._next()]

    def on_exit(self, trial: int, reason: ExitReason) -> list[Decision]:
        self.seen.append(["exit", trial, reason.value])
        self.closed += 1
        return self._next()

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count, "length": self.length, "created": self.created,
                "closed": self.closed, "seen": self.seen}

    def progress(self) -> float:
        return self.closed / self.count


def install_fake_searcher(monkeypatch: Any, count: int = 2, length: int = 10) -> None:
    from cade_cli.engine import lifecycle as engine

    monkeypatch.setattr(engine, "make_searcher",
                        lambda spec, space, seed: FakeSearcher(count, length))
    monkeypatch.setattr(engine, "restore_searcher",
                        lambda spec, space, snap: FakeSearcher(**snap))


def spec_text(workdir: Path, searcher: str = "random", max_trials: int = 2,
              max_length: int = 10, extra: str = "", concurrency: int = 1) -> str:
    return f"""
name: unit
entrypoint: python train.py
hyperparameters:
  x: {{type: int, minval: 1, maxval: 100}}
searcher:
  name: {searcher}
  metric: loss
  max_trials: {max_trials}
  max_length: {max_length}
  max_concurrent_trials: {concurrency}
resources:
  launcher: none
reproducibility:
  experiment_seed: 5
{extra}
"""


def make_spec(tmp_path: Path, **kwargs: Any) -> Any:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(tmp_path, **kwargs))
    return parse_spec(path.read_text(), source=str(path))
