#!/bin/sh
# cade launcher `torch` (the default): torch.distributed's env:// variables, then the entrypoint.
#
# Under srun (one launcher per task) or mpiexec/pbsdsh on PBS, it maps the task's variables to
# RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR (host of rank 0) and
# MASTER_PORT (from the job id; CADE_MASTER_PORT overrides) and execs the entrypoint.
# Outside a scheduler (the local backend) it starts CADE_NPROCS ranks on this machine.
# Workers should call dist.barrier() before dist.destroy_process_group(), so that no rank
# closes its connections while another still waits on them. Left alone, a rank that used Gloo
# can abort at exit with its work done ("terminate called without an active exception", exit
# status 134; cade_cli/rank_exit.py says why), and a failed rank fails the job. Importing cade's
# trial API (cade_cli.report) prevents that; a script that does not can call
# cade_cli.rank_exit.settle() last.
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
