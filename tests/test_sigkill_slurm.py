"""Kill -9 the driver on the test Slurm cluster, and race two drivers there.

The Slurm twin of test_sigkill.py. A small promotion-type ASHA search of the synthetic
trainer (its loss a fixed function of params, seed and length; one trial at a time, so the
order of events is fixed) runs once undisturbed as the reference. Then the same seed is
driven by `cade watch` processes that are SIGKILLed at seeded-random points, each chosen as
"a short random delay after the ledger's k-th change" so that kills land inside syncs
(between recording a segment's intent, its `sbatch` and its job id) as well as between
them; a later `cade watch` takes over each time. In the race, two `cade watch` drive the
same ledger at once and one of them is killed and started again, repeatedly.

Each run must end with the reference's searcher events and decisions and the same trials,
and Slurm itself must show each segment's job name exactly once (`squeue -t all` lists
finished jobs for MinJobAge, which the test cluster sets to 600 s; it has no accounting
database) under the job id the ledger recorded.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slurm_fixtures import ROOT, cade_env, cancel_jobs, ledger_of, require_slurm
from test_sigkill import SPEC as LOCAL_SPEC

from cade_cli.engine import lifecycle as engine
from cade_cli.spec.experiment import parse_spec
from cade_cli.store.ledger import Ledger

pytestmark = pytest.mark.slurm

KILLED_RUNS = 4          # each with 3 or 4 kills
RACES = 2                # each with 3 kills of one of the two drivers
PARALLEL = 3
SBATCH_DELAY = 0.5       # seconds between Slurm queueing a job and sbatch answering
DRIVE_TIMEOUT = 150.0

# The local kill test's search (same trainer, seed and ladder), named apart.
SPEC = LOCAL_SPEC.replace("name: sigkill\n", "name: sigkill-slurm\n", 1)


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    require_slurm()


def slow_sbatch(workdir: Path) -> Path:
    """A folder holding an `sbatch` that answers half a second after Slurm queued the job,
    as on a busy cluster: a kill can land between the job's existence and its id reaching
    the ledger, where a driver that submitted again would run the segment twice.

    Written once per folder, and by rename: each driver started calls this, and rewriting
    the script in place while the other driver's `sh` opens it let that `sh` read an empty
    file, exit 0 and print no job id."""
    folder = workdir / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "sbatch"
    if script.exists():
        return folder
    draft = folder / "sbatch.draft"
    draft.write_text(f"""#!/bin/sh
