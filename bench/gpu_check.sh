#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run of a few minutes, results written under OUTDIR:
#
#   bash bench/gpu_check.sh [OUTDIR]        (default: ./gpu-check)
#
#   machine.txt   the GPUs, Python and torch
#   tests.txt     tests/test_gpu.py: the digits example and a mixed-precision PyTorchTrial resumed
#                 from checkpoints on the GPU, and the local backend's one-GPU-per-trial placement
#   overhead.md   bench/trial_overhead.py --device cuda: cade's PyTorchTrial harness against a
#                 hand-written loop, the example's small model and a wider one
#
# Needs a python3 (or $PYTHON) with CUDA torch, scikit-learn, click, pyyaml, rich, jinja2 and
# pytest; cade itself is installed from this checkout (editable, no dependencies fetched), so
# a machine without internet will do. Exit status: that of the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%T)] $*" >&2; }

stamp "machine"
{ nvidia-smi -L; "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'; } >"$out/machine.txt" 2>&1
"$py" -c "import cade_cli.templates" 2>/dev/null ||
    "$py" -m pip install -q --no-deps --no-build-isolation --disable-pip-version-check -e . \
        >>"$out/machine.txt" 2>&1

stamp "tests/test_gpu.py"
"$py" -m pytest -p no:cacheprovider -v -rs tests/test_gpu.py >"$out/tests.txt" 2>&1
tests_rc=$?
echo "exit status: $tests_rc" >>"$out/tests.txt"

stamp "harness overhead on cuda"
{
    echo "## the example's model (width 16, batch 32)"
    "$py" bench/trial_overhead.py --device cuda --batches 300 --rounds 10
    echo
    echo "## a wider model (width 512, batch 512)"
    "$py" bench/trial_overhead.py --device cuda --batches 300 --rounds 10 --width 512 --batch-size 512
} >"$out/overhead.md" 2>&1
stamp "done: $out"
exit "$tests_rc"
