"""bench/scale.py at CI size: the builder writes a real experiment, every timed command runs.

No timing is asserted (the machines are noisy); the table and every command's success are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "scale.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_build_then_time_at_ci_size(tmp_path: Path) -> None:
    out = tmp_path / "scale"
    built = _run("build", "--trials", "50", "--metrics-per-trial", "20", "--out", str(out),
                 cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "built 50 trials" in built.stdout

    ledger = Ledger(out / ".cade" / "ledger.db", create=False)
    exp = ledger.find_experiment()
    trials = ledger.trials(exp.id)
    assert exp.state == "completed" and len(trials) == 50
    assert all(t.closed and t.best_metric is not None for t in trials)
    # ASHA promoted some trials past the first rung, and training rows came every unit.
    assert max(t.length for t in trials) > min(t.length for t in trials)
    training = ledger.metrics(exp.id, trials[0].id, "training")
    assert [m.length for m in training] == list(range(1, trials[0].length + 1))

    timed = _run("time", str(out), "--runs", "1", cwd=tmp_path)
    assert timed.returncode == 0, timed.stdout + timed.stderr
    rows = [line for line in timed.stdout.splitlines() if line.startswith("| ")]
    labels = [row.split(" | ")[0].lstrip("| ") for row in rows[1:]]
    assert labels == ["cade status EXP", "cade best EXP --json", "cade top EXP --once",
                      "cade plot EXP", "cade report EXP --html", "cade export --format csv",
                      "cade export --format tensorboard", "driver sync pass, nothing new",
                      "driver sync pass, 50 new training lines",
                      "ingest rate (2000 lines in one pass; per CPU second)", "ledger file"]
    assert "FAILED" not in timed.stdout
    assert "lines/s" in timed.stdout
    chosen = _run("time", str(out), "--runs", "1", "--only", "status", "--only", "sync",
                  cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    labels = [line.split(" | ")[0].lstrip("| ") for line in chosen.stdout.splitlines()
              if line.startswith("| ")][1:]
    assert labels == ["cade status EXP", "driver sync pass, nothing new",  # one child: all three
                      "driver sync pass, 50 new training lines",
                      "ingest rate (2000 lines in one pass; per CPU second)", "ledger file"]

    exports = _run("time", str(out), "--runs", "1", "--only", "export", cwd=tmp_path)
    assert exports.returncode == 0, exports.stdout + exports.stderr
    rows = [line for line in exports.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows[1:]] == [
        "cade export --format csv", "cade export --format tensorboard", "ledger file"]
