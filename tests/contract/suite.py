"""The behaviour every Scheduler backend must show, as one reusable test class.

A backend's test module subclasses `SchedulerContract` (its name does not start with
`Test`, so pytest collects only the subclasses) and provides two things:

    from contract.suite import SchedulerContract, write_job_script   # tests/ is on sys.path

    class TestSlurmContract(SchedulerContract):
        unknown_job_id = "99999999"            # an id the scheduler never issued
        timeout = 60.0                         # seconds to wait for a state change

        @pytest.fixture
        def make_scheduler(self, tmp_path):    # a factory: each call builds a NEW instance
            return lambda: SlurmScheduler(tmp_path / "state", min_poll_interval=0)

        def render_job(self, job_dir, body, name):
            # A script for this backend (directives, output paths) that runs `body` in the
            # run directory and writes the exit code file, as the real templates do.
            script = write_job_script(job_dir, body, header=f"#SBATCH --output={job_dir}/o")
            return JobRequest(name=name, script=script, run_dir=job_dir)

`job_dir` is a fresh directory for the one job (use it as the run directory); `body` is bash
run there; the tests read the files it writes. Names are unique per test run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from cade_cli.backends.base import JobRequest, JobState, JobStatus, Scheduler

SchedulerFactory = Callable[[], Scheduler]


def unique_name(prefix: str = "cade-contract") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_job_script(run_dir: Path, body: str, header: str = "") -> Path:
    """A bash job script like cade's templates: enters run_dir, writes exit_code on exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    script = run_dir / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"{header}\n"
        f"cd '{run_dir.absolute()}' || exit 5\n"
        "trap 'printf \"%s\\n\" \"$?\" > exit_code.tmp && mv -f exit_code.tmp exit_code' EXIT\n"
        f"{body}\n"
    )
    return script


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


