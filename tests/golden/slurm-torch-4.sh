#!/bin/bash
#SBATCH --job-name=cade-7-3-2
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --signal=B:USR1@120
# Job script rendered by cade: one segment of one trial.
# Every value below is shell-quoted; hyperparameters travel in params.json, not here.
set -u

export DATA='/scratch/my data'
export OMP_NUM_THREADS=1
export CADE_DECISION_WAIT=0
export CADE_EXPERIMENT_ID=7
export CADE_LAUNCHER=torch
export CADE_LENGTH_UNIT=batches
export CADE_METRIC=loss
export CADE_NODES=2
export CADE_NPROCS=4
export CADE_PARAMS_FILE=/scratch/.cade/experiments/7/trials/3/params.json
export CADE_REPORT_AT=50,100
export CADE_RESUME_FROM=/scratch/.cade/experiments/7/trials/3/checkpoints/50
export CADE_RUN_DIR=/scratch/.cade/experiments/7/trials/3/segments/2
export CADE_SEED=1234
export CADE_SEGMENT=2
export CADE_START_LENGTH=50
export CADE_TARGET_LENGTH=100
export CADE_TASKS_PER_NODE=2
export CADE_TRIAL_DIR=/scratch/.cade/experiments/7/trials/3
export CADE_TRIAL_ID=3
# `import determined` finds cade's Determined Core API; CADE_DETERMINED=real leaves an
# installed determined package in charge (docs/determined-core.md).
if [ "${CADE_DETERMINED:-}" != real ]; then
    export PYTHONPATH=/scratch/.cade/experiments/7/trials/3/segments/2/launch/det${PYTHONPATH:+:$PYTHONPATH}
fi

# A process of this job that left its process group (setsid, a daemon) outlives the job
# where the scheduler tracks process trees: it still carries CADE_RUN_DIR, so it is found
# here, killed, and its pid listed in `escaped` for the driver to report.
__cade_kill_escaped() {
    local stat own pid killed=""
    read -r stat 2>/dev/null < "/proc/$$/stat" || return 0
    stat=${stat##*) }; set -- $stat; own=$3
    for pid in $(grep -lzxF "CADE_RUN_DIR=$CADE_RUN_DIR" /proc/[0-9]*/environ 2>/dev/null); do
        pid=${pid#/proc/}; pid=${pid%/environ}
        read -r stat 2>/dev/null < "/proc/$pid/stat" || continue
        stat=${stat##*) }; set -- $stat
        if [ "$pid" != $$ ] && [ "$1" != Z ] && [ "$3" != "$own" ] &&
                kill -KILL "$pid" 2>/dev/null; then
            killed="$killed $pid"
        fi
    done
    if [ -n "$killed" ]; then printf '%s\n' $killed > "$CADE_RUN_DIR/escaped"; fi
}

# The exit status lands in exit_code atomically (tmp + rename), whatever ends the job.
__cade_on_exit() {
    __cade_kill_escaped
    printf '%s\n' "$1" > "$CADE_RUN_DIR/.exit_code.$$" &&
        mv -f "$CADE_RUN_DIR/.exit_code.$$" "$CADE_RUN_DIR/exit_code"
}
trap '__cade_on_exit "$?"' EXIT


cd /home/user/project || { echo "cade: cannot enter the working directory" >&2; exit 5; }


# The launch runs in the background so that this shell can forward the preemption or
# time-limit notice (USR1, TERM) to the workers and then wait for them to checkpoint.
__cade_child=""
__cade_pending=""
__cade_forward() {
    __cade_pending="$1"
    if [ "$1" = USR1 ] && [ ! -e "$CADE_RUN_DIR/preempted" ]; then
        # The notice means "wrap up, you are ending": a trainer it reaches before its handler
        # is in place dies of it, and that is a preemption to resume, not a failure.
        printf 'USR1 %s (job script)\n' "$(date +%s)" > "$CADE_RUN_DIR/preempted"
    fi
    if [ -n "$__cade_child" ]; then
        kill -s "$1" "$__cade_child" 2>/dev/null
    fi
}
trap '__cade_forward USR1' USR1
trap '__cade_forward TERM' TERM

# From here on a notice is forwarded (and marks a USR1 preemption).
printf '%s %s %s\n' "$(date +%s)" "$(hostname)" "$$" > "$CADE_RUN_DIR/started"

# The launch block runs in a background subshell; it ends with `exec` so that the
# forwarded signal reaches the launcher itself.
__cade_launch() {
    # Since Slurm 22.05 srun no longer inherits --cpus-per-task from the batch job.
    export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK:-1}"
    exec srun --kill-on-bad-exit=1 --nodes=2 --ntasks=4 \
        sh /scratch/.cade/experiments/7/trials/3/segments/2/launch/torch.sh python3 train.py --epochs 3
}
__cade_launch &
__cade_child=$!
if [ -n "$__cade_pending" ]; then
    kill -s "$__cade_pending" "$__cade_child" 2>/dev/null
fi
while :; do
    wait "$__cade_child"
    __cade_status=$?
    if [ -n "$__cade_pending" ]; then
        __cade_pending=""
        continue  # wait was interrupted by a forwarded signal: wait for the workers again
    fi
    break
done
exit "$__cade_status"