out=$({shutil.which("sbatch")} "$@") || {{ rc=$?; printf '%s\\n' "$out"; exit $rc; }}
sleep {SBATCH_DELAY}
printf '%s\\n' "$out"
""")
    draft.chmod(0o755)
    os.replace(draft, script)
    return folder


def environment(workdir: Path) -> dict[str, str]:
    # sbatch exports this environment to the jobs: the trainer finds cade_cli.report.
    env = cade_env(workdir, poll=0.5, SYNTH_STEP_SECONDS="0.002",
                   CADE_CONTROL_POLL_SECONDS="0.05", PYTHONPATH=str(ROOT))
    env["PATH"] = f"{slow_sbatch(workdir)}{os.pathsep}{env['PATH']}"
    return env


def submit(workdir: Path) -> Path:
    spec_path = workdir / "spec.yaml"
    spec_path.write_text(SPEC)
    ledger = Ledger(workdir / "ledger.db")
    engine.submit(ledger, parse_spec(SPEC, source=str(spec_path)), "slurm")
    ledger.close()
    return ledger.path


def start_driver(workdir: Path) -> subprocess.Popen[bytes]:
    """`cade watch 1`, the driver, as a user starts it."""
    log = open(workdir / "watch.log", "ab")  # noqa: SIM115 (the child keeps it)
    try:
        return subprocess.Popen([sys.executable, "-m", "cade_cli", "watch", "1"], cwd=workdir,
                                env=environment(workdir), stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True)
    finally:
        log.close()


@dataclass(frozen=True)
class LedgerView:
    changes: int                   # events, segments, job ids and segment ends recorded
    segments: int
    submitting: list[str]          # job names of segments with an intent and no job id yet


def ledger_view(ledger_path: Path) -> LedgerView:
    """Read straight from SQLite, read-only: the drivers own the ledger."""
    try:
        with closing(sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5)) as db:
            events = db.execute("SELECT count(*) FROM searcher_events").fetchone()[0]
            segments, submitted, ended = db.execute(
                "SELECT count(*), count(job_id), count(ended) FROM segments").fetchone()
            intents = [row[0] for row in db.execute(
                "SELECT job_name FROM segments WHERE state = 'intent'")]
    except sqlite3.Error:
        return LedgerView(0, 0, [])  # being written: ask again
    return LedgerView(int(events + segments + submitted + ended), int(segments), intents)


def reached(ledger_path: Path, point: tuple[str, int]) -> bool:
    """("change", k): the ledger's k-th change is recorded. ("submit", n) and ("sbatch", n):
    the n-th segment (or a later one) is being submitted, its intent recorded and its job id
    not yet, and for "sbatch" Slurm already holds its job."""
    kind, count = point
    view = ledger_view(ledger_path)
    if kind == "change":
        return view.changes >= count
    if not view.submitting or view.segments < count:
        return False
    return kind == "submit" or bool(queued(view.submitting))


def queued(names: list[str]) -> list[str]:
    """The names among `names` (one experiment's jobs) that Slurm holds a job for."""
    if not names:
        return []
    held = {name for _, name in slurm_jobs(names[0].rsplit("-", 1)[1])}
    return [name for name in names if name in held]


def kill_at(driver: subprocess.Popen[bytes], ledger_path: Path, point: tuple[str, int],
            delay: float, kills: list[dict[str, Any]]) -> bool:
    """SIGKILL the driver `delay` seconds after `point` is reached (see `reached`) and note
    what the kill left in `kills`; False when the driver ended before."""
    deadline = time.monotonic() + DRIVE_TIMEOUT
    while not reached(ledger_path, point):
        if driver.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the experiment stopped moving"
        time.sleep(0.005)
    time.sleep(delay)
    if driver.poll() is not None:
        return False
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    intents = ledger_view(ledger_path).submitting
    # An intent whose job Slurm already holds: killed between sbatch and recording its id.
    kills.append({"point": point, "intents": len(intents), "submitted": len(queued(intents))})
    return True


def finish(driver: subprocess.Popen[bytes]) -> int:
    try:
        return driver.wait(timeout=DRIVE_TIMEOUT)
    except subprocess.TimeoutExpired:
        driver.kill()
        raise


def slurm_jobs(token: str) -> list[tuple[str, str]]:
    """(job id, job name) of every job Slurm holds, finished ones too, named for `token`."""
    done = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j"], capture_output=True,
                          text=True, timeout=30, check=True)
    rows = [line.split("|", 1) for line in done.stdout.splitlines() if "|" in line]
    return [(job_id, name) for job_id, name in rows if name.endswith(f"-{token}")]


def outcome(workdir: Path) -> dict[str, Any]:
    ledger = ledger_of(workdir)
    try:
        segments = ledger.segments(1)
        result = {
            "events": [(e.event, e.decisions) for e in ledger.events(1)],
            "trials": [(t.id, t.state, t.params, t.length, t.best_metric)
                       for t in ledger.trials(1)],
            "state": ledger.experiment(1).state,
            "jobs": sorted((s.job_id or "", s.job_name) for s in segments),
            "failures": [(s.job_name, s.reason) for s in segments if s.state != "completed"],
        }
    finally:
        ledger.close()
    token = segments[0].job_name.rsplit("-", 1)[1]
    result["slurm"] = sorted(slurm_jobs(token))
    return result


def cleanup(workdir: Path) -> None:
    """Cancel whatever this ledger's jobs still run (a failed test)."""
    if (workdir / "ledger.db").exists():
        cancel_jobs([job_id for job_id, _ in outcome(workdir)["jobs"] if job_id])


def kill_points(rng: random.Random, reference: dict[str, Any], count: int
                ) -> list[tuple[tuple[str, int], float]]:
    """`count` kill points in the order they come, each with its delay: one as a segment's
    submission starts, one once its sbatch has run (both at once: the windows are short),
    the others a random moment after a random change of the ledger."""
    segments = range(1, len(reference["jobs"]) + 1)
    points = [(("change", k), rng.uniform(0.0, 0.3))
              for k in rng.sample(range(1, reference["changes"]), count - 2)]
    points += [((kind, rng.choice(segments)), 0.0) for kind in ("submit", "sbatch")]
    # Order the submission points among the changes by the change count at which the
    # reference recorded their segment.
    at = reference["change_of_segment"]
    return sorted(points, key=lambda p: p[0][1] if p[0][0] == "change" else at[p[0][1]])


