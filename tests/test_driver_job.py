"""The driver as a batch job: rendering, the one-driver rule, hand-over, and a real run.

The unit tests use a recording scheduler; the last test drives a real experiment on the test
Slurm cluster with no foreground driver and forces hand-overs (by the clock and by notice).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from slurm_fixtures import (
    EXAMPLES,
    cade,
    cade_env,
    cade_json,
    require_slurm,
    scontrol_fields,
    wait_for,
    wait_for_end,
)

from cade_cli.backends.base import JobRequest, JobState, JobStatus, Scheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.engine.driverjob import (
    DriverJobOptions,
    HandOverClock,
    driver_directives,
    driver_job_name,
    forget_own_allocation,
    read_driver_record,
    run_driver_job,
    settings_environment,
    submit_driver_job,
)
from cade_cli.errors import CadeError, SchedulerError, SpecError, SubmitLimitError
from cade_cli.spec.experiment import load_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

SPEC = EXAMPLES / "synthetic" / "restart-slurm.yaml"


class RecordingScheduler(Scheduler):
    """Submits nothing: hands out ids and answers polls from `states`."""

    name = "slurm"

    def __init__(self) -> None:
        self.submitted: list[JobRequest] = []
        self.states: dict[str, JobState] = {}

    def submit(self, request: JobRequest) -> str:
        self.submitted.append(request)
        job_id = str(100 + len(self.submitted))
        self.states[job_id] = JobState.PENDING
        return job_id

    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        return {j: JobStatus(j, self.states.get(j, JobState.UNKNOWN)) for j in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self.states[job_id] = JobState.CANCELLED

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        return {}


def _experiment(tmp_path: Path, backend: str = "slurm") -> tuple[Path, int]:
    ledger = Ledger(tmp_path / "ledger.db")
    exp_id = engine.submit(ledger, load_spec(str(SPEC)), backend)
    ledger.close()
    return tmp_path / "ledger.db", exp_id


# -- rendering ----------------------------------------------------------------------------

def test_slurm_driver_script_asks_for_one_cpu_and_hands_over(tmp_path: Path) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    fake = RecordingScheduler()
    options = DriverJobOptions(time_limit=7200, margin=300, partition="short q")
    record = submit_driver_job(ledger_path, exp_id, Settings(poll_interval=5.0),
                               options=options, scheduler=fake, python="/opt/py/bin/python",
                               workdir=tmp_path)
    text = Path(record.script).read_text()
    name = driver_job_name(Ledger(ledger_path).experiment(exp_id))
    assert name.startswith("cade-driver-1-")       # plus the token of the experiment dir
    for line in (f"#SBATCH --job-name={name}", "#SBATCH --ntasks=1",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --time=0-02:00:00",
                 "#SBATCH --signal=B:USR1@150", "#SBATCH --dependency=singleton",
                 "#SBATCH '--partition=short q'", "export CADE_POLL_INTERVAL=5.0"):
        assert line in text.splitlines(), (line, text)
    assert (f"exec /opt/py/bin/python -m cade_cli.engine.driverjob run 1 --ledger {ledger_path} "
            "--backend slurm --time-limit 7200 --margin 300 --partition 'short q'") in text
    assert fake.submitted[0].name == name
    assert subprocess.run(["bash", "-n", record.script], check=False).returncode == 0


def test_pbs_directives_and_disabled_notice(tmp_path: Path) -> None:
    pbs = driver_directives("pbs", "cade-driver-3", DriverJobOptions(3600, 60, account="proj"), tmp_path)
    assert "-N cade-driver-3" in pbs and "-l select=1:ncpus=1" in pbs
    assert "-l walltime=01:00:00" in pbs and "-A proj" in pbs and "-r n" in pbs
    slurm = driver_directives("slurm", "cade-driver-3", DriverJobOptions(3600, 60, notice=0), tmp_path)
    assert not [d for d in slurm if d.startswith("--signal")]


@pytest.mark.parametrize("options, backend, wrong", [
    (DriverJobOptions(600, 600), "slurm", "margin"),
    (DriverJobOptions(30, 10), "slurm", "minimum"),
    (DriverJobOptions(), "local", "batch scheduler"),
])
def test_bad_options_are_refused(options: DriverJobOptions, backend: str, wrong: str) -> None:
    with pytest.raises(SpecError, match=wrong):
        options.check(backend)


def test_settings_travel_as_environment() -> None:
    pairs = dict(settings_environment(Settings(poll_interval=2.0, stop_grace=30.0)))
    assert pairs["CADE_POLL_INTERVAL"] == "2.0" and pairs["CADE_STOP_GRACE"] == "30.0"
    assert "CADE_MAX_QUEUED_JOBS" not in pairs  # defaults stay out


# -- one driver job per experiment -------------------------------------------------------

def test_second_driver_job_is_refused_while_the_first_is_alive(tmp_path: Path) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    fake = RecordingScheduler()
    first = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    with pytest.raises(CadeError, match=f"already has a driver job: {first.job_id}"):
        submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    # The running job itself may hand over; the record keeps the history.
    fake.states[first.job_id] = JobState.RUNNING
    second = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake,
                               replacing=first.job_id, reason="deadline")
    assert (second.generation, second.history[0]["job_id"]) == (2, first.job_id)
    assert second.history[0]["reason"] == "deadline"
    # Once the recorded job is gone, anyone may start a new one.
    fake.states[second.job_id] = JobState.TIMEOUT
    third = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    ledger = Ledger(ledger_path, create=False)
    stored = read_driver_record(ledger.experiment(exp_id))
    assert stored == third and third.generation == 3 and len(third.history) == 2


def test_a_paused_experiment_needs_no_driver_until_resumed(tmp_path: Path) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    Ledger(ledger_path, create=False).update_experiment(exp_id, state="paused")
    with pytest.raises(CadeError, match=f"paused; it needs no driver until `cade resume {exp_id}`"):
        submit_driver_job(ledger_path, exp_id, Settings(), scheduler=RecordingScheduler())


def test_an_ended_experiment_needs_no_driver(tmp_path: Path) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    ledger = Ledger(ledger_path, create=False)
    ledger.update_experiment(exp_id, state="canceled")
    with pytest.raises(CadeError, match="needs no driver"):
        submit_driver_job(ledger_path, exp_id, Settings(), scheduler=RecordingScheduler())


# -- hand-over inside the job ------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_hand_over_clock_raises_at_the_deadline_or_on_notice() -> None:
    clock = FakeClock()
    timer = HandOverClock(deadline=1010.0, clock=clock, sleep=clock.sleep)
    timer(4.0)
    assert clock.now == pytest.approx(1004.0)
    with pytest.raises(Exception, match="deadline"):
        timer(30.0)
    assert clock.now == pytest.approx(1010.0)
    early = HandOverClock(deadline=5000.0, clock=clock, sleep=clock.sleep)
    early.on_signal(signal.SIGUSR1, None)
    with pytest.raises(Exception, match="notice"):
        early(1.0)


def test_run_driver_job_submits_its_successor_at_the_deadline(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    fake = RecordingScheduler()
    first = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    fake.states[first.job_id] = JobState.RUNNING
    passes: list[int] = []
    # The drive loop itself is the engine's (tested there); here one pass per sleep.
    monkeypatch.setattr("cade_cli.engine.drive.sync_pass",
                        lambda *args, **kwargs: passes.append(1) or True)
    clock = FakeClock()
    outcome = run_driver_job(ledger_path, exp_id, Settings(poll_interval=10.0),
                             options=DriverJobOptions(3600, 600), backend="slurm",
                             job_id=first.job_id, clock=clock, sleep=clock.sleep,
                             scheduler=fake)
    assert outcome == "handed over"
    assert clock.now == pytest.approx(1000.0 + 3000.0) and len(passes) == 300
    assert [r.name.rsplit("-", 1)[0] for r in fake.submitted] == ["cade-driver-1"] * 2


def test_a_scheduler_outage_does_not_end_the_driver_job(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    fake = RecordingScheduler()
    first = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    clock = FakeClock()
    calls: list[float] = []

    def flaky_pass(*args: object, **kwargs: object) -> bool:
        calls.append(clock.now)
        if len(calls) == 1:
            raise SchedulerError("squeue: Socket timed out on send/recv operation")
        return True

    monkeypatch.setattr("cade_cli.engine.drive.sync_pass", flaky_pass)
    outcome = run_driver_job(ledger_path, exp_id, Settings(poll_interval=100.0),
                             options=DriverJobOptions(3600, 3000), backend="slurm",
                             job_id=first.job_id, clock=clock, sleep=clock.sleep,
                             scheduler=fake)
    assert outcome == "handed over" and len(fake.submitted) == 2
    assert calls[1] - calls[0] == pytest.approx(60.0)  # retried after the outage pause


def test_a_successor_refused_for_a_site_limit_is_tried_again(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ledger_path, exp_id = _experiment(tmp_path)
    fake = RecordingScheduler()
    first = submit_driver_job(ledger_path, exp_id, Settings(), scheduler=fake)
    accept = fake.submit
    refusals = [SubmitLimitError("refused", limit="QOSMaxSubmitJobPerUserLimit", retry_in=30)] * 2

    def limited(request: JobRequest) -> str:
        if refusals:
            raise refusals.pop()
        return accept(request)

    monkeypatch.setattr(fake, "submit", limited)
    monkeypatch.setattr("cade_cli.engine.drive.sync_pass", lambda *args, **kwargs: True)
    clock = FakeClock()
    outcome = run_driver_job(ledger_path, exp_id, Settings(poll_interval=10.0),
                             options=DriverJobOptions(3600, 600), backend="slurm",
                             job_id=first.job_id, clock=clock, sleep=clock.sleep,
                             scheduler=fake)
    assert outcome == "handed over" and len(fake.submitted) == 2
    assert clock.now == pytest.approx(1000.0 + 3000.0 + 60.0)   # two waits of 30 s


def test_forget_own_allocation_keeps_the_cluster_configuration() -> None:
    environ = {"SLURM_JOB_ID": "5", "SLURM_CPUS_PER_TASK": "1", "SLURM_CONF": "/etc/s.conf",
               "PBS_NODEFILE": "/x", "HOME": "/root"}
    forget_own_allocation(environ)
    assert environ == {"SLURM_CONF": "/etc/s.conf", "HOME": "/root"}


# -- on the real test Slurm cluster --------------------------------------------------------

@pytest.mark.slurm
def test_experiment_completes_under_driver_jobs_that_hand_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No foreground driver: driver jobs drive it, hand over by the clock and by notice."""
    require_slurm()
    spec = tmp_path / "slow.yaml"
    spec.write_text(SPEC.read_text()
                    .replace("python3 train.py", f"{sys.executable} "
                             f"{EXAMPLES / 'synthetic' / 'train.py'}")
                    .replace("SYNTH_STEP_SECONDS=0.02", "SYNTH_STEP_SECONDS=0.05"))
    ledger_path, exp_id = tmp_path / "ledger.db", 1
    ledger = Ledger(ledger_path)
    assert engine.submit(ledger, load_spec(str(spec)), "slurm") == exp_id
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    # A 1-minute limit handing over 50 s early: every driver job drives about 10 s.
    options = DriverJobOptions(time_limit=60, margin=50, notice=0)
    first = submit_driver_job(ledger_path, exp_id, Settings(poll_interval=0.5),
                              options=options, workdir=tmp_path)
    with pytest.raises(CadeError, match="already has a driver job"):
        submit_driver_job(ledger_path, exp_id, Settings(), options=options)
    exp = ledger.experiment(exp_id)

    def generation() -> int:
        record = read_driver_record(exp)
        return record.generation if record else 0

    try:
        wait_for("the first hand-over", lambda: generation() >= 2, 60)
        current = read_driver_record(exp)
        assert current is not None
        log = Path(exp.root) / "driver" / str(current.generation) / "stderr.log"
        wait_for("the successor to drive", lambda: log.exists() and "driving experiment"
                 in log.read_text(), 30)
        # The notice path: Slurm's USR1 makes the running driver job hand over at once.
        subprocess.run(["scancel", "--signal=USR1", "--batch", current.job_id], check=True)
        wait_for("the hand-over on notice", lambda: generation() >= 3, 30)
        wait_for("the experiment to complete", lambda: ledger.experiment(exp_id).state
                 in ("completed", "errored", "canceled"), 120, interval=0.5)
    finally:
        record = read_driver_record(exp)
        if record is not None and ledger.experiment(exp_id).state in ("pending", "active"):
            subprocess.run(["scancel", record.job_id], check=False)
    assert ledger.experiment(exp_id).state == "completed"
    record = read_driver_record(exp)
    assert record is not None and record.generation >= 3
    reasons = [entry["reason"] for entry in record.history]
    assert reasons[0] == "deadline" and reasons[1] == "notice (SIGUSR1)", reasons
    assert first.job_id == record.history[0]["job_id"]
    # Every driver job ends by itself; the last one because the experiment ended.
    wait_for("the last driver job to end", lambda: scontrol_fields(record.job_id)
             ["JobState"] == "COMPLETED", 30)
    for entry in record.history:
        assert scontrol_fields(entry["job_id"])["JobState"] == "COMPLETED"
    log = (Path(exp.root) / "driver" / str(record.generation) / "stderr.log").read_text()
    assert "is completed; the driver job ends" in log
    assert time.time() - first.submitted < 180


