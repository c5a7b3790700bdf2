#!/bin/sh
# cade launcher `horovod`: Horovod over Gloo, started by environment variables only.
#
# Fails fast (exit 5) unless the entrypoint's python can import horovod.torch. Under srun or
# mpiexec/pbsdsh it maps the task's variables to the full HOROVOD_* set (rank, size, local and
# cross ranks, a unique HOROVOD_HOSTNAME per node, HOROVOD_CONTROLLER=gloo and
# HOROVOD_CPU_OPERATIONS=gloo). Rank 0 serves the Gloo rendezvous on its host (port: job id
# based, CADE_RENDEZVOUS_PORT overrides); the other ranks wait for it, because Horovod itself
# retries for only 1.5 s. Outside a scheduler it starts CADE_NPROCS ranks on this machine.
set -u
. "$(dirname -- "$0")/common.sh"
[ "$#" -gt 0 ] || cade_fail "no entrypoint given"
cade_pick_python "$1"

if ! __cade_import_error=$("$CADE_PY" -c "import horovod.torch" 2>&1); then
    echo "cade launcher: launcher 'horovod' needs Horovod with its PyTorch extension," \
        "but $CADE_PY cannot import horovod.torch:" >&2
    printf '%s\n' "$__cade_import_error" | tail -n 2 >&2
    echo "hint: build Horovod 0.28.1 for this torch (cade's scripts/install-horovod.sh shows how)," \
        "set CADE_PYTHON to an interpreter that has it, or use launcher: torch" >&2
    exit 5
fi

mode=$("$CADE_PY" "$CADE_LAUNCH_DIR/cade_env.py" mode) || cade_fail "cannot run $CADE_PY"
if [ "$mode" = local ]; then
    nprocs=$(cade_local_nprocs) || exit 5
    exec "$CADE_PY" "$CADE_LAUNCH_DIR/cade_spawn.py" horovod "$nprocs" -- "$@"
fi
cade_export_rank_variables horovod
if [ -n "${HOROVOD_GLOO_RENDEZVOUS_PORT:-}" ]; then
    if [ "$HOROVOD_RANK" = 0 ]; then
        # Returns once the server listens; it serves until this process (the entrypoint
        # after exec) is gone.
        "$CADE_PY" "$CADE_LAUNCH_DIR/cade_rendezvous.py" "$HOROVOD_GLOO_RENDEZVOUS_PORT" $$ ||
            exit 5
    else
        "$CADE_PY" "$CADE_LAUNCH_DIR/cade_env.py" wait-port "$HOROVOD_GLOO_RENDEZVOUS_ADDR" \
            "$HOROVOD_GLOO_RENDEZVOUS_PORT" "${CADE_RENDEZVOUS_TIMEOUT:-120}" || exit 5
    fi
fi
exec "$@"
