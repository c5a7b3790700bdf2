"""A busy cluster: one job per trial against packed against job arrays, on the test Slurm.

    python bench/busy_queue.py [--trials 16] [--busy-seconds 20] [--busy-depth 8]
                               [--modes one-per-job,packed,arrays]

While it runs, another user (`cadebusy`, a system user made here if absent) keeps the queue
filled: `--busy-depth` of its whole-node sleep jobs (`--busy-seconds` each, +-50 %) always
pending, so every job cade submits waits behind them. Slurm here schedules in submission
order, so a new job waits about depth x seconds / 4 nodes. The same ASHA search as
bench/packing.py (1-slot trials on exclusive 4-slot nodes) then runs once per mode:

* one-per-job: every trial segment its own job;
* packed: `packing.slots_per_job` = slots per node;
* arrays: `job_arrays: true` (first segments as one `sbatch --array`); where the installed
  cade refuses that key the mode reports "not available".

For each mode: the median queue wait of cade's jobs (Slurm's submit and start times), the
time from `cade submit` to the first trial trained to `max_length` (its last segment's
`exit_code` marker), the makespan (`cade submit` to its return) and the jobs submitted.
Every job of the busy user is canceled at the end, also on Ctrl-C or SIGTERM; an experiment
cut short is canceled with `cade cancel`. The nodes are shared with every other user of the
test cluster, whose jobs wait behind the busy ones too while this runs.
"""

from __future__ import annotations

import argparse
import datetime
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packing import (
    Search,
    SubmitFailed,
    cade_env,
    search_parser,
    segment_span,
    spec_text,
    submit_search,
)

from cade_cli.backends.packed import PREFIX as PREFIX_PACK

BUSY_USER = "cadebusy"
BUSY_NAME = "cade-bench-busy"
MODES = ("one-per-job", "packed", "arrays")
BASELINE = MODES[0]
ARRAYS_KEY = "job_arrays: true"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = search_parser(__doc__.splitlines()[0])
    parser.add_argument("--busy-seconds", type=float, default=20.0,
                        help="mean run time of a busy job")
    parser.add_argument("--busy-depth", type=int, default=8,
                        help="busy jobs kept pending ahead of cade's")
    parser.add_argument("--modes", type=_modes, default=list(MODES),
                        help="comma-separated, of " + ", ".join(MODES))
    args = parser.parse_args(argv)
    if args.busy_depth < 1 or args.busy_seconds <= 0:
        parser.error("--busy-depth and --busy-seconds must be positive")
    return args


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode {', '.join(unknown) or '(none)'}; "
                                         f"expected some of {', '.join(MODES)}")
    return modes


@dataclass
class Result:
    mode: str
    waits: list[float]            # queue wait of each of cade's jobs, seconds
    first_full: float | None      # cade submit -> first trial trained to max_length
    makespan: float
    jobs: int                     # scheduler jobs (an array's elements each count)
    submissions: int              # sbatch calls
    unavailable: str = ""         # why the mode could not run


def median_wait(waits: list[float]) -> float | None:
    return statistics.median(waits) if waits else None


def queue_waits(times: dict[str, tuple[float, float]]) -> list[float]:
    """Start minus submit of each job that started."""
    return [max(0.0, start - submit) for submit, start in times.values()]


def parse_scontrol_jobs(text: str) -> dict[str, tuple[float, float]]:
    """`scontrol -o show job` lines -> {job id: (submit, start)} of the jobs that started.

    An array element is keyed both by its own job id and by ARRAYJOB_TASK, as cade may
    record either."""
    times = {}
    for line in text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        submit, start = fields.get("SubmitTime", ""), fields.get("StartTime", "")
        if not _is_time(submit) or not _is_time(start) or fields.get("JobState") == "PENDING":
            continue
        pair = (_time(submit), _time(start))
        times[fields["JobId"]] = pair
        if fields.get("ArrayTaskId", "").isdigit():
            times[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = pair
    return times


def _is_time(text: str) -> bool:
    return text not in ("", "Unknown", "None", "N/A")


def _time(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def job_times(job_ids: set[str]) -> dict[str, tuple[float, float]]:
    """Submit and start of JOB_IDS: the controller's memory (finished jobs stay MinJobAge),
    then Slurm's job completion log for the ones it has forgotten."""
    shown = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True,
                           check=False).stdout
    known = parse_scontrol_jobs(shown)
    times = {j: known[j] for j in job_ids if j in known}
    missing = [j for j in job_ids if j not in times and "_" not in j]
    if missing:
        done = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobID,Submit,Start",
                               "-j", ",".join(missing)], capture_output=True, text=True,
                              check=False)
        for row in done.stdout.splitlines():
            job_id, submit, start = (row.split("|") + ["", ""])[:3]
            if job_id in missing and _is_time(submit) and _is_time(start):
                times[job_id] = (_time(submit), _time(start))
    return times


def first_full(search: Search, max_length: int) -> float | None:
    """Seconds from `cade submit` to the first segment that trained a trial to MAX_LENGTH."""
    ends = []
    for seg in search.segments:
        span = segment_span(Path(seg.run_dir)) if seg.run_dir else None
        if seg.target_length >= max_length and seg.state == "completed" and span:
            ends.append(span[1])
    return min(ends) - search.began if ends else None


