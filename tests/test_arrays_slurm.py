"""Job arrays on the test Slurm: a search whose first segments go out as one `sbatch --array`,
one element canceled alone, and `kill -9` of the driver right after the array's sbatch.

Slurm's own listing (`squeue -r -t all`: every element, finished ones for MinJobAge, which
the test cluster sets to 600 s) is the evidence that each segment ran in exactly one job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_fixtures import (
    EXAMPLES,
    ROOT,
    cade,
    cade_env,
    cancel_jobs,
    ledger_of,
    require_slurm,
    wait_for,
)
from test_slurm_backend import spec_with

from cade_cli.backends.base import JobRequest, JobState
from cade_cli.backends.slurm import SlurmScheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.jobs.array import prepare_array
from cade_cli.spec.experiment import parse_spec
from cade_cli.store.ledger import Ledger

pytestmark = pytest.mark.slurm

TRIALS = 4
SPEC = f"""
name: arrays-slurm
entrypoint: ["{sys.executable}", "{EXAMPLES / 'synthetic' / 'train.py'}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64, 128]}}
searcher:
  name: async_halving
  metric: loss
  max_trials: {TRIALS}
  num_rungs: 2
  divisor: 2
  max_length: 8
  max_concurrent_trials: {TRIALS}
  stop_once: false
resources:
  launcher: none
  time: 10
job_arrays: true
reproducibility:
  experiment_seed: 11
"""


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    require_slurm()


def logging_sbatch(workdir: Path, kill_after_array: bool) -> Path:
    """A folder holding an `sbatch` that logs each call's script and, with
    `kill_after_array`, SIGKILLs its caller (the driver) once, right after Slurm queued the
    first array and before the driver can read its id."""
    folder = workdir / "bin"
    folder.mkdir(exist_ok=True)
    kill = (f'if [ ! -e {workdir}/killed ] && grep -q -- "--array=" "$script"; then\n'
            f'    touch {workdir}/killed; kill -9 "$PPID"\nfi\n') if kill_after_array else ""
    script = folder / "sbatch"
    script.write_text(f"""#!/bin/sh
for script; do :; done
out=$({shutil.which("sbatch")} "$@") || {{ rc=$?; printf '%s\\n' "$out"; exit $rc; }}
printf '%s\\n' "$script" >> {workdir}/sbatch.log
{kill}printf '%s\\n' "$out"
""")
    script.chmod(0o755)
    return folder


def environment(workdir: Path, kill_after_array: bool = False) -> dict[str, str]:
    env = cade_env(workdir, poll=0.5, SYNTH_STEP_SECONDS="0.05", PYTHONPATH=str(ROOT))
    env["PATH"] = f"{logging_sbatch(workdir, kill_after_array)}{os.pathsep}{env['PATH']}"
    return env


def slurm_jobs(token: str) -> dict[str, tuple[str, str]]:
    """{job id: (name, state)} of every job and array element Slurm holds for `token`."""
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%j"],
                          capture_output=True, text=True, timeout=30, check=True)
    rows = [line.split("|", 2) for line in done.stdout.splitlines() if line.count("|") >= 2]
    return {job_id: (name, state) for job_id, state, name in rows if name.endswith(f"-{token}")}


def check_each_segment_ran_once(workdir: Path) -> None:
    ledger = ledger_of(workdir)
    try:
        assert ledger.experiment(1).state == "completed"
        segments = ledger.segments(1)
    finally:
        ledger.close()
    token = segments[0].job_name.rsplit("-", 1)[1]
    jobs = slurm_jobs(token)
    # One Slurm job (or element) per segment, under the id the ledger recorded: nothing
    # submitted twice, nothing lost.
    assert sorted(jobs) == sorted(s.job_id for s in segments), (jobs, segments)
    assert {state for _, state in jobs.values()} == {"COMPLETED"}
    assert all(Path(s.run_dir, "exit_code").read_text().strip() == "0" for s in segments)
    firsts = [s for s in segments if s.index == 1]
    array_ids = {s.job_id.split("_")[0] for s in firsts}
    assert len(firsts) == TRIALS and len(array_ids) == 1 and all("_" in s.job_id for s in firsts)
    assert {jobs[s.job_id][0] for s in firsts} == {f"cade-1-array-1-1-{token}"}


def test_a_search_goes_out_as_one_array_and_completes(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = environment(tmp_path)
    try:
        cade(tmp_path, "submit", "spec.yaml", env=env, timeout=400)
    finally:
        cancel_jobs([s.job_id for s in ledger_of(tmp_path).segments(1) if s.job_id])
    check_each_segment_ran_once(tmp_path)
    sbatch_calls = (tmp_path / "sbatch.log").read_text().splitlines()
    assert len(sbatch_calls) < TRIALS
    array_script = Path(sbatch_calls[0])
    assert array_script.parent.parent.name == "arrays"
    assert f"--array=0-{TRIALS - 1}" in array_script.read_text()


def test_a_driver_killed_right_after_the_arrays_sbatch_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    ledger = Ledger(tmp_path / "ledger.db")
    engine.submit(ledger, parse_spec(SPEC, source=str(spec_path)), "slurm")
    ledger.close()
    env = environment(tmp_path, kill_after_array=True)

    def watch() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cade_cli", "watch", "1"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=400,
                              check=False)
    try:
        killed = watch()
        assert killed.returncode == -9, killed.stderr
        ledger = ledger_of(tmp_path)
        intents = [s for s in ledger.segments(1) if s.state == "intent"]
        ledger.close()
        # Killed between sbatch and recording: Slurm holds the array, the ledger no id.
        assert len(intents) == TRIALS and (tmp_path / "killed").exists()
        assert all(Path(s.run_dir, "array.json").exists() for s in intents)
        resumed = watch()
        assert resumed.returncode == 0, resumed.stderr
    finally:
        cancel_jobs([s.job_id for s in ledger_of(tmp_path).segments(1) if s.job_id])
    check_each_segment_ran_once(tmp_path)


def test_cancelling_one_element_cancels_only_that_one(tmp_path: Path) -> None:
    spec = spec_with(time=120)
    elements = []
    for index, body in enumerate(("sleep 1", "sleep 120", "sleep 1")):
        run_dir = tmp_path / f"segment-{index}"
        run_dir.mkdir()
        script = run_dir / "job.sh"
        script.write_text(f'#!/bin/bash\necho $? > {run_dir}/started\n{body}\n'
                          f'echo 0 > {run_dir}/exit_code\n')
        script.chmod(0o700)
        elements.append(JobRequest(f"segment-{index}", script, run_dir))
    name = f"cade-arrays-cancel-{os.getpid()}"
    array = prepare_array(spec, backend="slurm", name=name, array_dir=tmp_path / "array",
                          elements=elements)
    scheduler = SlurmScheduler(min_poll_interval=0)
    ids = scheduler.submit_array(array)
    try:
        assert scheduler.find_array(name, 3) == dict(enumerate(ids))
        scheduler.cancel([ids[1]])

        def states() -> list[JobState] | None:
            found = [scheduler.poll([i])[i].state for i in ids]
            return found if all(s.finished for s in found) else None
        final = wait_for("every element to end", states, timeout=300, interval=1)
        assert final == [JobState.COMPLETED, JobState.CANCELLED, JobState.COMPLETED]
        assert (tmp_path / "segment-0" / "stdout.log").exists()
        assert not (tmp_path / "segment-1" / "exit_code").exists()
    finally:
        cancel_jobs(ids)
