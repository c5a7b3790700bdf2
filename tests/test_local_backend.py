"""The local backend: the contract suite, plus slots, GPU pinning, crash recovery, the factory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from contract.suite import (
    SchedulerContract,
    SchedulerFactory,
    process_gone,
    unique_name,
    write_job_script,
)

from cade_cli.backends import SCHEDULER_NAMES, detect_scheduler, make_scheduler
from cade_cli.backends import local as local_backend
from cade_cli.backends.base import JobRequest, JobState
from cade_cli.backends.local import LocalScheduler
from cade_cli.backends.processes import detect_gpus
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.jobs.render import TEMPLATE_FOR_BACKEND


def local_job(job_dir: Path, body: str, name: str | None = None, slots: int = 1,
              gpus: bool = False) -> JobRequest:
    script = write_job_script(job_dir, body)
    return JobRequest(name=name or unique_name(), script=script, run_dir=job_dir, slots=slots,
                      gpus=gpus)


class TestLocalContract(SchedulerContract):
    unknown_job_id = "local-999999"

    @pytest.fixture
    def make_scheduler(self, tmp_path: Path) -> SchedulerFactory:
        return lambda: LocalScheduler(tmp_path / "state", slots=8, gpus=[])

    def render_job(self, job_dir: Path, body: str, name: str) -> JobRequest:
        return local_job(job_dir, body, name)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def wait_all(scheduler: LocalScheduler, ids: list[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = dict(scheduler.poll(ids))
        if all(status.state.finished for status in statuses.values()):
            return statuses
        assert time.monotonic() < deadline, statuses
        time.sleep(0.05)


def test_output_goes_to_the_run_directory_logs(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    job_id = scheduler.submit(local_job(tmp_path / "j", "echo out; echo err >&2; echo $CADE_JOB_ID"))
    assert job_id == "local-1"
    wait_all(scheduler, [job_id])
    assert (tmp_path / "j" / "stdout.log").read_text() == "out\nlocal-1\n"
    assert (tmp_path / "j" / "stderr.log").read_text() == "err\n"


def test_job_ids_increase_across_instances(state: Path, tmp_path: Path) -> None:
    first = LocalScheduler(state, slots=1, gpus=[]).submit(local_job(tmp_path / "a", "true"))
    second = LocalScheduler(state, slots=1, gpus=[]).submit(local_job(tmp_path / "b", "true"))
    assert (first, second) == ("local-1", "local-2")


@pytest.mark.parametrize("slots", [1, 2])
def test_slot_limit_is_respected_in_fifo_order(state: Path, tmp_path: Path, slots: int) -> None:
    log = tmp_path / "events.log"
    scheduler = LocalScheduler(state, slots=slots, gpus=[])
    ids = [scheduler.submit(local_job(tmp_path / f"j{n}",
                                      f"echo start {n} >> {log}; sleep 0.3; echo end {n} >> {log}"))
           for n in range(5)]
    statuses = wait_all(scheduler, ids)
    assert all(status.state == JobState.COMPLETED for status in statuses.values())
    running, peak, starts = 0, 0, []
    for kind, number in (line.split() for line in log.read_text().splitlines()):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
        if kind == "start":
            starts.append(int(number))
    assert peak <= slots
    if slots == 1:  # one at a time: the log order is the start order
        assert starts == sorted(starts)


def test_a_big_job_at_the_head_is_not_overtaken(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, slots=2, gpus=[])
    gate = tmp_path / "gate"
    small = scheduler.submit(local_job(tmp_path / "a", f"while [ ! -f {gate} ]; do sleep 0.05; done"))
    big = scheduler.submit(local_job(tmp_path / "b", "true", slots=2))
    later = scheduler.submit(local_job(tmp_path / "c", "true"))
    statuses = scheduler.poll([small, big, later])
    assert [statuses[j].state for j in (small, big, later)] == [
        JobState.RUNNING, JobState.PENDING, JobState.PENDING]
    gate.write_text("go")
    assert all(s.state == JobState.COMPLETED for s in wait_all(scheduler, [small, big, later]).values())


def test_a_job_that_can_never_fit_is_flagged_and_skipped(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, slots=2, gpus=[])
    huge = scheduler.submit(local_job(tmp_path / "a", "true", slots=3))
    gpu = scheduler.submit(local_job(tmp_path / "b", "true", gpus=True))
    normal = scheduler.submit(local_job(tmp_path / "c", "true"))
    assert wait_all(scheduler, [normal])[normal].state == JobState.COMPLETED
    statuses = scheduler.poll([huge, gpu])
    assert statuses[huge].state == JobState.PENDING and statuses[huge].never_starts
    assert "3 slots" in statuses[huge].reason
    assert statuses[gpu].never_starts and "asks for 1 GPU; this machine offers none" in statuses[gpu].reason
    scheduler.cancel([huge, gpu])
    assert {s.state for s in scheduler.poll([huge, gpu]).values()} == {JobState.CANCELLED}


def test_gpu_jobs_get_their_own_cuda_visible_devices(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, gpus=["0", "1", "2"])
    assert scheduler.slots == 3
    gate = tmp_path / "gate"
    body = f'echo "$CUDA_VISIBLE_DEVICES" > gpus; while [ ! -f {gate} ]; do sleep 0.05; done'
    pair = scheduler.submit(local_job(tmp_path / "pair", body, slots=2, gpus=True))
    single = scheduler.submit(local_job(tmp_path / "single", body, gpus=True))
    third = scheduler.submit(local_job(tmp_path / "third", 'echo "$CUDA_VISIBLE_DEVICES" > gpus',
                                       gpus=True))
    assert scheduler.poll([third])[third].state == JobState.PENDING
    gate.write_text("go")
    wait_all(scheduler, [pair, single, third])
    assert (tmp_path / "pair" / "gpus").read_text() == "0,1\n"
    assert (tmp_path / "single" / "gpus").read_text() == "2\n"
    assert (tmp_path / "third" / "gpus").read_text() in ("0\n", "1\n", "2\n")


def test_gpu_and_slot_defaults(monkeypatch: pytest.MonkeyPatch, state: Path,
                               tmp_path: Path) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: H100 (UUID: a)'\n"
                                     "echo 'GPU 1: H100 (UUID: b)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert detect_gpus() == ["0", "1"]
    assert LocalScheduler(state).slots == 2
    assert LocalScheduler(state, gpus=[]).slots == (os.cpu_count() or 1)
    assert LocalScheduler(state, slots=5, gpus=2).gpu_ids == ["0", "1"]


def test_scheduler_variables_of_the_driver_do_not_leak_into_jobs(
        monkeypatch: pytest.MonkeyPatch, state: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("PBS_NODEFILE", "/nowhere")
    monkeypatch.setenv("CADE_KEEP_ME", "yes")
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    job_id = scheduler.submit(local_job(
        tmp_path / "j", 'echo "${SLURM_PROCID:-none} ${PBS_NODEFILE:-none} $CADE_KEEP_ME" > env'))
    wait_all(scheduler, [job_id])
    assert (tmp_path / "j" / "env").read_text() == "none none yes\n"


def test_a_job_ignoring_term_is_killed_after_the_grace(
        monkeypatch: pytest.MonkeyPatch, state: Path, tmp_path: Path) -> None:
    monkeypatch.setattr(local_backend, "KILL_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(local_backend, "CANCEL_WAIT_SECONDS", 0.1)
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    job = local_job(tmp_path / "j", "trap '' TERM\necho $$ > shell.pid\nwhile :; do sleep 0.05; done")
    job_id = scheduler.submit(job)
    pid_file = tmp_path / "j" / "shell.pid"
    # The file exists a moment before echo has written into it: wait for the whole line.
    while not pid_file.exists() or not pid_file.read_text().endswith("\n"):
        time.sleep(0.05)
    shell = int(pid_file.read_text())
    scheduler.cancel([job_id])
    # Still live while its processes are: the ledger must not call it over before they are.
    assert scheduler.poll([job_id])[job_id].state == JobState.RUNNING
    deadline = time.monotonic() + 10
    while not process_gone(shell):
        assert time.monotonic() < deadline, "the TERM-ignoring job was never killed"
        scheduler.poll([job_id])
        time.sleep(0.05)
    assert scheduler.poll([job_id])[job_id].state == JobState.CANCELLED
    queued = scheduler.submit(local_job(tmp_path / "k", "true"))  # the slot is free again
    assert wait_all(scheduler, [queued])[queued].state == JobState.COMPLETED


def test_cancel_of_a_queued_job_means_it_never_runs(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    gate = tmp_path / "gate"
    first = scheduler.submit(local_job(tmp_path / "a", f"while [ ! -f {gate} ]; do sleep 0.05; done"))
    queued = scheduler.submit(local_job(tmp_path / "b", "echo ran > ran"))
    scheduler.cancel([queued])
    gate.write_text("go")
    statuses = wait_all(scheduler, [first, queued])
    assert statuses[queued].state == JobState.CANCELLED
    assert not (tmp_path / "b" / "ran").exists()


SUBMIT_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cade_cli.backends.base import JobRequest
    from cade_cli.backends.local import LocalScheduler
    scheduler = LocalScheduler(Path(sys.argv[1]), slots=2, gpus=[])
    for run_dir in sys.argv[2:]:
        print(scheduler.submit(JobRequest(name="cade-9-1-1", script=Path(run_dir) / "job.sh",
                                          run_dir=Path(run_dir))), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_jobs_survive_a_killed_driver_and_a_new_one_reads_them(state: Path,
                                                               tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    write_job_script(tmp_path / "ok", f"while [ ! -f {gate} ]; do sleep 0.05; done\nexit 0")
    # No exit-code trap and killed by a signal: the new driver cannot learn a status.
    (tmp_path / "lost").mkdir()
    (tmp_path / "lost" / "job.sh").write_text(f"while [ ! -f {gate} ]; do sleep 0.05; done\n"
                                              "kill -9 $$\n")
    driver = subprocess.run([sys.executable, "-c", SUBMIT_AND_DIE, str(state),
                             str(tmp_path / "ok"), str(tmp_path / "lost")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert driver.returncode == -9, driver.stderr
    ok, lost = driver.stdout.split()
    scheduler = LocalScheduler(state, slots=2, gpus=[])
    assert {s.state for s in scheduler.poll([ok, lost]).values()} == {JobState.RUNNING}
    assert scheduler.find_by_name("cade-9-") == {"cade-9-1-1": lost}
    gate.write_text("go")
    statuses = wait_all(scheduler, [ok, lost])
    assert (statuses[ok].state, statuses[ok].exit_code) == (JobState.COMPLETED, 0)
    assert statuses[lost].state == JobState.FAILED and statuses[lost].exit_code is None
    assert "without writing exit_code" in statuses[lost].reason


def test_the_parent_reads_the_waited_status_without_an_exit_file(state: Path,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "job.sh").write_text("exit 7\n")
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    job_id = scheduler.submit(JobRequest(name="n", script=tmp_path / "j" / "job.sh",
                                         run_dir=tmp_path / "j"))
    status = wait_all(scheduler, [job_id])[job_id]
    assert (status.state, status.exit_code) == (JobState.FAILED, 7)


def test_user_mistakes_raise_scheduler_errors(state: Path, tmp_path: Path) -> None:
    scheduler = LocalScheduler(state, slots=1, gpus=[])
    with pytest.raises(SchedulerError, match="does not exist"):
        scheduler.submit(JobRequest(name="n", script=tmp_path / "missing.sh", run_dir=tmp_path))
    with pytest.raises(SchedulerError, match="unknown signal"):
        scheduler.signal(["local-1"], "NOPE")
    assert scheduler.poll(["../../etc"])["../../etc"].state == JobState.UNKNOWN


# -- the factory ----------------------------------------------------------------------------

class _Settings:
    local_slots = 3


def test_make_scheduler_builds_the_local_backend(state: Path) -> None:
    scheduler = make_scheduler("local", state, _Settings())
    assert isinstance(scheduler, LocalScheduler) and scheduler.slots == 3
    assert set(TEMPLATE_FOR_BACKEND) == set(SCHEDULER_NAMES) == {"local", "slurm", "pbs"}


def test_make_scheduler_rejects_unknown_names(state: Path) -> None:
    with pytest.raises(SpecError) as caught:
        make_scheduler("lsf", state)
    assert "lsf" in caught.value.message
    assert caught.value.hint is not None and "slurm" in caught.value.hint


def _fake_commands(directory: Path, **scripts: str) -> None:
    directory.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)


@pytest.mark.parametrize(("commands", "expected"), [
    ({"sbatch": "#!/bin/sh\n", "qsub": "#!/bin/sh\n", "qstat": "#!/bin/sh\n"}, "slurm"),
    ({"qsub": "#!/bin/sh\n# PBS Pro\n", "qstat": "#!/bin/sh\n"}, "pbs"),
    ({"qsub": "#!/usr/bin/perl\n# Slurm's torque wrapper\n", "qstat": "#!/bin/sh\n"}, "local"),
    ({"qsub": "#!/bin/sh\n"}, "local"),
    ({}, "local"),
])
def test_detect_scheduler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          commands: dict[str, str], expected: str) -> None:
    _fake_commands(tmp_path / "bin", **commands)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert detect_scheduler() == expected


def test_a_relative_state_directory_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    scheduler = LocalScheduler(Path(".cade"), slots=1, gpus=[])
    job_id = scheduler.submit(local_job(Path("runs/j"), "exit 0"))
    assert wait_all(scheduler, [job_id])[job_id].state == JobState.COMPLETED
