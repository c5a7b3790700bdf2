"""Packing on the local backend: trials side by side in a few jobs, none lost or run twice.

Each test submits a small search of the synthetic trainer with `packing.slots_per_job`,
drives it with `cade watch` subprocesses (SIGKILLed in one test) and reads the ledger and
the pack folders: which pack claimed which segment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cade_cli.engine import lifecycle as engine
from cade_cli.errors import SpecError
from cade_cli.spec.experiment import parse_spec
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "synthetic" / "train.py"
WATCH_TIMEOUT = 120.0

ASHA = """
searcher:
  name: async_halving
  metric: loss
  max_trials: 6
  num_rungs: 2
  divisor: 2
  max_length: 8
  max_concurrent_trials: 4
  stop_once: false
"""


def spec_text(searcher: str = ASHA, hparams: str = "", packing: str = "slots_per_job: 2",
              max_restarts: int = 5) -> str:
    return f"""
name: packed
entrypoint: ["{sys.executable}", "{TRAINER}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64, 128]}}
{hparams}
{searcher}
resources:
  launcher: none
packing: {{{packing}}}
max_restarts: {max_restarts}
reproducibility:
  experiment_seed: 7
"""


def environment(step_seconds: str = "0.002") -> dict[str, str]:
    env = dict(os.environ)
    env.update(CADE_POLL_INTERVAL="0.1", CADE_STOP_GRACE="30", SYNTH_STEP_SECONDS=step_seconds,
               CADE_DECISION_WAIT="0.3", CADE_CONTROL_POLL_SECONDS="0.05",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("CADE_LEDGER", None)
    env["CADE_CONFIG"] = os.devnull
    return env


def submit(directory: Path, text: str) -> Path:
    spec_path = directory / "spec.yaml"
    spec_path.write_text(text)
    ledger = Ledger(directory / ".cade" / "ledger.db")
    engine.submit(ledger, parse_spec(text, source=str(spec_path)), "local")
    ledger.close()
    return ledger.path


def watch(ledger_path: Path, kill_after: float | None = None,
          step_seconds: str = "0.002") -> subprocess.Popen[bytes] | int | None:
    log = open(ledger_path.parent / "watch.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "cade_cli", "watch", "1", "--ledger", str(ledger_path),
         "--slots", "4"], cwd=ledger_path.parents[1], env=environment(step_seconds),
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        process.wait(timeout=WATCH_TIMEOUT if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert kill_after is not None, (ledger_path.parent / "watch.log").read_text()
        return None
    finally:
        log.close()
    return process.returncode


def packs_of(ledger_path: Path) -> dict[str, list[str]]:
    """Pack number -> the segment job names its worker claimed."""
    root = ledger_path.parent / "experiments" / "1" / "packs" / "jobs"
    return {p.name: sorted(c.name[:-5] for c in (p / "claimed").glob("*.json"))
            for p in sorted(root.iterdir())}


def outcome(ledger_path: Path) -> dict[str, Any]:
    ledger = Ledger(ledger_path, create=False)
    try:
        return {"state": ledger.experiment(1).state,
                "segments": [(s.trial, s.index, s.state, s.job_name, s.reason)
                             for s in ledger.segments(1)],
                "trials": {t.id: t.state for t in ledger.trials(1)},
                "events": [(e.event, e.decisions) for e in ledger.events(1)]}
    finally:
        ledger.close()


def claimed_once(ledger_path: Path, result: dict[str, Any]) -> list[str]:
    """Every segment the ledger started was claimed by exactly one pack, and only once."""
    claims = Counter(name for names in packs_of(ledger_path).values() for name in names)
    started = [s[3] for s in result["segments"] if s[2] not in ("canceled",)]
    assert all(count == 1 for count in claims.values()), claims
    assert sorted(started) == sorted(claims), (started, claims)
    return started


def test_a_packed_search_runs_trials_side_by_side(tmp_path: Path) -> None:
    ledger_path = submit(tmp_path, spec_text())
    assert watch(ledger_path) == 0, (tmp_path / ".cade" / "watch.log").read_text()
    result = outcome(ledger_path)
    assert result["state"] == "completed"
    assert {s[2] for s in result["segments"]} <= {"completed"}, result["segments"]
    segments = claimed_once(ledger_path, result)
    packs = packs_of(ledger_path)
    # fewer jobs than segments, and at least one job ran more than one segment
    assert len(packs) < len(segments)
    assert max(len(names) for names in packs.values()) >= 2
    assert all_closed(ledger_path)  # every pack gave its allocation back


def all_closed(ledger_path: Path, timeout: float = 10.0) -> bool:
    jobs = ledger_path.parent / "experiments" / "1" / "packs" / "jobs"
    deadline = time.monotonic() + timeout
    # a pack still queued when the search ended was canceled before it started
    while not all((pack / "closing").exists() or not (pack / "started").exists()
                  for pack in jobs.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_failed_trial_inside_a_pack_fails_alone(tmp_path: Path) -> None:
    grid = """
searcher:
  name: grid
  metric: loss
  max_length: 6
  max_concurrent_trials: 2
"""
    hparams = "  fail_at: {type: categorical, vals: [0, 3]}\n  lr: 0.01\n  width: 64"
    text = spec_text(grid, "", max_restarts=1).replace(
        "  lr: {type: log, minval: -3, maxval: -1, base: 10}\n"
        "  width: {type: categorical, vals: [32, 64, 128]}\n", hparams + "\n")
    ledger_path = submit(tmp_path, text)
    assert watch(ledger_path) == 0
    result = outcome(ledger_path)
    ledger = Ledger(ledger_path, create=False)
    by_fail = {t.params["fail_at"]: t.state for t in ledger.trials(1)}
    ledger.close()
    assert by_fail == {0: "completed", 3: "errored"}, result
    failed = [s for s in result["segments"] if s[2] == "failed"]
    assert len(failed) == 2 and all("exit code 3" in s[4] for s in failed)
    claimed_once(ledger_path, result)


def test_driver_killed_again_and_again_loses_and_repeats_nothing(tmp_path: Path) -> None:
    ledger_path = submit(tmp_path, spec_text())
    for kill_after in (0.7, 1.3, 0.9):
        watch(ledger_path, kill_after=kill_after)
    assert watch(ledger_path) == 0
    result = outcome(ledger_path)
    assert result["state"] == "completed"
    assert {s[2] for s in result["segments"]} <= {"completed"}, result["segments"]
    names = [s[3] for s in result["segments"]]
    assert len(names) == len(set(names))
    claimed_once(ledger_path, result)


def test_a_preemption_notice_to_the_pack_resumes_its_trials_elsewhere(tmp_path: Path) -> None:
    ledger_path = submit(tmp_path, spec_text(packing="slots_per_job: 4"))
    driver = subprocess.Popen(
        [sys.executable, "-m", "cade_cli", "watch", "1", "--ledger", str(ledger_path),
         "--slots", "4"], cwd=tmp_path, env=environment("0.05"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        started = ledger_path.parent / "experiments" / "1" / "packs" / "jobs" / "1" / "started"
        deadline = time.monotonic() + 30
        while not _all_reporting(ledger_path) and time.monotonic() < deadline:
            time.sleep(0.1)   # a trainer past its start-up takes the notice as one
        worker = int(started.read_text().split()[1])
        os.kill(worker, signal.SIGUSR1)   # what Slurm's --signal does before the time limit
        assert driver.wait(timeout=WATCH_TIMEOUT) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
    result = outcome(ledger_path)
    assert result["state"] == "completed"
    preempted = [s for s in result["segments"] if s[2] == "preempted"]
    assert preempted, result["segments"]
    assert {s[2] for s in result["segments"]} <= {"completed", "preempted"}, result["segments"]
    packs = packs_of(ledger_path)
    assert len(packs) >= 2 and {s[3] for s in preempted} <= set(packs["1"])
    claimed_once(ledger_path, result)


def _all_reporting(ledger_path: Path) -> bool:
    """Pack 1 runs segments and each of them has reported."""
    claimed = ledger_path.parent / "experiments" / "1" / "packs" / "jobs" / "1" / "claimed"
    run_dirs = [json.loads(c.read_text())["run_dir"] for c in claimed.glob("*.json")]
    return bool(run_dirs) and all(Path(d, "metrics.jsonl").exists()
                                  and Path(d, "metrics.jsonl").stat().st_size for d in run_dirs)


@pytest.mark.parametrize("packing, message", [
    ("slots_per_job: 3, idle: 4", "idle"),
    ("slots_per_job: -1", "slots_per_job"),
])
def test_bad_packing_keys_are_located(packing: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_text(packing=packing), source="spec.yaml")
    assert message in str(err.value) and "spec.yaml:" in str(err.value)


def test_slots_per_job_must_hold_whole_trials() -> None:
    text = spec_text(packing="slots_per_job: 3").replace("  launcher: none",
                                                          "  launcher: none\n  slots_per_trial: 2")
    with pytest.raises(SpecError, match="packing.slots_per_job"):
        parse_spec(text, source="spec.yaml")


def test_pack_json_and_script(tmp_path: Path) -> None:
    from cade_cli.backends.packed import PackShape
    from cade_cli.jobs.pack import prepare_pack
    spec = parse_spec(spec_text(packing="slots_per_job: 4"), source=str(tmp_path / "s.yaml"))
    request = prepare_pack(spec, PackShape(4, 1), backend="slurm", name="cade-1-pack-1-abc",
                           pack_dir=tmp_path / "p", queue=tmp_path / "q")
    config = json.loads((tmp_path / "p" / "pack.json").read_text())
    assert config["slots"] == 4 and config["mode"] == "slurm"
    script = request.script.read_text()
    assert "#SBATCH --ntasks-per-node=4" in script and "#SBATCH --nodes=1" in script
    assert "cade_pack.py" in script and request.slots == 4


def test_the_site_setting_packs_a_node_worth_of_trials() -> None:
    from cade_cli.jobs.pack import pack_shape
    text = spec_text(packing="").replace("packing: {}\n", "slurm: {slots_per_node: 4}\n")
    spec = parse_spec(text, source="spec.yaml")
    assert pack_shape(spec) is None
    shape = pack_shape(spec, default_pack=True)
    assert shape is not None and (shape.slots, shape.slots_per_trial) == (4, 1)
    explicit = parse_spec(spec_text(packing="slots_per_job: 0"), source="spec.yaml")
    assert pack_shape(explicit, default_pack=True) is None   # the spec's word wins


def _packed(tmp_path: Path, gpus: tuple[str, ...] = (), site: tuple[Path, ...] = ()) -> Any:
    from cade_cli.backends.local import LocalScheduler
    from cade_cli.backends.packed import PackedScheduler, PackShape
    from cade_cli.jobs.pack import prepare_pack
    text = spec_text(packing="slots_per_job: 2, idle_timeout: 30")
    if gpus:
        text = text.replace("  launcher: none", "  launcher: none\n  slot_type: gpu")
    spec = parse_spec(text, source=str(tmp_path / "s.yaml"))
    root = tmp_path / "packs"

    def new_pack(pack_dir: Path, index: int) -> Any:
        return prepare_pack(spec, PackShape(2, 1), backend="local", name=f"pack-{index}",
                            pack_dir=pack_dir, queue=root / "queue", template_dirs=site)
    return PackedScheduler(LocalScheduler(tmp_path / "state", slots=2, gpus=list(gpus)), root,
                           PackShape(2, 1), new_pack)


def _segment(tmp_path: Path, name: str, body: str) -> Any:
    from cade_cli.backends.base import JobRequest
    run_dir = tmp_path / name
    run_dir.mkdir()
    script = run_dir / "job.sh"
    script.write_text("trap 'echo $? > \"$0.code\"; mv \"$0.code\" "
                      f"{run_dir}/exit_code' EXIT\n{body}\n")
    return JobRequest(name=name, script=script, run_dir=run_dir)


def _wait_state(scheduler: Any, job_id: str, states: set[str], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = scheduler.poll([job_id])[job_id]
        if status.state.value in states:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_a_segment_canceled_before_a_worker_took_it_never_runs(tmp_path: Path) -> None:
    scheduler = _packed(tmp_path)
    # like a job script, the shell waits on its launch in the background: TERM ends it
    first = scheduler.submit(_segment(tmp_path, "a", "trap 'exit 143' TERM; sleep 30 & wait"))
    second = scheduler.submit(_segment(tmp_path, "b", "trap 'exit 143' TERM; sleep 30 & wait"))
    third = scheduler.submit(_segment(tmp_path, "c", "touch ran"))   # no slot left: queued
    _wait_state(scheduler, first, {"running"})
    assert scheduler.poll([third])[third].state.value == "pending"
    scheduler.cancel([third])
    assert scheduler.poll([third])[third].state.value == "cancelled"
    scheduler.cancel([first, second])                # claimed: TERM to their scripts
    for job_id in (first, second):
        assert _wait_state(scheduler, job_id, {"failed", "cancelled"}).exit_code != 0
    scheduler.release()
    time.sleep(1.5)
    assert not (tmp_path / "c" / "ran").exists() and not (tmp_path / "c" / "exit_code").exists()


def test_each_packed_segment_sees_only_its_own_gpu(tmp_path: Path) -> None:
    # The pack job holds GPUs 3 and 5 (the local backend pins them as a scheduler would);
    # its worker splits them: two segments side by side, one GPU each, never the same one.
    scheduler = _packed(tmp_path, gpus=("3", "5"))
    body = 'echo "$CUDA_VISIBLE_DEVICES $CADE_PACK_SLOT" > "$(dirname "$0")/seen"; sleep 1'
    jobs = [scheduler.submit(_segment(tmp_path, name, body)) for name in ("a", "b")]
    for job_id in jobs:
        assert _wait_state(scheduler, job_id, {"completed"}).exit_code == 0
    seen = sorted((tmp_path / name / "seen").read_text().split() for name in ("a", "b"))
    assert seen == [["3", "0"], ["5", "1"]]
    scheduler.release()


SITE_SETUP = """{%% extends "builtin:%s" %%}
{%% block setup %%}
export SITE_MODULES="cuda/12.4 {{ experiment_name }}"
{%% endblock %%}
"""


def test_packed_segments_run_under_the_sites_setup(tmp_path: Path) -> None:
    # An admin's `setup` (module load, conda activate) lives in the backend's job template;
    # the pack job runs it once and every segment it starts inherits it.
    site = tmp_path / "site"
    site.mkdir()
    (site / "local.sh.j2").write_text(SITE_SETUP % "local.sh.j2")
    scheduler = _packed(tmp_path, site=(site,))
    job_id = scheduler.submit(_segment(tmp_path, "a", 'echo "$SITE_MODULES" > "$(dirname "$0")/seen"'))
    assert _wait_state(scheduler, job_id, {"completed"}).exit_code == 0
    assert (tmp_path / "a" / "seen").read_text() == "cuda/12.4 packed\n"
    scheduler.release()


@pytest.mark.parametrize("backend, template", [("slurm", "slurm.sbatch.j2"), ("pbs", "pbs.pbs.j2")])
def test_a_cluster_pack_script_carries_the_sites_setup(tmp_path: Path, backend: str,
                                                       template: str) -> None:
    from cade_cli.backends.packed import PackShape
    from cade_cli.jobs.pack import prepare_pack
    spec = parse_spec(spec_text(packing="slots_per_job: 4"), source=str(tmp_path / "s.yaml"))

    def script(site: tuple[Path, ...]) -> str:
        request = prepare_pack(spec, PackShape(4, 1), backend=backend, name="cade-1-pack-1",
                               pack_dir=tmp_path / backend, queue=tmp_path / "q",
                               template_dirs=site)
        return request.script.read_text()
    assert "SITE_MODULES" not in script(())
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / template).write_text(SITE_SETUP % template)
    text = script((tmp_path / "site",))
    assert text.index('export SITE_MODULES="cuda/12.4 packed"') < text.index("exec ")


def test_a_pack_killed_under_its_segments_ends_them_with_it(tmp_path: Path) -> None:
    scheduler = _packed(tmp_path)
    job_id = scheduler.submit(_segment(tmp_path, "a", "sleep 30"))
    _wait_state(scheduler, job_id, {"running"})
    started = (tmp_path / "packs" / "jobs" / "1" / "started").read_text()
    os.killpg(int(started.split()[1]), signal.SIGKILL)   # the node died: no trap, no exit code
    status = _wait_state(scheduler, job_id, {"cancelled", "failed"})
    assert status.exit_code is None and "pack job ended" in status.reason


def test_a_pack_the_driver_died_before_submitting_is_replaced(tmp_path: Path) -> None:
    scheduler = _packed(tmp_path)
    (tmp_path / "packs" / "jobs" / "1").mkdir(parents=True)   # made, never submitted
    job_id = scheduler.submit(_segment(tmp_path, "a", "true"))
    assert _wait_state(scheduler, job_id, {"completed"}).exit_code == 0
    assert (tmp_path / "packs" / "jobs" / "2" / "claimed" / "a.json").exists()
    scheduler.release()


def test_a_pbs_pack_asks_for_one_chunk_of_all_its_slots(tmp_path: Path) -> None:
    from cade_cli.backends.packed import PackShape
    from cade_cli.jobs.pack import prepare_pack
    spec = parse_spec(spec_text(packing="slots_per_job: 4"), source=str(tmp_path / "s.yaml"))
    request = prepare_pack(spec, PackShape(4, 1), backend="pbs", name="cade-1-pack-1-abc",
                           pack_dir=tmp_path / "p", queue=tmp_path / "q")
    script = request.script.read_text()
    assert "#PBS -l select=1:ncpus=4" in script, script
    assert json.loads((tmp_path / "p" / "pack.json").read_text())["mode"] == "pbs"


def test_a_pack_near_its_time_limit_takes_no_more_work(tmp_path: Path) -> None:
    # A 1-minute limit with a 58 s reserve: each pack takes work for its first 2 s only;
    # later segments go to new packs and the search completes all the same.
    text = spec_text(packing="slots_per_job: 2, reserve: 58").replace(
        "  launcher: none", "  launcher: none\n  time: 1")
    ledger_path = submit(tmp_path, text)
    assert watch(ledger_path, step_seconds="0.5") == 0
    result = outcome(ledger_path)
    assert result["state"] == "completed"
    assert {s[2] for s in result["segments"]} <= {"completed"}, result["segments"]
    claimed_once(ledger_path, result)
    jobs = ledger_path.parent / "experiments" / "1" / "packs" / "jobs"
    started = [p for p in jobs.iterdir() if (p / "started").exists()]
    assert len(started) >= 3      # four trials at a time, two per pack, and then some
    for pack in started:
        began = float((pack / "started").read_text().split()[0])
        assert all(c.stat().st_mtime <= began + 2.5 for c in (pack / "claimed").iterdir())


def test_cancel_ends_the_trials_and_gives_the_packs_back(tmp_path: Path) -> None:
    ledger_path = submit(tmp_path, spec_text(packing="slots_per_job: 4"))
    watch(ledger_path, kill_after=3.0, step_seconds="2")   # trials are running now
    trials = ledger_path.parent / "experiments" / "1" / "trials"
    assert list(trials.glob("*/segments/*/started"))
    env = environment("0.5")
    done = subprocess.run([sys.executable, "-m", "cade_cli", "cancel", "1", "--ledger",
                           str(ledger_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while True:   # status syncs while no driver runs: the segments end, the packs go
        subprocess.run([sys.executable, "-m", "cade_cli", "status", "1", "--ledger",
                        str(ledger_path)], cwd=tmp_path, env=env, capture_output=True,
                       timeout=60, check=False)
        result = outcome(ledger_path)
        if all(s[2] not in ("queued", "running", "intent") for s in result["segments"]):
            break
        assert time.monotonic() < deadline, result["segments"]
        time.sleep(0.5)
    assert result["state"] == "canceled"
    # each trial got the TERM, checkpointed and stopped, as in a job of its own
    assert {s[4] for s in result["segments"]} == {"stopped (cancel)"}, result["segments"]
    assert all_closed(ledger_path)
    claimed_once(ledger_path, result)


def test_a_pack_larger_than_the_machine_errors_its_trials(tmp_path: Path) -> None:
    """Every trial fails the same way before any report: the search pauses, saying why."""
    ledger_path = submit(tmp_path, spec_text(packing="slots_per_job: 8"))   # --slots 4
    assert watch(ledger_path) == 1
    ledger = Ledger(ledger_path, create=False)
    experiment, trials = ledger.experiment(1), ledger.trials(1)
    ledger.close()
    assert experiment.state == "paused" and "asks for 8 slots" in experiment.message
    assert [t.state for t in trials].count("errored") >= 3   # a pack fails together
    assert all("asks for 8 slots" in t.message for t in trials if t.state == "errored")
