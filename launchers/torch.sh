#!/bin/sh
# cade launcher `torch` (the default): torch.distributed's env:// variables, then the entrypoint.
#
# Under srun (one launcher per task) or mpiexec/pbsdsh on PBS, it maps the task's variables to
# RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR (host of rank 0) and
# MASTER_PORT (from the job id; CADE_MASTER_PORT overrides) and execs the entrypoint.
# Outside a scheduler (the local backend) it starts CADE_NPROCS ranks on this machine.
# Workers should call dist.barrier() before dist.destroy_process_group() and drop their
# DistributedDataParallel models first (the group then goes while Python is whole). Gloo can
# still abort a finished rank at exit now and then (1 in 25-40 two-rank runs on a loaded
# machine): a failed rank fails the job, and the trial resumes from its checkpoint.
set -u
. "$(dirname -- "$0")/common.sh"
[ "$#" -gt 0 ] || cade_fail "no entrypoint given"
cade_pick_python "$1"

mode=$("$CADE_PY" "$CADE_LAUNCH_DIR/cade_env.py" mode) || cade_fail "cannot run $CADE_PY"
if [ "$mode" = local ]; then
    nprocs=$(cade_local_nprocs) || exit 5
    exec "$CADE_PY" "$CADE_LAUNCH_DIR/cade_spawn.py" torch "$nprocs" -- "$@"
fi
cade_export_rank_variables torch
exec "$@"
