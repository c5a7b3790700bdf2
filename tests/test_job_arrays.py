"""Job arrays without a cluster: chunking, the array scripts (golden), the Slurm and PBS
backends on recorded outputs, the spec key and settings, and the engine with a fake
scheduler (one array per pass, recovery after a crash by the array's name and index).

The real-Slurm side is tests/test_arrays_slurm.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from engine_fakes import FakeScheduler, Outcome, make_spec
from slurm_fixtures import wait_for
from test_golden import golden_spec
from test_pbs import make_spec as pbs_spec

from cade_cli.backends import arrays, slurm_parse
from cade_cli.backends.base import ArrayRequest, JobRequest, JobState
from cade_cli.backends.local import LocalScheduler
from cade_cli.backends.pbs import PbsScheduler
from cade_cli.backends.retry import CommandResult
from cade_cli.backends.slurm import SlurmScheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.errors import SpecError, SubmitLimitError
from cade_cli.jobs.array import (
    INTENT_FILE,
    prepare_array,
    read_array_intent,
    render_array_script,
)
from cade_cli.jobs.pack import pack_shape
from cade_cli.spec.experiment import parse_spec
from cade_cli.spec.settings import Settings, load_settings
from cade_cli.store.ledger import Ledger

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden" / "arrays"
SETTINGS = Settings(poll_interval=0, stop_grace=30, max_queued_jobs=16)


def recorded(path: str) -> str:
    return (DATA / path).read_text()


# -- chunking and ids ------------------------------------------------------------------------

@pytest.mark.parametrize(("count", "size", "chunks"), [
    (3, 1001, [3]), (1001, 1001, [1001]), (1002, 1001, [1001, 1]),
    (2500, 1001, [1001, 1001, 498]), (5, 2, [2, 2, 1]), (0, 10, []),
])
def test_segments_split_into_arrays_no_larger_than_the_site_allows(
        count: int, size: int, chunks: list[int]) -> None:
    assert arrays.chunk_sizes(count, size) == chunks


def test_array_ranges_and_element_ids() -> None:
    assert arrays.array_directives("slurm", ["--nodes=1"], 3) == ["--nodes=1", "--array=0-2"]
    assert arrays.array_directives("pbs", ["-N x", "-r n"], 2) == ["-N x", "-r y", "-J 0-1"]
    with pytest.raises(ValueError):
        arrays.array_directives("pbs", [], 1)          # PBS needs two elements or more
    assert arrays.slurm_element_ids("75_4", 2) == {0: "75_0", 1: "75_1"}
    assert arrays.pbs_element_ids("1234[].pbs01", 2) == {0: "1234[0].pbs01", 1: "1234[1].pbs01"}
    assert arrays.expand_slurm_ids("104_[0-2,7%2]") == ["104_0", "104_1", "104_2", "104_7"]
    assert arrays.expand_slurm_ids("104_3") == ["104_3"]


def test_a_pending_slurm_array_listed_as_a_range_gives_each_element_its_row() -> None:
    rows = slurm_parse.squeue_rows(recorded("slurm/squeue_array_pending.txt"))
    assert sorted(rows) == ["104_0", "104_1", "104_2", "104_3"]
    assert rows["104_2"].state is JobState.PENDING
    by_element = slurm_parse.squeue_rows(recorded("slurm/squeue_array_elements.txt"))
    assert by_element["104_0"].reason == "Priority"


def test_max_array_size_is_read_from_the_site_configuration() -> None:
    assert arrays.slurm_max_array_size(recorded("slurm/scontrol_show_config.txt")) == 1001
    assert arrays.slurm_max_array_size("MaxArraySize            = 0\n") == 0
    assert arrays.pbs_max_array_size(recorded("pbs/qstat_B.json")) == 500
    assert arrays.pbs_max_array_size("") == arrays.PBS_DEFAULT_MAX_ARRAY_SIZE


# -- golden array scripts ------------------------------------------------------------------

def golden_elements() -> list[JobRequest]:
    root = Path("/scratch/.cade/experiments/7/trials")
    return [JobRequest(f"cade-7-{t}-1", root / f"{t}/segments/1/job.sh", root / f"{t}/segments/1")
            for t in (3, 4, 5)]


@pytest.mark.parametrize("backend", ["slurm", "pbs"])
def test_array_script_matches_golden(backend: str, update_golden: bool, tmp_path: Path) -> None:
    text = render_array_script(golden_spec("none", 1), backend=backend, name="cade-7-array-3-1",
                               array_dir=Path("/scratch/.cade/experiments/7/arrays/a"),
                               elements=golden_elements())
    golden = GOLDEN / f"array-{backend}.sh"
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text()
    (tmp_path / "job.sh").write_text(text)
    check = subprocess.run(["bash", "-n", str(tmp_path / "job.sh")], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_the_array_script_runs_its_element_once_and_refuses_a_rerun(tmp_path: Path) -> None:
    elements = []
    for trial in (1, 2):
        run_dir = tmp_path / f"t{trial}"
        run_dir.mkdir()
        script = run_dir / "job.sh"
        script.write_text(f"#!/bin/bash\necho element {trial}\ntouch {run_dir}/started\n")
        script.chmod(0o700)
        elements.append(JobRequest(f"seg-{trial}", script, run_dir))
    array = tmp_path / "array.sh"
    array.write_text(render_array_script(golden_spec("none", 1), backend="slurm", name="a",
                                         array_dir=tmp_path, elements=elements))

    def run(index: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(array)], env={"SLURM_ARRAY_TASK_ID": str(index)},
                              capture_output=True, text=True, check=False)
    assert run(1).returncode == 0
    assert (tmp_path / "t2" / "stdout.log").read_text() == "element 2\n"
    assert not (tmp_path / "t1" / "stdout.log").exists()
    again = run(1)                                   # a scheduler's rerun of the element
    assert again.returncode == 3 and "not running its segment again" in again.stderr
    assert run(7).returncode == 2


# -- backends on recorded outputs ------------------------------------------------------------

def scripted(cls: type, answers: dict[str, list[str | tuple[int, str]]]) -> tuple:
    """A scheduler whose commands answer from `answers` (command -> stdout or (exit status,
    stdout), in turn)."""
    argvs: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str], timeout: float) -> CommandResult:
        argvs.append(tuple(argv))
        answer = answers[argv[0]].pop(0)
        code, out = answer if isinstance(answer, tuple) else (0, answer)
        return CommandResult(tuple(argv), code, out, "")
    return cls(min_poll_interval=0, runner=runner, user="alice"), argvs


def array_of(tmp_path: Path, count: int) -> ArrayRequest:
    elements = tuple(JobRequest(f"seg-{i}", tmp_path / f"{i}" / "job.sh", tmp_path / f"{i}")
                     for i in range(count))
    return ArrayRequest("cade-9-arr", tmp_path / "job.sh", tmp_path, elements)


def test_slurm_submits_one_array_and_finds_it_again_by_name(tmp_path: Path) -> None:
    sched, argvs = scripted(SlurmScheduler, {
        "scontrol": [recorded("slurm/scontrol_show_config.txt")], "sbatch": ["75\n"],
        "squeue": [recorded("slurm/squeue_array_names.txt")]})
    assert sched.submit_array(array_of(tmp_path, 3)) == ["75_0", "75_1", "75_2"]
    assert sched.max_array_size() == 1001            # asked once
    assert sched.find_array("cade-9-arr", 3) == {0: "1021_0", 1: "1021_1", 2: "1021_2"}
    assert [a[0] for a in argvs] == ["scontrol", "sbatch", "squeue"]
    assert argvs[1] == ("sbatch", "--parsable", str(tmp_path / "job.sh"))


def test_an_element_canceled_while_pending_leaves_no_record_and_reads_cancelled() -> None:
    """Slurm drops an element canceled before it started: squeue lists nothing and scontrol
    answers `Job ID_I not found` (rc 1, on stdout)."""
    sched, argvs = scripted(SlurmScheduler, {
        "scancel": [""], "squeue": [""],
        "scontrol": [(1, recorded("slurm/scontrol_element_not_found.txt"))],
        "sacct": [""]})
    sched.cancel(["116_1"])
    status = sched.poll(["116_1"])["116_1"]
    assert status.state is JobState.CANCELLED, status
    assert [a[0] for a in argvs] == ["scancel", "squeue", "scontrol", "sacct"]


def test_the_setting_overrides_the_sites_array_size(tmp_path: Path) -> None:
    sched = SlurmScheduler(settings=Settings(max_array_size=4), min_poll_interval=0,
                           runner=lambda argv, timeout: pytest.fail(f"asked {argv}"))
    assert sched.max_array_size() == 4


def test_pbs_array_elements_are_submitted_polled_and_deleted_one_by_one(tmp_path: Path) -> None:
    sched, argvs = scripted(PbsScheduler, {
        "qstat": [recorded("pbs/qstat_B.json"), recorded("pbs/qstat_t_array.json")],
        "qsub": [recorded("pbs/qsub_array.stdout")], "qdel": [""]})
    ids = sched.submit_array(array_of(tmp_path, 4))
    assert ids == ["1234[0].pbs01", "1234[1].pbs01", "1234[2].pbs01", "1234[3].pbs01"]
    statuses = sched.poll(ids)
    assert argvs[-1] == ("qstat", "-x", "-f", "-F", "json", "-t", *ids)
    assert statuses[ids[0]].state is JobState.COMPLETED and statuses[ids[0]].exit_code == 0
    assert statuses[ids[1]].state is JobState.RUNNING and statuses[ids[1]].nodes == "node02"
    assert statuses[ids[2]].state is JobState.PENDING
    assert statuses[ids[3]].state is JobState.CANCELLED and statuses[ids[3]].exit_code == 143
    sched.cancel([ids[2]])
    assert argvs[-1] == ("qdel", "1234[2].pbs01")


def test_a_pbs_array_runs_on_the_fake_commands_element_by_element(
        tmp_path: Path, fake_pbs: Path) -> None:
    elements = []
    for index, body in enumerate(("echo zero", "sleep 60", "exit 4")):
        run_dir = tmp_path / f"segment-{index}"
        run_dir.mkdir()
        (run_dir / "job.sh").write_text(f"#!/bin/bash\n{body}\n")
        (run_dir / "job.sh").chmod(0o700)
        elements.append(JobRequest(f"segment-{index}", run_dir / "job.sh", run_dir))
    array = prepare_array(pbs_spec(time=60), backend="pbs", name="cade-9-array-1-1-abc",
                          array_dir=tmp_path / "array", elements=elements)
    scheduler = PbsScheduler(min_poll_interval=0)
    ids = scheduler.submit_array(array)
    assert ids == ["100[0].pbs01", "100[1].pbs01", "100[2].pbs01"]
    assert scheduler.max_array_size() == 500
    assert scheduler.find_array("cade-9-array-1-1-abc", 3) == dict(enumerate(ids))
    wait_for("element 1 to run", lambda: scheduler.poll([ids[1]])[ids[1]].state
             is JobState.RUNNING, timeout=30)
    scheduler.cancel([ids[1]])

    def ended() -> list[tuple[JobState, int | None]] | None:
        found = [(s.state, s.exit_code) for s in scheduler.poll(ids).values()]
        return found if all(state.finished for state, _ in found) else None
    final = wait_for("every element to end", ended, timeout=30)
    assert [state for state, _ in final] == [JobState.COMPLETED, JobState.CANCELLED,
                                              JobState.FAILED]
    assert final[2][1] == 4
    assert (tmp_path / "segment-0" / "stdout.log").read_text() == "zero\n"


def test_the_local_backend_has_no_arrays_and_submits_each(tmp_path: Path) -> None:
    assert LocalScheduler(tmp_path / "state").max_array_size() == 0


# -- spec and settings -----------------------------------------------------------------------

BASE = """name: x
entrypoint: python3 t.py
searcher: {name: random, metric: loss, max_trials: 3, max_length: 4}
hyperparameters: {lr: {type: double, minval: 0.1, maxval: 1}}
"""


def test_job_arrays_key_is_read_and_bad_values_are_located() -> None:
    assert parse_spec(BASE + "job_arrays: true\n").job_arrays is True
    assert parse_spec(BASE).job_arrays is None
    with pytest.raises(SpecError, match=r"spec.yaml:5: job_arrays: expected true or false"):
        parse_spec(BASE + "job_arrays: 3\n", "spec.yaml")
    with pytest.raises(SpecError, match=r"spec.yaml:5: job_arrays: .*packing.slots_per_job"):
        parse_spec(BASE + "job_arrays: true\npacking: {slots_per_job: 4}\n", "spec.yaml")


def test_a_spec_asking_for_arrays_is_not_packed_by_the_sites_default() -> None:
    node = "slurm: {slots_per_node: 4}\n"
    assert pack_shape(parse_spec(BASE + node), default_pack=True) is not None
    assert pack_shape(parse_spec(BASE + node + "job_arrays: true\n"), default_pack=True) is None


def test_settings_job_arrays_and_max_array_size() -> None:
    env = {"CADE_CONFIG": "/dev/null", "CADE_SITE_CONFIG": "/dev/null",
           "CADE_JOB_ARRAYS": "yes", "CADE_MAX_ARRAY_SIZE": "100"}
    settings = load_settings(env)
    assert (settings.job_arrays, settings.max_array_size) == (True, 100)
    with pytest.raises(SpecError, match="CADE_MAX_ARRAY_SIZE: max_array_size must be"):
        load_settings({**env, "CADE_MAX_ARRAY_SIZE": "0"})


# -- the engine ------------------------------------------------------------------------------

class ArrayScheduler(FakeScheduler):
    """FakeScheduler with arrays of at most `limit` elements, each element a fake job."""

    def __init__(self, limit: int = 2, **kwargs: object) -> None:
        super().__init__(run_now=False, **kwargs)  # type: ignore[arg-type]
        self.limit = limit
        self.arrays: dict[str, list[str]] = {}
        self.fail_before_array: Exception | None = None

    def max_array_size(self) -> int:
        return self.limit

    def submit_array(self, array: ArrayRequest) -> list[str]:
        if self.fail_before_array is not None:
            raise self.fail_before_array
        assert array.script.exists() and len(array.elements) <= self.limit
        ids = []
        for request in array.elements:
            ids.append(f"fake-{len(self.jobs) + 1}")
            self.jobs[ids[-1]] = (request, None)
        self.arrays[array.name] = ids
        if self.fail_after_submit:
            self.fail_after_submit = False
            raise RuntimeError("driver killed right after the array's sbatch")
        return ids

    def find_array(self, name: str, count: int) -> Mapping[int, str]:
        return dict(enumerate(self.arrays.get(name, [])))


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "state" / "ledger.db")


def wide(tmp_path: Path, ledger: Ledger, extra: str = "job_arrays: true") -> int:
    spec = make_spec(tmp_path, max_trials=5, concurrency=5, extra=extra)
    return engine.submit(ledger, spec, "slurm")


def test_the_first_pass_goes_out_as_arrays_no_larger_than_the_limit(
        tmp_path: Path, ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    scheduler = ArrayScheduler(limit=2)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert [len(ids) for ids in scheduler.arrays.values()] == [2, 2]
    assert len(scheduler.submitted) == 1           # the fifth, alone, as a plain job
    segs = ledger.segments(exp_id)
    assert [s.state for s in segs] == ["queued"] * 5
    assert [s.job_id for s in segs] == [f"fake-{i}" for i in range(1, 6)]
    first = next(iter(scheduler.arrays))
    assert read_array_intent(segs[1].run_dir) == (first, 1, 2)
    assert not Path(segs[4].run_dir, INTENT_FILE).exists()


def test_a_crash_after_the_array_is_queued_adopts_every_element(
        tmp_path: Path, ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    scheduler = ArrayScheduler(limit=5)
    scheduler.fail_after_submit = True
    with pytest.raises(RuntimeError):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert {s.state for s in ledger.segments(exp_id)} == {"intent"}
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    segs = ledger.segments(exp_id)
    assert [s.job_id for s in segs] == [f"fake-{i}" for i in range(1, 6)]
    assert len(scheduler.jobs) == 5 and scheduler.submitted == []   # nothing queued twice


def test_a_crash_before_the_array_is_queued_submits_each_once(
        tmp_path: Path, ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    scheduler = ArrayScheduler(limit=5)
    scheduler.fail_before_array = OSError("killed before sbatch")
    with pytest.raises(OSError):
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    scheduler.fail_before_array = None
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    segs = ledger.segments(exp_id)
    assert len(scheduler.submitted) == 5 and scheduler.arrays == {}
    assert sorted(s.job_id for s in segs) == sorted(f"fake-{i}" for i in range(1, 6))
    assert not any(Path(s.run_dir, INTENT_FILE).exists() for s in segs)


def test_an_array_refused_for_a_site_limit_waits_as_intents(tmp_path: Path,
                                                            ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    scheduler = ArrayScheduler(limit=5)
    scheduler.fail_before_array = SubmitLimitError("refused", limit="QOSMaxSubmitJobPerUserLimit",
                                                   retry_in=60)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    segs = ledger.segments(exp_id)
    assert {s.state for s in segs} == {"intent"}
    assert all("QOSMaxSubmitJobPerUserLimit" in s.reason for s in segs)
    assert not any(Path(s.run_dir, INTENT_FILE).exists() for s in segs)


@pytest.mark.parametrize(("extra", "site", "together"), [
    ("job_arrays: true", False, True), ("job_arrays: false", True, False),
    ("", True, True), ("", False, False),
])
def test_the_spec_key_decides_else_the_site_setting(tmp_path: Path, ledger: Ledger, extra: str,
                                                    site: bool, together: bool) -> None:
    exp_id = wide(tmp_path, ledger, extra)
    scheduler = ArrayScheduler(limit=8)
    engine.sync(ledger, exp_id, scheduler, Settings(poll_interval=0, job_arrays=site))
    assert (len(scheduler.arrays), len(scheduler.submitted)) == ((1, 0) if together else (0, 5))


def test_without_scheduler_arrays_job_arrays_submits_each(tmp_path: Path,
                                                          ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    scheduler = FakeScheduler(run_now=False)      # max_array_size 0, like the local backend
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert len(scheduler.submitted) == 5


def test_later_segments_go_out_one_by_one(tmp_path: Path, ledger: Ledger) -> None:
    exp_id = wide(tmp_path, ledger)
    preempted = Outcome(exit_code=None, state=JobState.PREEMPTED, preempted=True)
    scheduler = ArrayScheduler(limit=8, behave=lambda request, control: preempted)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    for job_id in list(scheduler.jobs):
        scheduler.run(job_id)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert len(scheduler.arrays) == 1 and len(scheduler.submitted) == 5
    assert sorted((s.index, s.state) for s in ledger.segments(exp_id)) == \
        [(1, "preempted")] * 5 + [(2, "queued")] * 5
