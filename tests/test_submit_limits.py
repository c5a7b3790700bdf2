"""A submission refused for a site limit on queued jobs waits and is retried; anything else
the scheduler refuses stays an error. Refusal texts: tests/data/{slurm,pbs}/ (see their
READMEs: the test cluster has no accounting database, so they are written in sbatch's and
qsub's wording, not recorded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from engine_fakes import FakeScheduler
from test_engine import SETTINGS, short, wide_experiment

from cade_cli.backends import pbs_parse, slurm_parse
from cade_cli.backends.base import JobRequest
from cade_cli.backends.pbs import PbsScheduler
from cade_cli.backends.retry import CommandResult, LimitBackoff, RetryPolicy
from cade_cli.backends.slurm import SlurmScheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.errors import SchedulerError, SubmitLimitError
from cade_cli.store.ledger import Ledger

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


# -- the engine: a refused segment waits, the experiment goes on -----------------------------

@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.db")


class LimitedScheduler(FakeScheduler):
    """The fake scheduler with a site limit: at most `limit` jobs not yet ended are accepted,
    and others' queued jobs it reports for count_user_jobs."""

    def __init__(self, limit: int, others: Sequence[str] = ()) -> None:
        super().__init__(run_now=False)
        self.limit, self.others, self.refusals = limit, list(others), 0

    def submit(self, request: JobRequest) -> str:
        if sum(1 for _, outcome in self.jobs.values() if outcome is None) >= self.limit:
            self.refusals += 1
            raise SubmitLimitError("refused", limit="QOSMaxSubmitJobPerUserLimit", retry_in=0)
        return super().submit(request)

    def queued_job_ids(self) -> Sequence[str]:
        return self.others            # its own jobs start at once (FakeScheduler.poll)


def test_segments_refused_for_a_limit_wait_and_are_submitted_later(
        tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    exp_id = wide_experiment(tmp_path, ledger, monkeypatch, concurrency=5)
    scheduler = LimitedScheduler(limit=2)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)           # no SchedulerError: it waits
    assert short(scheduler.submitted) == ["cade-1-1-1", "cade-1-2-1"]
    assert scheduler.refusals == 1                              # then no more asking this sync
    (waiting,) = ledger.segments(exp_id, states=("intent",))
    assert waiting.trial == 3 and waiting.reason == (
        "waiting: the site's limit on queued jobs (QOSMaxSubmitJobPerUserLimit); retrying")
    for job_id in list(scheduler.jobs):                         # the first two jobs end
        scheduler.run(job_id)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert short(scheduler.submitted)[2:] == ["cade-1-3-1", "cade-1-4-1"]
    assert ledger.segments(exp_id, 3)[0].reason == ""           # submitted: no longer waiting


def test_count_user_jobs_counts_the_users_other_queued_jobs(
        tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    exp_id = wide_experiment(tmp_path, ledger, monkeypatch, concurrency=5)
    scheduler = LimitedScheduler(limit=99, others=["77", "78"])
    settings = replace(SETTINGS, max_queued_jobs=3, count_user_jobs=True)
    engine.sync(ledger, exp_id, scheduler, settings)
    assert short(scheduler.submitted) == ["cade-1-1-1"]          # 2 others + 1 of its own
    scheduler.others = []                                       # the others' jobs start
    engine.sync(ledger, exp_id, scheduler, settings)
    assert short(scheduler.submitted)[1:] == ["cade-1-2-1", "cade-1-3-1", "cade-1-4-1"]


def test_slurm_lists_the_users_queued_jobs_once_per_interval() -> None:
    now = [0.0]
    answers = Answers([(0, "12\n13_4\n", ""), (0, "12\n", "")])
    sched = SlurmScheduler(min_poll_interval=5, runner=answers, sleep=lambda s: None,
                           clock=lambda: now[0], user="alice")
    assert sched.queued_job_ids() == ("12", "13_4")
    now[0] = 4.0
    assert sched.queued_job_ids() == ("12", "13_4") and len(answers.programs) == 1
    now[0] = 5.0
    assert sched.queued_job_ids() == ("12",)
