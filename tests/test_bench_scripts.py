"""Every bench script still runs against the package as it is now (no CI run of a bench
notices a renamed import otherwise), and the Slurm utilisation bench end to end at a tiny size
on the test cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text())


def bench(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_each_bench_script_imports_and_answers_help(script: Path) -> None:
    done = bench(str(script), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "Traceback" not in done.stderr


@pytest.mark.slurm
def test_slurm_utilisation_at_a_tiny_size() -> None:
    from slurm_fixtures import require_slurm

    require_slurm()
    done = bench("bench/slurm_utilisation.py", "--slots", "4", "--trials", "4", "--unit-seconds", "0.02",
                 "--skip-sync", timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| ASHA via cade, decision wait (\d+) s \| 4 \| (\d+) \| (\d+) \| ([\d.]+) \| "
                      r"([\d.]+) \| ([\d.]+)% \|.*\| sbatch (\d+), squeue \d+ \|$", done.stdout, re.MULTILINE)
    assert [wait for wait, *_ in rows] == ["7", "0"], done.stdout
    for _, jobs, peak, makespan, busy, utilisation, sbatches in rows:
        assert int(jobs) >= 4 and int(sbatches) == int(jobs) and 1 <= int(peak) <= 4
        assert float(makespan) > 0 and 0 < float(busy) <= 4 * float(makespan)
        assert 0 < float(utilisation) <= 100
    assert "Made with: python bench/slurm_utilisation.py --slots 4 --trials 4" in done.stdout
