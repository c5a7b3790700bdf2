# Sourced by the cade launchers (torch.sh, horovod.sh): shared helpers. POSIX sh.

# The directory holding the launchers and their Python helpers (the run's launch/ folder).
CADE_LAUNCH_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

cade_fail() {
    echo "cade launcher: $*" >&2
    exit 5
}

# Picks the python that runs the helpers: the entrypoint's own interpreter when the
# entrypoint is one (Horovod must be importable by that interpreter), else $CADE_PYTHON,
# else python3 or python from PATH. Sets CADE_PY.
cade_pick_python() {
    case "${1##*/}" in
        python | python[0-9]*) CADE_PY=$1 ;;
        *) CADE_PY=${CADE_PYTHON:-} ;;
    esac
    if [ -z "$CADE_PY" ]; then
        CADE_PY=$(command -v python3 || command -v python) ||
            cade_fail "no python3 on PATH (set CADE_PYTHON to an interpreter)"
    fi
    command -v "$CADE_PY" >/dev/null 2>&1 || cade_fail "python interpreter '$CADE_PY' not found"
}

# Prints the number of ranks the local backend asked for (CADE_NPROCS, default 1).
cade_local_nprocs() {
    case "${CADE_NPROCS:-1}" in
        '' | *[!0-9]* | 0) cade_fail "CADE_NPROCS='${CADE_NPROCS:-}' is not a positive whole number" ;;
    esac
    echo "${CADE_NPROCS:-1}"
}

# Evaluates the export lines `cade_env.py exports KIND` prints for this rank.
cade_export_rank_variables() {
    __cade_exports=$("$CADE_PY" "$CADE_LAUNCH_DIR/cade_env.py" exports "$1") || exit 5
    eval "$__cade_exports"
    unset __cade_exports
}