class SchedulerContract:
    """Submit, poll, fail with an exit code, cancel, unknown ids, names, restarts, signals."""

    unknown_job_id = "local-999999"
    timeout = 30.0
    pause = 0.1

    @pytest.fixture
    def make_scheduler(self) -> SchedulerFactory:  # pragma: no cover - overridden
        raise NotImplementedError("a backend's contract test provides make_scheduler")

    def render_job(self, job_dir: Path, body: str, name: str) -> JobRequest:
        raise NotImplementedError("a backend's contract test provides render_job")

    # -- helpers -----------------------------------------------------------------------------

    def job(self, tmp_path: Path, body: str, name: str | None = None) -> JobRequest:
        return self.render_job(tmp_path / uuid.uuid4().hex[:8], body, name or unique_name())

    def wait_until(self, scheduler: Scheduler, job_ids: Sequence[str],
                   done: Callable[[Mapping[str, JobStatus]], bool]) -> Mapping[str, JobStatus]:
        deadline = time.monotonic() + self.timeout
        while True:
            statuses = scheduler.poll(job_ids)
            if done(statuses):
                return statuses
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {self.timeout} s; last statuses: {statuses}")
            time.sleep(self.pause)

    def wait_finished(self, scheduler: Scheduler, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        return self.wait_until(scheduler, job_ids,
                               lambda s: all(s[j].state.finished for j in job_ids))

    def wait_for_file(self, path: Path, scheduler: Scheduler, job_id: str) -> None:
        def ready(statuses: Mapping[str, JobStatus]) -> bool:
            assert not statuses[job_id].state.finished, f"job ended early: {statuses[job_id]}"
            return path.exists() and path.read_text().strip() != ""
        self.wait_until(scheduler, [job_id], ready)

    # -- the contract ------------------------------------------------------------------------

    def test_job_that_succeeds_completes_with_exit_0(self, make_scheduler: SchedulerFactory,
                                                     tmp_path: Path) -> None:
        scheduler = make_scheduler()
        request = self.job(tmp_path, "echo hello > out.txt")
        job_id = scheduler.submit(request)
        status = self.wait_finished(scheduler, [job_id])[job_id]
        assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
        assert (request.run_dir / "out.txt").read_text() == "hello\n"

    def test_job_that_exits_3_fails_with_exit_code_3(self, make_scheduler: SchedulerFactory,
                                                     tmp_path: Path) -> None:
        scheduler = make_scheduler()
        job_id = scheduler.submit(self.job(tmp_path, "exit 3"))
        status = self.wait_finished(scheduler, [job_id])[job_id]
        assert (status.state, status.exit_code) == (JobState.FAILED, 3)

    def test_cancel_ends_the_job_and_its_processes(self, make_scheduler: SchedulerFactory,
                                                   tmp_path: Path) -> None:
        scheduler = make_scheduler()
        request = self.job(tmp_path, "sleep 300 & echo $! > child.pid\necho $$ > shell.pid\nwait")
        job_id = scheduler.submit(request)
        self.wait_for_file(request.run_dir / "shell.pid", scheduler, job_id)
        self.wait_for_file(request.run_dir / "child.pid", scheduler, job_id)
        pids = [int((request.run_dir / f).read_text()) for f in ("shell.pid", "child.pid")]
        scheduler.cancel([job_id])
        status = self.wait_until(
            scheduler, [job_id],
            lambda s: s[job_id].state.finished and all(process_gone(p) for p in pids))[job_id]
        assert status.state == JobState.CANCELLED

    def test_kill_ends_a_job_that_ignores_term(self, make_scheduler: SchedulerFactory,
                                              tmp_path: Path) -> None:
        scheduler = make_scheduler()
        request = self.job(tmp_path, "trap '' TERM USR1\n"
                                     "sh -c 'trap \"\" TERM; echo $$ > child.pid; "
                                     "while :; do sleep 0.1; done' &\n"
                                     "echo $$ > shell.pid\nwhile :; do sleep 0.1; done")
        job_id = scheduler.submit(request)
        self.wait_for_file(request.run_dir / "shell.pid", scheduler, job_id)
        self.wait_for_file(request.run_dir / "child.pid", scheduler, job_id)
        pids = [int((request.run_dir / f).read_text()) for f in ("shell.pid", "child.pid")]
        scheduler.cancel([job_id])
        scheduler.kill([job_id])  # the engine's escalation once the grace is over
        status = self.wait_until(
            scheduler, [job_id],
            lambda s: s[job_id].state.finished and all(process_gone(p) for p in pids))[job_id]
        assert status.state in (JobState.CANCELLED, JobState.FAILED)

    def test_poll_of_an_unknown_id_says_unknown(self, make_scheduler: SchedulerFactory) -> None:
        status = make_scheduler().poll([self.unknown_job_id])[self.unknown_job_id]
        assert status.state == JobState.UNKNOWN
        make_scheduler().cancel([self.unknown_job_id])  # ignored, no exception

    def test_find_by_name_returns_the_job_id(self, make_scheduler: SchedulerFactory,
                                             tmp_path: Path) -> None:
        scheduler = make_scheduler()
        prefix = unique_name("cade-find")
        first = scheduler.submit(self.job(tmp_path, "sleep 1", name=f"{prefix}-1-1"))
        second = scheduler.submit(self.job(tmp_path, "sleep 1", name=f"{prefix}-2-1"))
        scheduler.submit(self.job(tmp_path, "true", name=unique_name("cade-other")))
        found = scheduler.find_by_name(prefix)
        assert dict(found) == {f"{prefix}-1-1": first, f"{prefix}-2-1": second}
        assert dict(scheduler.find_by_name(unique_name("cade-none"))) == {}
        self.wait_finished(scheduler, [first, second])

    def test_many_jobs_are_polled_in_one_call(self, make_scheduler: SchedulerFactory,
                                              tmp_path: Path) -> None:
        scheduler = make_scheduler()
        codes = [0, 1, 2, 0, 5]
        ids = [scheduler.submit(self.job(tmp_path, f"exit {code}")) for code in codes]
        statuses = self.wait_finished(scheduler, ids)
        assert set(statuses) == set(ids)
        assert [statuses[job_id].exit_code for job_id in ids] == codes
        assert [statuses[job_id].state for job_id in ids] == [
            JobState.COMPLETED if code == 0 else JobState.FAILED for code in codes]

    def test_a_new_instance_sees_and_cancels_jobs_of_an_old_one(
            self, make_scheduler: SchedulerFactory, tmp_path: Path) -> None:
        old = make_scheduler()
        finished = old.submit(self.job(tmp_path, "exit 4"))
        sleeper = self.job(tmp_path, "echo $$ > shell.pid\nsleep 300")
        running = old.submit(sleeper)
        new = make_scheduler()
        status = self.wait_finished(new, [finished])[finished]
        assert (status.state, status.exit_code) == (JobState.FAILED, 4)
        self.wait_for_file(sleeper.run_dir / "shell.pid", new, running)
        shell = int((sleeper.run_dir / "shell.pid").read_text())
        new.cancel([running])
        self.wait_until(new, [running], lambda s: s[running].state == JobState.CANCELLED
                        and process_gone(shell))

    def test_signal_usr1_reaches_the_job_scripts_trap(self, make_scheduler: SchedulerFactory,
                                                      tmp_path: Path) -> None:
        scheduler = make_scheduler()
        request = self.job(tmp_path, "trap 'echo usr1 > got_usr1' USR1\necho up > ready\n"
                                     "while [ ! -f got_usr1 ]; do sleep 0.1; done\nexit 0")
        job_id = scheduler.submit(request)
        self.wait_for_file(request.run_dir / "ready", scheduler, job_id)
        scheduler.signal([job_id], "USR1")
        status = self.wait_finished(scheduler, [job_id])[job_id]
        assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)
        assert (request.run_dir / "got_usr1").read_text() == "usr1\n"
