"""PBS backend on recorded outputs: no PBS server can be installed on the test machines.

Parsers read OpenPBS-format outputs kept in tests/data/pbs/. The contract suite runs against
`fake_pbs.py` (installed on PATH as qsub/qstat/qdel/qsig/qselect), which runs jobs as local
processes and prints what those commands print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from contract.suite import SchedulerContract, SchedulerFactory, write_job_script

from cade_cli.backends import pbs_parse as parse
from cade_cli.backends.base import JobRequest, JobState, JobStatus
from cade_cli.backends.pbs import PbsScheduler, pbs_directives
from cade_cli.backends.retry import CommandResult, RetryPolicy
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import (
    ExperimentSpec,
    PbsSpec,
    ResourcesSpec,
    SearcherSpec,
)

DATA = Path(__file__).parent / "data" / "pbs"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def make_spec(pbs: PbsSpec | None = None, **resources: object) -> ExperimentSpec:
    return ExperimentSpec(
        name="exp", entrypoint=("python", "train.py"), hyperparameters=Nested(()),
        searcher=SearcherSpec(name="single", metric="loss"),
        resources=ResourcesSpec(**resources), pbs=pbs or PbsSpec())  # type: ignore[arg-type]


# -- directives ----------------------------------------------------------------------------

def test_directives_for_a_two_node_gpu_trial() -> None:
    spec = make_spec(PbsSpec(account="proj", pbsbatch_args=("-m", "n", "-l software=abaqus")),
                     slots_per_trial=8, slots_per_node=4, slot_type="gpu", time=90061,
                     mem_per_node="64G", cpus_per_slot=6, resource_pool="gpuq")
    assert pbs_directives(spec, "cade-1-2-3", "/r/seg") == [
        "-A proj", "-N cade-1-2-3", "-e /r/seg/stderr.log", "-j n", "-l place=scatter",
        "-l select=2:ncpus=24:ngpus=4:mpiprocs=4:mem=65536mb", "-l walltime=25:01:01",
        "-o /r/seg/stdout.log", "-q gpuq", "-r n", "-m n", "-l software=abaqus",
    ]


def test_directives_for_a_one_node_cpu_trial() -> None:
    assert pbs_directives(make_spec(slots_per_trial=2), "cade-1-1-1", "/r") == [
        "-N cade-1-1-1", "-e /r/stderr.log", "-j n", "-l select=1:ncpus=2:mpiprocs=2",
        "-o /r/stdout.log", "-r n"]


@pytest.mark.parametrize("args, needle", [
    (("-N", "other"), "-N"), (("-l", "select=2:ncpus=4"), "select"),
    (("-l walltime=1:00:00,mem=4gb",), "walltime"), (("-lmem=4gb",), "-l mem"),
    (("-J", "1-4"), "-J"), (("-W", "block=true"), "block"), (("-o", "/tmp/x"), "-o"),
])
def test_passthrough_conflicts_name_the_key(args: tuple[str, ...], needle: str) -> None:
    spec = make_spec(PbsSpec(pbsbatch_args=args), time=3600)
    with pytest.raises(SpecError) as info:
        pbs_directives(spec, "cade-1-1-1", "/r")
    assert "pbs.pbsbatch_args" in info.value.message and needle in info.value.message


def test_paths_pbs_cannot_take_are_refused() -> None:
    with pytest.raises(SpecError, match="space"):
        pbs_directives(make_spec(), "n", "/home/a b/run")


# -- parsers -------------------------------------------------------------------------------

def test_live_jobs() -> None:
    jobs = parse.qstat_jobs(recorded("qstat_live.json"))
    status = {k: parse.status_from_job(k, v) for k, v in jobs.items()}
    assert status["101.pbs01"] == JobStatus("101.pbs01", JobState.RUNNING, None, "gpu017",
                                            jobs["101.pbs01"]["comment"])
    assert status["102.pbs01"].state == JobState.PENDING and not status["102.pbs01"].never_starts
    assert status["103.pbs01"].state == JobState.PENDING                      # held
    assert status["104.pbs01"].never_starts and "Can Never Run" in status["104.pbs01"].reason
    assert status["105.pbs01"].state == JobState.RUNNING                      # exiting
    assert status["105.pbs01"].nodes == "gpu018,gpu019"


@pytest.mark.parametrize("job_id, state, code", [
    ("90.pbs01", JobState.COMPLETED, 0), ("91.pbs01", JobState.FAILED, 3),
    ("92.pbs01", JobState.CANCELLED, 143), ("93.pbs01", JobState.CANCELLED, None),
    ("94.pbs01", JobState.TIMEOUT, None), ("95.pbs01", JobState.FAILED, 137),
    ("96.pbs01", JobState.FAILED, None), ("97.pbs01", JobState.PREEMPTED, 143),
])
def test_finished_jobs(job_id: str, state: JobState, code: int | None) -> None:
    job = parse.qstat_jobs(recorded("qstat_x_finished.json"))[job_id]
    status = parse.status_from_job(job_id, job)
    assert (status.state, status.exit_code) == (state, code)


def test_broken_variable_list_is_dropped_and_garbage_is_an_error() -> None:
    text = recorded("qstat_live.json").replace('"PBS_O_HOME": "/home/alice"',
                                               '"PBS_O_HOME": "/home/a"lice\\q"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert set(parse.qstat_jobs(text)) == set(json.loads(recorded("qstat_live.json"))["Jobs"])
    with pytest.raises(SchedulerError):
        parse.qstat_jobs("{not json")
    assert parse.qstat_jobs("") == {}


def test_ids_and_error_lines() -> None:
    assert parse.qsub_job_id(recorded("qsub.stdout")) == "101.pbs01"
    with pytest.raises(SchedulerError):
        parse.qsub_job_id("qsub: waiting for job to start\n")
    assert parse.only_not_found(recorded("qstat_unknown.stderr") + recorded("qstat_finished_no_x.stderr"))
    assert not parse.only_not_found("qstat: cannot connect to server pbs01 (errno=111)\n")
    assert parse.signal_target_gone(recorded("qsig_queued.stderr"))


# -- scheduler with a scripted runner --------------------------------------------------------

def scripted(answers: list[tuple[int, str, str]]) -> tuple[PbsScheduler, list[tuple[str, ...]], list[float]]:
    argvs: list[tuple[str, ...]] = []
    sleeps: list[float] = []

    def runner(argv: Sequence[str], timeout: float) -> CommandResult:
        argvs.append(tuple(argv))
        rc, out, err = answers.pop(0)
        return CommandResult(tuple(argv), rc, out, err)
    sched = PbsScheduler(min_poll_interval=0, runner=runner, sleep=sleeps.append, user="alice",
                         retry=RetryPolicy(attempts=3, base_delay=2, max_delay=10))
    return sched, argvs, sleeps


def test_poll_is_one_qstat_call_with_history_and_unknown_ids(tmp_path: Path) -> None:
    sched, argvs, _ = scripted([(153, recorded("qstat_x_finished.json"), recorded("qstat_unknown.stderr"))])
    statuses = sched.poll(["90.pbs01", "91", "99.pbs01"])
    assert argvs == [("qstat", "-x", "-f", "-F", "json", "90.pbs01", "91", "99.pbs01")]
    assert statuses["90.pbs01"].state == JobState.COMPLETED
    assert statuses["91"].exit_code == 3                           # matched by sequence number
    assert statuses["99.pbs01"].state == JobState.UNKNOWN


def test_submit_retries_connection_errors_then_gives_up(tmp_path: Path) -> None:
    refused = recorded("qsub_connect.stderr")
    sched, argvs, sleeps = scripted([(111, "", refused), (0, "", ""), (111, "", refused),
                                     (0, "", ""), (111, "", refused), (0, "", "")])
    with pytest.raises(SchedulerError) as info:
        sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path))
    assert sleeps == [2, 4] and "cannot connect" in info.value.message
    assert [a[0] for a in argvs] == ["qsub", "qselect"] * 3


def test_submit_refused_by_limits_is_a_scheduler_error(tmp_path: Path) -> None:
    sched, _, sleeps = scripted([(188, "", recorded("qsub_limits.stderr"))])
    with pytest.raises(SchedulerError, match="resource limits"):
        sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path))
    assert sleeps == []


# -- the contract suite against the fake PBS commands ----------------------------------------

class TestPbsContractOnFakeCommands(SchedulerContract):
    unknown_job_id = "99999.pbs01"
    timeout = 30.0

    def test_kill_ends_a_job_that_ignores_term(self, make_scheduler: Any,
                                              tmp_path: Path) -> None:
        # fake_pbs signals the batch shell only (a MoM signals the job's whole session), so
        # what is checked here is the command: the escalation is `qsig -s KILL` for the job.
        scheduler = make_scheduler()
        job_id = scheduler.submit(self.job(tmp_path, "trap '' TERM\nwhile :; do sleep 0.1; done"))
        scheduler.cancel([job_id])
        scheduler.kill([job_id])
        assert scheduler.calls["qsig"] == 1

    @pytest.fixture
    def make_scheduler(self, tmp_path: Path, fake_pbs: Path) -> SchedulerFactory:
        return lambda: PbsScheduler(tmp_path / "state", min_poll_interval=0)

    def render_job(self, job_dir: Path, body: str, name: str) -> JobRequest:
        header = "\n".join(f"#PBS {d}" for d in pbs_directives(make_spec(time=60), name, job_dir))
        return JobRequest(name=name, script=write_job_script(job_dir, body, header), run_dir=job_dir)


def test_fake_pbs_reports_a_job_that_can_never_run(tmp_path: Path, fake_pbs: Path) -> None:
    job_dir = tmp_path / "job"
    spec = make_spec(slots_per_trial=8, slots_per_node=1)
    header = "\n".join(f"#PBS {d}" for d in pbs_directives(spec, "cade-9-1-1", job_dir))
    scheduler = PbsScheduler(min_poll_interval=0)
    job_id = scheduler.submit(JobRequest("cade-9-1-1", write_job_script(job_dir, "true", header), job_dir))
    status = scheduler.poll([job_id])[job_id]
    assert status.state == JobState.PENDING and status.never_starts
    scheduler.cancel([job_id])
    assert scheduler.poll([job_id])[job_id].state == JobState.CANCELLED
