"""scripts/slurm-up.sh and slurm-down.sh: syntax, documentation, and the running cluster.

The cluster checks are marked `slurm` and need the cluster up (scripts/test.sh starts it);
in CI (CI set) a missing cluster is a failure, elsewhere a skip. They never stop the cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
UP, DOWN = SCRIPTS / "slurm-up.sh", SCRIPTS / "slurm-down.sh"


@pytest.mark.parametrize("script", [UP, DOWN])
def test_scripts_parse_and_document_themselves(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    header = script.read_text().split("set -", 1)[0]
    assert f"bash scripts/{script.name}" in header        # usage lines for contributors


def test_up_script_writes_the_agreed_configuration() -> None:
    text = UP.read_text()
    for setting in ("SlurmdParameters=config_overrides", "DependencyParameters=kill_invalid_depend",
                    "MinJobAge=600", "JobCompType=jobcomp/filetxt", "ln -sfn /dev/null",
                    "--no-install-recommends", "DPkg::Lock::Timeout", "# slurm-testbed"):
        assert setting in text, setting


def _cluster_or_skip() -> None:
    if shutil.which("sinfo") and Path("/run/cade-slurm-testbed/slurmctld.pid").exists():
        return
    if os.environ.get("CI"):
        pytest.fail("the test Slurm cluster is not up (scripts/slurm-up.sh)")
    pytest.skip("the test Slurm cluster is not up (scripts/slurm-up.sh)")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """Like CI: no stdin, output piped; returns only once every writer closed the pipes."""
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, CI="true"), check=False)


@pytest.mark.slurm
def test_running_up_again_is_idempotent_and_quick() -> None:
    _cluster_or_skip()
    started = time.monotonic()
    result = run_script(str(UP))
    assert result.returncode == 0, result.stderr
    assert "already up and ready" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.slurm
def test_status_reports_four_ready_nodes_with_fake_gpus() -> None:
    _cluster_or_skip()
    result = run_script(str(UP), "--status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready (4 nodes" in result.stdout
    assert [ln.split()[-1] for ln in result.stdout.splitlines() if ln.startswith("node")] == ["gpu:2"] * 4


@pytest.mark.slurm
def test_node_names_resolve_for_rendezvous() -> None:
    _cluster_or_skip()
    assert {socket.gethostbyname(f"node{n}") for n in range(1, 5)} == {"127.0.0.1"}
