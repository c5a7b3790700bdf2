"""Real 2-rank data-parallel runs on this machine through the launchers.

torch.distributed (Gloo) always runs; the Horovod runs are marked `horovod` and skip only when
Horovod is not installed (scripts/install-horovod.sh builds it). Each rank writes a JSON file
with what it saw; the test compares the ranks.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netcheck import free_port

LAUNCHERS = Path(str(importlib.resources.files("cade_cli.launchers")))
HAVE_HOROVOD = importlib.util.find_spec("horovod") is not None
needs_horovod = pytest.mark.skipif(not HAVE_HOROVOD, reason="Horovod is not installed")

# A tiny regression, data sharded by rank, rank-dependent initial weights (so the initial
# broadcast matters). Afterwards every rank must hold identical parameters.
TORCH_TRAIN = """
import json, os, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
torch.manual_seed(100 + rank)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
gen = torch.Generator().manual_seed(7)
x = torch.randn(64, 4, generator=gen); y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
for step in range(20):
    xs, ys = x[rank::size], y[rank::size]
    opt.zero_grad(); loss = torch.nn.functional.mse_loss(model(xs), ys); loss.backward(); opt.step()
total = torch.tensor([float(rank + 1)]); dist.all_reduce(total)
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
json.dump({"rank": rank, "size": size, "local_rank": int(os.environ["LOCAL_RANK"]),
           "sum": total.item(), "params": flat.tolist(), "loss": loss.item()},
          open(f"rank{rank}.json", "w"))
dist.barrier()
dist.destroy_process_group()
from cade_cli import rank_exit; rank_exit.settle()   # as launchers/torch.sh asks
"""

HOROVOD_TRAIN = """
import json, torch, horovod.torch as hvd
hvd.init()
rank, size = hvd.rank(), hvd.size()
torch.manual_seed(100 + rank)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
hvd.broadcast_parameters(model.state_dict(), root_rank=0)
hvd.broadcast_optimizer_state(opt, root_rank=0)
opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters())
gen = torch.Generator().manual_seed(7)
x = torch.randn(64, 4, generator=gen); y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
for step in range(20):
    xs, ys = x[rank::size], y[rank::size]
    opt.zero_grad(); loss = torch.nn.functional.mse_loss(model(xs), ys); loss.backward(); opt.step()
total = hvd.allreduce(torch.tensor([float(rank + 1)]), op=hvd.Sum)
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
json.dump({"rank": rank, "size": size, "local_rank": hvd.local_rank(),
           "local_size": hvd.local_size(), "cross_size": hvd.cross_size(),
           "sum": total.item(), "params": flat.tolist(), "loss": loss.item()},
          open(f"rank{rank}.json", "w"))
