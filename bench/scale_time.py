"""Time cade's commands on a ledger written by scale_build: min and median of N runs, peak RSS.

Every measurement runs in its own child process (`os.wait4` gives that child's peak
resident memory and CPU time: on a shared, busy machine the CPU seconds are the steadier
figure, wall seconds include waiting for a core). The driver's sync passes run on a copy of the ledger, with one segment
made live again (a scheduler that reports it running) so that a pass has a job to poll and
a metrics file to read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMMANDS: list[tuple[str, list[str]]] = [
    ("cade status EXP", ["status", "1"]),
    ("cade best EXP --json", ["best", "1", "--json"]),
    ("cade top EXP --once", ["top", "1", "--once", "--no-sync", "--width", "160"]),
    ("cade plot EXP", ["plot", "1"]),
    ("cade report EXP --html", ["report", "1", "--html", "{tmp}/report.html"]),
    ("cade export --format csv", ["export", "1", "--format", "csv", "--out", "{tmp}/csv"]),
    ("cade export --format tensorboard",
     ["export", "1", "--format", "tensorboard", "--out", "{tmp}/tb"]),
]
NEW_LINES = 50
INGEST_LINES = 2000


def run_child(argv: list[str], cwd: Path) -> tuple[float, float, int, str, float]:
    """(seconds, peak RSS in MB, exit status, output, CPU seconds) of one child process.

    The child is reaped with os.wait4, whose rusage is that child's alone (RUSAGE_CHILDREN
    would give the largest of all children so far).
    """
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        output.seek(0)
        text = output.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime  # what a busy shared machine does not inflate
    return seconds, usage.ru_maxrss / 1024, proc.returncode, text, cpu


def cade_argv(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "cade_cli", *args]


def measure(label: str, argv: list[str], cwd: Path, runs: int) -> dict[str, Any]:
    samples = [run_child(argv, cwd) for _ in range(runs)]
    failed = [s for s in samples if s[2] != 0]
    return {"command": label, "min": min(s[0] for s in samples),
            "median": statistics.median(s[0] for s in samples),
            "cpu_min": min(s[4] for s in samples),
            "cpu_median": statistics.median(s[4] for s in samples),
            "peak_mb": max(s[1] for s in samples), "ok": not failed,
            "error": failed[0][3][-400:] if failed else ""}


def time_all(directory: Path, runs: int = 3, only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every row of the table, or those whose label holds one of the words in `only`."""
    directory = directory.absolute()

    def wanted(label: str) -> bool:
        return not only or any(word in label for word in only)

    results = []
    with tempfile.TemporaryDirectory(prefix="cade-scale-") as tmp:
        for label, args in COMMANDS:
            if not wanted(label):
                continue
            argv = cade_argv([a.replace("{tmp}", tmp) for a in args])
            results.append(measure(label, argv, directory, runs))
            if label.startswith("cade report"):
                results[-1]["size_mb"] = _size_mb(Path(tmp) / "report.html")
        if wanted("driver sync pass") or wanted("ingest rate"):
            results += sync_results(directory, runs)
    ledger = directory / ".cade" / "ledger.db"
    results.append({"command": "ledger file", "size_mb": _size_mb(ledger), "ok": True})
    return results


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else float("nan")


def sync_results(directory: Path, runs: int) -> list[dict[str, Any]]:
    """The driver's sync passes, measured inside one child (scale.py _sync) on a copy."""
    script = Path(__file__).with_name("scale.py")
    seconds, peak, code, text, _cpu = run_child(
        [sys.executable, str(script), "_sync", str(directory), "--runs", str(runs)], directory)
    if code != 0:
        return [{"command": "driver sync passes", "ok": False, "error": text[-400:], "min": seconds}]
    rows: list[dict[str, Any]] = json.loads(text.strip().splitlines()[-1])
    for row in rows:
        row.setdefault("peak_mb", peak)
    return rows


# -- the sync child ----------------------------------------------------------------------