@pytest.mark.slurm
def test_cade_submit_driver_job_runs_the_search_with_nothing_on_the_login_node(
        tmp_path: Path) -> None:
    require_slurm()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.read_text().replace(
        "python3 train.py", f"{sys.executable} {EXAMPLES / 'synthetic' / 'train.py'}"))
    started = time.monotonic()
    data = cade_json(tmp_path, "submit", str(spec), "--driver", "job", "--json", timeout=60)
    # The command returned at once: only the driver job drives from here on.
    assert time.monotonic() - started < 30
    assert data["experiment"] == 1 and data["backend"] == "slurm"
    assert data["driver_job"].isdigit() and data["log"].endswith("stderr.log")
    again = cade(tmp_path, "watch", "1", "--driver", "job", check=False)
    assert again.returncode == 1 and "already has a driver job" in again.stderr
    exp = wait_for_end(tmp_path, 1, 150)
    assert exp.state == "completed"
    # The ledger says completed a moment before the driver job writes its last line.
    log = Path(data["log"])
    wait_for("the driver job's last line",
             lambda: "is completed; the driver job ends" in log.read_text(), 30)


def test_a_driver_job_needs_a_batch_scheduler(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.read_text().replace(
        "python3 train.py", f"{sys.executable} {EXAMPLES / 'synthetic' / 'train.py'}"))
    done = cade(tmp_path, "submit", str(spec), "--scheduler", "local", "--driver", "job",
                check=False, env=cade_env(tmp_path, CADE_SCHEDULER="local"))
    assert done.returncode == SpecError.exit_code
    assert "a driver job needs a batch scheduler, not 'local'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ledger.db").exists()      # refused before anything was recorded


def test_the_job_entry_point_refuses_to_run_outside_a_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cade_cli.engine.driverjob import main

    for name in ("SLURM_JOB_ID", "PBS_JOBID"):
        monkeypatch.delenv(name, raising=False)
    ledger_path, exp_id = _experiment(tmp_path)
    code = main(["run", str(exp_id), "--ledger", str(ledger_path), "--backend", "slurm"])
    assert code == SchedulerError.exit_code
    assert "not inside a Slurm or PBS job" in capsys.readouterr().err