def cade_job_ids(search: Search) -> set[str]:
    """The scheduler jobs of a search: its segments' own jobs and its pack jobs."""
    own = {s.job_id for s in search.segments if s.job_id and not s.job_id.startswith(PREFIX_PACK)}
    return own | set(search.pack_job_ids)


def measure(args: argparse.Namespace, mode: str, workdir: Path) -> Result:
    extra = ARRAYS_KEY if mode == "arrays" else ""
    spec = spec_text(args, packed=mode == "packed", extra=extra)
    try:
        search = submit_search(args, spec, workdir)
    except SubmitFailed as failed:
        if mode == "arrays" and failed.returncode == 2 and "job_arrays" in failed.stderr:
            return Result(mode, [], None, 0.0, 0, 0, unavailable=refusal(failed.stderr))
        raise
    ids = cade_job_ids(search)
    return Result(mode, queue_waits(job_times(ids)), first_full(search, args.max_length),
                  search.makespan, len(ids), len({i.split("_")[0] for i in ids}))


def refusal(stderr: str) -> str:
    """The located spec error that refused `job_arrays`, without the list of known keys."""
    line = next(line for line in stderr.splitlines() if "job_arrays" in line)
    return line.removeprefix("Error: ").split(";")[0].strip()


def format_table(results: list[Result], command: str) -> str:
    base = next((r for r in results if r.mode == BASELINE and not r.unavailable), None)
    lines = [f"`{command}`", "",
             ("| mode | median queue wait s (jobs) | first fully trained s | makespan s "
             "| jobs (sbatch calls) | first / one-per-job | makespan / one-per-job |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.unavailable:
            lines.append(f"| {r.mode} | not available: {r.unavailable} | | | | | |")
            continue
        wait = median_wait(r.waits)
        lines.append(
            f"| {r.mode} | {_num(wait)} ({len(r.waits)}) | {_num(r.first_full)} "
            f"| {r.makespan:.0f} | {r.jobs} ({r.submissions}) "
            f"| {_ratio(r.first_full, base.first_full if base else None)} "
            f"| {_ratio(r.makespan, base.makespan if base else None)} |")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(value: float | None, baseline: float | None) -> str:
    return "-" if value is None or not baseline else f"{value / baseline:.2f}"


class BusyFeeder:
    """Keeps DEPTH whole-node sleep jobs of the busy user pending, in a background thread."""

    def __init__(self, seconds: float, depth: int) -> None:
        self.seconds, self.depth = seconds, depth
        self.user = BUSY_USER
        self.rng = random.Random(7)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        subprocess.run(f"getent passwd {BUSY_USER} >/dev/null || useradd -r -M {BUSY_USER}",
                       shell=True, check=False)
        if not self._submit():
            print(f"note: {BUSY_USER} cannot submit; busy jobs are root's, named {BUSY_NAME}",
                  file=sys.stderr)
            self.user = "root"
            if not self._submit():
                raise SystemExit("sbatch of a busy job failed")
        self.thread.start()
        deadline = time.time() + 60
        while self._count("PD") < self.depth and time.time() < deadline:
            time.sleep(1)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        subprocess.run(["scancel", "-u", self.user, "-n", BUSY_NAME], check=False)

    def _loop(self) -> None:
        while not self.stopping.wait(1.0):
            for _ in range(self.depth - self._count("PD")):
                self._submit()

    def _count(self, state: str) -> int:
        shown = subprocess.run(["squeue", "-h", "-u", self.user, "-n", BUSY_NAME, "-t", state,
                                "-o", "%i"], capture_output=True, text=True, check=False)
        return len(shown.stdout.split())

    def _submit(self) -> bool:
        seconds = round(self.seconds * self.rng.uniform(0.5, 1.5))
        sbatch = ["sbatch", "-J", BUSY_NAME, "--exclusive", "-N1", "--chdir=/tmp",
                  "-o", "/dev/null", "-e", "/dev/null", "-t", str(int(seconds // 60) + 2),
                  "--wrap", f"sleep {seconds}"]
        argv = sbatch if self.user == "root" else [
            "su", self.user, "-s", "/bin/sh", "-c", shlex.join(sbatch)]
        return subprocess.run(argv, capture_output=True, check=False, cwd="/tmp").returncode == 0


def _cancel_unfinished(args: argparse.Namespace, workdir: Path) -> None:
    """An experiment cut short by Ctrl-C keeps its jobs (cade's rule): cancel them here."""
    if (workdir / "ledger.db").exists():
        subprocess.run([sys.executable, "-m", "cade_cli", "cancel", "1"], cwd=workdir,
                       env=cade_env(args, workdir), capture_output=True, check=False)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    feeder = BusyFeeder(args.busy_seconds, args.busy_depth)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cade-bench-busy-") as tmp:
        workdir = Path(tmp)
        try:
            feeder.start()
            for mode in args.modes:
                workdir = Path(tmp) / mode
                results.append(measure(args, mode, workdir))
                print(f"{mode}: done", file=sys.stderr)
            workdir = Path(tmp) / "none"
        finally:
            _cancel_unfinished(args, workdir)
            feeder.stop()
    print(format_table(results, shlex.join(["python", "bench/busy_queue.py", *argv])))


if __name__ == "__main__":
    main(sys.argv[1:])
