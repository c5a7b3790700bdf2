#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs cade and its test extras into .venv, builds
# Horovod (optional extra, once), starts the test Slurm cluster, runs pytest, stops the cluster.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k spec -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh test,dev   # dev: the pinned ruff and mypy (tests/test_lint.py)
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/install-test-tools.sh    # chromium (HTML report test), tmux (live view test)
bash scripts/install-horovod.sh
# A test cluster found up (a contributor's, or another checkout's) stays up after the run;
# one this run started is stopped again.
found_up=false
bash scripts/slurm-up.sh --status >/dev/null 2>&1 && found_up=true
bash scripts/slurm-up.sh
"$found_up" || trap 'bash scripts/slurm-down.sh' EXIT
# Everything the tests need is installed and running now: a test that finds a part missing
# fails instead of skipping.
export CI="${CI:-1}"
set +e
python -m pytest -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  rc=1
fi
exit "$rc"
