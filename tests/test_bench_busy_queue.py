"""bench/busy_queue.py's pure parts on recorded inputs: no cluster, nothing timed.

The arguments, the queue waits from `scontrol -o show job` lines as Slurm prints them, the
time to the first fully trained trial from real run-directory markers, the refusal of an
unknown spec key, and the table with its ratios against one job per trial.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from cade_cli.store.records import SegmentRecord

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("busy_queue", ROOT / "bench" / "busy_queue.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module    # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bq = _load()

# Recorded from the test cluster (fields trimmed to the ones around the times).
SCONTROL = """\
JobId=44 JobName=cade-bench-busy UserId=cadebusy(999) JobState=RUNNING Reason=None SubmitTime=2026-12-04T08:30:14 EligibleTime=2026-12-04T08:30:14 StartTime=2026-12-04T08:30:25 EndTime=2026-12-04T08:32:25 NodeList=node4
JobId=3 ArrayJobId=3 ArrayTaskId=1 JobName=probe UserId=root(0) JobState=COMPLETED Reason=None SubmitTime=2026-12-04T08:25:55 StartTime=2026-12-04T08:26:40 EndTime=2026-12-04T08:26:41
JobId=51 JobName=cade-1-t3-s1 UserId=root(0) JobState=PENDING Reason=Priority SubmitTime=2026-12-04T08:30:20 StartTime=2026-12-04T08:33:00 EndTime=Unknown
JobId=52 JobName=cade-1-t4-s1 UserId=root(0) JobState=CANCELLED Reason=None SubmitTime=2026-12-04T08:30:21 StartTime=Unknown EndTime=2026-12-04T08:30:30
"""


def _at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def test_arguments_defaults_modes_and_refusals() -> None:
    args = bq.parse_args([])
    assert args.modes == ["one-per-job", "packed", "arrays"]
    assert (args.trials, args.busy_depth, args.busy_seconds) == (16, 8, 20.0)
    assert bq.parse_args(["--modes", "packed, arrays"]).modes == ["packed", "arrays"]
    for bad in (["--modes", "arrays,serial"], ["--busy-depth", "0"], ["--modes", ","]):
        with pytest.raises(SystemExit) as exit_:
            bq.parse_args(bad)
        assert exit_.value.code == 2


def test_waits_from_scontrol_lines() -> None:
    times = bq.parse_scontrol_jobs(SCONTROL)
    # A pending job's StartTime is an estimate and a canceled one never started: neither counts.
    assert set(times) == {"44", "3", "3_1"}
    assert times["3_1"] == times["3"] == (_at("2026-12-04T08:25:55"), _at("2026-12-04T08:26:40"))
    waits = sorted(bq.queue_waits({j: times[j] for j in ("44", "3")}))
    assert waits == [11.0, 45.0]
    assert bq.median_wait(waits) == 28.0
    assert bq.median_wait([]) is None


def _segment(tmp_path: Path, trial: int, target: int, started: float, ended: float,
             state: str = "completed", job_id: str = "") -> SegmentRecord:
    run_dir = tmp_path / f"t{trial}-{target}"
    run_dir.mkdir()
    (run_dir / "started").write_text(f"{started} node1\n")
    (run_dir / "exit_code").write_text("0\n")
    os.utime(run_dir / "exit_code", (ended, ended))
    return SegmentRecord(1, trial, 1, state, "slurm", f"cade-1-t{trial}", job_id=job_id,
                         target_length=target, run_dir=str(run_dir))


def test_first_fully_trained_and_job_ids(tmp_path: Path) -> None:
    began = 1_000_000.0
    segments = [_segment(tmp_path, 1, 4, began + 5, began + 9, job_id="101"),
                _segment(tmp_path, 2, 16, began + 40, began + 70, job_id="102_0"),
                _segment(tmp_path, 3, 16, began + 30, began + 55, job_id="pack:2"),
                _segment(tmp_path, 4, 16, began + 20, began + 25, state="failed",
                         job_id="102_1")]
    search = bq.Search(began, 90.0, segments, ["7", "8"])
    assert bq.first_full(search, 16) == 55.0
    assert bq.first_full(search, 32) is None
    assert bq.cade_job_ids(search) == {"101", "102_0", "102_1", "7", "8"}


def test_refusal_names_the_key_and_its_place() -> None:
    stderr = ("Error: spec.yaml:22: job_arrays: unknown key; expected one of: bind_mounts, "
              "checkpoint_policy\n")
    assert bq.refusal(stderr) == "spec.yaml:22: job_arrays: unknown key"


def test_table_with_ratios_and_an_unavailable_mode() -> None:
    results = [bq.Result("one-per-job", [31.0, 40.0, 52.0], 120.0, 200.0, 30, 30),
               bq.Result("packed", [35.0, 45.0], 48.0, 80.0, 4, 4),
               bq.Result("arrays", [], None, 0.0, 0, 0,
                         unavailable="spec.yaml:22: job_arrays: unknown key")]
    table = bq.format_table(results, "python bench/busy_queue.py --trials 16")
    lines = table.splitlines()
    assert lines[0] == "`python bench/busy_queue.py --trials 16`"
    assert lines[4] == "| one-per-job | 40 (3) | 120 | 200 | 30 (30) | 1.00 | 1.00 |"
    assert lines[5] == "| packed | 40 (2) | 48 | 80 | 4 (4) | 0.40 | 0.40 |"
    assert lines[6].startswith("| arrays | not available: spec.yaml:22: job_arrays: unknown key")
    # Without a baseline there is no ratio to give.
    alone = bq.format_table(results[1:2], "c").splitlines()[4]
    assert alone == "| packed | 40 (2) | 48 | 80 | 4 (4) | - | - |"
