"""Stage 5: a script that starts its own workers from the cluster info.

One process per node (launcher `none`) reads the node list, its node's index and its slots
from det.get_cluster_info() and starts torch.distributed.run with them; the workers are the
unchanged 4_distributed.py.
"""

import socket
import subprocess
import sys

import determined as det

WORKERS_PER_NODE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    info = det.get_cluster_info()
    assert info is not None, "run this under cade"
    nproc = max(len(info.slot_ids), WORKERS_PER_NODE)
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={len(info.container_addrs)}", f"--node_rank={info.container_rank}",
        f"--nproc_per_node={nproc}", f"--master_addr={info.container_addrs[0]}",
        f"--master_port={free_port()}", "4_distributed.py",
    ]
    sys.exit(subprocess.call(command))
