"""The code is clean under its pinned linter and type checker (setup.cfg's `dev` extra, which
scripts/test.sh installs), as the README's "Lint and types" line runs them: ruff's rules
(pyproject.toml) over the package, the tests, the benchmarks and the examples, and mypy
--strict (setup.cfg [mypy]) over the package. Without them installed the checks skip, except
under CI, where a missing tool fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (pip install -e '.[dev]')")
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", "cade_cli", "tests", "bench", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing_in_the_package(tmp_path: Path) -> None:
    result = _run("mypy", "--cache-dir", str(tmp_path / "mypy-cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")
