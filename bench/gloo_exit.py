"""How often Gloo aborts a finished rank at exit, with and without cade's wait (rank_exit.py).

    python bench/gloo_exit.py [--runs 100] [--load 1]

Each run starts two ranks through launchers/torch.sh (the local backend's path) on a script
that trains a DistributedDataParallel model over Gloo, all-reduces once, meets at a barrier
and destroys the process group. The `plain` script then just ends; the `settled` one calls
cade_cli.rank_exit.settle() last, as `import cade_cli.report` has every rank do at exit.
Runs alternate the two, so machine noise hits both alike. `--load N` keeps N busy processes
running meanwhile: the abort needs a worker thread held off the CPU while the interpreter
finalises, which a loaded node makes likely. An abort is a run that fails with
"terminate called without an active exception"; any other failure is counted apart.
"""

from __future__ import annotations

import argparse
import importlib.resources
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LAUNCHERS = Path(str(importlib.resources.files("cade_cli.launchers")))
ABORT = "terminate called without an active exception"

SCRIPT = """
import torch, torch.distributed as dist
dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(64, 4); y = x.sum(1, keepdim=True)
for step in range(20):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x[rank::size]), y[rank::size]).backward()
    opt.step()
total = torch.tensor([float(rank + 1)]); dist.all_reduce(total)
dist.barrier()
dist.destroy_process_group()
"""
SETTLE = "from cade_cli import rank_exit; rank_exit.settle()\n"


def run_once(script: Path) -> str:
    """'ok', 'abort' or 'other' for one two-rank run."""
    # No CADE_MASTER_PORT: outside a scheduler the launcher picks a free port itself.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM", "PBS_", "CADE_MASTER_PORT"))}
    env.update(CADE_NPROCS="2", OMP_NUM_THREADS="1")
    done = subprocess.run(["sh", str(LAUNCHERS / "torch.sh"), sys.executable, str(script)],
                          env=env, cwd=script.parent, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode == 0:
        return "ok"
    return "abort" if ABORT in done.stderr else "other"


def spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs of each script")
    parser.add_argument("--load", type=int, default=1, help="busy processes meanwhile")
    args = parser.parse_args()
    counts = {name: {"ok": 0, "abort": 0, "other": 0} for name in ("plain", "settled")}
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    for spinner in spinners:
        spinner.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scripts = {"plain": Path(tmp) / "plain.py", "settled": Path(tmp) / "settled.py"}
            scripts["plain"].write_text(SCRIPT)
            scripts["settled"].write_text(SCRIPT + SETTLE)
            for run in range(args.runs):
                order = ("plain", "settled") if run % 2 == 0 else ("settled", "plain")
                for name in order:
                    counts[name][run_once(scripts[name])] += 1
    finally:
        for spinner in spinners:
            spinner.terminate()
    print(f"two-rank Gloo runs through launchers/torch.sh, {args.load} busy process(es)\n")
    print("| script | runs | aborted at exit | other failures |")
    print("|---|---:|---:|---:|")
    for name, count in counts.items():
        print(f"| {name} | {args.runs} | {count['abort']} | {count['other']} |")
    return 0 if counts["settled"]["abort"] == 0 and counts["settled"]["other"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
