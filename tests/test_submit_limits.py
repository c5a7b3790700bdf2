"""A submission refused for a site limit on queued jobs waits and is retried; anything else
the scheduler refuses stays an error. Refusal texts: tests/data/{slurm,pbs}/ (see their
READMEs: the test cluster has no accounting database, so they are written in sbatch's and
qsub's wording, not recorded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cade_cli.backends import pbs_parse, slurm_parse
from cade_cli.backends.base import JobRequest
from cade_cli.backends.pbs import PbsScheduler
from cade_cli.backends.retry import CommandResult, LimitBackoff, RetryPolicy
from cade_cli.backends.slurm import SlurmScheduler
from cade_cli.errors import SchedulerError, SubmitLimitError

DATA = Path(__file__).parent / "data"


def recorded(backend: str, name: str) -> str:
    return (DATA / backend / name).read_text()


@pytest.mark.parametrize("name, limit", [
    ("sbatch_qos_submit_limit.stderr", "QOSMaxSubmitJobPerUserLimit"),
    ("sbatch_assoc_submit_limit.stderr", "AssocMaxSubmitJobLimit"),
    ("sbatch_policy.stderr", "accounting/QOS policy"),
    ("sbatch_qos_wall_limit.stderr", None),        # a job too long never fits: an error
    ("sbatch_node_config.stderr", None),
    ("sbatch_bad_partition.stderr", None),
])
def test_slurm_refusals_that_wait(name: str, limit: str | None) -> None:
    assert slurm_parse.submit_limit(recorded("slurm", name)) == limit


@pytest.mark.parametrize("name, limit", [
    ("qsub_queued_limit.stderr", "would exceed queue generic's per-user limit of jobs in 'Q' state"),
    ("qsub_max_queue.stderr", "Maximum number of jobs already in queue workq"),
    ("qsub_limits.stderr", None),                  # resource limits: the job never fits
    ("qsub_unknown_queue.stderr", None),
])
def test_pbs_refusals_that_wait(name: str, limit: str | None) -> None:
    assert pbs_parse.submit_limit(recorded("pbs", name)) == limit


def test_the_backoff_doubles_to_ten_intervals_and_an_accepted_job_resets_it() -> None:
    now = [0.0]
    backoff = LimitBackoff(30.0, clock=lambda: now[0])
    assert [backoff.refused() for _ in range(6)] == [30, 60, 120, 240, 300, 300]
    now[0] = 100.0
    assert backoff.remaining() == 200.0
    backoff.accepted()
    assert backoff.remaining() == 0 and backoff.refused() == 30


class Answers:
    """Answers each command with the next (rc, stdout, stderr); records the programs run."""

    def __init__(self, answers: list[tuple[int, str, str]]) -> None:
        self.answers, self.programs = list(answers), []   # type: ignore[var-annotated]

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.programs.append(argv[0])
        return CommandResult(tuple(argv), *self.answers.pop(0))


@pytest.mark.parametrize("make, refusal, accepted, job_id", [
    (SlurmScheduler, recorded("slurm", "sbatch_qos_submit_limit.stderr"), "41\n", "41"),
    (PbsScheduler, recorded("pbs", "qsub_queued_limit.stderr"), "41.pbs01\n", "41.pbs01"),
])
def test_a_refused_submission_waits_without_asking_again(
        tmp_path: Path, make: type, refusal: str, accepted: str, job_id: str) -> None:
    now = [0.0]
    answers = Answers([(1, "", refusal), (0, accepted, "")])
    sched = make(min_poll_interval=5, runner=answers, sleep=lambda s: None,
                 clock=lambda: now[0], user="alice", retry=RetryPolicy(attempts=3))
    request = JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path)
    with pytest.raises(SubmitLimitError) as first:
        sched.submit(request)
    assert first.value.retry_in == 5 and first.value.exit_code == 3
    assert first.value.waiting.startswith("waiting: the site's limit on queued jobs (")
    now[0] = 4.0                                   # within the backoff: no scheduler command
    with pytest.raises(SubmitLimitError):
        sched.submit(request)
    assert answers.programs == [answers.programs[0]] and sched.submit_wait() == 1.0
    now[0] = 5.0
    assert sched.submit(request) == job_id and sched.submit_wait() == 0
    assert len(answers.programs) == 2              # no lookup by name: the refusal is certain


def test_a_limit_that_never_clears_stays_an_error(tmp_path: Path) -> None:
    answers = Answers([(1, "", recorded("slurm", "sbatch_qos_wall_limit.stderr"))])
    sched = SlurmScheduler(min_poll_interval=5, runner=answers, sleep=lambda s: None, user="alice")
    with pytest.raises(SchedulerError) as err:
        sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path))
    assert not isinstance(err.value, SubmitLimitError)
    assert "QOSMaxWallDurationPerJobLimit" in err.value.message