def killed_and_resumed(run: int, directory: Path, reference: dict[str, Any]
                       ) -> dict[str, Any]:
    """One driver at a time, SIGKILLed at 3 or 4 random points; a fresh one finishes."""
    rng = random.Random(run)
    ledger_path = submit(directory)
    kills: list[dict[str, Any]] = []
    try:
        for point, delay in kill_points(rng, reference, rng.randint(3, 4)):
            kill_at(start_driver(directory), ledger_path, point, delay, kills)
        code = finish(start_driver(directory))
    finally:
        cleanup(directory)
    return {**outcome(directory), "kills": kills, "exit": [code]}


def racing(run: int, directory: Path, reference: dict[str, Any]) -> dict[str, Any]:
    """Two drivers at once; one of them, chosen at random, is killed and started again."""
    rng = random.Random(1000 + run)
    ledger_path = submit(directory)
    drivers = [start_driver(directory), start_driver(directory)]
    kills: list[dict[str, Any]] = []
    try:
        for point, delay in kill_points(rng, reference, 3):
            victim = rng.randrange(2)
            if kill_at(drivers[victim], ledger_path, point, delay, kills):
                drivers[victim] = start_driver(directory)
        codes = [finish(driver) for driver in drivers]
    finally:
        cleanup(directory)
    return {**outcome(directory), "kills": kills, "exit": codes}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The undisturbed run, watched: the change count at which each segment was recorded."""
    directory = tmp_path_factory.mktemp("reference")
    ledger_path = submit(directory)
    started = time.monotonic()
    driver = start_driver(directory)
    change_of_segment: dict[int, int] = {}
    try:
        while driver.poll() is None:
            view = ledger_view(ledger_path)
            for index in range(len(change_of_segment) + 1, view.segments + 1):
                change_of_segment[index] = view.changes
            assert time.monotonic() - started < DRIVE_TIMEOUT, "the reference run hangs"
            time.sleep(0.01)
    finally:
        cleanup(directory)
    return {**outcome(directory), "exit": [driver.returncode],
            "seconds": time.monotonic() - started, "changes": ledger_view(ledger_path).changes,
            "change_of_segment": change_of_segment}


@pytest.fixture(scope="module")
def disturbed(reference: dict[str, Any],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every killed run and race side by side: they mostly wait on Slurm and the trainer."""
    runs = {f"killed{run}": (killed_and_resumed, run) for run in range(KILLED_RUNS)}
    runs.update({f"race{run}": (racing, run) for run in range(RACES)})
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {name: pool.submit(function, run, tmp_path_factory.mktemp(name), reference)
                   for name, (function, run) in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_each_job_submitted_once(result: dict[str, Any]) -> None:
    ids = [job_id for job_id, _ in result["jobs"]]
    assert all(ids) and len(ids) == len(set(ids)), result["jobs"]
    names = Counter(name for _, name in result["slurm"])
    assert [name for name, count in names.items() if count > 1] == [], result["slurm"]
    assert result["slurm"] == result["jobs"]  # what Slurm ran is what the ledger recorded


def test_the_reference_run_completes(reference: dict[str, Any]) -> None:
    assert reference["exit"] == [0]
    assert reference["state"] == "completed"
    assert len(reference["trials"]) == 4
    assert any(d["op"] == "train" and d["length"] == 8
               for _, decisions in reference["events"] for d in decisions)  # a promotion
    assert reference["failures"] == []
    assert_each_job_submitted_once(reference)


def test_the_drivers_were_really_killed(disturbed: dict[str, dict[str, Any]]) -> None:
    kills = [kill for result in disturbed.values() for kill in result["kills"]]
    assert len(kills) >= 3 * KILLED_RUNS
    # Kills landed while jobs were being submitted, some after their sbatch had run: the
    # next driver had to adopt those by their names, and submit the others.
    assert sum(kill["intents"] for kill in kills) >= KILLED_RUNS, kills
    assert sum(kill["submitted"] for kill in kills) >= KILLED_RUNS, kills


@pytest.mark.parametrize("name", [f"killed{run}" for run in range(KILLED_RUNS)]
                         + [f"race{run}" for run in range(RACES)])
def test_killed_and_racing_drivers_decide_as_the_reference(
        name: str, reference: dict[str, Any], disturbed: dict[str, dict[str, Any]]) -> None:
    result = disturbed[name]
    assert set(result["exit"]) == {0}
    assert result["state"] == "completed"
    assert result["events"] == reference["events"]
    assert result["trials"] == reference["trials"]
    assert result["failures"] == []
    assert_each_job_submitted_once(result)
