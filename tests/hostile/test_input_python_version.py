"""setup.cfg promises Python >= 3.10 (login nodes often carry older Pythons than laptops):
a static minimum-version check of every module cade ships, and the linter set to the same."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path

from cade_cli.compat import StrEnum

ROOT = Path(__file__).resolve().parents[2]


def _promised_minimum() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    match = re.fullmatch(r">=\s*(3\.\d+)", config["options"]["python_requires"].strip())
    assert match, config["options"]["python_requires"]
    return match.group(1)


def test_the_promised_minimum_is_3_10() -> None:
    assert _promised_minimum() == "3.10"


def test_no_module_needs_a_newer_python_than_promised() -> None:
    minimum = _promised_minimum()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", "--eval-annotations",
         f"--target={minimum}-", "cade_cli", "launchers", "templates"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_targets_the_same_version() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    target = "py" + _promised_minimum().replace(".", "")
    assert re.search(rf'^target-version = "{target}"$', text, re.MULTILINE), text


class _Colour(StrEnum):
    RED = "red"


def test_the_strenum_form_behaves_as_the_311_one() -> None:
    assert isinstance(_Colour.RED, str) and isinstance(_Colour.RED, Enum)
    assert str(_Colour.RED) == "red"
    assert f"{_Colour.RED}|{_Colour.RED:>5}" == "red|  red"
    assert _Colour("red") is _Colour.RED
    assert _Colour.RED == "red"
