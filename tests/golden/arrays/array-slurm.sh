#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --error=/scratch/.cade/experiments/7/arrays/a/stderr.log
#SBATCH --job-name=cade-7-array-3-1
#SBATCH --no-requeue
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/scratch/.cade/experiments/7/arrays/a/stdout.log
#SBATCH --signal=B:USR1@120
#SBATCH --array=0-2
# Array job rendered by cade: element I runs the segment script listed for I below. That
# script is the one a single job of the segment would run; its output and exit code land in
# the segment's own run directory.
set -u
__cade_index="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-}}"
case "$__cade_index" in
0) __cade_run_dir=/scratch/.cade/experiments/7/trials/3/segments/1; __cade_script=/scratch/.cade/experiments/7/trials/3/segments/1/job.sh ;;
1) __cade_run_dir=/scratch/.cade/experiments/7/trials/4/segments/1; __cade_script=/scratch/.cade/experiments/7/trials/4/segments/1/job.sh ;;
2) __cade_run_dir=/scratch/.cade/experiments/7/trials/5/segments/1; __cade_script=/scratch/.cade/experiments/7/trials/5/segments/1/job.sh ;;
*) echo "cade: no segment for array index '$__cade_index'" >&2; exit 2 ;;
esac
# A scheduler that starts an element again (PBS reruns array jobs) must not run its segment
# twice: cade restarts the trial itself, as a new segment from its checkpoint.
if [ -e "$__cade_run_dir/started" ] || [ -e "$__cade_run_dir/exit_code" ]; then
    echo "cade: array element $__cade_index started before; not running its segment again" >&2
    exit 3
fi
exec "$__cade_script" >> "$__cade_run_dir"/stdout.log 2>> "$__cade_run_dir"/stderr.log
