"""The Slurm backend against a real Slurm (the test cluster of scripts/slurm-up.sh).

Marked `slurm`. Without sbatch (or a responsive controller) these tests skip on a
workstation and FAIL when CI is set: CI must exercise real Slurm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from contract.suite import (
    SchedulerContract,
    SchedulerFactory,
    unique_name,
    write_job_script,
)

from cade_cli.backends.base import JobRequest, JobState
from cade_cli.backends.slurm import SlurmScheduler, sbatch_directives
from cade_cli.errors import SchedulerError
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import (
    ExperimentSpec,
    ResourcesSpec,
    SearcherSpec,
    SlurmSpec,
)

pytestmark = pytest.mark.slurm


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (run scripts/slurm-up.sh)"
    try:
        probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                               timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld does not answer"
    if probe.returncode != 0:
        return f"sinfo failed: {probe.stderr.strip()}"
    return None


@pytest.fixture(autouse=True, scope="module")
def real_slurm() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the test Slurm cluster: {problem}")
    pytest.skip(problem)


def spec_with(**resources: object) -> ExperimentSpec:
    return ExperimentSpec(
        name="slurm-test", entrypoint=("true",), hyperparameters=Nested(()),
        searcher=SearcherSpec(name="single", metric="loss"),
        resources=ResourcesSpec(**resources), slurm=SlurmSpec())  # type: ignore[arg-type]


def sbatch_script(run_dir: Path, body: str, spec: ExperimentSpec, name: str) -> JobRequest:
    header = "\n".join(f"#SBATCH {d}" for d in sbatch_directives(spec, name, run_dir))
    return JobRequest(name=name, script=write_job_script(run_dir, body, header), run_dir=run_dir)


class TestSlurmContract(SchedulerContract):
    unknown_job_id = "99999999"
    timeout = 60.0
    pause = 0.2

    @pytest.fixture
    def make_scheduler(self, tmp_path: Path) -> SchedulerFactory:
        return lambda: SlurmScheduler(tmp_path / "state", min_poll_interval=0)

    def render_job(self, job_dir: Path, body: str, name: str) -> JobRequest:
        return sbatch_script(job_dir, body, spec_with(time=120), name)


def wait_finished(scheduler: SlurmScheduler, job_id: str, timeout: float = 60) -> JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = scheduler.poll([job_id])[job_id]
        if status.state.finished:
            return status.state
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not finish in {timeout} s")


def test_two_node_job_runs_one_rank_per_slot_with_fake_gpus(tmp_path: Path) -> None:
    spec = spec_with(slots_per_trial=4, slots_per_node=2, slot_type="gpu", time=120)
    body = "srun bash -c 'echo $SLURM_PROCID $SLURM_NODEID $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'"
    request = sbatch_script(tmp_path / "run dir", body, spec, unique_name())
    scheduler = SlurmScheduler(min_poll_interval=0)
    job_id = scheduler.submit(request)
    assert wait_finished(scheduler, job_id) == JobState.COMPLETED
    lines = sorted((request.run_dir / "stdout.log").read_text().split("\n")[:-1])
    assert lines == ["0 0 node1 0,1", "1 0 node1 0,1", "2 1 node2 0,1", "3 1 node2 0,1"]
    assert scheduler.poll([job_id])[job_id].nodes == "node[1-2]"


def test_more_nodes_than_the_cluster_has_never_starts(tmp_path: Path) -> None:
    request = sbatch_script(tmp_path, "true", spec_with(slots_per_trial=5, slots_per_node=1),
                            unique_name())
    scheduler = SlurmScheduler(min_poll_interval=0)
    job_id = scheduler.submit(request)
    try:
        deadline = time.monotonic() + 30
        while not (status := scheduler.poll([job_id])[job_id]).never_starts:
            assert time.monotonic() < deadline, f"still {status}"
            time.sleep(0.3)
        assert status.state == JobState.PENDING
        assert status.reason in ("PartitionNodeLimit", "PartitionConfig")
    finally:
        scheduler.cancel([job_id])


def test_impossible_gpu_request_is_refused_at_submit(tmp_path: Path) -> None:
    spec = spec_with(slots_per_trial=3, slot_type="gpu")          # nodes have 2 fake GPUs
    request = sbatch_script(tmp_path, "true", spec, unique_name())
    with pytest.raises(SchedulerError) as info:
        SlurmScheduler(min_poll_interval=0).submit(request)
    assert "Requested node configuration is not available" in info.value.message
    assert info.value.exit_code == 3


def test_a_job_killed_by_a_signal_reports_128_plus_the_signal(tmp_path: Path) -> None:
    request = sbatch_script(tmp_path, "kill -SEGV $$", spec_with(), unique_name())
    scheduler = SlurmScheduler(min_poll_interval=0)
    job_id = scheduler.submit(request)
    assert wait_finished(scheduler, job_id) == JobState.FAILED
    status = SlurmScheduler(min_poll_interval=0).poll([job_id])[job_id]   # a fresh instance
    assert (status.state, status.exit_code) == (JobState.FAILED, 139)


def test_commands_are_counted_and_live_jobs_polled_in_one_squeue(tmp_path: Path) -> None:
    scheduler = SlurmScheduler(min_poll_interval=0)
    ids = [scheduler.submit(sbatch_script(tmp_path / str(i), "sleep 1", spec_with(), unique_name()))
           for i in range(3)]
    scheduler.poll(ids)
    assert scheduler.calls["sbatch"] == 3 and scheduler.calls["squeue"] == 1
    for job_id in ids:
        assert wait_finished(scheduler, job_id) == JobState.COMPLETED
    assert scheduler.calls["scontrol"] == 0            # COMPLETED rows need no exit-code lookup


def test_array_elements_are_polled_found_and_cancelled_one_by_one(tmp_path: Path) -> None:
    """An `sbatch --array` job: each element `ID_i` has its own state, exit code and scancel."""
    name = unique_name()
    script = write_job_script(tmp_path, 'case "$SLURM_ARRAY_TASK_ID" in\n'
                              "  0) true ;;\n  1) exit 3 ;;\n  *) sleep 120 ;;\nesac")
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", "-J", name, "-t", "5",
         "-o", str(tmp_path / "out_%a.log"), str(script)],
        capture_output=True, text=True, check=True)
    array_id = submitted.stdout.strip().split(";")[0]
    elements = [f"{array_id}_{index}" for index in range(3)]
    scheduler = SlurmScheduler(min_poll_interval=0)
    try:
        wait = time.monotonic() + 60
        while scheduler.poll([elements[2]])[elements[2]].state is not JobState.RUNNING:
            assert time.monotonic() < wait, "element 2 never started"
            time.sleep(0.3)
        assert scheduler.find_by_name(name) == {name: elements[2]}
        scheduler.cancel([elements[2]])
        assert wait_finished(scheduler, elements[0]) == JobState.COMPLETED
        assert wait_finished(scheduler, elements[1]) == JobState.FAILED
        assert wait_finished(scheduler, elements[2]) == JobState.CANCELLED
        assert scheduler.poll([elements[1]])[elements[1]].exit_code == 3
    finally:
        subprocess.run(["scancel", array_id], check=False)
