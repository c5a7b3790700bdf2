"""cade end to end on the real test Slurm cluster (scripts/slurm-up.sh starts it).

Everything goes through the `cade` command and real sbatch/squeue/scancel: an Adaptive ASHA
search, data-parallel trials over two emulated nodes (torch.distributed and Horovod), and the
three ways a segment ends early (killed, preemption notice, real time limit), each of which
must resume from a checkpoint and end with the metrics of an uninterrupted run.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm_fixtures import (
    EXAMPLES,
    FINAL_TRIAL_STATES,
    cade_json,
    cancel_jobs,
    ledger_of,
    metrics_lines,
    require_horovod,
    require_slurm,
    scontrol_fields,
    segments,
    wait_for,
    wait_for_end,
)

pytestmark = pytest.mark.slurm

SYNTHETIC = EXAMPLES / "synthetic"
RESTART_SPEC = SYNTHETIC / "restart-slurm.yaml"
TIME_LIMIT_SPEC = SYNTHETIC / "timelimit-slurm.yaml"
CHECKSUM = re.compile(r"^rank=(\d+) world_size=(\d+) param_checksum=(\S+)$", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    require_slurm()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A fresh ledger per test; whatever jobs it recorded are canceled afterwards."""
    yield tmp_path
    if (tmp_path / "ledger.db").exists():
        ledger = ledger_of(tmp_path)
        try:
            ids = [s.job_id for e in ledger.experiments() for s in ledger.live_segments(e.id)
                   if s.job_id]
        finally:
            ledger.close()
        cancel_jobs(ids)


def _validations(run_dirs: list[str]) -> dict[int, float]:
    found: dict[int, float] = {}
    for run_dir in run_dirs:
        for line in metrics_lines(run_dir):
            if line["kind"] == "validation":
                found[line["length"]] = line["metrics"]["loss"]
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Validation loss by length of the restart spec's trial, run once without interruption."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    answer = cade_json(workdir, "submit", str(RESTART_SPEC), "--scheduler", "slurm", "--json")
    assert answer["state"] == "completed", answer
    segs = segments(workdir, answer["experiment"], 1)
    assert [s.state for s in segs] == ["completed"]
    return _validations([s.run_dir for s in segs])


# -- a. an Adaptive ASHA search through the CLI -------------------------------------------

def test_adaptive_asha_end_to_end_through_the_cli(workdir: Path) -> None:
    spec = SYNTHETIC / "adaptive-slurm.yaml"
    answer = cade_json(workdir, "submit", str(spec), "--scheduler", "slurm", "--json")
    assert answer["state"] == "completed", answer
    status = cade_json(workdir, "status", str(answer["experiment"]), "--json")
    assert status["experiment"]["state"] == "completed"
    assert status["experiment"]["backend"] == "slurm"
    trials = status["trials"]
    assert len(trials) == 8
    assert all(t["state"] in FINAL_TRIAL_STATES for t in trials), trials
    assert any(t["length"] == 90 for t in trials), "no trial reached the top rung"
    best = cade_json(workdir, "best", str(answer["experiment"]), "--json")
    by_metric = min((t for t in trials if t["best_metric"] is not None),
                    key=lambda t: t["best_metric"])
    assert (best["trial"], best["metric"]) == (by_metric["id"], by_metric["best_metric"])
    assert Path(best["checkpoint"]).is_dir()
    # Every segment is a real Slurm job, recorded under its cade job name.
    segs = segments(workdir, answer["experiment"])
    assert len(segs) >= len(trials)
    for seg in segs:
        assert seg.job_id and seg.job_id.isdigit(), seg
        job = scontrol_fields(seg.job_id)
        assert job["JobName"] == seg.job_name
        assert job["JobState"] == "COMPLETED", (seg, job)


# -- b. data parallel over two emulated nodes ---------------------------------------------

@pytest.mark.parametrize("spec_name", ["two-nodes.yaml", "two-nodes-horovod.yaml"])
def test_data_parallel_digits_on_two_nodes(workdir: Path, spec_name: str) -> None:
    if "horovod" in spec_name:
        require_horovod()
    spec = EXAMPLES / "digits" / spec_name
    answer = cade_json(workdir, "submit", str(spec), "--scheduler", "slurm", "--json",
                       "--config", "searcher.max_length.epochs=2", timeout=300)
    assert answer["state"] == "completed", answer
    (seg,) = segments(workdir, answer["experiment"], 1)
    assert seg.state == "completed"
    job = scontrol_fields(seg.job_id or "")
    assert job["NumNodes"] == "2" and job["NodeList"] in ("node[1-2]", "node[2-3]",
                                                          "node[3-4]"), job
    stdout = (Path(seg.run_dir) / "stdout.log").read_text()
    ranks = {int(r): (int(size), float(value)) for r, size, value in CHECKSUM.findall(stdout)}
    assert sorted(ranks) == [0, 1], stdout
    assert {size for size, _ in ranks.values()} == {2}
    assert ranks[0][1] == ranks[1][1], f"ranks ended with different parameters: {ranks}"
    # Only rank 0 reports: one validation per length, one checkpoint, one segment end.
    lines = metrics_lines(seg.run_dir)
    validations = [x["length"] for x in lines if x["kind"] == "validation"]
    assert validations == [2]
    assert [x["kind"] for x in lines].count("segment_end") == 1
    assert [x["kind"] for x in lines].count("checkpoint") == 1


