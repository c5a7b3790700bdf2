"""Packing on whole nodes: one trial per job against several trials per job, on the test Slurm.

    python bench/packing.py [--trials 16] [--unit-seconds 0.25] [--slots-per-node 4]

Runs the same ASHA search of the synthetic trainer (examples/synthetic/train.py, 1-slot
trials, `cpus_per_slot` = node CPUs / slots per node) twice through `cade submit` on the
test Slurm, every job allocated a whole node (`sbatch --exclusive`):

* one trial per job: each segment is its own exclusive job and holds a node alone;
* packed: `packing.slots_per_job` = slots per node, each pack job holds a node and runs that
  many trials side by side, taking queued segments while it lives.

Busy slot-seconds: each segment from its `started` marker to its `exit_code` marker (the
segment's script writes both), times its slots. Allocated slot-seconds: each Slurm job from
its start to its end (Slurm's job completion log, `sacct -c`), times the slots of a node.
Makespan: from `cade submit` to its return. Prints a markdown table and the command line.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cade_cli.store.ledger import Ledger
from cade_cli.store.records import SegmentRecord

NODE_CPUS = 8


def spec_text(args: argparse.Namespace, packed: bool, extra: str = "") -> str:
    """The search's spec; `extra` adds top-level keys (another bench's mode)."""
    cpus = NODE_CPUS // args.slots_per_node
    packing = (f"packing: {{slots_per_job: {args.slots_per_node}, idle_timeout: {args.idle}}}"
               if packed else "")
    return f"""
name: {'packed' if packed else 'one-per-job'}
entrypoint: ["{sys.executable}", "{ROOT / 'examples' / 'synthetic' / 'train.py'}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64, 128]}}
searcher:
  name: async_halving
  metric: loss
  max_trials: {args.trials}
  num_rungs: 3
  divisor: 2
  max_length: {args.max_length}
  max_concurrent_trials: {args.trials}
resources:
  launcher: none
  cpus_per_slot: {cpus}
  time: 30
slurm:
  sbatch_args: ["--exclusive"]
{packing}
{extra}
reproducibility:
  experiment_seed: 11
"""


@dataclass
class Search:
    """One finished `cade submit`: when it began, how long it took, what it ran."""
    began: float
    makespan: float
    segments: list[SegmentRecord]
    pack_job_ids: list[str]
    experiment: int = 1


def submit_search(args: argparse.Namespace, spec: str, workdir: Path) -> Search:
    """`cade submit` of SPEC in WORKDIR (a ledger of its own) on the test Slurm."""
    workdir.mkdir(parents=True)
    (workdir / "spec.yaml").write_text(spec)
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "cade_cli", "submit", "spec.yaml"],
                          cwd=workdir, env=cade_env(args, workdir), capture_output=True,
                          text=True, check=False)
    makespan = time.time() - began
    if done.returncode != 0:
        raise SubmitFailed(done.returncode, done.stderr[-2000:])
    ledger = Ledger(workdir / "ledger.db", create=False)
    segments = ledger.segments(1)
    root = Path(ledger.experiment(1).root)
    ledger.close()
    packs = [p.read_text().strip() for p in (root / "packs" / "jobs").glob("*/job_id")]
    return Search(began, makespan, segments, packs)


def cade_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """The environment of a `cade` command of the bench's experiment in WORKDIR."""
    return dict(os.environ, CADE_LEDGER=str(workdir / "ledger.db"), CADE_CONFIG=os.devnull,
                CADE_POLL_INTERVAL=str(args.poll), CADE_SCHEDULER="slurm",
                SYNTH_STEP_SECONDS=str(args.unit_seconds),
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


class SubmitFailed(Exception):
    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"cade submit exited {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


def run(args: argparse.Namespace, packed: bool, workdir: Path) -> dict[str, float]:
    try:
        search = submit_search(args, spec_text(args, packed), workdir)
    except SubmitFailed as failed:
        raise SystemExit(str(failed)) from None
    busy = sum(_busy(Path(s.run_dir)) for s in search.segments if s.run_dir)
    if packed:
        job_ids = search.pack_job_ids
    else:
        job_ids = [s.job_id for s in search.segments if s.job_id]
    allocated = sum(_job_seconds(job_ids)) * args.slots_per_node
    return {"makespan": search.makespan, "busy": busy, "allocated": allocated,
            "jobs": len(job_ids), "segments": len(search.segments),
            "utilisation": busy / allocated if allocated else 0.0}


def _busy(run_dir: Path) -> float:
    span = segment_span(run_dir)
    return max(0.0, span[1] - span[0]) if span else 0.0


def segment_span(run_dir: Path) -> tuple[float, float] | None:
    """When a segment's script started and ended (its `started` and `exit_code` markers)."""
    try:
        start = float((run_dir / "started").read_text().split()[0])
        end = (run_dir / "exit_code").stat().st_mtime
    except (OSError, ValueError, IndexError):
        return None
    return start, end


def _job_seconds(job_ids: list[str]) -> list[float]:
    """Run time of each finished job from Slurm's completion log (jobs that never ran: 0)."""
    if not job_ids:
        return []
    for _ in range(30):   # the completion log is written as the job ends
        done = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobID,Start,End",
                               "-j", ",".join(job_ids)], capture_output=True, text=True,
                              check=False)
        rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 2]
        if len({r[0] for r in rows}) >= len(job_ids):
            break
        time.sleep(1)
    seconds = {}
    for job_id, start, end in rows:
        if start not in ("", "Unknown", "None") and end not in ("", "Unknown", "None"):
            seconds[job_id] = (_time(end) - _time(start))
    return list(seconds.values())


def _time(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def search_parser(description: str) -> argparse.ArgumentParser:
    """The search's options, shared with bench/busy_queue.py (it runs the same search)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=16)
    parser.add_argument("--unit-seconds", type=float, default=0.25)
    parser.add_argument("--slots-per-node", type=int, default=4)
    parser.add_argument("--idle", type=int, default=10, help="packing.idle_timeout")
    parser.add_argument("--poll", type=float, default=0.5)
    return parser


def main() -> None:
    args = search_parser(__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="cade-bench-packing-") as tmp:
        results = {name: run(args, name == "packed", Path(tmp) / name)
                   for name in ("one trial per job", "packed")}
    print(f"`python bench/packing.py {shlex.join(sys.argv[1:])}`\n")
    print("| | jobs | segments | busy slot-s | allocated slot-s | busy / allocated | makespan s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['jobs']} | {r['segments']} | {r['busy']:.0f} | "
              f"{r['allocated']:.0f} | {100 * r['utilisation']:.0f} % | {r['makespan']:.0f} |")


if __name__ == "__main__":
    main()
