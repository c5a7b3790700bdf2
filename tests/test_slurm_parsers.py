"""Slurm backend without Slurm: parsers on recorded output, directives, retries, the cache.

The files in tests/data/slurm/ were recorded from Slurm 22.05.8 (the test cluster of
scripts/slurm-up.sh). Scheduler behaviour is checked with a scripted command runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cade_cli.backends import slurm_parse as parse
from cade_cli.backends.base import JobRequest, JobState, JobStatus
from cade_cli.backends.retry import CommandResult, RetryPolicy
from cade_cli.backends.slurm import SlurmScheduler, sbatch_directives, walltime
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.search.space import Nested
from cade_cli.spec.experiment import (
    ExperimentSpec,
    ResourcesSpec,
    SearcherSpec,
    SlurmSpec,
)

DATA = Path(__file__).parent / "data" / "slurm"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def make_spec(slurm: SlurmSpec | None = None, **resources: object) -> ExperimentSpec:
    return ExperimentSpec(
        name="exp", entrypoint=("python", "train.py"), hyperparameters=Nested(()),
        searcher=SearcherSpec(name="single", metric="loss"),
        resources=ResourcesSpec(**resources), slurm=slurm or SlurmSpec())  # type: ignore[arg-type]


# -- parsers -------------------------------------------------------------------------------

def test_squeue_rows_map_states_reasons_and_nodes() -> None:
    rows = parse.squeue_rows(recorded("squeue_mixed.txt"))
    assert rows["11"] == JobStatus("11", JobState.COMPLETED, 0, "node[1-2]", "")
    assert rows["12"] == JobStatus("12", JobState.FAILED, None, "node1", "NonZeroExitCode")
    assert rows["14"].never_starts and rows["14"].reason == "PartitionNodeLimit"
    assert rows["16"].state == JobState.PENDING and not rows["16"].never_starts   # user hold
    assert rows["13"].state == rows["15"].state == JobState.RUNNING


def test_squeue_name_with_separator_keeps_the_row() -> None:
    rows = parse.squeue_rows("6|RUNNING|None|node1|we|ird name\n")
    assert rows["6"].state == JobState.RUNNING


@pytest.mark.parametrize("name, state, code, reason", [
    ("scontrol_failed.txt", JobState.FAILED, 3, "NonZeroExitCode"),
    ("scontrol_completed.txt", JobState.COMPLETED, 0, ""),
    ("scontrol_cancelled_trapped.txt", JobState.CANCELLED, 143, ""),
    ("scontrol_signalled.txt", JobState.FAILED, 138, "JobLaunchFailure"),    # 128 + SIGUSR1
    ("scontrol_running.txt", JobState.RUNNING, None, ""),
])
def test_scontrol_status(name: str, state: JobState, code: int | None, reason: str) -> None:
    fields = parse.scontrol_fields(recorded(name))
    status = parse.status_from_scontrol(fields["JobId"], fields)
    assert (status.state, status.exit_code, status.reason) == (state, code, reason)


def test_scontrol_pending_node_limit_never_starts() -> None:
    fields = parse.scontrol_fields(recorded("scontrol_pending_nodelimit.txt"))
    status = parse.status_from_scontrol("14", fields)
    assert status.state == JobState.PENDING and status.never_starts
    assert fields["NumNodes"] == "5-5" and fields["StdOut"] == "/tmp/sl/slurm-14.out"


def test_sacct_jobcomp_rows() -> None:
    rows = parse.sacct_rows(recorded("sacct_jobcomp.txt"))
    assert {k: (v.state, v.exit_code) for k, v in rows.items()} == {
        "12": (JobState.FAILED, 3), "11": (JobState.COMPLETED, 0),
        "13": (JobState.CANCELLED, 0), "15": (JobState.FAILED, 138)}


def test_sacct_skips_steps_and_mangled_rows() -> None:
    text = "7|CANCELLED by 1000|0:15|n1\n7.batch|CANCELLED|0:15|n1\n6||0:10|node1\n"
    assert list(parse.sacct_rows(text)) == ["7"]
    assert parse.sacct_rows(text)["7"] == JobStatus("7", JobState.CANCELLED, 143, "n1", "")


@pytest.mark.parametrize("text, state", [
    ("PENDING", JobState.PENDING), ("CONFIGURING", JobState.PENDING),
    ("REQUEUED", JobState.PENDING), ("RUNNING", JobState.RUNNING),
    ("COMPLETING", JobState.RUNNING), ("COMPLETED", JobState.COMPLETED),
    ("FAILED", JobState.FAILED), ("NODE_FAIL", JobState.FAILED),
    ("OUT_OF_MEMORY", JobState.FAILED), ("BOOT_FAIL", JobState.FAILED),
    ("CANCELLED by 0", JobState.CANCELLED), ("CANCELLED+", JobState.CANCELLED),
    ("TIMEOUT", JobState.TIMEOUT), ("DEADLINE", JobState.TIMEOUT),
    ("PREEMPTED", JobState.PREEMPTED), ("CD", JobState.COMPLETED), ("SOMETHING_NEW", JobState.UNKNOWN),
])
def test_state_mapping(text: str, state: JobState) -> None:
    assert parse.map_state(text) == state


def test_exit_codes_and_job_ids() -> None:
    assert [parse.exit_status(t) for t in ("3:0", "0:15", "143:0", "0:0", "bad")] == [3, 143, 143, 0, None]
    assert parse.sbatch_job_id("13\n") == "13"
    assert parse.sbatch_job_id("13;cadetest\n") == "13"
    with pytest.raises(SchedulerError):
        parse.sbatch_job_id("Submitted batch job 13\n")


def test_accounting_disabled_is_detected() -> None:
    result = CommandResult(("sacct",), 0, "", recorded("sacct_disabled.stderr"))
    assert parse.accounting_disabled(result)
    assert parse.signal_target_gone(recorded("scancel_signal_pending.stderr"))


# -- directives ----------------------------------------------------------------------------

def test_directives_for_a_two_node_gpu_trial() -> None:
    spec = make_spec(SlurmSpec(gpu_type="a100", account="proj", qos="high"), slots_per_trial=8,
                     slots_per_node=4, slot_type="gpu", time=90061, mem_per_node="64G",
                     cpus_per_slot=6, resource_pool="gpu")
    assert sbatch_directives(spec, "cade-1-2-3", Path("/r/run dir")) == [
        "--account=proj", "--cpus-per-task=6", "'--error=/r/run dir/stderr.log'",
        "--gpus-per-node=a100:4", "--job-name=cade-1-2-3", "--mem=65536M", "--no-requeue",
        "--nodes=2", "--ntasks-per-node=4", "--open-mode=append", "'--output=/r/run dir/stdout.log'",
        "--partition=gpu", "--qos=high", "--signal=B:USR1@120", "--time=1-01:01:01",
    ]


def test_directives_for_a_cpu_trial_with_passthrough() -> None:
    spec = make_spec(SlurmSpec(sbatch_args=("--exclusive", "--constraint", "skylake", "-x node9",
                                            "--comment=two words")), slots_per_trial=2, time=60)
    assert sbatch_directives(spec, "cade-1-1-1", "/r") == [
        "--cpus-per-task=1", "--error=/r/stderr.log", "--job-name=cade-1-1-1",
        "--no-requeue", "--nodes=1", "--ntasks-per-node=2", "--open-mode=append",
        "--output=/r/stdout.log", "--signal=B:USR1@30", "--time=0-00:01:00",
        "--exclusive", "--constraint=skylake", "-x node9", "'--comment=two words'",
    ]


@pytest.mark.parametrize("args, option", [
    (("--nodes=3",), "--nodes"), (("-N", "2"),  "-N"), (("--job-name=x",), "--job-name"),
    (("-o/tmp/x",), "-o"), (("--ntasks=4",), "--ntasks"), (("--gres=gpu:2",), "--gres"),
    (("--mem-per-cpu=1G",), "--mem-per-cpu"), (("--time", "10"), "--time"),
    (("--signal=USR2@10",), "--signal"), (("--array=0-3",), "--array"), (("--requeue",), "--requeue"),
])
def test_passthrough_conflicts_name_the_key_and_option(args: tuple[str, ...], option: str) -> None:
    spec = make_spec(SlurmSpec(sbatch_args=args), slot_type="gpu", mem_per_node="1G", time=600)
    with pytest.raises(SpecError) as info:
        sbatch_directives(spec, "cade-1-1-1", "/r")
    assert "slurm.sbatch_args" in info.value.message and option in info.value.message
    assert info.value.exit_code == 2


def test_passthrough_may_set_what_the_spec_leaves_open() -> None:
    spec = make_spec(SlurmSpec(sbatch_args=("--partition=debug", "--time=5", "--gres=nvme:1")))
    assert sbatch_directives(spec, "n", "/r")[-3:] == ["--partition=debug", "--time=5", "--gres=nvme:1"]


def test_bad_inputs_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="multiple"):
        sbatch_directives(make_spec(slots_per_trial=6, slots_per_node=4), "n", "/r")
    with pytest.raises(SpecError, match="memory size"):
        sbatch_directives(make_spec(mem_per_node="lots"), "n", "/r")
    with pytest.raises(SpecError, match="line break"):
        sbatch_directives(make_spec(), "n", "/r\n#SBATCH --evil")
    with pytest.raises(SpecError, match="follows no option"):
        sbatch_directives(make_spec(SlurmSpec(sbatch_args=("value",))), "n", "/r")
    assert walltime(59) == "0-00:00:59" and walltime(86400 * 3 + 5) == "3-00:00:05"


# -- the scheduler with a scripted runner ----------------------------------------------------

class ScriptedRunner:
    """Answers commands from a list of (program, CommandResult) in order; records argv."""

    def __init__(self, answers: list[tuple[str, int, str, str]]) -> None:
        self.answers = list(answers)
        self.argvs: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.argvs.append(tuple(argv))
        program, rc, out, err = self.answers.pop(0)
        assert argv[0] == program, (argv, program)
        return CommandResult(tuple(argv), rc, out, err)


def scheduler(answers: list[tuple[str, int, str, str]], clock: list[float] | None = None,
              interval: float = 0) -> tuple[SlurmScheduler, ScriptedRunner, list[float]]:
    runner = ScriptedRunner(answers)
    sleeps: list[float] = []
    now = clock if clock is not None else [0.0]
    sched = SlurmScheduler(min_poll_interval=interval, runner=runner, sleep=sleeps.append,
                           clock=lambda: now[0], user="alice",
                           retry=RetryPolicy(attempts=4, base_delay=1, max_delay=3))
    return sched, runner, sleeps


def test_transient_errors_are_retried_with_bounded_backoff() -> None:
    timeout = "slurm_load_jobs error: Socket timed out on send/recv operation"
    sched, _, sleeps = scheduler([("squeue", 1, "", timeout)] * 2 + [
        ("squeue", 0, "5|RUNNING|None|node1|cade-1-1-1\n", "")])
    assert sched.poll(["5"])["5"].state == JobState.RUNNING
    assert sleeps == [1, 2] and sched.command_count == 3


def test_persistent_transient_error_becomes_scheduler_error() -> None:
    down = "squeue: error: Unable to contact slurm controller (connect failure)"
    sched, _, sleeps = scheduler([("squeue", 1, "", down)] * 4)
    with pytest.raises(SchedulerError) as info:
        sched.poll(["5"])
    assert sleeps == [1, 2, 3] and info.value.exit_code == 3
    assert "squeue -h -r -t all -j 5" in info.value.message and "Unable to contact" in info.value.message


def test_other_errors_fail_at_once_and_submit_errors_carry_a_hint(tmp_path: Path) -> None:
    sched, _, sleeps = scheduler([("sbatch", 1, "", recorded("sbatch_node_config.stderr"))])
    with pytest.raises(SchedulerError) as info:
        sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path))
    assert sleeps == [] and "node configuration" in info.value.message
    assert info.value.hint and "more than any node" in info.value.hint


def test_submit_after_a_timeout_finds_the_job_instead_of_submitting_twice(tmp_path: Path) -> None:
    sched, runner, _ = scheduler([
        ("sbatch", 1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv"),
        ("squeue", 0, "40|cade-1-1-1\n41|cade-1-1-10\n", ""),
    ])
    assert sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path)) == "40"
    assert [a[0] for a in runner.argvs] == ["sbatch", "squeue"]


def test_finished_jobs_use_scontrol_then_jobcomp_then_the_exit_file(tmp_path: Path) -> None:
    (tmp_path / "exit_code").write_text("7\n")
    sched, runner, _ = scheduler([
        ("sbatch", 0, "9\n", ""),
        ("squeue", 0, "8|FAILED|NonZeroExitCode|node1|a\n", ""),
        ("scontrol", 0, recorded("scontrol_failed.txt"), ""),            # job 8 (recorded as 12)
        ("scontrol", 1, "", recorded("scontrol_invalid.stderr")),        # job 9
        ("scontrol", 1, "", recorded("scontrol_invalid.stderr")),        # job 10
        ("sacct", 0, "", recorded("sacct_disabled.stderr")),
        ("sacct", 0, "10|TIMEOUT|0:0|node2\n", ""),
    ])
    sched.submit(JobRequest("cade-1-1-1", tmp_path / "job.sh", tmp_path))
    statuses = sched.poll(["8", "9", "10"])
    assert (statuses["8"].state, statuses["8"].exit_code) == (JobState.FAILED, 3)
    assert (statuses["9"].state, statuses["9"].exit_code) == (JobState.FAILED, 7)
    assert statuses["10"].state == JobState.TIMEOUT
    assert runner.argvs[-1][:2] == ("sacct", "-c")
    assert sched.poll(["8", "9", "10"]) == statuses          # terminal: cached, no command
    assert sched.calls["squeue"] == 1 and sched.calls["sacct"] == 2


def test_minimum_poll_interval_answers_from_the_cache() -> None:
    now = [100.0]
    running = ("squeue", 0, "5|RUNNING|None|node1|a\n", "")
    sched, _, _ = scheduler([running, running], clock=now, interval=30)
    assert sched.poll(["5"])["5"].state == JobState.RUNNING
    now[0] += 10
    assert sched.poll(["5"])["5"].state == JobState.RUNNING
    assert sched.command_count == 1
    now[0] += 25
    sched.poll(["5"])
    assert sched.command_count == 2


def test_unknown_ids_cancel_and_signal() -> None:
    sched, runner, _ = scheduler([
        ("squeue", 1, "", recorded("squeue_invalid.stderr")),
        ("scontrol", 1, "", recorded("scontrol_invalid.stderr")),
        ("sacct", 0, "", "Slurm accounting storage is disabled\n"),
        ("sacct", 1, "", "sacct: error: no jobcomp plugin\n"),
        ("scancel", 0, "", ""),
        ("scancel", 228, "", recorded("scancel_signal_pending.stderr")),
    ])
    assert sched.poll(["777"])["777"].state == JobState.UNKNOWN
    sched.cancel(["1", "2", "1"])
    sched.signal(["3"], "SIGUSR1")
    assert runner.argvs[-2] == ("scancel", "--full", "1", "2")
    assert runner.argvs[-1] == ("scancel", "--signal=USR1", "--batch", "3")
    with pytest.raises(SchedulerError):
        sched.signal(["3"], "USR1; rm -rf /")


def test_find_by_name_keeps_the_newest_id_per_name() -> None:
    sched, runner, _ = scheduler([("squeue", 0, recorded("squeue_names.txt") + "20|cade-3-1-1\n", "")])
    assert sched.find_by_name("cade-3-") == {
        "cade-3-1-1": "20", "cade-3-2-1": "12", "cade-3-3-1": "13", "cade-3-4-1": "14",
        "cade-3-5-1": "15", "cade-3-6-1": "16"}
    assert runner.argvs[0] == ("squeue", "-h", "-r", "-t", "all", "-u", "alice", "-o", "%i|%j")


def test_array_element_ids_sort_after_their_array_and_by_index() -> None:
    assert parse.job_order("1021_2") > parse.job_order("1021_1") > parse.job_order("1021")
    assert parse.job_order("1022") > parse.job_order("1021_2")
    assert parse.job_order("1021_[0-2]") == (-1, -1)    # a compressed pending array: no single id


def test_find_by_name_sees_array_elements_that_squeue_r_lists() -> None:
    # Recorded on the test Slurm: one 3-element array (one name) and one plain job.
    sched, _, _ = scheduler([("squeue", 0, recorded("squeue_array_names.txt"), "")])
    assert sched.find_by_name("cade-9-") == {"cade-9-arr": "1021_2", "cade-9-2-1": "1022"}
