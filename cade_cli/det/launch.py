"""Start this node's workers of a Core API script, with the rank variables torch expects.

    python -m cade_cli.det.launch [--nproc-per-node N] [--] COMMAND [ARGS...]

For scripts (or entrypoints) that start their own workers from the cluster info, as
Determined's `determined.launch.torch_distributed` does: one launcher per node (cade's
launcher `none`), N workers each (default: len(info.slot_ids)). Every worker gets RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK/NODE_RANK, MASTER_ADDR (the first
container address) and MASTER_PORT; `determined.core.init()` in the workers finds its ranks
there. SIGUSR1, SIGTERM and SIGINT are passed on to every worker. The exit status is the
first failed worker's, else 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from cade_cli.det._info import container_addrs, container_rank, slot_ids

FORWARDED = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def worker_environment(env: Mapping[str, str], local_rank: int, nproc: int,
                       port: int) -> dict[str, str]:
    hosts, node = container_addrs(env), container_rank(env)
    variables = {k: v for k, v in env.items() if not k.startswith(("SLURM_PROCID", "HOROVOD_"))}
    variables.update(
        RANK=str(node * nproc + local_rank), WORLD_SIZE=str(len(hosts) * nproc),
        LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK=str(node),
        NODE_RANK=str(node), MASTER_ADDR=hosts[0], MASTER_PORT=str(port),
    )
    return variables


def master_port(env: Mapping[str, str]) -> int:
    """The same port on every node: the launcher's, else one from the job id, else a free one
    (a single node needs no agreement)."""
    if env.get("MASTER_PORT"):
        return int(env["MASTER_PORT"])
    job_id = env.get("SLURM_JOB_ID") or env.get("PBS_JOBID")
    if job_id:
        from cade_cli.launchers import cade_env

        return int(cade_env.master_port(env, job_id))
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def start_workers(command: list[str], nproc: int) -> int:
    program = shutil.which(command[0])
    if program is None:
        print(f"cade: {command[0]!r} not found on PATH", file=sys.stderr)
        return 5
    port = master_port(os.environ)
    pids = [os.posix_spawn(program, command, worker_environment(os.environ, i, nproc, port))
            for i in range(nproc)]

    def forward(signum: int, _frame: Any) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    status = 0
    for pid in pids:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code != 0 and status == 0:
            status = 128 - code if code < 0 else code
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cade_cli.det.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=None)
    parser.add_argument("--trust", action="store_true", help="accepted for Determined's sake")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to start")
    gpus = [g for g in (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",") if g.strip()]
    nproc = args.nproc_per_node or len(slot_ids(os.environ, gpus))
    return start_workers(command, nproc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
