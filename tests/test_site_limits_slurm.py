"""A site's limit on submitted jobs, on the test Slurm cluster: the experiment waits and goes on.

The test cluster has no accounting database (no slurmdbd), so no QOS or association limit
can be set on it. The limit is therefore made by a wrapper `sbatch` first on PATH: when this
experiment already has SUBMIT_LIMIT jobs pending or running in Slurm, it refuses with the
message Slurm prints for `MaxSubmitJobsPerUser` (QOSMaxSubmitJobPerUserLimit) and exit 1, as
real sbatch does; otherwise it runs the real sbatch. Everything else is the real cluster.

A search of more trials than the limit, all allowed to run at once, must complete with every
trial trained, each segment a Slurm job exactly once, never more than SUBMIT_LIMIT jobs in
Slurm at a time, and `cade status` saying what the waiting trials wait for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_fixtures import (
    FINAL_TRIAL_STATES,
    ROOT,
    cade,
    cade_env,
    cade_json,
    cancel_jobs,
    require_slurm,
    segments,
)

from cade_cli.backends.slurm import SlurmScheduler

pytestmark = pytest.mark.slurm

SUBMIT_LIMIT = 4
TRIALS = 10
WAITING = "waiting: the site's limit on queued jobs (QOSMaxSubmitJobPerUserLimit); retrying"
TRAINER = ROOT / "examples" / "synthetic" / "train.py"
SPEC = f"""
name: site-limit
entrypoint: ["{sys.executable}", "{TRAINER}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
searcher:
  name: random
  metric: loss
  max_trials: {TRIALS}
  max_length: {{batches: 20}}
  max_concurrent_trials: {TRIALS}
resources:
  launcher: none
  time: "00:05:00"
reproducibility:
  experiment_seed: 3
"""


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    require_slurm()


def limited_sbatch(folder: Path) -> Path:
    """The wrapper `sbatch` (see the module docstring). It counts this experiment's jobs by
    the directory token that ends their names, so other users' jobs on the shared test
    cluster do not count, and logs how many it found at each submission."""
    folder.mkdir(exist_ok=True)
    script = folder / "sbatch"
    script.write_text(f"""#!/bin/sh
for last; do :; done
name=$(sed -n 's/^#SBATCH --job-name=//p' "$last" | tr -d "'\\"")
token=${{name##*-}}
jobs=$(squeue -h -t PD,CF,R,CG -o %j | grep -c -- "-$token\\$")
echo "$jobs" >> "{folder}/counts"
if [ "$jobs" -ge {SUBMIT_LIMIT} ]; then
  echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
  echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)" >&2
  echo refused >> "{folder}/counts"
  exit 1
fi
exec {shutil.which("sbatch")} "$@"
""")
    script.chmod(0o755)
    return folder


def test_a_submit_limit_of_four_jobs_delays_but_loses_nothing(tmp_path: Path) -> None:
    wrapper = limited_sbatch(tmp_path / "bin")
    env = cade_env(tmp_path, poll=0.5, CADE_SITE_CONFIG=os.devnull, PYTHONPATH=str(ROOT),
                   SYNTH_STEP_SECONDS="0.1")
    env["PATH"] = f"{wrapper}{os.pathsep}{env['PATH']}"
    (tmp_path / "spec.yaml").write_text(SPEC)
    answer = cade_json(tmp_path, "submit", "spec.yaml", "--detach", "--json", env=env)
    exp = str(answer["experiment"])
    shown: set[str] = set()
    try:
        deadline = time.monotonic() + 240
        while True:
            status = cade(tmp_path, "status", exp, env=env).stdout
            shown.update(line.split(": ", 1)[1] for line in status.splitlines()
                         if line.startswith("  trial ") and ": waiting" in line)
            state = cade_json(tmp_path, "status", exp, "--json", env=env)
            if state["experiment"]["state"] == "completed":
                break
            # pending until its first job starts (a loaded machine starts it late)
            assert state["experiment"]["state"] in ("pending", "active"), state["experiment"]
            assert time.monotonic() < deadline, "the experiment did not complete in 240 s"
            time.sleep(1)
    finally:
        cancel_jobs([s.job_id for s in segments(tmp_path, int(exp)) if s.job_id
                     and s.state in ("queued", "running")])
    counts = (wrapper / "counts").read_text().split()
    assert "refused" in counts, "the limit was never reached: the test proves nothing"
    assert max(int(c) for c in counts if c.isdigit()) <= SUBMIT_LIMIT
    assert WAITING in shown, shown
    trials = state["trials"]
    assert len(trials) == TRIALS and all(t["state"] in FINAL_TRIAL_STATES for t in trials)
    assert all(t["length"] == 20 and t["waiting"] is None for t in trials), trials
    # No trial lost or run twice: one completed segment per trial, each a distinct Slurm job.
    segs = segments(tmp_path, int(exp))
    assert sorted(s.trial for s in segs) == list(range(1, TRIALS + 1))
    assert all(s.state == "completed" and s.reason == "" for s in segs), segs
    names = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True,
                           text=True, check=True, timeout=30).stdout.split()
    assert all(names.count(s.job_name) == 1 for s in segs)


def test_the_users_queued_jobs_are_listed_for_count_user_jobs(tmp_path: Path) -> None:
    """A held job of this user is queued; the list is one real squeue."""
    done = subprocess.run(["sbatch", "--parsable", "--hold", "-o", str(tmp_path / "out"),
                           "--wrap", "true"], capture_output=True, text=True, check=True,
                          timeout=30)
    job_id = done.stdout.strip()
    try:
        scheduler = SlurmScheduler(min_poll_interval=0)
        assert job_id in scheduler.queued_job_ids()
        assert scheduler.calls["squeue"] == 1
    finally:
        cancel_jobs([job_id])
