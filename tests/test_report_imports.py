"""`import cade_cli.report` loads the standard library only (training scripts import it)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_STDLIB = {"asyncio", "multiprocessing", "concurrent", "sqlite3", "email", "http", "xml",
                "ssl", "socket", "subprocess", "urllib", "unittest"}

PROBE = """
import json, sys
before = set(sys.modules)
import cade_cli.report
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by_import() -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_report_loads_only_the_standard_library() -> None:
    roots = {name.split(".")[0] for name in loaded_by_import()}
    third_party = {r for r in roots if r not in sys.stdlib_module_names and r != "cade_cli"}
    assert third_party == set()
    assert roots & HEAVY_STDLIB == set()


def test_report_loads_no_other_cade_module() -> None:
    cade_modules = {n for n in loaded_by_import() if n.split(".")[0] == "cade_cli"}
    assert cade_modules == {"cade_cli", "cade_cli.report", "cade_cli.rank_exit"}
