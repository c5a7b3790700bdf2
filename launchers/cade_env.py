"""Where this rank sits: map a scheduler's per-task environment to torch/Horovod variables.

Standard library only: it runs on compute nodes, next to the launchers (launch/*.sh), with
whatever python3 the node has. The mapping functions are pure (environment in, variables
out); the command line prints `export NAME='value'` lines for a launcher to eval.

    cade_env.py mode                      slurm | pbs | local
    cade_env.py exports torch|horovod     the variables of this rank (Slurm or PBS task)
    cade_env.py wait-port HOST PORT SECS  wait until HOST:PORT accepts connections
    cade_env.py free-port                 a free TCP port on this host
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

LAUNCH_ERROR = 5          # cade's exit code for "a launcher cannot start"
PORT_BASE = 20000         # MASTER_PORT is in [20000, 25000): below Linux's ephemeral ports
PORT_SPAN = 5000
RENDEZVOUS_OFFSET = 5000  # Horovod's rendezvous port: MASTER_PORT + 5000, in [25000, 30000)
# Ports the ranks of a local launch listen on: MASTER_PORT (torch's store) or Horovod's
# rendezvous port, then the Determined shim's chief and node ports above it (one node:
# cade_cli/det/_distributed.py listens at that port + 1 and + 2).
LOCAL_PORTS = 3


class LaunchEnvError(Exception):
    """The environment does not say where this rank sits (a launcher exits 5 with it)."""


@dataclass(frozen=True)
class Placement:
    rank: int
    size: int
    local_rank: int
    local_size: int
    node_rank: int
    num_nodes: int
    cross_rank: int       # Horovod: this node's index among nodes with > local_rank tasks
    cross_size: int
    master_addr: str      # host of rank 0
    hostname: str         # unique name of this node
    job_id: str


def scheduler_mode(env: Mapping[str, str]) -> str:
    """`slurm` inside an srun task, `pbs` inside an mpiexec/pbsdsh task, else `local`."""
    if "SLURM_PROCID" in env:
        return "slurm"
    if ("PBS_NODEFILE" in env or "PBS_JOBID" in env) and _first(env, _PBS_RANK_VARIABLES):
        return "pbs"
    return "local"


# -- Slurm ----------------------------------------------------------------------------------

def expand_nodelist(nodelist: str) -> list[str]:
    """`node[1-2,5],gpu07` -> node1 node2 node5 gpu07 (zero padding kept, nested groups ok)."""
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_item(item))
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item for item in items if item]


def _expand_item(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if not match:
        return [item]
    head, tail = item[: match.start()], item[match.end():]
    expanded: list[str] = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        if not high:
            numbers = [low]
        else:
            width = len(low)
            numbers = [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
        for number in numbers:
            expanded.extend(_expand_item(head + number + tail))
    return expanded


def expand_tasks_per_node(text: str) -> list[int]:
    """Slurm's `2(x3),1` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise LaunchEnvError(f"cannot read a tasks-per-node list: {text!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def first_host(nodelist: str) -> str:
    """The first host of a compressed node list; `scontrol show hostnames` when available."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                                 text=True, timeout=30, check=False).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    hosts = expand_nodelist(nodelist)
    if not hosts:
        raise LaunchEnvError(f"empty Slurm node list {nodelist!r}")
    return hosts[0]


def slurm_placement(env: Mapping[str, str],
                    host_of_nodelist: Callable[[str], str] = first_host) -> Placement:
    rank = _int(env, "SLURM_PROCID")
    size = _int(env, "SLURM_NTASKS", "SLURM_NPROCS")
    local_rank = _int(env, "SLURM_LOCALID")
    node_rank = _int(env, "SLURM_NODEID")
    per_node = expand_tasks_per_node(_text(env, "SLURM_STEP_TASKS_PER_NODE",
                                           "SLURM_TASKS_PER_NODE"))
    if node_rank >= len(per_node):
        raise LaunchEnvError(f"SLURM_NODEID={node_rank} but the tasks-per-node list has "
                             f"{len(per_node)} nodes")
    cross_nodes = [index for index, count in enumerate(per_node) if count > local_rank]
    placement = Placement(
        rank=rank, size=size, local_rank=local_rank, local_size=per_node[node_rank],
        node_rank=node_rank, num_nodes=len(per_node),
        cross_rank=cross_nodes.index(node_rank) if node_rank in cross_nodes else 0,
        cross_size=len(cross_nodes),
        master_addr=host_of_nodelist(_text(env, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                                           "SLURM_NODELIST")),
        hostname=env.get("SLURMD_NODENAME") or socket.gethostname(),
        job_id=env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID", ""),
    )
    return _checked(placement)


# -- PBS ------------------------------------------------------------------------------------

# Rank variables set by the MPI launchers (Open MPI, MPICH/Hydra/Intel MPI, PMIx, Cray PALS)
# and by pbsdsh (Torque: the task's index in $PBS_NODEFILE).
_PBS_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "PALS_RANKID",
                       "PBS_VNODENUM")
_PBS_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PALS_SIZE")
_LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PALS_LOCAL_RANKID")
_LOCAL_SIZE_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PALS_LOCAL_SIZE")


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def pbs_placement(env: Mapping[str, str],
                  read_file: Callable[[str], str] = _read_text) -> Placement:
    """Ranks follow $PBS_NODEFILE's lines (one line per rank slot, as mpiexec/pbsdsh use it)."""
    nodefile = _text(env, "PBS_NODEFILE")
    try:
        hosts = [line.strip() for line in read_file(nodefile).splitlines() if line.strip()]
    except OSError as error:
        raise LaunchEnvError(f"cannot read PBS_NODEFILE {nodefile}: {error}") from None
    if not hosts:
        raise LaunchEnvError(f"PBS_NODEFILE {nodefile} lists no hosts")
    rank = _int(env, *_PBS_RANK_VARIABLES)
    size_var = _first(env, _PBS_SIZE_VARIABLES)
    size = _int(env, size_var) if size_var else int(env.get("CADE_NPROCS") or len(hosts))
    nodes = list(dict.fromkeys(hosts))
    if size == len(hosts):
        host = hosts[rank]
        local_rank, local_size = hosts[:rank].count(host), hosts.count(host)
    else:  # more or fewer ranks than nodefile lines: trust the MPI launcher's local variables
        host = _this_host(nodes, socket.gethostname())
        local_rank = _int(env, *_LOCAL_RANK_VARIABLES)
        local_size = _int(env, *_LOCAL_SIZE_VARIABLES)
    per_node = [hosts.count(node) for node in nodes]
    cross_nodes = [index for index, count in enumerate(per_node) if count > local_rank]
    node_rank = nodes.index(host)
    placement = Placement(
        rank=rank, size=size, local_rank=local_rank, local_size=local_size,
        node_rank=node_rank, num_nodes=len(nodes),
        cross_rank=cross_nodes.index(node_rank) if node_rank in cross_nodes else 0,
        cross_size=max(len(cross_nodes), 1),
        master_addr=hosts[0], hostname=host, job_id=env.get("PBS_JOBID", ""),
    )
    return _checked(placement)


