"""Shared pytest options and fixtures. Keep additions small and independent."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current templates instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def fake_pbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tests/data/pbs/fake_pbs.py as qsub, qstat, qdel, qsig and qselect, first on PATH."""
    fake = Path(__file__).parent / "data" / "pbs" / "fake_pbs.py"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("qsub", "qstat", "qdel", "qsig", "qselect"):
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" --as {command} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PBS_STATE", str(tmp_path / "pbs-state"))
    yield bin_dir