hvd.shutdown()
"""


def write_script(directory: Path, text: str) -> Path:
    script = directory / "train.py"
    script.write_text(text)
    return script


def launch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM", "PBS_", "PMI_", "OMPI_", "HOROVOD_"))}
    env.update(extra, OMP_NUM_THREADS="1")
    return env


def read_ranks(directory: Path, size: int) -> list[dict[str, Any]]:
    return [json.loads((directory / f"rank{rank}.json").read_text()) for rank in range(size)]


def assert_trained_together(ranks: list[dict[str, Any]]) -> None:
    size = len(ranks)
    assert [r["rank"] for r in ranks] == list(range(size))
    assert all(r["size"] == size for r in ranks)
    assert all(r["sum"] == size * (size + 1) / 2 for r in ranks)  # allreduce of rank + 1
    assert all(r["params"] == ranks[0]["params"] for r in ranks)  # bit-identical parameters
    assert all(r["loss"] < 1.0 for r in ranks)                     # and they did learn


def run_local(launcher: str, tmp_path: Path, script_text: str) -> None:
    script = write_script(tmp_path, script_text)
    result = subprocess.run(["sh", str(LAUNCHERS / launcher), sys.executable, str(script)],
                            cwd=tmp_path, env=launch_env(CADE_NPROCS="2"),
                            check=False, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def run_emulated_slurm(launcher: str, tmp_path: Path, script_text: str, **ports: str) -> None:
    """Two tasks as srun would start them on two nodes (node1, node2), one launcher each."""
    script = write_script(tmp_path, script_text)
    job = dict(SLURM_JOB_ID="777", SLURM_NTASKS="2", SLURM_NNODES="2",
               SLURM_TASKS_PER_NODE="1(x2)", SLURM_JOB_NODELIST="localhost,127.0.0.1", **ports)
    tasks = [subprocess.Popen(
        ["sh", str(LAUNCHERS / launcher), sys.executable, str(script)], cwd=tmp_path,
        env=launch_env(**job, SLURM_PROCID=str(rank), SLURM_LOCALID="0", SLURM_NODEID=str(rank),
                       SLURMD_NODENAME=f"node{rank + 1}"),
        stderr=subprocess.PIPE, text=True) for rank in (1, 0)]  # rank 1 first: it must wait
    try:
        outcomes = [(task.wait(timeout=240), task.stderr.read() if task.stderr else "")
                    for task in tasks]
    finally:
        for task in tasks:
            task.kill()
            task.wait()
    assert all(code == 0 for code, _ in outcomes), outcomes


def test_torch_distributed_two_local_ranks(tmp_path: Path) -> None:
    run_local("torch.sh", tmp_path, TORCH_TRAIN)
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert [r["local_rank"] for r in ranks] == [0, 1]


def test_torch_distributed_two_emulated_slurm_nodes(tmp_path: Path) -> None:
    run_emulated_slurm("torch.sh", tmp_path, TORCH_TRAIN, CADE_MASTER_PORT=str(free_port()))
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert [r["local_rank"] for r in ranks] == [0, 0]


@pytest.mark.horovod
@needs_horovod
def test_horovod_two_local_ranks(tmp_path: Path) -> None:
    run_local("horovod.sh", tmp_path, HOROVOD_TRAIN)
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert [(r["local_rank"], r["local_size"]) for r in ranks] == [(0, 2), (1, 2)]


@pytest.mark.horovod
@needs_horovod
def test_horovod_two_emulated_slurm_nodes_with_rank0_rendezvous(tmp_path: Path) -> None:
    run_emulated_slurm("horovod.sh", tmp_path, HOROVOD_TRAIN,
                       CADE_RENDEZVOUS_PORT=str(free_port()))
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert [(r["local_size"], r["cross_size"]) for r in ranks] == [(1, 2), (1, 2)]


def slurm_cluster_problem() -> str | None:
    if shutil.which("srun") is None:
        return "srun is not on PATH (run scripts/slurm-up.sh)"
    try:
        probe = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"sinfo failed: {error}"
    return None if probe.returncode == 0 else f"sinfo failed: {probe.stderr.strip()}"


@pytest.fixture
def real_slurm() -> None:
    problem = slurm_cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the test Slurm cluster: {problem}")
    pytest.skip(problem)


def run_srun(launcher: str, tmp_path: Path, script_text: str) -> None:
    """srun on two nodes, one task each: the launcher runs once per task, as in a job."""
    script = write_script(tmp_path, script_text)
    shutil.copytree(LAUNCHERS, tmp_path / "launch", ignore=shutil.ignore_patterns("__*"))
    result = subprocess.run(
        ["srun", "--nodes=2", "--ntasks-per-node=1", "--time=5", "--kill-on-bad-exit=1",
         "--job-name=cade-launcher-test", "sh", f"launch/{launcher}", sys.executable,
         str(script)],
        check=False, cwd=tmp_path, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slurm
def test_torch_distributed_under_real_srun(real_slurm: None, tmp_path: Path) -> None:
    run_srun("torch.sh", tmp_path, TORCH_TRAIN)
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert ranks[0]["params"] == ranks[1]["params"] and ranks[0]["loss"] < 1.0


@pytest.mark.slurm
@pytest.mark.horovod
@needs_horovod
def test_horovod_under_real_srun(real_slurm: None, tmp_path: Path) -> None:
    run_srun("horovod.sh", tmp_path, HOROVOD_TRAIN)
    ranks = read_ranks(tmp_path, 2)
    assert_trained_together(ranks)
    assert [(r["local_size"], r["cross_size"]) for r in ranks] == [(1, 2), (1, 2)]


def test_horovod_launcher_fails_fast_without_horovod(tmp_path: Path) -> None:
    # An interpreter that cannot see site-packages stands for a python without Horovod.
    bare = tmp_path / "python3"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    result = subprocess.run(["sh", str(LAUNCHERS / "horovod.sh"), str(bare), "-c", "print(1)"],
                            cwd=tmp_path, env=launch_env(CADE_NPROCS="2"),
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 5
    assert "cannot import horovod.torch" in result.stderr
    assert "No module named 'horovod'" in result.stderr
    assert "launcher: torch" in result.stderr
    assert result.stdout == ""