def _this_host(nodes: list[str], hostname: str) -> str:
    short = hostname.split(".")[0]
    for node in nodes:
        if node == hostname or node.split(".")[0] == short:
            return node
    raise LaunchEnvError(f"this host ({hostname}) is not in PBS_NODEFILE ({', '.join(nodes)})")


# -- the variables --------------------------------------------------------------------------

def local_placement(rank: int, size: int) -> Placement:
    """All ranks on this machine (the local backend)."""
    return Placement(rank=rank, size=size, local_rank=rank, local_size=size, node_rank=0,
                     num_nodes=1, cross_rank=0, cross_size=1, master_addr="127.0.0.1",
                     hostname="localhost", job_id="")


def master_port(env: Mapping[str, str], job_id: str) -> int:
    """CADE_MASTER_PORT, else a port derived from the job id (equal on every rank)."""
    if env.get("CADE_MASTER_PORT"):
        return _port(env["CADE_MASTER_PORT"], "CADE_MASTER_PORT")
    digits = re.match(r"\d+", job_id)
    number = int(digits.group()) if digits else zlib.crc32(job_id.encode())
    return PORT_BASE + number % PORT_SPAN


def rendezvous_port(env: Mapping[str, str], job_id: str) -> int:
    if env.get("CADE_RENDEZVOUS_PORT"):
        return _port(env["CADE_RENDEZVOUS_PORT"], "CADE_RENDEZVOUS_PORT")
    port = master_port(env, job_id) + RENDEZVOUS_OFFSET
    return port if port <= 65535 else port - 2 * RENDEZVOUS_OFFSET


def torch_variables(p: Placement, port: int) -> dict[str, str]:
    return {
        "RANK": str(p.rank), "WORLD_SIZE": str(p.size), "LOCAL_RANK": str(p.local_rank),
        "LOCAL_WORLD_SIZE": str(p.local_size), "NODE_RANK": str(p.node_rank),
        "GROUP_RANK": str(p.node_rank), "MASTER_ADDR": p.master_addr, "MASTER_PORT": str(port),
    }


