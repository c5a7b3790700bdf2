"""Helpers for the tests that run on the real test Slurm cluster (scripts/slurm-up.sh).

The tests run `cade` as a user would (a subprocess of this interpreter, the venv's bin first
on PATH so that jobs find the same python3), with a fast poll interval and no user
configuration. In CI (`CI` set) a missing cluster or Horovod build fails loudly instead of
skipping: scripts/test.sh provides both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cade_cli.store.ledger import Ledger
from cade_cli.store.records import ExperimentRecord, SegmentRecord

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FINAL_TRIAL_STATES = {"completed", "stopped", "errored"}
TERMINAL_EXPERIMENT_STATES = {"completed", "errored", "canceled"}


def missing(what: str) -> None:
    """Skip on a developer machine, fail in CI: the CI script provides `what`."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set: scripts/test.sh should have provided it)",
                    pytrace=False)
    pytest.skip(what)


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        missing("sbatch is not on PATH: start the test cluster with scripts/slurm-up.sh")
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0 or "idle" not in done.stdout and "mix" not in done.stdout \
            and "alloc" not in done.stdout:
        missing(f"the Slurm cluster does not answer (sinfo: {done.stderr.strip() or done.stdout})")


def require_horovod() -> None:
    done = subprocess.run([sys.executable, "-c", "import horovod.torch"], capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        missing("horovod.torch is not importable: build it with scripts/install-horovod.sh")


def cade_env(workdir: Path, poll: float = 0.5, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(CADE_LEDGER=str(workdir / "ledger.db"), CADE_CONFIG=os.devnull,
               CADE_POLL_INTERVAL=str(poll), CADE_SCHEDULER="slurm")
    env.update(extra)
    return env


def cade(workdir: Path, *args: str, timeout: float = 240, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "cade_cli", *args], cwd=workdir,
                          env=env or cade_env(workdir), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"cade {' '.join(args)} exited {done.returncode}\n"
                             f"stdout: {done.stdout}\nstderr: {done.stderr}")
    return done


def cade_json(workdir: Path, *args: str, **kwargs: Any) -> Any:
    return json.loads(cade(workdir, *args, **kwargs).stdout)


def ledger_of(workdir: Path) -> Ledger:
    return Ledger(workdir / "ledger.db", create=False)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float,
             interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_end(workdir: Path, experiment_id: int, timeout: float) -> ExperimentRecord:
    """Read the ledger (no sync: a driver runs elsewhere) until the experiment has ended."""
    def ended() -> ExperimentRecord | None:
        ledger = ledger_of(workdir)
        try:
            exp = ledger.experiment(experiment_id)
            live = ledger.live_segments(experiment_id)
        finally:
            ledger.close()
        return exp if exp.state in TERMINAL_EXPERIMENT_STATES and not live else None
    result: ExperimentRecord = wait_for(f"experiment {experiment_id} to end", ended, timeout,
                                        interval=0.5)
    return result


def segments(workdir: Path, experiment_id: int, trial: int | None = None) -> list[SegmentRecord]:
    ledger = ledger_of(workdir)
    try:
        return ledger.segments(experiment_id, trial)
    finally:
        ledger.close()


def scontrol_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job -o` as a dict (finished jobs stay visible for MinJobAge)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                          text=True, timeout=30, check=True)
    pairs = (word.split("=", 1) for word in done.stdout.split() if "=" in word)
    return {key: value for key, value in pairs}


def cancel_jobs(job_ids: list[str]) -> None:
    """Clean up after a failed test: cancel the jobs this test's ledger recorded."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30, check=False)


def metrics_lines(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