def sync_child(directory: Path, runs: int) -> list[dict[str, Any]]:
    from cade_cli.backends.base import JobState, JobStatus
    from cade_cli.engine import sync
    from cade_cli.spec.settings import Settings
    from cade_cli.store.ledger import Ledger

    class LiveScheduler:
        """Reports every job running; the measured passes submit and cancel nothing."""

        name = "bench"

        def poll(self, job_ids: list[str]) -> dict[str, JobStatus]:
            return {j: JobStatus(j, JobState.RUNNING, nodes="node1") for j in job_ids}

    with tempfile.TemporaryDirectory(prefix="cade-scale-sync-") as tmp:
        shutil.copytree(directory / ".cade", Path(tmp) / ".cade")
        ledger = Ledger(Path(tmp) / ".cade" / "ledger.db")
        metrics = _live_segment(ledger, Path(tmp) / "live")
        exp_id = ledger.find_experiment().id
        settings, scheduler = Settings(), LiveScheduler()
        length = [0]

        def pass_with(lines: int) -> tuple[float, float]:
            _append_training(metrics, length, lines)
            started, cpu = time.perf_counter(), time.process_time()
            sync(ledger, exp_id, scheduler, settings)  # type: ignore[arg-type]
            return time.perf_counter() - started, time.process_time() - cpu

        idle = [pass_with(0) for _ in range(runs)]
        fifty = [pass_with(NEW_LINES) for _ in range(runs)]
        bulk = pass_with(INGEST_LINES)
        return [_row("driver sync pass, nothing new", idle),
                _row(f"driver sync pass, {NEW_LINES} new training lines", fifty),
                {**_row(f"ingest rate ({INGEST_LINES} lines in one pass; per CPU second)",
                        [bulk]), "lines_per_s": INGEST_LINES / bulk[1]}]


def _row(label: str, samples: list[tuple[float, float]]) -> dict[str, Any]:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return {"command": label, "min": min(walls), "median": statistics.median(walls),
            "cpu_min": min(cpus), "cpu_median": statistics.median(cpus), "ok": True}


def _live_segment(ledger: Any, run_dir: Path) -> Path:
    """Make the last trial's job live again: a running segment that trains on."""
    exp = ledger.find_experiment()
    trial = ledger.trials(exp.id)[-1]
    latest = ledger.latest_segment(exp.id, trial.id)
    run_dir.mkdir(parents=True)
    with ledger.transaction():
        ledger.update_experiment(exp.id, state="active", ended=None)
        ledger.insert_segment(experiment=exp.id, trial=trial.id, index=latest.index + 1,
                              state="running", backend=exp.backend, job_name="bench-live",
                              job_id="bench-live", target_length=trial.length + 10**6,
                              start_length=trial.length, run_dir=str(run_dir),
                              started=time.time(), submitted=time.time())
    return run_dir / "metrics.jsonl"


def _append_training(path: Path, length: list[int], lines: int) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for _ in range(lines):
            length[0] += 1
            handle.write(json.dumps({"kind": "training", "length": length[0],
                                     "time": time.time(), "metrics": {"loss": 0.5}}) + "\n")


# -- the table ---------------------------------------------------------------------------

def table(results: list[dict[str, Any]]) -> str:
    lines = ["| command | min s | median s | CPU min s | CPU median s | peak MB | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in results:
        note = "" if row.get("ok", True) else f"FAILED: {row.get('error', '')!r}"
        if "size_mb" in row:
            note = (note + f" {row['size_mb']:.1f} MB").strip()
        if "lines_per_s" in row:
            note = (note + f" {row['lines_per_s']:.0f} lines/s").strip()
        lines.append(f"| {row['command']} | {_num(row.get('min'))} | {_num(row.get('median'))}"
                     f" | {_num(row.get('cpu_min'))} | {_num(row.get('cpu_median'))}"
                     f" | {_num(row.get('peak_mb'), 0)} | {note} |")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"