# -- c, d, e. segments that end early resume from their checkpoint -----------------------

def _submit_detached(workdir: Path, spec: Path) -> tuple[int, int]:
    answer = cade_json(workdir, "submit", str(spec), "--scheduler", "slurm", "--detach",
                       "--json")
    return answer["experiment"], answer["driver_pid"]


def _running_job_after_checkpoint(workdir: Path, exp_id: int, length: int) -> str:
    """The job id of segment 1 once the trial's checkpoint at `length` exists."""
    root = Path(ledger_of(workdir).experiment(exp_id).root)
    wait_for(f"checkpoint {length}", (root / "trials/1/checkpoints" / str(length)).exists, 60,
             interval=0.05)
    seg = segments(workdir, exp_id, 1)[0]
    assert seg.job_id and seg.state in ("queued", "running"), seg
    return seg.job_id


def _stop_driver(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _check_resumed(workdir: Path, exp_id: int, reference: dict[int, float]) -> list[Any]:
    """The trial completed; each later segment starts where the one before checkpointed."""
    exp = wait_for_end(workdir, exp_id, 150)
    assert exp.state == "completed", exp
    segs = segments(workdir, exp_id, 1)
    assert len(segs) >= 2 and segs[-1].state == "completed", segs
    for before, after in itertools.pairwise(segs):
        checkpoints = [x["length"] for x in metrics_lines(before.run_dir)
                       if x["kind"] == "checkpoint"]
        assert after.start_length == max(checkpoints), (before, after)
        # Metrics continue from the checkpoint: the next training report is 10 further on.
        first = next(x["length"] for x in metrics_lines(after.run_dir)
                     if x["kind"] == "training")
        assert first == (after.start_length // 10 + 1) * 10
    got = _validations([s.run_dir for s in segs])
    assert got[400] == reference[400]
    assert {k: got[k] for k in reference} == reference, "resumed run differs from uninterrupted"
    return segs


def test_segment_killed_with_scancel_restarts_from_its_checkpoint(
        workdir: Path, uninterrupted: dict[int, float]) -> None:
    exp_id, driver = _submit_detached(workdir, RESTART_SPEC)
    try:
        job_id = _running_job_after_checkpoint(workdir, exp_id, 100)
        # KILL to the batch shell and all its children: no chance to checkpoint.
        subprocess.run(["scancel", "--signal=KILL", "--full", "--batch", job_id], check=True,
                       timeout=30)
        segs = _check_resumed(workdir, exp_id, uninterrupted)
    finally:
        _stop_driver(driver)
    assert segs[0].state == "failed", segs[0]
    ledger = ledger_of(workdir)
    assert ledger.trial(exp_id, 1).restarts == 1
    assert ledger.trial(exp_id, 1).state == "completed"


def test_preemption_notice_checkpoints_and_resumes(workdir: Path,
                                                   uninterrupted: dict[int, float]) -> None:
    exp_id, driver = _submit_detached(workdir, RESTART_SPEC)
    try:
        job_id = _running_job_after_checkpoint(workdir, exp_id, 100)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True,
                       timeout=30)
        segs = _check_resumed(workdir, exp_id, uninterrupted)
    finally:
        _stop_driver(driver)
    assert segs[0].state == "preempted", segs[0]
    assert (Path(segs[0].run_dir) / "preempted").exists()
    assert 100 <= segs[1].start_length < 400
    assert ledger_of(workdir).trial(exp_id, 1).restarts == 0


@pytest.mark.slow
def test_real_time_limit_checkpoints_and_resumes(workdir: Path,
                                                 uninterrupted: dict[int, float]) -> None:
    exp_id, driver = _submit_detached(workdir, TIME_LIMIT_SPEC)
    try:
        segs = _check_resumed(workdir, exp_id, uninterrupted)
    finally:
        _stop_driver(driver)
    # The notice (USR1 before the 1-minute limit) or the limit's TERM ended segment 1.
    assert segs[0].state in ("preempted", "timeout"), segs[0]
    assert scontrol_fields(segs[0].job_id or "")["TimeLimit"] == "00:01:00"
    assert ledger_of(workdir).trial(exp_id, 1).restarts == 0