def horovod_variables(p: Placement, rendezvous_addr: str | None,
                      port: int | None) -> dict[str, str]:
    """HOROVOD_* for an env-var launch; `rendezvous_addr` None for a single rank."""
    variables = {
        "HOROVOD_RANK": str(p.rank), "HOROVOD_SIZE": str(p.size),
        "HOROVOD_LOCAL_RANK": str(p.local_rank), "HOROVOD_LOCAL_SIZE": str(p.local_size),
        "HOROVOD_CROSS_RANK": str(p.cross_rank), "HOROVOD_CROSS_SIZE": str(p.cross_size),
        # Unique per node, or ranks of different nodes share one "local" scope and hang.
        "HOROVOD_HOSTNAME": p.hostname,
        # Both, always: an MPI-enabled build without them runs N silent size-1 jobs.
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        # The generic names too, for code (and cade's report API) that asks RANK.
        "RANK": str(p.rank), "WORLD_SIZE": str(p.size), "LOCAL_RANK": str(p.local_rank),
        "LOCAL_WORLD_SIZE": str(p.local_size),
    }
    if rendezvous_addr is not None and port is not None:
        variables["HOROVOD_GLOO_RENDEZVOUS_ADDR"] = rendezvous_addr
        variables["HOROVOD_GLOO_RENDEZVOUS_PORT"] = str(port)
    return variables


def scheduler_variables(kind: str, env: Mapping[str, str]) -> dict[str, str]:
    """The variables of this Slurm/PBS task for launcher `kind` (torch | horovod)."""
    mode = scheduler_mode(env)
    if mode == "local":
        raise LaunchEnvError("not inside a Slurm or PBS task (no SLURM_PROCID, no MPI rank)")
    placement = slurm_placement(env) if mode == "slurm" else pbs_placement(env)
    if kind == "torch":
        return torch_variables(placement, master_port(env, placement.job_id))
    if kind == "horovod":
        if placement.size == 1:
            return horovod_variables(placement, None, None)
        return horovod_variables(placement, placement.master_addr,
                                 rendezvous_port(env, placement.job_id))
    raise LaunchEnvError(f"unknown launcher kind {kind!r} (torch or horovod)")


def format_exports(variables: Mapping[str, str]) -> str:
    return "".join(f"export {name}={_sh_quote(value)}\n" for name, value in variables.items())


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


# -- small helpers --------------------------------------------------------------------------

def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if env.get(name, "") != ""), None)


def _text(env: Mapping[str, str], *names: str) -> str:
    name = _first(env, names)
    if name is None:
        raise LaunchEnvError(f"{' or '.join(names)} is not set")
    return env[name]


def _int(env: Mapping[str, str], *names: str) -> int:
    text = _text(env, *names)
    try:
        return int(text.strip())
    except ValueError:
        raise LaunchEnvError(f"{_first(env, names)}={text!r} is not a whole number") from None


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise LaunchEnvError(f"{name}={text!r} must be a port number in 1024-65535")
    return int(text)


def _checked(p: Placement) -> Placement:
    if not (0 <= p.rank < p.size and 0 <= p.local_rank < p.local_size):
        raise LaunchEnvError(f"inconsistent ranks: rank {p.rank} of {p.size}, "
                             f"local rank {p.local_rank} of {p.local_size}")
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reserve_ports(count: int, attempts: int = 100) -> list[socket.socket]:
    """`count` consecutive ports held by the caller until it closes the sockets.

    Each is bound with SO_REUSEADDR and not listening: a rank that binds the port the same way
    (torch's store, Horovod's rendezvous, socket.create_server) can listen there, while no other
    bind() and no connect() picks it meanwhile. A port found free and released before the
    ranks bind it (or one next to it, never checked) can be taken in between: "already in use".
    """
    for _ in range(attempts):
        held = [_bound(0)]
        first = int(held[0].getsockname()[1])
        try:
            held += [_bound(first + offset) for offset in range(1, count)]
            return held
        except (OSError, OverflowError):
            for sock in held:
                sock.close()
    raise LaunchEnvError(f"found no {count} consecutive free ports in {attempts} tries")


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
    except BaseException:
        sock.close()
        raise
    return sock


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["mode"]:
            print(scheduler_mode(os.environ))
        elif argv[:1] == ["exports"] and len(argv) == 2:
            sys.stdout.write(format_exports(scheduler_variables(argv[1], os.environ)))
        elif argv[:1] == ["free-port"]:
            print(free_port())
        elif argv[:1] == ["wait-port"] and len(argv) == 4:
            if not wait_for_port(argv[1], int(argv[2]), float(argv[3])):
                raise LaunchEnvError(f"nothing listens on {argv[1]}:{argv[2]} after {argv[3]} s")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except LaunchEnvError as error:
        print(f"cade launcher: {error}", file=sys.stderr)
        return LAUNCH_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
